-- What only nginx can show: blob GETs with Range, HEAD, the headers of a
-- blob handed to nginx, chunked request bodies, a 64 MB upload in constant
-- memory, concurrent uploads across workers, and a clean error log.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"

local q = tools.q
local PUSH = "spec/fixtures/interop/push.sh"

-- the single value of a header that must appear once
local function one(resp, name)
  local v = resp.headers[name]
  assert.is_string(v, "no " .. name .. " header:\n" .. resp.raw_headers)
  assert.is_nil(v:find(", ", 1, true),
    name .. " appears more than once:\n" .. resp.raw_headers)
  return v
end

describe("berth serve over HTTP", function()
  local srv, work, blob, dgst, url

  setup(function()
    srv = server.start{}
    work = helpers.tmpdir()
    blob = helpers.random_bytes(100000)
    local path = work .. "/blob"
    helpers.write_file(path, blob)
    local r
    r, dgst = tools.push_blob(srv.url, "test/range", path)
    assert(r.status == 201, r.body)
    url = srv.url .. "/v2/test/range/blobs/" .. dgst
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  describe("blob GET", function()
    it("answers a single range with 206 and Content-Range", function()
      local r = tools.curl("GET", url, { headers = { "Range: bytes=10-99" } })
      assert.equal(206, r.status)
      assert.equal("bytes 10-99/100000", r.headers["content-range"])
      assert.equal("90", r.headers["content-length"])
      assert.equal(blob:sub(11, 100), r.body)
      r = tools.curl("GET", url, { headers = { "Range: bytes=-5" } })
      assert.equal(206, r.status)
      assert.equal("bytes 99995-99999/100000", r.headers["content-range"])
      assert.equal(blob:sub(-5), r.body)
    end)

    it("answers multiple ranges with multipart/byteranges", function()
      local r = tools.curl("GET", url,
        { headers = { "Range: bytes=0-9,50000-50009" } })
      assert.equal(206, r.status)
      local boundary = r.headers["content-type"]:match(
        "^multipart/byteranges; boundary=(%S+)$")
      assert.is_string(boundary, r.headers["content-type"])
      local parts = {}
      local sep = "\r\n--" .. boundary
      local pos = 1
      while true do
        local _, e = r.body:find(sep, pos, true)
        if not e or r.body:sub(e + 1, e + 2) == "--" then break end
        local hs, he = r.body:find("\r\n\r\n", e + 1, true)
        local head = r.body:sub(e + 3, hs - 1)
        local a, b = head:match("Content%-Range: bytes (%d+)%-(%d+)/")
        local n = tonumber(b) - tonumber(a) + 1
        parts[#parts + 1] = { head, r.body:sub(he + 1, he + n) }
        pos = he + n + 1
      end
      assert.equal(2, #parts)
      assert.matches("Content%-Range: bytes 0%-9/100000", parts[1][1])
      assert.equal(blob:sub(1, 10), parts[1][2])
      assert.matches("Content%-Range: bytes 50000%-50009/100000", parts[2][1])
      assert.equal(blob:sub(50001, 50010), parts[2][2])
    end)

    it("answers an unsatisfiable range with 416", function()
      local r = tools.curl("GET", url,
        { headers = { "Range: bytes=100000-" } })
      assert.equal(416, r.status)
      assert.equal("bytes */100000", r.headers["content-range"])
      r = tools.curl("GET", url, { headers = { "Range: bytes=200000-200010" } })
      assert.equal(416, r.status)
    end)

    it("HEAD has Content-Length and Docker-Content-Digest, no body",
      function()
      local r = tools.curl("HEAD", url)
      assert.equal(200, r.status)
      assert.equal("100000", one(r, "content-length"))
      assert.equal(dgst, one(r, "docker-content-digest"))
      -- HTTP/1.0 over a raw socket: the server closes after its answer, so
      -- whatever follows the headers would be a body
      local raw = tools.raw_http(srv.port, "HEAD /v2/test/range/blobs/" .. dgst
        .. " HTTP/1.0\r\nHost: x\r\n\r\n")
      assert.matches("^HTTP/1%.1 200 ", raw)
      local body = raw:match("\r\n\r\n(.*)$")
      assert.equal("", body)
    end)

    it("has the registry's headers, each once", function()
      local r = tools.curl("GET", url)
      assert.equal(200, r.status)
      assert.equal(dgst, helpers.sha256sum(r.body))
      assert.equal("100000", one(r, "content-length"))
      assert.equal("application/octet-stream", one(r, "content-type"))
      assert.equal("registry/2.0",
        one(r, "docker-distribution-api-version"))
      assert.equal(dgst, one(r, "docker-content-digest"))
      assert.equal('"' .. dgst .. '"', one(r, "etag"))
    end)

    it("206 and 416 answers have the registry's headers, each once",
      function()
      local r = tools.curl("GET", url, { headers = { "Range: bytes=0-0" } })
      assert.equal(206, r.status)
      assert.equal(dgst, one(r, "docker-content-digest"))
      assert.equal('"' .. dgst .. '"', one(r, "etag"))
      r = tools.curl("GET", url, { headers = { "Range: bytes=100000-" } })
      assert.equal(416, r.status)
      -- an error answer need not have them, but not twice either
      for _, h in ipairs({ "docker-content-digest", "etag",
        "docker-distribution-api-version", "cache-control" }) do
        if r.headers[h] then one(r, h) end
      end
      if r.headers["docker-content-digest"] then
        assert.equal(dgst, r.headers["docker-content-digest"])
      end
    end)

    it("of a blob the repository does not link answers BLOB_UNKNOWN",
      function()
      local r = tools.curl("GET", srv.url .. "/v2/test/other/blobs/" .. dgst)
      assert.equal(404, r.status)
      local e = tools.json(r.body).errors[1]
      assert.equal("BLOB_UNKNOWN", e.code)
      assert.is_string(e.message)
    end)
  end)

  it("takes a 5 MB blob in chunked PATCH and PUT bodies", function()
    local path = work .. "/five"
    tools.random_file(path, 5000000)
    local want = tools.sha256_file(path)
    tools.must(("head -c 3000000 %s > %s; tail -c +3000001 %s > %s")
      :format(q(path), q(path .. ".a"), q(path), q(path .. ".b")))
    local base = srv.url .. "/v2/test/chunked/blobs/uploads/"
    local r = tools.curl("POST", base)
    assert.equal(202, r.status)
    local loc = tools.location(srv.url, r)
    local chunked = { "Transfer-Encoding: chunked",
      "Content-Type: application/octet-stream" }
    r = tools.curl("PATCH", loc, { file = path .. ".a", headers = chunked })
    assert.equal(202, r.status)
    assert.equal("0-2999999", r.headers["range"])
    loc = tools.location(srv.url, r)
    r = tools.curl("PUT", loc .. (loc:find("?", 1, true) and "&" or "?")
      .. "digest=" .. want, { file = path .. ".b", headers = chunked })
    assert.equal(201, r.status)
    assert.equal(want, r.headers["docker-content-digest"])
    r = tools.curl("GET", srv.url .. "/v2/test/chunked/blobs/" .. want)
    assert.equal(200, r.status)
    assert.equal(5000000, #r.body)
    assert.equal(want, helpers.sha256sum(r.body))
    -- nginx's spooled bodies are gone
    assert.equal("", tools.stdout("find " .. q(srv.root .. "/.berth-tmp")
      .. " -type f"))
  end)

  it("refuses a chunked PATCH longer or shorter than its Content-Range",
    function()
    local path = work .. "/mib"
    tools.random_file(path, 1024 * 1024)
    local base = srv.url .. "/v2/test/ranged/blobs/uploads/"
    local r = tools.curl("POST", base)
    assert.equal(202, r.status)
    local loc = tools.location(srv.url, r)
    for _, range in ipairs({ "0-9", "0-2097151" }) do
      r = tools.curl("PATCH", loc, { file = path, headers = {
        "Transfer-Encoding: chunked", "Content-Range: " .. range,
        "Content-Type: application/octet-stream" } })
      assert.equal(416, r.status, range)
      assert.equal("BLOB_UPLOAD_INVALID", tools.json(r.body).errors[1].code)
      -- nothing of it was taken
      r = tools.curl("GET", loc)
      assert.equal(204, r.status)
      assert.equal("0-0", r.headers["range"])
    end
    -- the range that fits goes in
    r = tools.curl("PATCH", loc, { file = path, headers = {
      "Transfer-Encoding: chunked", "Content-Range: 0-1048575",
      "Content-Type: application/octet-stream" } })
    assert.equal(202, r.status)
    assert.equal("0-1048575", r.headers["range"])
  end)

  it("streams a 64 MB single-request upload in constant memory", function()
    local path = work .. "/big"
    tools.random_file(path, 64 * 1024 * 1024)
    local want = tools.sha256_file(path)
    local workers = tools.children(srv:pid())
    assert.equal(2, #workers)
    local r = tools.curl("POST", srv.url .. "/v2/test/big/blobs/uploads/"
      .. "?digest=" .. want, { file = path, headers = {
        "Content-Type: application/octet-stream" } })
    assert.equal(201, r.status)
    assert.equal(want, r.headers["docker-content-digest"])
    for _, pid in ipairs(workers) do
      local hwm = tools.vm_hwm(pid)
      assert.is_number(hwm, "worker " .. pid .. " is gone")
      assert.is_true(hwm < 40 * 1024, ("worker %d peak RSS %d kB")
        :format(pid, hwm))
    end
    assert.equal(want, tools.sha256_file(srv.root
      .. "/docker/registry/v2/blobs/sha256/" .. want:sub(8, 9) .. "/"
      .. want:sub(8) .. "/data"))
    r = tools.curl("HEAD", srv.url .. "/v2/test/big/blobs/" .. want)
    assert.equal(200, r.status)
    assert.equal(tostring(64 * 1024 * 1024), r.headers["content-length"])
  end)

  it("completes 20 concurrent PATCH-then-PUT uploads", function()
    local cmds = {}
    local want = {}
    for i = 1, 20 do
      local path = ("%s/c%02d"):format(work, i)
      tools.random_file(path, 200000 + i * 10000)
      want[i] = tools.sha256_file(path)
      cmds[#cmds + 1] = ("sh %s %s test/conc%d 10000000 %s - x -- %s &")
        :format(PUSH, srv.url, i % 3, q(path .. ".state"), q(path))
    end
    tools.must(table.concat(cmds, "\n") .. "\nwait")
    for i = 1, 20 do
      local path = ("%s/c%02d"):format(work, i)
      local state = helpers.read_file(path .. ".state") or ""
      assert.matches("blob " .. want[i] .. " 201", state, 1, true)
      local r = tools.curl("GET", ("%s/v2/test/conc%d/blobs/%s"):format(
        srv.url, i % 3, want[i]))
      assert.equal(200, r.status)
      assert.equal(want[i], helpers.sha256sum(r.body))
    end
  end)

  it("takes a body the client cuts short as a broken connection", function()
    -- headers promising 1000 bytes, ten of them, then the client is gone
    local req = "PUT /v2/test/cut/manifests/cut HTTP/1.1\r\nHost: x\r\n"
      .. "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
      .. "Content-Length: 1000\r\n\r\n{\"schemaVe"
    local path = work .. "/cut-request"
    helpers.write_file(path, req)
    tools.must("bash -c " .. q(("exec 3<>/dev/tcp/127.0.0.1/%d && cat %s >&3")
      :format(srv.port, q(path))))
    -- until nginx logged the request as done (its access log)
    local logged
    for _ = 1, 600 do
      logged = (helpers.read_file(srv.log) or "")
        :find("PUT /v2/test/cut/manifests/cut", 1, true)
      if logged then break end
      tools.sleep(0.1)
    end
    assert.truthy(logged, "nginx never finished the request")
    -- no read on the closed socket after the failed one
    assert.same({}, srv:error_lines())
    local r = tools.curl("GET", srv.url .. "/v2/test/cut/manifests/cut")
    assert.equal(404, r.status)
  end)

  -- A tag's first set cut short (kill -9, a power cut) between its index
  -- link and its current link, the current link's temp file left.
  it("lists no tag that a crash left without its current link", function()
    local body = ('{"schemaVersion":2,"mediaType":'
      .. '"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":'
      .. '"application/vnd.oci.image.config.v1+json","digest":"%s","size":'
      .. '100000},"layers":[]}'):format(dgst)
    local r = tools.curl("PUT", srv.url .. "/v2/test/range/manifests/good",
      { data = body, headers = {
        "Content-Type: application/vnd.oci.image.manifest.v1+json" } })
    assert.equal(201, r.status, r.body)
    local m = r.headers["docker-content-digest"]
    local tag = srv.root .. "/docker/registry/v2/repositories/test/range"
      .. "/_manifests/tags/half"
    local index = tag .. "/index/sha256/" .. m:sub(8)
    tools.must("mkdir -p " .. q(index) .. " " .. q(tag .. "/current"))
    helpers.write_file(index .. "/link", m)
    helpers.write_file(tag .. "/current/.tmp-00000000deadbeef~", m)
    r = tools.curl("GET", srv.url .. "/v2/test/range/tags/list")
    assert.equal(200, r.status)
    assert.same({ name = "test/range", tags = { "good" } }, tools.json(r.body))
    r = tools.curl("GET", srv.url .. "/v2/test/range/tags/list?n=1")
    assert.same({ name = "test/range", tags = { "good" } }, tools.json(r.body))
    r = tools.curl("GET", srv.url .. "/v2/test/range/manifests/half")
    assert.equal(404, r.status)
  end)

  it("logged no errors", function()
    assert.same({}, srv:error_lines())
  end)
end)

describe("berth serve with a policy that raises", function()
  local srv, dir, evil

  setup(function()
    dir = helpers.tmpdir()
    evil = dir .. "/evil.lua"
    helpers.write_file(evil, [[
return { PRIORITY = 1, before_blob_upload = function(self, ctx)
  local t = nil
  return t.field
end }
]])
    helpers.write_file(dir .. "/berth.lua", "plugins = { { name = \"evil\", "
      .. "path = \"evil.lua\" } }\n")
    srv = server.start{ config = dir .. "/berth.lua" }
  end)

  teardown(function()
    if srv then srv:stop() end
    helpers.rmrf(dir)
  end)

  it("refuses with a neutral message; the path and trace go to the log",
    function()
    local r = tools.curl("POST", srv.url .. "/v2/test/evil/blobs/uploads/")
    assert.equal(403, r.status)
    assert.same({ errors = { { code = "DENIED",
      message = "policy evil failed" } } }, tools.json(r.body))
    local log = helpers.read_file(srv.log)
    assert.matches("before_blob_upload: policy evil failed: " .. evil
      :gsub("%p", "%%%0") .. ":3: attempt to index local 't'", log)
    assert.matches("stack traceback:", log, 1, true)
  end)
end)

describe("berth serve with a sandboxed policy", function()
  local srv, dir

  setup(function()
    dir = helpers.tmpdir()
    -- refuses when it can reach string.dump through a string's methods
    helpers.write_file(dir .. "/nosy.lua", [[
return { PRIORITY = 1, before_blob_upload = function(self, ctx)
  if ("").dump ~= nil then return false, "reached string.dump" end
  return ("ok"):upper() == "OK", "no string methods"
end }
]])
    helpers.write_file(dir .. "/berth.lua", "plugins = { { name = \"nosy\", "
      .. "path = \"nosy.lua\", sandbox = true } }\n")
    srv = server.start{ config = dir .. "/berth.lua" }
  end)

  teardown(function()
    if srv then srv:stop() end
    helpers.rmrf(dir)
  end)

  it("gets the allow-listed string methods in every worker", function()
    for _ = 1, 4 do
      local r = tools.curl("POST", srv.url .. "/v2/test/nosy/blobs/uploads/")
      assert.equal(202, r.status, r.body)
    end
  end)
end)

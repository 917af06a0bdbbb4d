-- A refusal answered before its request body is read must not leave the
-- body on the connection: the next request on it gets its own answer.
-- One curl runs both requests (--next reuses the connection), under
-- HTTP/1.1 and under HTTP/2 (TLS). Each refused body is an HTTP request of
-- its own: left on the connection, nginx would answer it in the place of
-- the client's next request.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"

local q = tools.q

local ALICE = "alice:alice-secret"
local SMUGGLED = "GET /v2/smuggled/tags/list HTTP/1.1\r\nHost: x\r\n\r\n"

-- sequence(proto, reqs) -> one result per request: { status, headers
-- (lowercase names), body, connects (new connections it made) }
-- reqs[i] = { method, url, body = string | nil, user = "name:password" |
-- nil, headers = { "Name: value" } | nil }
local function sequence(proto, reqs)
  local dir = tools.scratch()
  local args = { "curl -s -S -g --max-time 60" }
  local files = {}
  for i, r in ipairs(reqs) do
    local n = tools.counter()
    local f = { h = dir .. "/kh" .. n, b = dir .. "/kb" .. n }
    files[i] = f
    if i > 1 then args[#args + 1] = "--next" end
    args[#args + 1] = proto == "2"
      and "--http2 --cacert " .. q(server.TLS_CERT) or "--http1.1"
    args[#args + 1] = "-X " .. q(r.method) .. " -D " .. q(f.h) .. " -o "
      .. q(f.b) .. " -w '%{http_code} %{num_connects}\\n'"
    for _, h in ipairs(r.headers or {}) do
      args[#args + 1] = "-H " .. q(h)
    end
    if r.user then args[#args + 1] = "-u " .. q(r.user) end
    if r.body then
      f.d = dir .. "/kd" .. n
      helpers.write_file(f.d, r.body)
      args[#args + 1] = "-H 'Content-Type: application/octet-stream'"
        .. " --data-binary @" .. q(f.d)
    end
    args[#args + 1] = q(r.url)
  end
  local out = tools.sh(table.concat(args, " "))
  local results = {}
  local lines = out:gmatch("(%d%d%d) (%d+)\n")
  for i, f in ipairs(files) do
    local status, connects = lines()
    local raw = helpers.read_file(f.h) or ""
    -- the last header block (after any 100 Continue)
    local block = raw:match(".*\r\n\r\n(HTTP/.-)\r\n\r\n$") or raw
    local headers = {}
    for line in block:gmatch("[^\r\n]+") do
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then headers[k:lower()] = v end
    end
    results[i] = { status = tonumber(status), connects = tonumber(connects),
      headers = headers, body = helpers.read_file(f.b) or "" }
    os.remove(f.h)
    os.remove(f.b)
    if f.d then os.remove(f.d) end
  end
  results.output = out
  return results
end

local function code_of(body)
  return body:match('"code":"([%u_]+)"')
end

for _, proto in ipairs({ "1.1", "2" }) do
  describe("a refusal before the body is read, under HTTP/" .. proto, function()
    local srv, base

    setup(function()
      local dir = helpers.tmpdir()
      tools.must("cp spec/fixtures/auth/htpasswd " .. q(dir .. "/users"))
      helpers.write_file(dir .. "/berth.lua", [[
auth = { mode = "htpasswd", realm = "berth test", htpasswd = "users",
  max_failures = 1000 }
plugins = { { name = "repo-permissions", config = {} } }
]])
      srv = server.start{ config = dir .. "/berth.lua", tls = proto == "2",
        workers = 1 }
      base = srv.url .. "/v2/"
    end)

    teardown(function()
      if srv then srv:stop() end
    end)

    -- refused(first, want_status, want_code, keeps): first is refused with
    -- want_status and want_code, then GET /v2/ answers 200 "{}" on the
    -- same connection (keeps), or the refusal said Connection: close.
    -- -> the results
    local function refused(first, want_status, want_code, keeps, second)
      second = second or { method = "GET", url = base, user = ALICE }
      local r = sequence(proto, { first, second })
      local diag = "curl: " .. r.output .. "\nfirst: " .. r[1].body
        .. "\nsecond: " .. r[2].body
      assert.equal(want_status, r[1].status, diag)
      assert.equal(want_code, code_of(r[1].body), diag)
      if not second.check then
        assert.equal(200, r[2].status, diag)
        assert.equal("{}", r[2].body, diag)
      else
        second.check(r[2], diag)
      end
      if proto == "2" or keeps then
        -- the body was read and dropped (HTTP/2: the stream was closed)
        assert.equal(0, r[2].connects, diag)
        assert.not_equal("close", r[1].headers["connection"], diag)
      else
        -- not worth reading: the connection closed, and said so
        assert.equal("close", r[1].headers["connection"], diag)
        assert.equal(1, r[2].connects, diag)
      end
      return r
    end

    local function new_upload()
      local r = tools.curl("POST", base .. "alice/app/blobs/uploads/",
        { args = "-u " .. ALICE .. (proto == "2" and " --http2 --cacert "
          .. q(server.TLS_CERT) or "") })
      assert.equal(202, r.status, r.body)
      return tools.location(srv.url, r), r.headers["docker-upload-uuid"]
    end

    it("a 416 for an out-of-order PATCH", function()
      local loc, id = new_upload()
      refused({ method = "PATCH", url = loc, user = ALICE, body = SMUGGLED,
        headers = { ("Content-Range: 5-%d"):format(5 + #SMUGGLED - 1) } },
        416, "BLOB_UPLOAD_INVALID", true,
        { method = "GET", url = loc, user = ALICE, check = function(r, diag)
          assert.equal(204, r.status, diag)
          assert.equal(id, r.headers["docker-upload-uuid"], diag)
          assert.equal("0-0", r.headers["range"], diag)
        end })
    end)

    it("a 404 PATCH to an unknown upload", function()
      refused({ method = "PATCH", user = ALICE, body = SMUGGLED, url = base
        .. "alice/app/blobs/uploads/5f0c1c5e-0000-4000-8000-000000000000" },
        404, "BLOB_UPLOAD_UNKNOWN", true)
    end)

    it("a malformed ?digest= on POST", function()
      refused({ method = "POST", user = ALICE, body = SMUGGLED, url = base
        .. "alice/app/blobs/uploads/?digest=sha256:nothex" },
        400, "DIGEST_INVALID", true)
    end)

    it("a manifest over 4 MiB", function()
      refused({ method = "PUT", user = ALICE, url = base
        .. "alice/app/manifests/big", body = SMUGGLED
        .. ("x"):rep(4 * 1024 * 1024) }, 413, "SIZE_INVALID", false)
    end)

    it("a bad repository name on an upload", function()
      refused({ method = "POST", user = ALICE, body = SMUGGLED, url = base
        .. "alice/App/blobs/uploads/?digest=" .. helpers.sha256sum(SMUGGLED) },
        400, "NAME_INVALID", true)
    end)

    it("a 401 without credentials", function()
      local loc = new_upload()
      refused({ method = "PATCH", url = loc, body = SMUGGLED },
        401, "UNAUTHORIZED", true)
    end)

    it("a 401 for a large body (refused before nginx spools it)", function()
      local body = SMUGGLED .. helpers.random_bytes(2 * 1024 * 1024)
      refused({ method = "POST", body = body, url = base
        .. "alice/app/blobs/uploads/?digest=" .. helpers.sha256sum(body) },
        401, "UNAUTHORIZED", false)
    end)

    it("a 401 for a chunked body (of a length not known)", function()
      local loc = new_upload()
      -- HTTP/2 has no chunked encoding: its frames say where a body ends
      refused({ method = "PATCH", url = loc, body = SMUGGLED,
        headers = proto == "1.1" and { "Transfer-Encoding: chunked" } },
        401, "UNAUTHORIZED", false)
    end)

    it("a 403 from a policy", function()
      refused({ method = "POST", user = ALICE, body = SMUGGLED, url = base
        .. "bob/app/blobs/uploads/?digest=" .. helpers.sha256sum(SMUGGLED) },
        403, "DENIED", true)
    end)
  end)
end

-- CNCF Distribution (Debian's docker-registry 2.8) and berth serve one store
-- directory in turn: what one wrote, the other serves, digest for digest,
-- including an upload session started on one and finished on the other
-- (Distribution's _uploads/<id>/{data,startedat,hashstates/sha256/<offset>},
-- hash states in Go's MarshalBinary encoding) through the Location the
-- other gave: both have the same http.secret, which signs its _state.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"
local digest = require "berth.digest"

local q = tools.q
local SECRET = "berth-interop-secret"

describe("docker-registry and berth on one store", function()
  local root, work, layout, img = nil, nil, nil, {}

  -- copy(src, dst) -> pushed digest
  local function copy(src, dst)
    local dfile = work .. "/digest-" .. tools.counter()
    local out, ok = tools.skopeo("copy --src-tls-verify=false "
      .. "--dest-tls-verify=false --digestfile " .. q(dfile) .. " " .. q(src)
      .. " " .. q(dst))
    assert(ok, "skopeo copy " .. src .. " " .. dst .. ":\n" .. out)
    return helpers.read_file(dfile)
  end

  local function host(reg)
    return "docker://127.0.0.1:" .. reg.port
  end

  -- every server a test starts is stopped after it, also on failure
  local running = {}
  after_each(function()
    for i = #running, 1, -1 do
      pcall(running[i].stop, running[i])
    end
    running = {}
  end)

  local conf
  local function start_berth(dir)
    local srv = server.start{ root = dir or root, delete = true,
      config = conf }
    running[#running + 1] = srv
    return srv
  end

  local function start_distribution(dir)
    local dr = tools.start_distribution{ root = dir or root,
      secret = SECRET }
    running[#running + 1] = dr
    return dr
  end

  -- Pull name:tag from reg into a fresh OCI layout and check it against
  -- the source layout: manifest bytes and every blob.
  local function check_pull(reg, name, tag, want)
    local ref = host(reg) .. "/" .. name .. ":" .. tag
    local raw = tools.inspect_raw(ref)
    assert.equal(want, helpers.sha256sum(raw))
    assert.equal(tools.layout_blob(layout, want), raw)
    local out = work .. "/pull-" .. tools.counter()
    copy(ref, "oci:" .. out .. ":" .. tag)
    assert.equal(want, tools.layout_ref(out, tag).digest)
    for _, d in ipairs(tools.manifest_blobs(raw)) do
      assert.equal(d, tools.sha256_file(tools.blob_path(out, d)))
      assert.equal(tools.layout_blob(layout, d), tools.layout_blob(out, d))
      local r = tools.curl("GET", reg.url .. "/v2/" .. name .. "/blobs/" .. d)
      assert.equal(200, r.status)
      assert.equal(d, helpers.sha256sum(r.body))
    end
  end

  local function tags_of(reg, name)
    local r = tools.curl("GET", reg.url .. "/v2/" .. name .. "/tags/list")
    assert.equal(200, r.status, r.body)
    local list = tools.json(r.body).tags
    table.sort(list)
    return list
  end

  local function catalog(reg)
    local r = tools.curl("GET", reg.url .. "/v2/_catalog")
    assert.equal(200, r.status, r.body)
    return tools.json(r.body).repositories
  end

  local function contains(list, x)
    for _, v in ipairs(list) do
      if v == x then return true end
    end
    return false
  end

  -- Distribution's upload state token (registry/handlers/hmac.go), made
  -- with openssl: base64url of HMAC-SHA256(secret, json) .. json, with
  -- '=' escaped for a query string.
  local function state_token(name, id, offset, started, secret)
    local json = ('{"Name":"%s","UUID":"%s","Offset":%d,"StartedAt":"%s"}')
      :format(name, id, offset, started)
    local path = work .. "/state-" .. tools.counter()
    helpers.write_file(path, json)
    local tok = tools.must(("{ openssl dgst -sha256 -hmac %s -binary < %s; "
      .. "cat %s; } | base64 -w0 | tr '+/' '-_'"):format(q(secret or SECRET),
      q(path), q(path)))
    return (tok:gsub("%s", ""):gsub("=", "%%3D"))
  end

  -- An upload's Location from one server, pointed at another.
  local function rehost(loc, reg)
    return reg.url .. loc:gsub("^https?://[^/]+", "")
  end

  -- The _state of a Location (as it is in the query string).
  local function state_of(loc)
    return loc:match("[?&]_state=([^&]+)")
  end

  local function upload_dir(name, id)
    return root .. "/docker/registry/v2/repositories/" .. name .. "/_uploads/"
      .. id
  end

  -- a 3 MB blob in two parts, 1 MB and 2 MB
  local function two_parts()
    local path = work .. "/up-" .. tools.counter()
    tools.random_file(path, 3000000)
    tools.must(("head -c 1000000 %s > %s; tail -c +1000001 %s > %s")
      :format(q(path), q(path .. ".1"), q(path), q(path .. ".2")))
    return path, tools.sha256_file(path)
  end

  local function patch(url, file, from, to)
    return tools.curl("PATCH", url, { file = file, headers = {
      "Content-Type: application/octet-stream",
      ("Content-Range: %d-%d"):format(from, to) } })
  end

  setup(function()
    root = helpers.tmpdir()
    work = helpers.tmpdir()
    layout = work .. "/L"
    conf = work .. "/berth.conf.lua"
    helpers.write_file(conf, ("return { http = { secret = %q } }")
      :format(SECRET))
    img.a = tools.build_image(layout, "a", { random = 1000000 })
    img.b = tools.build_image(layout, "b", { random = 1000000 })
    img.c = tools.build_image(layout, "c", { random = 300000 })
  end)

  it("berth serves what docker-registry pushed", function()
    local dr = start_distribution()
    assert.equal(img.a, copy("oci:" .. layout .. ":a",
      host(dr) .. "/interop/one:a"))
    assert.equal(img.a, copy("oci:" .. layout .. ":a",
      host(dr) .. "/interop/one:a2"))
    dr:stop()

    local problems = tools.check_store(root)
    assert.same({}, problems)

    local srv = start_berth()
    check_pull(srv, "interop/one", "a", img.a)
    check_pull(srv, "interop/one", "a2", img.a)
    assert.same({ "a", "a2" }, tags_of(srv, "interop/one"))
    assert.is_true(contains(catalog(srv), "interop/one"))
    assert.same({}, srv:error_lines())
  end)

  it("docker-registry serves what berth pushed", function()
    local srv = start_berth()
    assert.equal(img.b, copy("oci:" .. layout .. ":b",
      host(srv) .. "/interop/two:b"))
    assert.equal(img.b, copy("oci:" .. layout .. ":b",
      host(srv) .. "/interop/two:b2"))
    assert.same({}, srv:error_lines())
    srv:stop()

    assert.same({}, (tools.check_store(root)))

    local dr = start_distribution()
    check_pull(dr, "interop/two", "b", img.b)
    check_pull(dr, "interop/two", "b2", img.b)
    assert.same({ "b", "b2" }, tags_of(dr, "interop/two"))
    local repos = catalog(dr)
    assert.is_true(contains(repos, "interop/one"))
    assert.is_true(contains(repos, "interop/two"))
    -- and the blobs by HEAD, as docker-registry stats them
    for _, d in ipairs(tools.manifest_blobs(tools.layout_blob(layout, img.b)))
        do
      local r = tools.curl("HEAD", dr.url .. "/v2/interop/two/blobs/" .. d)
      assert.equal(200, r.status)
      assert.equal(d, r.headers["docker-content-digest"])
    end
  end)

  it("a delete on either side is seen by the other", function()
    -- on a store of its own, so that what it finds does not spill into
    -- the other tests: berth pushes c (and builds its tag index by a delete
    -- by digest); docker-registry then adds a tag to the same manifest
    local own = helpers.tmpdir()
    local srv = start_berth(own)
    assert.equal(img.c, copy("oci:" .. layout .. ":c",
      host(srv) .. "/interop/three:c"))
    assert.equal(img.a, copy("oci:" .. layout .. ":a",
      host(srv) .. "/interop/three:x"))
    -- a delete by digest looks the digest's tags up: berth's tag index
    local r = tools.curl("DELETE", srv.url .. "/v2/interop/three/manifests/"
      .. img.a)
    assert.equal(202, r.status)
    assert.same({ "c" }, tags_of(srv, "interop/three"))
    srv:stop()

    local dr = start_distribution(own)
    assert.equal(img.c, copy("oci:" .. layout .. ":c",
      host(dr) .. "/interop/three:c-from-distribution"))
    assert.equal(img.b, copy("oci:" .. layout .. ":b",
      host(dr) .. "/interop/two:b"))
    -- docker-registry deletes interop/two's manifest by digest (and its tags)
    r = tools.curl("DELETE", dr.url .. "/v2/interop/two/manifests/" .. img.b)
    assert.equal(202, r.status)
    dr:stop()

    srv = start_berth(own)
    r = tools.curl("GET", srv.url .. "/v2/interop/two/manifests/b")
    assert.equal(404, r.status)
    assert.equal("MANIFEST_UNKNOWN", tools.json(r.body).errors[1].code)
    r = tools.curl("GET", srv.url .. "/v2/interop/two/manifests/" .. img.b)
    assert.equal(404, r.status)
    assert.same({ "c", "c-from-distribution" }, tags_of(srv, "interop/three"))
    -- berth deletes c by digest: every tag naming it goes, including the
    -- one docker-registry wrote
    r = tools.curl("DELETE", srv.url .. "/v2/interop/three/manifests/"
      .. img.c)
    assert.equal(202, r.status)
    srv:stop()
    local left = {}
    for ref, d in pairs(tools.store_tags(own)) do
      if d == img.c and ref:match("^interop/three:") then
        left[#left + 1] = ref
      end
    end
    assert.same({}, left)
    assert.same({}, (tools.check_store(own)))

    dr = start_distribution(own)
    r = tools.curl("GET", dr.url .. "/v2/interop/three/manifests/"
      .. "c-from-distribution")
    assert.equal(404, r.status)
    assert.equal("MANIFEST_UNKNOWN", tools.json(r.body).errors[1].code)
  end)

  it("a manifest docker-registry deleted is absent to fsck, du and gc",
    function()
      local cli = require "06-cli.support"
      local own = helpers.tmpdir()
      local dr = start_distribution(own)
      assert.equal(img.b, copy("oci:" .. layout .. ":b",
        host(dr) .. "/interop/gone:b"))
      local r = tools.curl("DELETE", dr.url .. "/v2/interop/gone/manifests/"
        .. img.b)
      assert.equal(202, r.status)
      dr:stop()
      -- what docker-registry leaves: the revision's directory, no link
      local v2 = own .. "/docker/registry/v2"
      local rev = v2 .. "/repositories/interop/gone/_manifests/revisions/"
        .. "sha256/" .. img.b:sub(8)
      assert.is_true(tools.exists(rev))
      assert.is_false(tools.exists(rev .. "/link"))

      local res = cli.berth({ "fsck" }, { root = own })
      assert.equal(0, res.code, res.stdout .. res.stderr)
      -- du: the manifest and its blobs are what gc may reclaim
      res = cli.berth({ "du", "--json" }, { root = own })
      assert.equal(0, res.code, res.stdout .. res.stderr)
      local du = tools.json(res.stdout)
      local blobs = tools.manifest_blobs(tools.layout_blob(layout, img.b))
      blobs[#blobs + 1] = img.b
      assert.equal(#blobs, du.unreferenced.blobs, res.stdout)
      -- gc reclaims them all: nothing references b any more (pushed an
      -- hour ago, as far as the grace goes)
      tools.must("find " .. tools.q(own)
        .. " -exec touch -d '1 hour ago' {} +")
      res = cli.berth({ "gc", "--grace", "60s" }, { root = own })
      assert.equal(0, res.code, res.stdout .. res.stderr)
      for _, d in ipairs(blobs) do
        assert.is_false(tools.exists(v2 .. "/blobs/sha256/" .. d:sub(8, 9)
          .. "/" .. d:sub(8) .. "/data"), d)
      end
      res = cli.berth({ "fsck" }, { root = own })
      assert.equal(0, res.code, res.stdout .. res.stderr)
    end)

  describe("an upload started on docker-registry", function()
    it("is finished by berth through docker-registry's Location",
      function()
      local path, want = two_parts()
      local dr = start_distribution()
      local r = tools.curl("POST", dr.url .. "/v2/interop/up/blobs/uploads/")
      assert.equal(202, r.status)
      local id = r.headers["docker-upload-uuid"]
      r = patch(tools.location(dr.url, r), path .. ".1", 0, 999999)
      assert.equal(202, r.status)
      assert.equal("0-999999", r.headers["range"])
      local loc = tools.location(dr.url, r)
      dr:stop()
      assert.is_true(tools.exists(upload_dir("interop/up", id)
        .. "/hashstates/sha256/1000000"))

      local srv = start_berth()
      local url = rehost(loc, srv)
      r = tools.curl("GET", url)
      assert.equal(204, r.status, r.body)
      assert.equal("0-999999", r.headers["range"])
      -- berth signs the same state docker-registry did, byte for byte
      assert.equal(state_of(loc), state_of(r.headers["location"]))
      r = patch(url, path .. ".2", 1000000, 2999999)
      assert.equal(202, r.status, r.body)
      assert.equal("0-2999999", r.headers["range"])
      r = tools.curl("PUT", tools.location(srv.url, r) .. "&digest=" .. want)
      assert.equal(201, r.status, r.body)
      assert.equal(want, r.headers["docker-content-digest"])
      r = tools.curl("GET", srv.url .. "/v2/interop/up/blobs/" .. want)
      assert.equal(200, r.status)
      assert.equal(want, helpers.sha256sum(r.body))
      assert.is_false(tools.exists(upload_dir("interop/up", id)))
      assert.same({}, srv:error_lines())
    end)

    it("leaves a hash state berth restores (no re-hash needed)", function()
      local path, want = two_parts()
      local dr = start_distribution()
      local r = tools.curl("POST", dr.url .. "/v2/interop/hs/blobs/uploads/")
      assert.equal(202, r.status)
      local id = r.headers["docker-upload-uuid"]
      r = patch(tools.location(dr.url, r), path .. ".1", 0, 999999)
      assert.equal(202, r.status)
      dr:stop()
      local state = helpers.read_file(upload_dir("interop/hs", id)
        .. "/hashstates/sha256/1000000")
      assert.is_string(state)
      local h, err, code = digest.restore(state)
      assert.is_nil(err)
      assert.is_nil(code)
      assert.is_not_nil(h)
      assert.equal(1000000, h:size())
      assert.is_true(h:update(helpers.read_file(path .. ".2")))
      assert.equal(want, h:digest())
      -- what berth writes for the same bytes is the same state, byte for
      -- byte (docker-registry reads berth's just as well)
      local mine = assert(digest.hasher("sha256"))
      assert.is_true(mine:update(helpers.read_file(path .. ".1")))
      assert.equal(state, mine:save())
      -- a state that is not one is refused with all three values
      local none, e2, c2 = digest.restore("not a hash state")
      assert.is_nil(none)
      assert.is_string(e2)
      assert.equal("EINVAL", c2)
    end)

    it("is resumed by berth from 0 when its hash state is damaged",
      function()
      local path, want = two_parts()
      local dr = start_distribution()
      local r = tools.curl("POST", dr.url .. "/v2/interop/bad/blobs/uploads/")
      assert.equal(202, r.status)
      local id = r.headers["docker-upload-uuid"]
      r = patch(tools.location(dr.url, r), path .. ".1", 0, 999999)
      assert.equal(202, r.status)
      local loc = tools.location(dr.url, r)
      dr:stop()
      local dir = upload_dir("interop/bad", id) .. "/hashstates/sha256/"
      helpers.write_file(dir .. "1000000", "garbage, not a Go hash state")

      -- no byte is known to be on disk: the client sends them all again
      local srv = start_berth()
      r = patch(rehost(loc, srv), path .. ".2", 1000000, 2999999)
      assert.equal(416, r.status, r.body)
      assert.equal("0-0", r.headers["range"])
      r = patch(tools.location(srv.url, r), path .. ".1", 0, 999999)
      assert.equal(202, r.status, r.body)
      r = patch(tools.location(srv.url, r), path .. ".2", 1000000, 2999999)
      assert.equal(202, r.status, r.body)
      r = tools.curl("PUT", tools.location(srv.url, r) .. "&digest=" .. want)
      assert.equal(201, r.status)
      assert.equal(want, r.headers["docker-content-digest"])
      r = tools.curl("GET", srv.url .. "/v2/interop/bad/blobs/" .. want)
      assert.equal(want, helpers.sha256sum(r.body))
      assert.same({}, srv:error_lines())
    end)
  end)

  it("an upload started on berth is finished by docker-registry through "
    .. "berth's Location", function()
    local path, want = two_parts()
    local srv = start_berth()
    local r = tools.curl("POST", srv.url .. "/v2/interop/back/blobs/uploads/")
    assert.equal(202, r.status)
    local id = r.headers["docker-upload-uuid"]
    assert.is_string(id)
    r = patch(tools.location(srv.url, r), path .. ".1", 0, 999999)
    assert.equal(202, r.status)
    local loc = tools.location(srv.url, r)
    srv:stop()
    local dir = upload_dir("interop/back", id)
    local started = helpers.read_file(dir .. "/startedat")
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", started)
    -- the state is Distribution's, as openssl signs it
    assert.equal(state_token("interop/back", id, 1000000, started),
      state_of(loc))

    local dr = start_distribution()
    local url = rehost(loc, dr)
    r = tools.curl("GET", url)
    assert.equal(204, r.status, r.body)
    assert.equal("0-999999", r.headers["range"])
    assert.equal(state_of(loc), state_of(r.headers["location"]))
    r = patch(url, path .. ".2", 1000000, 2999999)
    assert.equal(202, r.status, r.body)
    assert.equal("0-2999999", r.headers["range"])
    r = tools.curl("PUT", tools.location(dr.url, r) .. "&digest=" .. want)
    assert.equal(201, r.status, r.body)
    assert.equal(want, r.headers["docker-content-digest"])
    dr:stop()

    srv = start_berth()
    r = tools.curl("GET", srv.url .. "/v2/interop/back/blobs/" .. want)
    assert.equal(200, r.status)
    assert.equal(want, helpers.sha256sum(r.body))
    assert.same({}, (tools.check_store(root)))
  end)

  -- Each request goes to both, on one store at once: berth must give
  -- docker-registry's answer (status and error code), never a 500.
  it("refuses a missing or forged _state as docker-registry does",
    function()
    local own = helpers.tmpdir()
    local srv = start_berth(own)
    local dr = start_distribution(own)
    local name = "interop/refuse"
    local base = "/v2/" .. name .. "/blobs/uploads/"
    local r = tools.curl("POST", srv.url .. base)
    assert.equal(202, r.status)
    local id = r.headers["docker-upload-uuid"]
    local loc0 = tools.location(srv.url, r):gsub("^https?://[^/]+", "")
    r = tools.curl("PATCH", srv.url .. loc0, { data = "hello", headers = {
      "Content-Type: application/octet-stream" } })
    assert.equal(202, r.status)
    local loc1 = tools.location(srv.url, r):gsub("^https?://[^/]+", "")
    local state1 = state_of(loc1)
    local started = helpers.read_file(own .. "/docker/registry/v2/"
      .. "repositories/" .. name .. "/_uploads/" .. id .. "/startedat")
    local other = "00000000-0000-4000-8000-000000000000"
    local zero = "sha256:" .. string.rep("0", 64)
    local octets = { "Content-Type: application/octet-stream" }

    local function ask(reg, method, path, body)
      local a = tools.curl(method, reg.url .. path,
        body and { data = body, headers = octets } or nil)
      a.code = a.status ~= 204 and tools.json(a.body).errors[1].code or nil
      return a
    end

    for _, c in ipairs({
      { "no _state", "GET", base .. id },
      { "no _state on PATCH", "PATCH", base .. id, "more" },
      { "no _state on PUT", "PUT", base .. id .. "?digest=" .. zero },
      { "no _state on DELETE", "DELETE", base .. id },
      { "a _state that is not base64", "GET", base .. id .. "?_state=!!!" },
      { "a _state cut short", "GET", base .. id .. "?_state="
        .. state1:sub(1, -5) },
      { "a _state under another secret", "GET", base .. id .. "?_state="
        .. state_token(name, id, 5, started, "not the secret") },
      { "a _state of another repository", "GET", "/v2/interop/other/blobs/"
        .. "uploads/" .. id .. "?_state=" .. state1 },
      { "a _state of another upload", "GET", base .. other .. "?_state="
        .. state1 },
      { "a valid _state of an upload that is gone", "GET", base .. other
        .. "?_state=" .. state_token(name, other, 0, started) },
    }) do
      local want = ask(dr, c[2], c[3], c[4])
      local got = ask(srv, c[2], c[3], c[4])
      assert.same({ want.status, want.code }, { got.status, got.code }, c[1])
      assert.equal(404, got.status, c[1])
    end

    -- A stale Location (its state says 0 bytes, the upload has 5):
    -- docker-registry 2.8 answers 404 BLOB_UPLOAD_INVALID; Distribution 3
    -- a PATCH or PUT with 416, as berth does, which also gives the status
    -- (the OCI conformance suite asks for both).
    for _, c in ipairs({
      { "PATCH", loc0, "more" },
      { "PUT", loc0 .. "&digest=" .. zero },
    }) do
      assert.equal(404, ask(dr, c[1], c[2], c[3]).status)
      r = ask(srv, c[1], c[2], c[3])
      assert.equal(416, r.status, c[1])
      assert.equal("BLOB_UPLOAD_INVALID", r.code)
      assert.equal("0-4", r.headers["range"])
      assert.equal(state1, state_of(r.headers["location"]))
    end
    r = ask(srv, "GET", loc0)
    assert.equal(204, r.status)
    assert.equal("0-4", r.headers["range"])
    assert.equal(state1, state_of(r.headers["location"]))

    -- none of it touched the upload: it goes on from the last Location
    for _, reg in ipairs({ dr, srv }) do
      r = tools.curl("GET", reg.url .. loc1)
      assert.equal(204, r.status, r.body)
      assert.equal("0-4", r.headers["range"])
    end
    assert.same({}, srv:error_lines())
  end)
end)

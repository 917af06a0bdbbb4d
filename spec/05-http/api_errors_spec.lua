-- Hostile and broken requests against the OCI Distribution API, beyond the
-- conformance suite. Each must answer the spec's status and error code
-- ({"errors":[{"code","message"}]}, code from the spec's list), never a 5xx,
-- and leave stored data as it was: the last checks compare the store
-- (blob_list, manifest_list, tag_list, the files under its root) and what the
-- API shows (tags, manifests, blobs, catalog) with a snapshot taken after the
-- fixtures were pushed.
--
-- Expectations where the spec leaves a choice are written down at the case.
-- Run in-process (default) or against a live server with BERTH_TEST_URL
-- (then BERTH_TEST_ROOT, if set, opens the server's store for the store-level
-- comparison). Truncated bodies need the in-process transport; blob Range
-- requests are nginx's job (the app hands blob GETs over as a file), so they
-- run only over HTTP: tagged #nginx.
local helpers = require "helpers"
local client = require "05-http.client"
local cjson = require "cjson.safe"

local fmt = string.format
local LIVE = (os.getenv("BERTH_TEST_URL") or "") ~= ""

math.randomseed(os.time() + math.floor(os.clock() * 1e6) + 7)

local function rand_hex(n)
  local t = {}
  for i = 1, n do
    t[i] = fmt("%x", math.random(0, 15))
  end
  return table.concat(t)
end

local RUN = rand_hex(8)
local REPO = "hostile/repo-" .. RUN
local OTHER = "hostile/other-" .. RUN
local PWNED = "berth-pwned-" .. RUN -- a traversal target under /tmp

local SPEC_CODES = {
  BLOB_UNKNOWN = true, BLOB_UPLOAD_INVALID = true, BLOB_UPLOAD_UNKNOWN = true,
  DIGEST_INVALID = true, MANIFEST_BLOB_UNKNOWN = true, MANIFEST_INVALID = true,
  MANIFEST_UNKNOWN = true, NAME_INVALID = true, NAME_UNKNOWN = true,
  SIZE_INVALID = true, UNAUTHORIZED = true, DENIED = true, UNSUPPORTED = true,
  TOOMANYREQUESTS = true,
}

local IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
local IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
local LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

local c, store, root
local F = {} -- fixtures
local SNAP -- the snapshot taken after the fixtures

local sha = function(s)
  return require("berth.digest").compute(s)
end

---------------------------------------------------------------------------
-- requests and expectations

-- Every request: never a 5xx.
local TRACE = os.getenv("BERTH_CONF_TRACE") == "1"

local function req(method, path, opts)
  local resp = c:request(method, path, opts)
  if TRACE then
    io.stderr:write(fmt("  %s %s -> %d %s\n", method, path:sub(1, 120), resp.status,
      (resp.body or ""):sub(1, 120):gsub("[^\32-\126]", ".")))
  end
  assert(resp.status < 500, "answered " .. resp.status .. "\n" .. client.describe(resp))
  return resp
end

-- A path nginx resolves or refuses itself before berth sees it: nginx
-- decodes %XX (%2F and %2E included), merges //, resolves dot segments (400
-- when they climb above /) and refuses a NUL. Over HTTP such a request may be
-- answered by nginx (404 outside /v2/, 405 from its static handler, 400),
-- with no JSON body: any 4xx is accepted there.
local function normalised_by_nginx(path)
  local p = path:gsub("%?.*", ""):gsub("%%(%x%x)", function(h)
    return string.char(tonumber(h, 16))
  end)
  return p:find("/%.%.?/") or p:find("/%.%.?$") or p:find("//", 1, true)
    or p:find("%z")
end

local function one_of(list, v)
  for _, x in ipairs(list) do
    if x == v then
      return true
    end
  end
  return false
end

-- expect_error(resp, status | {status...}, code | {code...} | nil)
local function expect_error(resp, statuses, codes)
  statuses = type(statuses) == "table" and statuses or { statuses }
  if LIVE and normalised_by_nginx(resp.request.path) and resp.status >= 400 then
    return -- nginx's own answer, or berth's on the path nginx made of it
  end
  assert(one_of(statuses, resp.status), fmt("expected status %s\n%s",
    table.concat(statuses, " or "), client.describe(resp)))
  if resp.request.method == "HEAD" or codes == nil then
    return
  end
  codes = type(codes) == "table" and codes or { codes }
  local doc = cjson.decode(resp.body or "")
  assert(type(doc) == "table" and type(doc.errors) == "table" and #doc.errors > 0,
    "expected a body {\"errors\":[...]}\n" .. client.describe(resp))
  for _, e in ipairs(doc.errors) do
    assert(type(e) == "table" and type(e.code) == "string" and SPEC_CODES[e.code],
      "error code not in the spec's list\n" .. client.describe(resp))
    assert(type(e.message) == "string",
      "error without a message string\n" .. client.describe(resp))
  end
  assert(one_of(codes, doc.errors[1].code), fmt("expected code %s\n%s",
    table.concat(codes, " or "), client.describe(resp)))
end

local function expect_status(resp, status)
  assert(resp.status == status, fmt("expected status %d\n%s", status,
    client.describe(resp)))
end

local function start_upload(repo)
  local resp = req("POST", "/v2/" .. repo .. "/blobs/uploads/")
  expect_status(resp, 202)
  local loc = client.relative_location(resp)
  assert(loc ~= "", "no Location\n" .. client.describe(resp))
  return loc
end

local function q(params)
  return client.encode_query(params)
end

local function with_query(loc, params)
  return client.with_query(loc, params)
end

local function push_blob(repo, data)
  local loc = start_upload(repo)
  local resp = req("PUT", with_query(loc, { digest = sha(data) }), {
    headers = { ["Content-Type"] = "application/octet-stream" }, body = data })
  expect_status(resp, 201)
  return sha(data)
end

local function image_manifest(config_digest, config_size, layers, extra)
  local doc = {
    schemaVersion = 2,
    mediaType = IMAGE_MANIFEST,
    config = { mediaType = IMAGE_CONFIG, digest = config_digest, size = config_size },
    layers = layers,
  }
  for k, v in pairs(extra or {}) do
    doc[k] = v
  end
  local s = cjson.encode(doc)
  return (s:gsub('"layers":{}', '"layers":[]'))
end

local function put_manifest(repo, ref, body, opts)
  opts = opts or {}
  return req("PUT", "/v2/" .. repo .. "/manifests/" .. ref, {
    headers = { ["Content-Type"] = opts.media_type or IMAGE_MANIFEST },
    body = body, content_length = opts.content_length, fail_after = opts.fail_after,
    chunked = opts.chunked })
end

-- the upload's state: "gone" | end offset (number, -1 when empty)
local function upload_state(loc)
  local resp = req("GET", loc)
  if resp.status == 404 then
    expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")
    return "gone"
  end
  expect_status(resp, 204)
  local r = client.header(resp, "Range") or ""
  local last = tonumber(r:match("^0%-(%d+)$"))
  assert(last, "upload status without Range 0-<end>\n" .. client.describe(resp))
  return last
end

---------------------------------------------------------------------------
-- snapshots

local function sorted(list)
  local t = {}
  for i, v in ipairs(list or {}) do
    t[i] = v
  end
  table.sort(t)
  return t
end

local function listing(fn, ...)
  local ok, list, err, code = pcall(fn, ...)
  if not ok then
    return "error: " .. tostring(list)
  end
  if list == nil then
    return "nil: " .. tostring(code or err)
  end
  return table.concat(sorted(list), "\n")
end

local function files_under(dir)
  local p = io.popen("cd '" .. dir .. "' && find . -type f 2>/dev/null | sort")
  local out = {}
  for line in p:lines() do
    -- upload sessions and berth's scratch space come and go
    if not (line:find("_uploads", 1, true) or line:find("upload", 1, true)
        or line:find("tmp", 1, true) or line:find("lock", 1, true)) then
      out[#out + 1] = line
    end
  end
  p:close()
  return table.concat(out, "\n")
end

-- The ids of repo's upload sessions on disk (in-process runs only).
local function upload_sessions(repo)
  local p = io.popen("ls '" .. root .. "/docker/registry/v2/repositories/"
    .. repo .. "/_uploads' 2>/dev/null")
  local out = p:read("*a")
  p:close()
  return out
end

local function take_snapshot()
  local s = {}
  if store then
    s["store:blob_list()"] = listing(store.blob_list, store)
    for _, repo in ipairs { REPO, OTHER } do
      s["store:blob_list(" .. repo .. ")"] = listing(store.blob_list, store, repo)
      s["store:manifest_list(" .. repo .. ")"] = listing(store.manifest_list, store, repo)
      s["store:tag_list(" .. repo .. ")"] = listing(store.tag_list, store, repo)
    end
  end
  if root then
    s["files under the store root"] = files_under(root)
  end
  -- what the API shows
  for _, repo in ipairs { REPO, OTHER } do
    local r = req("GET", "/v2/" .. repo .. "/tags/list")
    s["GET tags/list " .. repo] = r.status .. " " .. r.body
    for _, d in ipairs { F.config_digest, F.layer_digest, F.other_digest } do
      s["HEAD blob " .. repo .. " " .. d] = req("HEAD", "/v2/" .. repo .. "/blobs/" .. d).status
    end
  end
  local r = req("GET", "/v2/" .. REPO .. "/manifests/v1", { headers = { Accept = IMAGE_MANIFEST } })
  s["GET manifests/v1"] = r.status .. " " .. r.body
  r = req("GET", "/v2/_catalog")
  s["GET _catalog"] = r.status .. " " .. r.body
  return s
end

---------------------------------------------------------------------------

setup(function()
  c = client.from_env(function()
    local registry = require "berth.registry"
    local http = require "berth.http"
    store, root = helpers.new_store({ fsync = "none" })
    local reg = assert(registry.new { store = store, delete = true })
    return http.new { registry = reg, automatic_crossmount = true }
  end)
  local live_root = os.getenv("BERTH_TEST_ROOT")
  if LIVE and live_root and live_root ~= "" then
    store = assert(require("berth").open { root = live_root, fsync = "none" })
    require "berth.registry" -- loads the manifest and tag methods
  end
end)

teardown(function()
  if store then
    pcall(store.close, store)
  end
  if root and not LIVE then
    helpers.rmrf(root)
  end
end)

describe("API errors", function()
  it("fixtures: a config, a layer and a manifest tagged v1; a blob in another repository", function()
    F.config = cjson.encode { architecture = "amd64", os = "linux", author = RUN,
      rootfs = { type = "layers", diff_ids = {} } }:gsub('"diff_ids":{}', '"diff_ids":[]')
    F.layer = helpers.random_bytes(1000)
    F.other = helpers.random_bytes(50)
    F.config_digest = push_blob(REPO, F.config)
    F.layer_digest = push_blob(REPO, F.layer)
    F.other_digest = push_blob(OTHER, F.other)
    F.manifest = image_manifest(F.config_digest, #F.config,
      { { mediaType = LAYER, digest = F.layer_digest, size = #F.layer } })
    F.manifest_digest = sha(F.manifest)
    expect_status(put_manifest(REPO, "v1", F.manifest), 201)
    F.unknown_digest = sha("nothing stored has this content " .. RUN)
    SNAP = take_snapshot()
  end)

  it("tags/list names a nested repository as Distribution does", function()
    local r = req("GET", "/v2/" .. REPO .. "/tags/list")
    expect_status(r, 200)
    assert.equal('{"name":"' .. REPO .. '","tags":["v1"]}', r.body)
  end)

  it("error bodies write a nested repository as Distribution does", function()
    local r = req("GET", "/v2/" .. REPO .. "/manifests/nope")
    expect_status(r, 404)
    assert.is_truthy(r.body:find(REPO .. ":nope", 1, true), r.body)
    assert.is_nil(r.body:find("\\/"), r.body)
  end)

  -------------------------------------------------------------------------
  describe("repository names", function()
    local long = "hostile/" .. ("a"):rep(248) -- 256 characters
    assert(#long == 256)
    local bad_names = {
      { "../ before the name", "../" .. REPO },
      { "../ inside the name", "hostile/x/../" .. REPO:gsub("^hostile/", "") },
      { "../ escaping the store", ("../"):rep(12) .. "tmp/" .. PWNED },
      { "%2e%2e", "%2e%2e/" .. REPO },
      { "%2E%2E%2F escaping the store", ("%2E%2E%2F"):rep(12) .. "tmp%2F" .. PWNED },
      { "%2F..", "hostile%2F..%2F" .. REPO:gsub("^hostile/", "") },
      { "256 characters", long },
      { "uppercase", "Hostile/Repo-" .. RUN },
      { "empty component", "hostile//victim-" .. RUN },
      { "trailing separator", "hostile/repo-" .. RUN .. "-" },
    }

    local function endpoints(name)
      return {
        { "GET blob", function()
          return req("GET", "/v2/" .. name .. "/blobs/" .. F.config_digest) end },
        { "HEAD blob", function()
          return req("HEAD", "/v2/" .. name .. "/blobs/" .. F.config_digest) end },
        { "DELETE blob", function()
          return req("DELETE", "/v2/" .. name .. "/blobs/" .. F.config_digest) end },
        { "POST upload", function()
          return req("POST", "/v2/" .. name .. "/blobs/uploads/") end },
        { "POST upload ?digest= with the body", function()
          return req("POST", "/v2/" .. name .. "/blobs/uploads/?" .. q { digest = F.config_digest },
            { headers = { ["Content-Type"] = "application/octet-stream" }, body = F.config }) end },
        { "POST mount from a good repository", function()
          return req("POST", "/v2/" .. name .. "/blobs/uploads/?"
            .. q { mount = F.config_digest, from = REPO }) end },
        { "PUT manifest", function()
          return put_manifest(name, "v1", F.manifest) end },
        { "GET manifest", function()
          return req("GET", "/v2/" .. name .. "/manifests/v1") end },
        { "DELETE manifest", function()
          return req("DELETE", "/v2/" .. name .. "/manifests/" .. F.manifest_digest) end },
        { "GET tags/list", function()
          return req("GET", "/v2/" .. name .. "/tags/list") end },
        { "GET referrers", function()
          return req("GET", "/v2/" .. name .. "/referrers/" .. F.manifest_digest) end },
      }
    end

    for _, bad in ipairs(bad_names) do
      local label, name = bad[1], bad[2]
      for _, ep in ipairs(endpoints(name)) do
        it(fmt("%s: %s -> 400 NAME_INVALID", label, ep[1]), function()
          expect_error(ep[2](), 400, "NAME_INVALID")
        end)
      end
    end

    it("a name of 255 characters is a name: GET blob -> 404 BLOB_UNKNOWN or NAME_UNKNOWN", function()
      local name = "hostile/" .. ("b"):rep(247)
      assert(#name == 255)
      expect_error(req("GET", "/v2/" .. name .. "/blobs/" .. F.config_digest), 404,
        { "BLOB_UNKNOWN", "NAME_UNKNOWN" })
    end)

    -- A mount whose from= is not a name cannot mount: 400 NAME_INVALID, or
    -- (spec: "unable to mount the requested blob") 202 and an upload session
    -- in the target repository. Never 201.
    for _, from in ipairs { "../" .. OTHER, "hostile/../" .. OTHER:gsub("^hostile/", ""),
        ("../"):rep(12) .. "tmp/" .. PWNED, "Hostile/Other", long } do
      it("mount from=" .. from:sub(1, 40) .. " -> 400 NAME_INVALID or 202", function()
        local resp = req("POST", "/v2/" .. REPO .. "/blobs/uploads/?"
          .. q { mount = F.other_digest, from = from })
        if resp.status == 202 then
          local loc = client.relative_location(resp)
          local prefix = "/v2/" .. REPO .. "/blobs/uploads/"
          assert(loc:sub(1, #prefix) == prefix, "202 without an upload Location\n"
            .. client.describe(resp))
          req("DELETE", loc)
        else
          expect_error(resp, 400, "NAME_INVALID")
        end
      end)
    end
  end)

  -------------------------------------------------------------------------
  describe("digests that do not parse", function()
    local bad = {
      "sha256:totallywrong",
      "sha256:" .. ("a"):rep(63),
      "sha256:" .. ("a"):rep(65),
      "sha256:" .. ("A"):rep(64),
      "sha256:" .. ("g"):rep(64),
      "sha512:" .. ("a"):rep(64),
      ":" .. ("a"):rep(64),
      "sha256:",
    }
    -- only where the path segment must be a digest (a manifest reference
    -- without ":" is a tag: "sha256aaa..." is a good one)
    local bad_blob_only = {
      "sha256" .. ("a"):rep(64),
      "sha256%3A..%2F..%2F..%2Fetc%2Fpasswd",
      "sha256:%2e%2e",
      "sha256:" .. ("a"):rep(62) .. "%00",
    }

    for _, d in ipairs(bad) do
      it(d:sub(1, 20) .. ": GET blob -> 400 DIGEST_INVALID", function()
        expect_error(req("GET", "/v2/" .. REPO .. "/blobs/" .. d), 400, "DIGEST_INVALID")
      end)
      it(d:sub(1, 20) .. ": HEAD blob -> 400", function()
        expect_error(req("HEAD", "/v2/" .. REPO .. "/blobs/" .. d), 400)
      end)
      it(d:sub(1, 20) .. ": DELETE blob -> 400 DIGEST_INVALID", function()
        expect_error(req("DELETE", "/v2/" .. REPO .. "/blobs/" .. d), 400, "DIGEST_INVALID")
      end)
      it(d:sub(1, 20) .. ": GET manifest -> 400 DIGEST_INVALID", function()
        expect_error(req("GET", "/v2/" .. REPO .. "/manifests/" .. d), 400, "DIGEST_INVALID")
      end)
      it(d:sub(1, 20) .. ": HEAD manifest -> 400", function()
        expect_error(req("HEAD", "/v2/" .. REPO .. "/manifests/" .. d), 400)
      end)
      it(d:sub(1, 20) .. ": PUT manifest -> 400 DIGEST_INVALID", function()
        expect_error(put_manifest(REPO, d, F.manifest), 400, "DIGEST_INVALID")
      end)
      it(d:sub(1, 20) .. ": DELETE manifest -> 400 DIGEST_INVALID", function()
        expect_error(req("DELETE", "/v2/" .. REPO .. "/manifests/" .. d), 400, "DIGEST_INVALID")
      end)
      it(d:sub(1, 20) .. ": GET referrers -> 400 DIGEST_INVALID", function()
        expect_error(req("GET", "/v2/" .. REPO .. "/referrers/" .. d), 400, "DIGEST_INVALID")
      end)
      it(d:sub(1, 20) .. ": upload PUT ?digest= -> 400 DIGEST_INVALID", function()
        local loc = start_upload(REPO)
        local resp = req("PUT", with_query(loc, { digest = d }), {
          headers = { ["Content-Type"] = "application/octet-stream" }, body = F.layer })
        expect_error(resp, 400, "DIGEST_INVALID")
        req("DELETE", loc)
      end)
      it(d:sub(1, 20) .. ": POST ?digest= with the body -> 400 DIGEST_INVALID", function()
        local resp = req("POST", "/v2/" .. REPO .. "/blobs/uploads/?" .. q { digest = d }, {
          headers = { ["Content-Type"] = "application/octet-stream" }, body = F.layer })
        expect_error(resp, 400, "DIGEST_INVALID")
      end)
      -- spec: a registry unable to mount answers 202 with a session; a
      -- mount= that is no digest may also be refused outright
      it(d:sub(1, 20) .. ": POST ?mount=&from= -> 400 DIGEST_INVALID or 202", function()
        local resp = req("POST", "/v2/" .. REPO .. "/blobs/uploads/?"
          .. q { mount = d, from = OTHER })
        if resp.status == 202 then
          local loc = client.relative_location(resp)
          assert(loc:find("/blobs/uploads/", 1, true), "202 without an upload Location\n"
            .. client.describe(resp))
          req("DELETE", loc)
        else
          expect_error(resp, 400, "DIGEST_INVALID")
        end
      end)
    end

    for _, d in ipairs(bad_blob_only) do
      it(d:sub(1, 24) .. ": GET blob -> 400 DIGEST_INVALID", function()
        expect_error(req("GET", "/v2/" .. REPO .. "/blobs/" .. d), 400, "DIGEST_INVALID")
      end)
      it(d:sub(1, 24) .. ": DELETE blob -> 400 DIGEST_INVALID", function()
        expect_error(req("DELETE", "/v2/" .. REPO .. "/blobs/" .. d), 400, "DIGEST_INVALID")
      end)
      it(d:sub(1, 24) .. ": upload PUT ?digest= (raw) -> 400 DIGEST_INVALID", function()
        local loc = start_upload(REPO)
        local resp = req("PUT", loc .. (loc:find("?", 1, true) and "&" or "?") .. "digest=" .. d, {
          headers = { ["Content-Type"] = "application/octet-stream" }, body = F.layer })
        expect_error(resp, 400, "DIGEST_INVALID")
        req("DELETE", loc)
      end)
    end
  end)

  -------------------------------------------------------------------------
  describe("digest mismatch", function()
    it("upload PUT with the digest of other content -> 400 DIGEST_INVALID, upload gone, nothing stored", function()
      local data = helpers.random_bytes(300)
      local loc = start_upload(REPO)
      local resp = req("PUT", with_query(loc, { digest = F.unknown_digest }), {
        headers = { ["Content-Type"] = "application/octet-stream" }, body = data })
      expect_error(resp, 400, "DIGEST_INVALID")
      assert.equal("gone", upload_state(loc))
      expect_error(req("HEAD", "/v2/" .. REPO .. "/blobs/" .. sha(data)), 404)
      expect_error(req("HEAD", "/v2/" .. REPO .. "/blobs/" .. F.unknown_digest), 404)
    end)

    it("PATCH then PUT with a wrong digest -> 400 DIGEST_INVALID, upload gone", function()
      local data = helpers.random_bytes(300)
      local loc = start_upload(REPO)
      local resp = req("PATCH", loc, { headers = {
        ["Content-Type"] = "application/octet-stream", ["Content-Range"] = "0-299" },
        body = data })
      expect_status(resp, 202)
      loc = client.relative_location(resp)
      resp = req("PUT", with_query(loc, { digest = F.unknown_digest }))
      expect_error(resp, 400, "DIGEST_INVALID")
      assert.equal("gone", upload_state(loc))
      expect_error(req("HEAD", "/v2/" .. REPO .. "/blobs/" .. sha(data)), 404)
    end)

    it("POST ?digest= with other content -> 400 DIGEST_INVALID, nothing stored", function()
      local data = helpers.random_bytes(300)
      local resp = req("POST", "/v2/" .. REPO .. "/blobs/uploads/?" .. q { digest = F.unknown_digest },
        { headers = { ["Content-Type"] = "application/octet-stream" }, body = data })
      expect_error(resp, 400, "DIGEST_INVALID")
      expect_error(req("HEAD", "/v2/" .. REPO .. "/blobs/" .. sha(data)), 404)
    end)

    it("PUT manifest by a digest that is not its own -> 400 DIGEST_INVALID", function()
      local body = image_manifest(F.config_digest, #F.config,
        { { mediaType = LAYER, digest = F.layer_digest, size = #F.layer } },
        { annotations = { run = RUN, case = "digest mismatch" } })
      expect_error(put_manifest(REPO, F.manifest_digest, body), 400, "DIGEST_INVALID")
      expect_error(put_manifest(REPO, F.unknown_digest, body), 400, "DIGEST_INVALID")
    end)
  end)

  -------------------------------------------------------------------------
  describe("truncated bodies", function()
    -- The client declares a length and goes away before sending it all (the
    -- body function answers nil, "closed"): 400, nothing committed. A PATCH
    -- may keep what it received, if the upload's Range says so and the
    -- upload can be finished from there.
    local function check_resumable(loc, data, before)
      local state = upload_state(loc)
      if state == "gone" then
        return
      end
      assert(state >= before and state < #data, fmt(
        "upload at 0-%d after a truncated PATCH (before: 0-%d)", state, before))
      -- finish it from where the registry says it is
      local resp = req("PATCH", loc, { headers = {
        ["Content-Type"] = "application/octet-stream",
        ["Content-Range"] = fmt("%d-%d", state + 1, #data - 1) },
        body = data:sub(state + 2) })
      expect_status(resp, 202)
      -- cancel rather than commit: the snapshot must stay as it is
      expect_status(req("DELETE", client.relative_location(resp)), 204)
    end

    local function truncated_patch(chunked)
      if LIVE then
        pending("truncated bodies need the in-process transport")
        return
      end
      local data = helpers.random_bytes(1000)
      local loc = start_upload(REPO)
      local resp = req("PATCH", loc, { headers = {
        ["Content-Type"] = "application/octet-stream", ["Content-Range"] = "0-99" },
        body = data:sub(1, 100) })
      expect_status(resp, 202)
      loc = client.relative_location(resp)
      resp = req("PATCH", loc, { headers = {
        ["Content-Type"] = "application/octet-stream",
        ["Content-Range"] = "100-999" },
        body = data:sub(101), content_length = not chunked and 900 or nil,
        chunked = chunked, fail_after = 400 })
      expect_error(resp, 400, { "BLOB_UPLOAD_INVALID", "SIZE_INVALID" })
      check_resumable(loc, data, 99)
    end

    it("PATCH with Content-Length, body cut short -> 400, upload consistent", function()
      truncated_patch(false)
    end)

    it("PATCH chunked, body cut short -> 400, upload consistent", function()
      truncated_patch(true)
    end)

    it("upload PUT ?digest= with the body cut short -> 400, nothing stored", function()
      if LIVE then return pending("truncated bodies need the in-process transport") end
      local data = helpers.random_bytes(1000)
      local loc = start_upload(REPO)
      local resp = req("PUT", with_query(loc, { digest = sha(data) }), {
        headers = { ["Content-Type"] = "application/octet-stream" },
        body = data, content_length = 1000, fail_after = 500 })
      expect_error(resp, 400, { "BLOB_UPLOAD_INVALID", "SIZE_INVALID", "DIGEST_INVALID" })
      expect_error(req("HEAD", "/v2/" .. REPO .. "/blobs/" .. sha(data)), 404)
      req("DELETE", loc)
    end)

    it("POST ?digest= with the body cut short -> 400, nothing stored", function()
      if LIVE then return pending("truncated bodies need the in-process transport") end
      local sessions = upload_sessions(REPO)
      local data = helpers.random_bytes(1000)
      local resp = req("POST", "/v2/" .. REPO .. "/blobs/uploads/?" .. q { digest = sha(data) }, {
        headers = { ["Content-Type"] = "application/octet-stream" },
        body = data, content_length = 1000, fail_after = 500 })
      expect_error(resp, 400, { "BLOB_UPLOAD_INVALID", "SIZE_INVALID", "DIGEST_INVALID" })
      expect_error(req("HEAD", "/v2/" .. REPO .. "/blobs/" .. sha(data)), 404)
      -- its session's id was never given out: none is left behind
      assert.same(sessions, upload_sessions(REPO))
    end)

    it("POST ?digest= with a digest that does not parse -> 400, no session", function()
      if LIVE then return pending("sessions are counted on disk") end
      local sessions = upload_sessions(REPO)
      local resp = req("POST", "/v2/" .. REPO .. "/blobs/uploads/?digest=sha256:xyz", {
        headers = { ["Content-Type"] = "application/octet-stream" }, body = "hello" })
      expect_error(resp, 400, "DIGEST_INVALID")
      assert.same(sessions, upload_sessions(REPO))
    end)

    it("PUT manifest with the body cut short -> 400, no tag", function()
      if LIVE then return pending("truncated bodies need the in-process transport") end
      local resp = put_manifest(REPO, "cut", F.manifest,
        { content_length = #F.manifest, fail_after = math.floor(#F.manifest / 2) })
      expect_error(resp, 400, { "MANIFEST_INVALID", "SIZE_INVALID" })
      expect_error(req("GET", "/v2/" .. REPO .. "/manifests/cut"), 404, "MANIFEST_UNKNOWN")
    end)

    it("PUT manifest chunked, body cut short -> 400, no tag", function()
      if LIVE then return pending("truncated bodies need the in-process transport") end
      local resp = put_manifest(REPO, "cut2", F.manifest,
        { chunked = true, fail_after = math.floor(#F.manifest / 2) })
      expect_error(resp, 400, { "MANIFEST_INVALID", "SIZE_INVALID" })
      expect_error(req("GET", "/v2/" .. REPO .. "/manifests/cut2"), 404, "MANIFEST_UNKNOWN")
    end)
  end)

  -------------------------------------------------------------------------
  describe("out-of-order PATCH", function()
    local loc
    local function patch(range, body)
      return req("PATCH", loc, { headers = {
        ["Content-Type"] = "application/octet-stream", ["Content-Range"] = range },
        body = body })
    end

    it("a first chunk that does not start at 0 -> 416", function()
      loc = start_upload(REPO)
      expect_status(patch("5-9", "56789"), 416)
      assert.is_not.equal("gone", upload_state(loc))
    end)

    it("after 0-9: an overlapping chunk 5-14 -> 416", function()
      local resp = patch("0-9", "0123456789")
      expect_status(resp, 202)
      loc = client.relative_location(resp)
      expect_status(patch("5-14", "56789abcde"), 416)
    end)

    it("after 0-9: a chunk leaving a gap, 11-15 -> 416", function()
      expect_status(patch("11-15", "bcdef"), 416)
    end)

    it("after 0-9: the same chunk again, 0-9 -> 416", function()
      expect_status(patch("0-9", "0123456789"), 416)
    end)

    it("a Content-Range whose length is not the body's -> 400 or 416", function()
      expect_error(patch("10-19", "abc"), { 400, 416 })
    end)

    it("a Content-Range that does not parse -> 400 or 416", function()
      expect_error(patch("garbage", "abcde"), { 400, 416 })
      expect_error(patch("bytes 10-14/*", "abcde"), { 400, 416 })
      expect_error(patch("14-10", "abcde"), { 400, 416 })
    end)

    it("the upload is still at 0-9 after the refused chunks, and can be cancelled", function()
      assert.equal(9, upload_state(loc))
      expect_status(req("DELETE", loc), 204)
      assert.equal("gone", upload_state(loc))
    end)
  end)

  -------------------------------------------------------------------------
  describe("unknown upload sessions", function()
    local unknown = "0b9d6c5e-7f1a-4c2b-9a3d-" .. rand_hex(12)

    local function each_method(path, statuses, codes)
      local r = {}
      r.PATCH = req("PATCH", path, { headers = {
        ["Content-Type"] = "application/octet-stream", ["Content-Range"] = "0-4" },
        body = "abcde" })
      r.PUT = req("PUT", path .. "?" .. q { digest = sha("abcde") }, {
        headers = { ["Content-Type"] = "application/octet-stream" }, body = "abcde" })
      r.GET = req("GET", path)
      r.DELETE = req("DELETE", path)
      for _, m in ipairs { "PATCH", "PUT", "GET", "DELETE" } do
        expect_error(r[m], statuses, codes)
      end
    end

    it("PATCH, PUT, GET, DELETE on an id never issued -> 404 BLOB_UPLOAD_UNKNOWN", function()
      each_method("/v2/" .. REPO .. "/blobs/uploads/" .. unknown, 404, "BLOB_UPLOAD_UNKNOWN")
    end)

    it("... on a session of another repository -> 404 BLOB_UPLOAD_UNKNOWN", function()
      local loc = start_upload(OTHER)
      local id = loc:match("/blobs/uploads/([^?]+)")
      each_method("/v2/" .. REPO .. "/blobs/uploads/" .. id, 404, "BLOB_UPLOAD_UNKNOWN")
      assert.is_not.equal("gone", upload_state(loc))
      req("DELETE", loc)
    end)

    -- malformed ids: unknown (404) or refused as invalid (400)
    for _, id in ipairs { "..", "%2e%2e", "..%2F..%2F_layers", "%2E%2E%2F%2E%2E%2F%2E%2E",
        ("x"):rep(300), "a%00b", "%20" } do
      it("id " .. id:sub(1, 30) .. " -> 404 BLOB_UPLOAD_UNKNOWN or 400 BLOB_UPLOAD_INVALID", function()
        local path = "/v2/" .. REPO .. "/blobs/uploads/" .. id
        local r = req("GET", path)
        expect_error(r, { 404, 400 }, { "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID" })
        each_method(path, { 404, 400 }, { "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID" })
      end)
    end
  end)

  -------------------------------------------------------------------------
  describe("manifest PUT", function()
    for _, body in ipairs { "{not json", "blablabla", "", "[]", "null", "{}",
        '{"schemaVersion":2,"mediaType":"' .. IMAGE_MANIFEST .. '"}',
        '{"schemaVersion":2,"mediaType":"' .. IMAGE_MANIFEST
          .. '","config":{"mediaType":"' .. IMAGE_CONFIG .. '","digest":"sha256:nope","size":1},"layers":[]}' } do
      it("body " .. (body == "" and "(empty)" or body:sub(1, 40)) .. " -> 400 MANIFEST_INVALID", function()
        expect_error(put_manifest(REPO, "broken", body), 400, "MANIFEST_INVALID")
      end)
    end

    it("a layer that is not stored -> 400 MANIFEST_BLOB_UNKNOWN", function()
      local body = image_manifest(F.config_digest, #F.config,
        { { mediaType = LAYER, digest = F.unknown_digest, size = 10 } })
      expect_error(put_manifest(REPO, "missing-layer", body), 400, "MANIFEST_BLOB_UNKNOWN")
    end)

    it("a config that is not stored -> 400 MANIFEST_BLOB_UNKNOWN", function()
      local body = image_manifest(F.unknown_digest, 10,
        { { mediaType = LAYER, digest = F.layer_digest, size = #F.layer } })
      expect_error(put_manifest(REPO, "missing-config", body), 400, "MANIFEST_BLOB_UNKNOWN")
    end)

    -- as Distribution: a blob counts for a repository when it is linked there
    it("a layer stored only in another repository -> 400 MANIFEST_BLOB_UNKNOWN", function()
      local body = image_manifest(F.config_digest, #F.config,
        { { mediaType = LAYER, digest = F.other_digest, size = #F.other } })
      expect_error(put_manifest(REPO, "foreign-layer", body), 400, "MANIFEST_BLOB_UNKNOWN")
    end)

    -- spec: registries SHOULD accept at least 4 MB and SHOULD answer 413 over
    -- their limit; berth's limit is 4 MiB
    it("a manifest of 4 MiB + 1 byte -> 413", function()
      local base = image_manifest(F.config_digest, #F.config,
        { { mediaType = LAYER, digest = F.layer_digest, size = #F.layer } },
        { annotations = { pad = "" } })
      local pad = 4 * 1024 * 1024 + 1 - #base
      local body = base:gsub('"pad":""', '"pad":"' .. ("x"):rep(pad) .. '"')
      assert.equal(4 * 1024 * 1024 + 1, #body)
      local resp = put_manifest(REPO, "big", body)
      expect_error(resp, 413, { "SIZE_INVALID", "MANIFEST_INVALID" })
      resp = put_manifest(REPO, "big2", body, { chunked = true })
      expect_error(resp, 413, { "SIZE_INVALID", "MANIFEST_INVALID" })
      expect_error(req("GET", "/v2/" .. REPO .. "/manifests/big"), 404, "MANIFEST_UNKNOWN")
    end)
  end)

  -------------------------------------------------------------------------
  describe("blob Range requests #nginx", function()
    local function blob_get(range)
      return req("GET", "/v2/" .. REPO .. "/blobs/" .. F.layer_digest,
        { headers = { Range = range } })
    end

    local function http_only()
      if not LIVE then
        pending("#nginx: blob GETs are served by nginx; run with BERTH_TEST_URL")
        return false
      end
      return true
    end

    it("bytes=0-9 -> 206, Content-Range bytes 0-9/1000, the first 10 bytes", function()
      if not http_only() then return end
      local resp = blob_get("bytes=0-9")
      expect_status(resp, 206)
      assert.equal("bytes 0-9/1000", client.header(resp, "Content-Range"))
      assert.equal(F.layer:sub(1, 10), resp.body)
    end)

    it("bytes=990- and bytes=-5 -> 206 with the tail", function()
      if not http_only() then return end
      local resp = blob_get("bytes=990-")
      expect_status(resp, 206)
      assert.equal("bytes 990-999/1000", client.header(resp, "Content-Range"))
      assert.equal(F.layer:sub(991), resp.body)
      resp = blob_get("bytes=-5")
      expect_status(resp, 206)
      assert.equal(F.layer:sub(996), resp.body)
    end)

    it("bytes=0-1,4-5 -> 206 multipart/byteranges, or 200 and the whole blob", function()
      if not http_only() then return end
      local resp = blob_get("bytes=0-1,4-5")
      if resp.status == 200 then
        assert.equal(F.layer, resp.body)
      else
        expect_status(resp, 206)
        local ct = client.header(resp, "Content-Type") or ""
        assert(ct:find("multipart/byteranges", 1, true), client.describe(resp))
        assert(resp.body:find(F.layer:sub(1, 2), 1, true))
        assert(resp.body:find(F.layer:sub(5, 6), 1, true))
      end
    end)

    it("bytes=1000- -> 416 with Content-Range bytes */1000", function()
      if not http_only() then return end
      local resp = blob_get("bytes=1000-")
      expect_status(resp, 416)
      assert.equal("bytes */1000", client.header(resp, "Content-Range"))
    end)

    it("a Range on a blob not linked in the repository -> 404", function()
      if not http_only() then return end
      local resp = req("GET", "/v2/" .. REPO .. "/blobs/" .. F.other_digest,
        { headers = { Range = "bytes=0-9" } })
      expect_error(resp, 404, "BLOB_UNKNOWN")
    end)
  end)

  -------------------------------------------------------------------------
  describe("afterwards", function()
    it("stored data is as it was after the fixtures", function()
      assert(SNAP, "no snapshot: the fixtures failed")
      local now = take_snapshot()
      local diffs = {}
      for k, v in pairs(SNAP) do
        if now[k] ~= v then
          diffs[#diffs + 1] = fmt("%s\n  before: %s\n  after:  %s", k,
            tostring(v):gsub("\n", " | "), tostring(now[k]):gsub("\n", " | "))
        end
      end
      table.sort(diffs)
      assert(#diffs == 0, "changed:\n" .. table.concat(diffs, "\n"))
    end)

    it("the store exposes blob_list, manifest_list and tag_list", function()
      if LIVE and not store then
        return pending("set BERTH_TEST_ROOT to compare the live server's store")
      end
      assert.is_function(store.blob_list)
      assert.is_function(store.manifest_list)
      assert.is_function(store.tag_list)
    end)

    it("nothing was written outside the store by a traversal", function()
      for _, p in ipairs { "/tmp/" .. PWNED, "/" .. PWNED } do
        local f = io.open(p, "rb")
        local exists = f ~= nil or os.execute("test -e '" .. p .. "'") == 0
        if f then
          f:close()
        end
        assert(not exists, p .. " exists")
      end
    end)

    it("a manifest of exactly 4 MiB is accepted (the limit is inclusive)", function()
      local base = image_manifest(F.config_digest, #F.config,
        { { mediaType = LAYER, digest = F.layer_digest, size = #F.layer } },
        { annotations = { pad = "" } })
      local pad = 4 * 1024 * 1024 - #base
      local body = base:gsub('"pad":""', '"pad":"' .. ("y"):rep(pad) .. '"')
      assert.equal(4 * 1024 * 1024, #body)
      local resp = put_manifest(REPO, "four-mib", body, { chunked = true })
      expect_status(resp, 201)
      resp = req("GET", "/v2/" .. REPO .. "/manifests/four-mib", { headers = { Accept = IMAGE_MANIFEST } })
      expect_status(resp, 200)
      assert(resp.body == body, "the manifest did not come back byte for byte")
    end)
  end)
end)

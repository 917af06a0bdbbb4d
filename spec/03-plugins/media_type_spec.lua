-- One detector of a manifest's media type (berth_manifest_detect, in
-- core/src/schema.c) behind every way a manifest comes in: the store's
-- parser (manifest.parse, then store:manifest_put), the registry's handler
-- lookup (reg:put_manifest) and an HTTP PUT. Each (Content-Type, body) case
-- must get the same answer on every path.
local helpers = require "helpers"
local support = require "03-plugins.support"
local client = require "05-http.client"
local manifest = require "berth.manifest"
local registry = require "berth.registry"
local http = require "berth.http"

local OCI_MANIFEST = support.OCI_MANIFEST
local OCI_INDEX = support.OCI_INDEX
local DOCKER_MANIFEST = support.DOCKER_MANIFEST
local UNKNOWN = "application/vnd.example.unknown+json"

local BUILTIN = {
  [OCI_MANIFEST] = true, [OCI_INDEX] = true, [DOCKER_MANIFEST] = true,
  ["application/vnd.docker.distribution.manifest.list.v2+json"] = true,
}

-- Bodies by name, made once the store holds the image's blobs.
local function bodies(store, repo)
  local img, cfg, layers = support.image_in(store, repo)
  local function image(mt)
    return support.image({ config = cfg, layers = layers, media_type = mt })
  end
  local function index(mt)
    local doc = { schemaVersion = 2, manifests = support.EMPTY }
    if mt then doc.mediaType = mt end
    return support.encode(doc)
  end
  return {
    image = img,
    image_bare = image(false),
    index = index(OCI_INDEX),
    index_bare = index(nil),
    docker = image(DOCKER_MANIFEST),
    unknown = support.encode({ schemaVersion = 2, mediaType = UNKNOWN }),
    not_json = "not json",
  }
end

-- Content-Type, body name, answer: a media type, or false for
-- MANIFEST_INVALID. nil is a request without Content-Type. A built-in type
-- is stored as that type when the body is one.
local CASES = {
  { nil, "image", OCI_MANIFEST },
  { nil, "image_bare", OCI_MANIFEST },
  { nil, "index_bare", OCI_INDEX },
  { nil, "docker", DOCKER_MANIFEST },
  { nil, "unknown", UNKNOWN },
  { nil, "not_json", false },
  { "", "index_bare", OCI_INDEX },
  { "*/*", "image", OCI_MANIFEST },
  { "*/*", "index_bare", OCI_INDEX },
  { "*/*", "image_bare", OCI_MANIFEST },
  { "application/octet-stream", "index", OCI_INDEX },
  { "application/octet-stream", "index_bare", OCI_INDEX },
  { "application/octet-stream", "docker", DOCKER_MANIFEST },
  { "application/json", "image_bare", OCI_MANIFEST },
  { "application/json; charset=utf-8", "index", OCI_INDEX },
  { "text/plain", "index_bare", OCI_INDEX },
  { OCI_MANIFEST, "image", OCI_MANIFEST },
  { OCI_MANIFEST, "image_bare", OCI_MANIFEST },
  { OCI_MANIFEST .. "; charset=utf-8", "image", OCI_MANIFEST },
  -- media types are case-insensitive (RFC 9110; Go's mime package)
  { "Application/Vnd.OCI.Image.Index.v1+JSON", "index_bare", OCI_INDEX },
  { OCI_INDEX, "index_bare", OCI_INDEX },
  { OCI_INDEX, "image", false },          -- the body says otherwise
  { DOCKER_MANIFEST, "image", false },
  { UNKNOWN, "unknown", UNKNOWN },
  { UNKNOWN, "image", false },
  { UNKNOWN, "not_json", UNKNOWN },       -- a Lua handler's business
  { OCI_MANIFEST, "not_json", OCI_MANIFEST }, -- and then not valid JSON
}

local function name_of(case)
  return ("%s with Content-Type %s"):format(case[2],
    case[1] == nil and "(none)" or '"' .. case[1] .. '"')
end

describe("one manifest media-type detector", function()
  local store, root, reg, app, B
  local n = 0

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
    B = bodies(store, "m/t")
    reg = assert(registry.new({ store = store }))
    app = client.in_process(http.new({ registry = reg }))
  end)

  after_each(function()
    store:close()
    helpers.rmrf(root)
  end)

  -- What the store's own parser makes of it: media type | false, code
  local function store_answer(ct, body)
    local m, err, code = manifest.parse(body, ct)
    if not m then return false, code, err end
    local mt = m:media_type()
    assert(store:manifest_put("m/t", m))
    m:close()
    return mt
  end

  -- What the registry makes of it (Lua handler lookup, then the store)
  local function registry_answer(ct, body)
    n = n + 1
    local dgst, info, code = reg:put_manifest("m/t", "r" .. n, body, ct)
    if not dgst then return false, code, info end
    return assert(reg:head_manifest("m/t", dgst)).media_type
  end

  local function http_answer(ct, body)
    n = n + 1
    local r = app:request("PUT", "/v2/m/t/manifests/h" .. n, {
      headers = { ["Content-Type"] = ct }, body = body })
    if r.status ~= 201 then
      return false, r.status, r.body
    end
    local g = app:request("GET", "/v2/m/t/manifests/h" .. n)
    assert.equal(200, g.status)
    return client.header(g, "Content-Type")
  end

  for _, case in ipairs(CASES) do
    local ct, want = case[1], case[3]
    it("gives " .. tostring(want or "MANIFEST_INVALID") .. " for "
        .. name_of(case) .. " on every path", function()
      local body = B[case[2]]
      local stored, scode, serr = store_answer(ct, body)
      local via_reg, rcode, rerr = registry_answer(ct, body)
      local via_http, status, hbody = http_answer(ct, body)
      if BUILTIN[want] and body ~= B.not_json then
        assert.equal(want, stored, serr)
        assert.equal(want, via_reg, rerr)
        assert.equal(want, via_http, hbody)
      else
        -- no built-in schema: the store leaves it to Lua handlers
        assert.is_false(stored)
        assert.equal((want and not BUILTIN[want]) and "UNSUPPORTED"
          or "MANIFEST_INVALID", scode)
        assert.is_false(via_reg)
        assert.equal("MANIFEST_INVALID", rcode)
        assert.is_false(via_http)
        assert.equal(400, status)
        assert.matches('"code":"MANIFEST_INVALID"', hbody, 1, true)
      end
    end)

    it("detects " .. name_of(case) .. " in C, the same for Lua", function()
      local got, err, code = manifest.detect(ct, B[case[2]])
      if want then
        assert.equal(want, got, err)
      else
        assert.is_nil(got)
        assert.equal("MANIFEST_INVALID", code)
      end
    end)
  end

  it("refuses a request with two Content-Types (400, not 500)", function()
    local r = app:request("PUT", "/v2/m/t/manifests/two", {
      headers = { ["Content-Type"] = { OCI_MANIFEST, OCI_INDEX } },
      body = B.image })
    assert.equal(400, r.status)
    assert.matches('"code":"MANIFEST_INVALID"', r.body, 1, true)
  end)

  it("has the constants and the limit from C, not retyped", function()
    local ffi = require "ffi"
    local C = require("berth.ffi").C
    assert.equal(tonumber(C.berth_manifest_max()), manifest.MAX)
    assert.equal(4 * 1024 * 1024, manifest.MAX)
    assert.equal(OCI_MANIFEST,
      ffi.string(C.berth_schema_media_type(C.BERTH_SCHEMA_OCI_MANIFEST)))
    assert.equal(OCI_MANIFEST, manifest.OCI_MANIFEST)
    assert.equal(OCI_INDEX, manifest.OCI_INDEX)
    assert.equal(DOCKER_MANIFEST, manifest.DOCKER_MANIFEST)
    local list = {}
    for _, mt in ipairs(manifest.BUILTIN) do list[mt] = true end
    assert.same(BUILTIN, list)
    -- no other file spells the limit or the built-in types out
    local f = io.popen("grep -rlE '[^0-9]4 \\* 1024 \\* 1024|vnd\\.oci\\.image"
      .. "\\.(manifest|index)\\.v1\\+json' lua/berth plugins/*/*.lua")
    local hits = f:read("*a")
    f:close()
    assert.equal("", hits)
  end)
end)

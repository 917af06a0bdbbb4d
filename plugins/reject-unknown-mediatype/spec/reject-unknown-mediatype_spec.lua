local support = require "03-plugins.support"
local registry = require "berth.registry"

local NOTE = "application/vnd.example.note.v1+json"
local SIG = "application/vnd.example.signature.v1"

-- A registry over a real store with the plugin configured by conf.
local function new(conf)
  local store = support.new_store(finally)
  local reg = assert(registry.new({ store = store, plugins = {
    { name = "reject-unknown-mediatype", config = conf } } }))
  return reg, store
end

describe("reject-unknown-mediatype", function()
  it("allows anything when no list is given", function()
    local reg, store = new(nil)
    local body = support.image_in(store, "r", { artifact_type = SIG })
    assert(reg:put_manifest("r", "v1", body, support.OCI_MANIFEST))
  end)

  it("allows listed types", function()
    local reg, store = new({
      manifest = { support.OCI_MANIFEST },
      config = { support.OCI_CONFIG },
      layer = { support.OCI_LAYER },
      artifact_type = { SIG },
    })
    local body = support.image_in(store, "r", { layers = 2 })
    assert(reg:put_manifest("r", "v1", body, support.OCI_MANIFEST))
    body = support.image_in(store, "r", { artifact_type = SIG, salt = "s" })
    assert(reg:put_manifest("r", "sig", body, support.OCI_MANIFEST))
  end)

  it("refuses a manifest media type that is not listed", function()
    local reg, store = new({ manifest = { support.OCI_MANIFEST } })
    local cfg = support.push_blobs(store, "r", { "{}" },
      "application/vnd.docker.container.image.v1+json")[1]
    local body = support.image({ media_type = support.DOCKER_MANIFEST,
      config = cfg })
    local ok, err, code = reg:put_manifest("r", "v1", body,
      support.DOCKER_MANIFEST)
    assert.is_nil(ok)
    assert.equal("manifest media type " .. support.DOCKER_MANIFEST
      .. " is not allowed in this registry", err)
    assert.equal("MANIFEST_INVALID", code)
    assert.is_nil((store:tag_get("r", "v1")))
  end)

  it("refuses a config or layer media type that is not listed", function()
    local reg, store = new({ config = { support.OCI_CONFIG },
      layer = { support.OCI_LAYER } })
    local cfg = support.push_blobs(store, "r", { "{}" }, "text/plain")[1]
    local ok, err, code = reg:put_manifest("r", "v1",
      support.image({ config = cfg }), support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("config media type text/plain is not allowed in this "
      .. "registry", err)
    assert.equal("MANIFEST_INVALID", code)

    cfg = support.push_blobs(store, "r", { "{}" }, support.OCI_CONFIG)[1]
    local layers = support.push_blobs(store, "r", { "x" },
      "application/x-tar")
    ok, err, code = reg:put_manifest("r", "v1",
      support.image({ config = cfg, layers = layers }), support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("layer media type application/x-tar is not allowed in "
      .. "this registry", err)
    assert.equal("MANIFEST_INVALID", code)
  end)

  it("refuses an artifactType that is not listed, but not plain images",
      function()
    local reg, store = new({ artifact_type = { SIG }, code = "DENIED" })
    local body = support.image_in(store, "r",
      { artifact_type = "application/x-evil" })
    local ok, err, code = reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("artifact type application/x-evil is not allowed in this "
      .. "registry", err)
    assert.equal("DENIED", code) -- the configured code
    -- an image without artifactType is not an artifact
    body = support.image_in(store, "r", { salt = "plain" })
    assert(reg:put_manifest("r", "v2", body, support.OCI_MANIFEST))
  end)

  it("checks index children against the manifest list", function()
    local reg, store = new({ manifest = { support.OCI_MANIFEST,
      support.OCI_INDEX } })
    local img = support.image_in(store, "r")
    local dgst = assert(reg:put_manifest("r", "v1", img, support.OCI_MANIFEST))
    local function index(media_type)
      return support.encode({ schemaVersion = 2,
        mediaType = support.OCI_INDEX,
        manifests = { { mediaType = media_type, digest = dgst, size = #img } } })
    end
    assert(reg:put_manifest("r", "all", index(support.OCI_MANIFEST),
      support.OCI_INDEX))
    local ok, err, code = reg:put_manifest("r", "odd",
      index(support.DOCKER_MANIFEST), support.OCI_INDEX)
    assert.is_nil(ok)
    assert.equal("manifest media type " .. support.DOCKER_MANIFEST
      .. " is not allowed in this registry", err)
    assert.equal("MANIFEST_INVALID", code)
  end)

  it("checks a Lua handler's artifact type and blobs", function()
    local h = dofile("plugins/reject-unknown-mediatype/handler.lua")
    local conf = { artifact_type = { SIG }, layer = { "text/plain" },
      code = "MANIFEST_INVALID" }
    local ctx = { media_type = NOTE, artifact_type = SIG, descriptors = {
      { kind = "blob", digest = support.MISSING, size = 1,
        media_type = "text/plain" } } }
    assert.is_true(h:before_manifest_put(ctx, conf))
    ctx.artifact_type = "application/x-other"
    local ok, err, code = h:before_manifest_put(ctx, conf)
    assert.is_nil(ok)
    assert.equal("artifact type application/x-other is not allowed in this "
      .. "registry", err)
    assert.equal("MANIFEST_INVALID", code)
    ctx.artifact_type = SIG
    ctx.descriptors[1].media_type = nil
    ok, err, code = h:before_manifest_put(ctx, conf)
    assert.is_nil(ok)
    assert.equal("layer media type (none) is not allowed in this registry",
      err)
    assert.equal("MANIFEST_INVALID", code)
  end)
end)

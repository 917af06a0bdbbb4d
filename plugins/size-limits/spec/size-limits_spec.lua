local helpers = require "helpers"
local support = require "03-plugins.support"
local registry = require "berth.registry"

local function new(conf)
  local store = support.new_store(finally)
  local reg = assert(registry.new({ store = store,
    plugins = { { name = "size-limits", config = conf } } }))
  return reg, store
end

describe("size-limits", function()
  it("allows what is within the limits", function()
    local reg, store = new({ manifest_bytes = 4096, max_layers = 3,
      blob_bytes = 100 })
    local body = support.image_in(store, "r", { layers = 3, layer_size = 50 })
    assert(reg:put_manifest("r", "v1", body, support.OCI_MANIFEST))
    local up = assert(reg:start_upload("r"))
    assert(up:write(string.rep("y", 100)))
    assert(reg:commit_upload(up, helpers.sha256sum(string.rep("y", 100))))
  end)

  it("refuses a manifest over manifest_bytes", function()
    local reg, store = new({ manifest_bytes = 100 })
    local body = support.image_in(store, "r")
    local ok, err, code = reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("manifest is " .. #body .. " bytes, over the manifest_bytes "
      .. "limit of 100", err)
    assert.equal("DENIED", code)
  end)

  it("refuses more layers than max_layers", function()
    local reg, store = new({ max_layers = 2 })
    local body = support.image_in(store, "r", { layers = 3 })
    local ok, err, code = reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("manifest has 3 layers, over the max_layers limit of 2", err)
    assert.equal("DENIED", code)
  end)

  it("refuses a manifest naming a blob over blob_bytes", function()
    local reg, store = new({ blob_bytes = 1000 })
    -- the blob got in before the limit (or through another repository)
    local body, _, layers = support.image_in(store, "r",
      { layer_size = 2000 })
    local ok, err, code = reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("blob " .. layers[1].digest .. " is " .. layers[1].size
      .. " bytes, over the blob_bytes limit of 1000", err)
    assert.equal("DENIED", code)
  end)

  it("refuses committing an upload over blob_bytes, and drops it",
      function()
    local reg, store = new({ blob_bytes = 10 })
    local up = assert(reg:start_upload("r"))
    local data = string.rep("z", 11)
    assert(up:write(data))
    local id = up.id
    local dgst = helpers.sha256sum(data)
    -- the size that counts is what arrived, not what the client claims
    local ok, err, code = reg:commit_upload(up, dgst, 5)
    assert.is_nil(ok)
    assert.equal("blob " .. dgst .. " is 11 bytes, over the blob_bytes "
      .. "limit of 10", err)
    assert.equal("DENIED", code)
    assert.is_nil((store:blob_stat(nil, dgst)))
    local _, _, c2 = store:upload_open("r", id)
    assert.equal("BLOB_UPLOAD_UNKNOWN", c2)
  end)

  it("refuses mounting a blob over blob_bytes", function()
    local reg, store = new({ blob_bytes = 10 })
    local dgst = assert(store:blob_put("other", string.rep("m", 20)))
    local ok, err, code = reg:mount_blob("r", "other", dgst)
    assert.is_nil(ok)
    assert.equal("blob " .. dgst .. " is 20 bytes, over the blob_bytes "
      .. "limit of 10", err)
    assert.equal("DENIED", code)
    assert.is_nil((store:blob_stat("r", dgst)))
  end)

  it("checks manifest_bytes at 4 MiB by default", function()
    local h = dofile("plugins/size-limits/handler.lua")
    local schema = dofile("plugins/size-limits/schema.lua")
    local conf = assert(require("berth.config").validate(schema, {}))
    assert.is_true(h:before_manifest_put({ size = 4 * 1024 * 1024 }, conf))
    local ok, err, code = h:before_manifest_put(
      { size = 4 * 1024 * 1024 + 1 }, conf)
    assert.is_nil(ok)
    assert.equal("manifest is 4194305 bytes, over the manifest_bytes limit "
      .. "of 4194304", err)
    assert.equal("DENIED", code)
  end)
end)

local helpers = require "helpers"
local support = require "03-plugins.support"
local registry = require "berth.registry"

local function new(conf)
  local store = support.new_store(finally)
  local reg = assert(registry.new({ store = store, delete = true,
    plugins = { { name = "immutable-tags", config = conf } } }))
  return reg, store
end

local function push(reg, store, tag, salt)
  local body = support.image_in(store, "r", { salt = salt })
  return assert(reg:put_manifest("r", tag, body, support.OCI_MANIFEST)), body
end

describe("immutable-tags", function()
  it("allows the first push and pushing the same digest again", function()
    local reg, store = new({ patterns = { "v*" } })
    local a, body = push(reg, store, "v1", "a")
    assert.equal(a, reg:put_manifest("r", "v1", body, support.OCI_MANIFEST))
    assert.is_true(reg:set_tag("r", "v1", a))
    assert.equal(a, store:tag_get("r", "v1"))
  end)

  it("refuses moving an immutable tag with a manifest put", function()
    local reg, store = new({ patterns = { "v*" } })
    local a = push(reg, store, "v1", "a")
    local body = support.image_in(store, "r", { salt = "b" })
    local ok, err, code = reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("tag v1 is immutable: it points at " .. a, err)
    assert.equal("DENIED", code)
    assert.equal(a, store:tag_get("r", "v1"))
    -- and the refused manifest was not stored either
    local _, _, c = store:manifest_head("r", helpers.sha256sum(body))
    assert.equal("MANIFEST_UNKNOWN", c)
  end)

  it("refuses moving an immutable tag with tag_set", function()
    local reg, store = new({ patterns = { "v*" } })
    local a = push(reg, store, "v1", "a")
    local b = push(reg, store, "dev", "b")
    local ok, err, code = reg:set_tag("r", "v1", b)
    assert.is_nil(ok)
    assert.equal("tag v1 is immutable: it points at " .. a, err)
    assert.equal("DENIED", code)
  end)

  it("refuses deleting an immutable tag, or the manifest it names",
      function()
    local reg, store = new({ patterns = { "release-*" } })
    local a = push(reg, store, "release-1", "a")
    local ok, err, code = reg:delete_manifest("r", "release-1")
    assert.is_nil(ok)
    assert.equal("tag release-1 is immutable and cannot be deleted", err)
    assert.equal("DENIED", code)
    ok, err, code = reg:delete_manifest("r", a)
    assert.is_nil(ok)
    assert.equal("manifest " .. a .. " carries immutable tag release-1", err)
    assert.equal("DENIED", code)
    assert.equal(a, store:tag_get("r", "release-1"))
  end)

  it("leaves other tags mutable", function()
    local reg, store = new({ patterns = { "v?" } })
    push(reg, store, "dev", "a")
    local b = push(reg, store, "dev", "b")
    assert.equal(b, store:tag_get("r", "dev"))
    local c = push(reg, store, "v10", "c") -- "v?" is one character
    push(reg, store, "v10", "d")
    assert.is_true(reg:delete_manifest("r", "dev"))
    assert.is_true(reg:delete_manifest("r", b))
    assert.is_truthy(c)
  end)

  it("makes every tag immutable by default, except the excluded", function()
    local reg, store = new({ exclude = { "latest" } })
    push(reg, store, "latest", "a")
    local b = push(reg, store, "latest", "b")
    assert.equal(b, store:tag_get("r", "latest"))
    local a = push(reg, store, "anything", "a")
    local ok, err, code = reg:set_tag("r", "anything", b)
    assert.is_nil(ok)
    assert.equal("tag anything is immutable: it points at " .. a, err)
    assert.equal("DENIED", code)
  end)

  it("lets a tag that was never set be deleted or set", function()
    local h = dofile("plugins/immutable-tags/handler.lua")
    local conf = { patterns = { "*" }, exclude = {} }
    assert.is_true(h:before_tag_set({ tag = "v1", digest = "sha256:a" }, conf))
    assert.is_true(h:before_tag_delete({ tag = "v1" }, conf))
    assert.is_true(h:before_manifest_delete({ digest = "sha256:a",
      tags = {} }, conf))
  end)
end)

-- Two first pushes of one tag from two processes (two nginx workers): the
-- plugin reads the tag, then the store writes it. The store's tag write is
-- a compare-and-set against what the plugin read, and on a change the
-- plugin decides again: exactly one push may win.
describe("immutable-tags across processes", function()
  local function child(root, body_file, tag, barrier)
    local script = os.tmpname()
    helpers.write_file(script, ([[
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
local registry = require "berth.registry"
local reg = assert(registry.new({ store = { root = %q, fsync = "none" },
  plugins = { { name = "immutable-tags", config = { patterns = { "v*" } } } } }))
local f = assert(io.open(%q, "rb"))
local body = f:read("*a")
f:close()
while not io.open(%q, "rb") do end -- all start together
local ok, err, code = reg:put_manifest("r", %q, body,
  "application/vnd.oci.image.manifest.v1+json")
io.write(ok and ("ok " .. ok) or ("refused " .. tostring(code)), "\n")
]]):format(root, body_file, barrier, tag))
    return io.popen("luajit " .. script .. " 2>&1; rm -f " .. script)
  end

  it("lets exactly one of two racing first pushes win", function()
    local store, root = support.new_store(finally)
    local dir = helpers.tmpdir()
    for round = 1, 12 do
      local tag = "v" .. round
      local barrier = dir .. "/go-" .. round
      local runs = {}
      for i, salt in ipairs({ "a", "b" }) do
        local body = support.image_in(store, "r",
          { salt = salt .. round })
        local file = dir .. "/body-" .. round .. "-" .. i
        helpers.write_file(file, body)
        runs[i] = child(root, file, tag, barrier)
      end
      helpers.write_file(barrier, "")
      local won, refused = {}, 0
      for _, p in ipairs(runs) do
        local line = p:read("*a")
        p:close()
        local d = line:match("^ok (sha256:%x+)")
        if d then
          won[#won + 1] = d
        else
          assert.matches("^refused DENIED", line)
          refused = refused + 1
        end
      end
      assert.equal(1, #won, "round " .. round .. ": " .. #won .. " won")
      assert.equal(1, refused)
      assert.equal(won[1], store:tag_get("r", tag))
    end
  end)
end)

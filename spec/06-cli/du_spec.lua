-- berth du, run as a child process against a store filled through the Lua
-- API; the expected sizes come from the fixture files.
local helpers = require "helpers"
local support = require "06-cli.support"

local berth = support.berth

local function size_of(dgst)
  return #support.blob(dgst)
end

describe("berth du", function()
  local store, root, ids, expect

  setup(function()
    store, root, ids = support.filled_store()
    -- data no repository links (what gc would reclaim)
    assert(store:blob_put(nil, "loose bytes"))
    local index = #support.fixture("oci-index-multiplatform.json")
    local sbom = #support.fixture("oci-artifact-sbom.json")
    local spdx = #support.fixture("artifact-sbom.spdx.json")
    local amd_image = 345 + size_of(support.CONFIG_AMD64)
      + size_of(support.LAYER)
    expect = {
      -- app: three image blobs, the SBOM's two, four manifests
      app = amd_image + 345 + size_of(support.CONFIG_ARM64) + index
        + sbom + spdx + 2,
      -- other: the amd64 image, all of it also in app
      other = amd_image,
    }
  end)

  it("--json: per repository, shared bytes, total once, whole store",
    function()
      local r = berth({ "du", "--json" }, { root = root })
      assert.equal(0, r.code, r.stderr)
      local v = support.json(r.stdout)
      assert.same({
        { name = "app", size = expect.app, shared = expect.other,
          blobs = 5, manifests = 4 },
        { name = "other", size = expect.other, shared = expect.other,
          blobs = 2, manifests = 1 },
      }, v.repositories)
      -- other's bytes are all in app too: counted once
      assert.same({ size = expect.app, blobs = 9 }, v.total)
      assert.same({ size = expect.app + #"loose bytes", blobs = 10 },
        v.store)
      assert.same({ size = #"loose bytes", blobs = 1 }, v.unreferenced)
      assert.truthy(ids.index)
    end)

  it("a table with human sizes, then the totals", function()
    local r = berth({ "du" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do
      lines[#lines + 1] = line
    end
    assert.equal(5, #lines)
    assert.matches("^REPOSITORY +SIZE +SHARED +BLOBS +MANIFESTS$", lines[1])
    assert.matches("^app +[%d.]+ KiB +943 B +5 +4$", lines[2])
    assert.matches("^other +943 B +943 B +2 +1$", lines[3])
    assert.matches("^total: [%d.]+ KiB in 9 blobs and manifests", lines[4])
    assert.matches("^store: [%d.]+ KiB in 10 blobs %(11 B in 1 not in any"
      .. " repository%)$", lines[5])
    assert.equal(943, expect.other)
  end)

  it("--bytes: exact sizes in the table", function()
    local r = berth({ "du", "--bytes" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.matches("\napp +" .. expect.app .. " +" .. expect.other
      .. " +5 +4\n", r.stdout)
    assert.matches("\ntotal: " .. expect.app .. " in 9 ", r.stdout)
  end)

  it("an empty store", function()
    local _, empty = helpers.new_store({ fsync = "none" })
    local r = berth({ "du", "--json" }, { root = empty })
    assert.equal(0, r.code, r.stderr)
    assert.same({ repositories = {}, total = { size = 0, blobs = 0 },
      store = { size = 0, blobs = 0 }, unreferenced = { size = 0, blobs = 0 } },
      support.json(r.stdout))
    assert.matches('"repositories":%[%]', r.stdout)
  end)

  it("a linked blob without data is reported: exit 1", function()
    local st, broken = helpers.new_store({ fsync = "none" })
    support.fill(st)
    -- take the layer's data away behind the store's back
    local hex = support.LAYER:sub(8)
    assert(os.remove(broken .. "/docker/registry/v2/blobs/sha256/"
      .. hex:sub(1, 2) .. "/" .. hex .. "/data"))
    local r = berth({ "du", "--json" }, { root = broken })
    assert.equal(1, r.code)
    assert.matches("berth du: app: .*" .. hex, r.stderr)
    -- still a report, without that blob
    local v = support.json(r.stdout)
    assert.equal(expect.app - size_of(support.LAYER), v.repositories[1].size)
  end)

  it("usage errors: exit 2", function()
    assert.equal(2, berth({ "du", "app" }, { root = root }).code)
    assert.equal(2, berth({ "du", "--human" }, { root = root }).code)
  end)
end)

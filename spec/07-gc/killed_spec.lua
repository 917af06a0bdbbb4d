-- A gc killed at any step of its run loses no link an acknowledged image
-- needs. "Killed at step n": the fault driver fails the n-th driver
-- operation and every later one, so the run's own clean-up cannot write
-- either. The image whose manifest is put once the sweep has started is
-- marked only at the second mark: its old layer links are taken out before
-- and put back after.
jit.off() -- the watcher is a C callback
local helpers = require "helpers"
local gc = require "berth.gc"
local S = require "07-gc.support"
local cjson = require "cjson"
local manifest = require "berth.manifest"

local GRACE = 60

-- An old tagged image, an old orphan linked in "old/junk", and the old
-- blobs of "late", whose manifest (parsed here: the watcher only puts it)
-- comes during the gc.
local function setup()
  local t = helpers.watched_stores(finally)
  local early = S.image(t.plain, "early", { tag = "v1", seed = "early" })
  t.orphan = assert(t.plain:blob_put("old/junk", "an old orphan\n"))
  local config = cjson.encode({ architecture = "amd64", os = "linux" })
  local blobs = { [S.push_blob(t.plain, "late/app", config)] = #config }
  local cd = next(blobs)
  local layers = {}
  for i = 1, 2 do
    local data = ("late layer %d\n"):format(i):rep(100)
    local d = S.push_blob(t.plain, "late/app", data)
    blobs[d] = #data
    layers[i] = { mediaType = S.OCI_LAYER, digest = d, size = #data }
  end
  S.age_all(t.root, 3600)
  local m = assert(manifest.parse(cjson.encode({ schemaVersion = 2,
    mediaType = S.OCI_MANIFEST,
    config = { mediaType = S.OCI_CONFIG, digest = cd, size = #config },
    layers = layers }), S.OCI_MANIFEST))
  finally(function() m:close() end)
  t.images = { { repo = "early", tag = "v1", blobs = early.blobs } }
  t.late = { repo = "late/app", tag = "v1", blobs = blobs, manifest = m }
  return t
end

-- gc on the watched store, killed at its n-th driver operation (never with
-- n nil); the late manifest is put before the sweep's first look at a
-- _layers link. -> whether the run returned a report, its operations, the
-- step the sweep began at
local function killed_gc(t, n)
  local late_put, step = false, 0
  t.driver:watch(function(_, path)
    step = step + 1
    if not late_put and path:find("/_layers/", 1, true) then
      late_put = step
      local l = t.late
      assert(t.plain:manifest_put(l.repo, l.manifest, { tag = l.tag }))
      t.images[#t.images + 1] = l
    end
  end)
  t.driver:arm(n and "crash" or "off", n or 0)
  local ok, report = pcall(gc.run, t.watched, { grace = GRACE, settle = 0 })
  local count = t.driver:count()
  t.driver:arm("off", 0)
  t.driver:watch(nil)
  assert.is_nil(t.driver.watch_error)
  assert.truthy(late_put or n, "the sweep never looked at a link")
  return ok and report ~= nil, count, late_put
end

-- Every acknowledged image resolves and every blob it needs answers a HEAD
-- in its repository, whole.
local function assert_images(t, label)
  for _, img in ipairs(t.images) do
    assert.truthy(t.plain:tag_get(img.repo, img.tag), label)
    for d, size in pairs(img.blobs) do
      assert.equal(size, t.plain:blob_stat(img.repo, d),
        ("%s: %s %s"):format(label, img.repo, d))
      assert.equal(size, t.plain:blob_verify(d), label)
    end
  end
end

describe("a gc killed at any step", function()
  it("loses no layer of an acknowledged image, and its orphans still go",
  function()
    local t = setup()
    local done, total, sweep = killed_gc(t, nil)
    assert.is_true(done)
    assert.is_nil(t.plain:blob_info(t.orphan)) -- the gc is real
    assert.is_true(total - sweep > 30, "only " .. total - sweep .. " steps")
    -- before the sweep nothing is taken out of the tree
    for n = sweep, total do
      t = setup()
      killed_gc(t, n) -- (failures late in the run are only warnings)
      local label = ("killed at step %d of %d"):format(n, total)
      assert_images(t, label) -- with no gc since
      assert(gc.run(t.plain, { grace = GRACE, settle = 0 }))
      assert_images(t, label .. ", then a whole gc")
      assert.is_nil(t.plain:blob_info(t.orphan), label)
      assert.same({}, S.journal(t.root), label)
    end
  end)
end)

-- gc and a push that takes up an old orphan's content (an upload of bytes
-- stored already, a blob put, a mount), interleaved at every point: a whole
-- gc run before each driver operation of the push, and the whole push
-- before each driver operation of the gc. Whatever the order, a push that
-- succeeded has its blob, whole, in its repository afterwards.
jit.off() -- the watcher is a C callback
local helpers = require "helpers"
local gc = require "berth.gc"
local S = require "07-gc.support"
local cjson = require "cjson"
local manifest = require "berth.manifest"

local GRACE = 60
local DATA = ("an hour-old orphan whose bytes a push sends again\n"):rep(40)

-- A store on a watched driver and a plain one, on one new root, with the
-- orphan planted: data only, or with an old link in "old/junk" to mount.
local function setup()
  local t = helpers.watched_stores(finally)
  t.digest = assert(t.plain:blob_put("old/junk", DATA))
  S.age_blob(t.root, t.digest, 3600)
  S.age_layer_link(t.root, "old/junk", t.digest, 3600)
  return t
end

local PUSHES = {
  ["an upload of stored content"] = function(store, dg)
    local up = assert(store:blob_writer("r"))
    assert(up:write(DATA))
    return up:commit(dg, #DATA)
  end,
  ["a blob put of stored content"] = function(store)
    return store:blob_put("r", DATA)
  end,
  ["a mount"] = function(store, dg)
    return store:blob_mount("r", "old/junk", dg)
  end,
}

local function collect(store)
  local report = assert(gc.run(store, { grace = GRACE, settle = 0 }))
  return #report.removed.blobs
end

-- Run `act` under the watched store's driver; before its n-th driver
-- operation run `other` (once). Returns act's results and whether `other`
-- ran.
local function interleave(t, n, act, other)
  local k, ran = 0, false
  t.driver:watch(function()
    k = k + 1
    if k == n then
      ran = true
      other()
    end
  end)
  local ok, err = act()
  t.driver:watch(nil)
  assert.is_nil(t.driver.watch_error)
  return ok, err, ran, k
end

local function assert_whole(t, label)
  assert.equal(#DATA, t.plain:blob_stat("r", t.digest), label)
  assert.equal(#DATA, t.plain:blob_verify(t.digest), label)
end

for name, push in pairs(PUSHES) do
  describe(name .. " and gc", function()
    it("keeps the blob when a gc runs before any of its steps", function()
      local n, removed_first = 1, nil
      repeat
        local t = setup()
        local removed = 0
        local ok, err, ran = interleave(t, n,
          function() return push(t.watched, t.digest) end,
          function() removed = collect(t.plain) end)
        if n == 1 then removed_first = removed end
        if ok then assert_whole(t, ("gc before step %d"):format(n)) end
        if name ~= "a mount" then
          assert.is_truthy(ok, err) -- its bytes are in hand: never fails
        end
        n = n + 1
      until not ran
      assert.is_true(n > 3, "only " .. n - 2 .. " steps")
      -- before the push's first step the orphan goes: the gc is real
      assert.equal(1, removed_first)
    end)

    it("keeps the blob when it runs before any step of a gc", function()
      local m, pushed_any = 1, false
      repeat
        local t = setup()
        local ok, err
        local _, _, ran = interleave(t, m,
          function() return collect(t.watched) end,
          function() ok, err = push(t.plain, t.digest) end)
        if ran then
          if ok then
            pushed_any = true
            assert_whole(t, ("push before gc step %d"):format(m))
          elseif name ~= "a mount" then
            error(("push before gc step %d: %s"):format(m, tostring(err)))
          end
        end
        m = m + 1
      until not ran
      assert.is_true(pushed_any)
      assert.is_true(m > 10, "only " .. m - 2 .. " gc steps")
    end)
  end)
end

describe("a gc killed with a blob condemned", function()
  it("is undone by the next run, before it judges anything", function()
    local store, root = helpers.new_store({ fsync = "none" })
    local img = S.image(store, "app", { tag = "v1" })
    local layer = img.layers[1]
    -- what a gc killed between condemning and its last look leaves
    assert(store:blob_condemn(layer))
    assert.is_nil(store:blob_stat(nil, layer))
    local report = assert(gc.run(store, { grace = 0, settle = 0 }))
    assert.equal(1, report.blobs.reprieved)
    assert.equal(img.blobs[layer], store:blob_stat("app", layer))
    assert.equal(0, report.blobs.removed)
    assert.is_false(S.exists(root .. "/berth/v1/condemned/sha256/"
      .. layer:sub(8)))
  end)
end)

-- A push links an old orphan after gc judged it (no young link then) and
-- before gc condemned it; its manifest comes while the data is condemned.
-- gc's last look will see that link and put the data back: whoever reads
-- through the link does it first, rather than answer "unknown".
local CONFIG = '{"architecture":"amd64","os":"linux"}'

describe("a linked blob that gc has condemned", function()
  local function condemned_layer()
    local store = helpers.new_store({ fsync = "none" })
    local cd = S.push_blob(store, "r", CONFIG)
    local ld = S.push_blob(store, "r", DATA)
    assert(store:blob_condemn(ld))
    return store, cd, ld
  end

  it("is found by the manifest put that names it", function()
    local store, cd, ld = condemned_layer()
    local m = assert(manifest.parse(cjson.encode({ schemaVersion = 2,
      mediaType = S.OCI_MANIFEST,
      config = { mediaType = S.OCI_CONFIG, digest = cd,
        size = #CONFIG },
      layers = { { mediaType = S.OCI_LAYER, digest = ld, size = #DATA } },
    }), S.OCI_MANIFEST))
    finally(function() m:close() end)
    assert.truthy(store:manifest_put("r", m, { tag = "v1" }))
    assert.equal(#DATA, store:blob_verify(ld))
  end)

  it("is found by a pull: stat, read and open", function()
    local store, _, ld = condemned_layer()
    assert.equal(#DATA, store:blob_stat("r", ld))
    assert(store:blob_condemn(ld))
    assert.equal(DATA, store:blob_get("r", ld))
    assert(store:blob_condemn(ld))
    local r = assert(store:blob_reader("r", ld))
    assert.equal(DATA, r:read(#DATA))
    r:close()
    assert(store:blob_condemn(ld))
    assert.truthy(store:blob_path("r", ld))
  end)

  it("stays condemned for a read with no link", function()
    local store, _, ld = condemned_layer()
    assert.is_nil(store:blob_stat(nil, ld))
    assert.is_nil(store:blob_stat("other", ld))
  end)
end)

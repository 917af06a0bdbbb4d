-- What a crash (kill -9, a power cut) leaves half made, built on disk as
-- the fs driver leaves it when cut at that point: never listed or served,
-- not damage to fsck, and removed by gc once older than the grace.
local helpers = require "helpers"
local S = require "07-gc.support"
local gc = require "berth.gc"
local fsck = require "berth.fsck"
local cmd_gc = require "berth.cmd.gc"
local ffi = require "ffi"
local C = require("berth.ffi").C

local HOUR = 3600

-- A temp file of the fs driver's put (driver_fs.c temp_name).
local TMP = ".tmp-00000000deadbeef~"

-- gc's clock two hours on: everything made so far is older than the grace.
local function later()
  return os.time() + 2 * HOUR
end

-- Every file and directory under path, two hours old.
local function age_tree(path)
  assert(os.execute(("find '%s' -exec touch -m -d @%d {} +"):format(path,
    os.time() - 2 * HOUR)))
end

local function mkdir(path)
  assert(os.execute("mkdir -p '" .. path .. "'"))
end

local function leftover_kinds(report)
  local t = {}
  for _, l in ipairs(report.leftovers) do t[#t + 1] = l.kind end
  table.sort(t)
  return t
end

describe("a tag directory without current/link", function()
  local store, root, img, tags

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
    img = S.image(store, "app", { tag = "good", seed = "good" })
    tags = S.repo_dir(root, "app") .. "/_manifests/tags"
    -- a first set cut short after its index link, in its current link's
    -- put (the temp file written, not renamed)
    local index = tags .. "/half/index/sha256/" .. S.hex(img.digest)
    mkdir(index)
    mkdir(tags .. "/half/current")
    helpers.write_file(index .. "/link", img.digest)
    helpers.write_file(tags .. "/half/current/" .. TMP, img.digest)
    -- cut short in the first put of all: only the current link's temp file
    mkdir(tags .. "/bare/current")
    helpers.write_file(tags .. "/bare/current/" .. TMP, img.digest)
  end)

  it("is a leftover to fsck, not damage", function()
    local r = assert(fsck.run(store))
    assert.same({}, r.problems)
    assert.is_true(r.ok)
    assert.same({ "tag_without_current", "tag_without_current" },
      leftover_kinds(r))
    r = assert(fsck.run(store, { repair = true }))
    assert.is_false(S.exists(tags .. "/half"))
    assert.is_false(S.exists(tags .. "/bare"))
    assert.same({}, assert(fsck.run(store)).leftovers)
    assert.equal(img.digest, store:tag_get("app", "good"))
  end)

  it("is removed by gc after the grace, and kept within it", function()
    local r = assert(gc.run(store, { settle = 0 }))
    assert.equal(0, r.leftovers.tags)
    assert.is_true(S.exists(tags .. "/half/index"))
    r = assert(gc.run(store, { settle = 0, now = later, dry_run = true }))
    assert.equal(2, r.leftovers.tags)
    assert.is_true(S.exists(tags .. "/half/index"))
    assert.is_true(S.exists(tags .. "/bare/current/" .. TMP))
    r = assert(gc.run(store, { settle = 0, now = later }))
    assert.equal(2, r.leftovers.tags)
    assert.is_false(S.exists(tags .. "/half"))
    assert.is_false(S.exists(tags .. "/bare"))
    assert.same({ "good" }, store:tag_list("app"))
    assert.equal(img.digest, store:tag_get("app", "good"))
    assert.truthy(store:manifest_get("app", "good"))
    r = assert(fsck.run(store))
    assert.same({}, r.problems)
    assert.same({}, r.leftovers)
  end)

  it("is counted by berth gc", function()
    age_tree(tags)
    local env, stdout = S.env()
    assert.equal(0, cmd_gc.run({ "--root", root }, env))
    assert.matches("leftovers of a crash: 2 tag directories", stdout(), 1,
      true)
    assert.is_false(S.exists(tags .. "/half"))
  end)
end)

-- gc removes a tag directory without current/link under the tag lock; a
-- first set writes its index link before it takes the lock. Whichever of
-- its steps the clean-up comes before, the tag ends set, with its history.
describe("a first tag set and gc's clean-up", function()
  it("keeps the tag and its index link at every step", function()
    local n = 1
    repeat
      local t = helpers.watched_stores(finally)
      local img = S.image(t.plain, "app", { seed = "racing" })
      -- While the set holds the tag lock, the clean-up would wait for it:
      -- the same as running at the first step after it.
      local k, ran, locked = 0, false, false
      t.driver:watch(function(op, path)
        k = k + 1
        if locked and path:find("/_tagsof/", 1, true) then locked = false end
        if k == n then
          ran = true
          if not locked then
            assert(gc.run(t.plain, { settle = 0, now = later }))
          end
        end
        if op == "writer" and path:find("/_taglock$") then locked = true end
      end)
      -- the digest in its own cdata: the gc run inside the call reuses
      -- the binding's scratch one
      local d = ffi.new("berth_digest")
      assert(C.berth_digest_parse(d, img.digest, #img.digest, nil) == 0)
      local e = ffi.new("berth_error")
      local rc = C.berth_tag_set(t.watched._p, "app", "new", d, e)
      local ok, err = rc == 0, ffi.string(e.message)
      t.driver:watch(nil)
      assert.is_nil(t.driver.watch_error)
      assert.is_truthy(ok, err)
      local label = ("gc before step %d"):format(n)
      assert.equal(img.digest, t.plain:tag_get("app", "new"), label)
      local history = assert(t.plain:links("app", { "tag_index" }))
      assert.equal(1, #history, label)
      assert.equal(img.digest, history[1].digest, label)
      n = n + 1
    until not ran
    assert.is_true(n > 4, "only " .. n - 2 .. " steps")
  end)
end)

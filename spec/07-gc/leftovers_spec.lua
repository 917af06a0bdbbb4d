-- What a crash (kill -9, a power cut) leaves half made, built on disk as
-- the fs driver leaves it when cut at that point: never listed or served,
-- not damage to fsck, and removed by gc once older than the grace.
jit.off() -- the watcher is a C callback
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
    assert.is_true(r.leftovers[1].repaired and r.leftovers[2].repaired)
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
        if op == "lock" and path:find("/_taglock$") then locked = true end
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

-- A put cut short leaves its temp file in the link's or the blob's
-- directory; a commit cut short between making the blob's directory and
-- moving the data in leaves it empty.
describe("link and blob directories without their file", function()
  local store, root, img, made

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
    img = S.image(store, "app", { tag = "good", seed = "good" })
    local dir = S.repo_dir(root, "app")
    local X = S.digest_of("never linked")
    made = {
      dir .. "/_layers/sha256/" .. S.hex(X),
      dir .. "/_manifests/revisions/sha256/" .. S.hex(X),
      dir .. "/_manifests/tags/good/index/sha256/" .. S.hex(X),
      S.blob_dir(root, S.digest_of("never stored")),
    }
    for _, d in ipairs(made) do
      mkdir(d)
      helpers.write_file(d .. "/" .. TMP, X)
    end
    -- empty: a layer link directory, a blob directory
    made[#made + 1] = dir .. "/_layers/sha256/" .. S.hex(S.digest_of("e"))
    made[#made + 1] = S.blob_dir(root, S.digest_of("empty"))
    mkdir(made[#made - 1])
    mkdir(made[#made])
  end)

  local function assert_image_whole()
    assert.equal(img.digest, store:tag_get("app", "good"))
    assert.truthy(store:manifest_get("app", "good"))
    for d, size in pairs(img.blobs) do
      assert.equal(size, store:blob_stat("app", d))
    end
  end

  it("are leftovers to fsck, not damage", function()
    local r = assert(fsck.run(store))
    assert.same({}, r.problems)
    assert.is_true(r.ok)
    assert.same({ "blob_without_data", "blob_without_data",
      "link_without_file", "link_without_file", "link_without_file",
      "link_without_file" }, leftover_kinds(r))
    r = assert(fsck.run(store, { repair = true }))
    for _, l in ipairs(r.leftovers) do
      assert.is_true(l.repaired, l.message)
    end
    for _, d in ipairs(made) do
      assert.is_false(S.exists(d), d)
    end
    assert.same({}, assert(fsck.run(store)).leftovers)
    assert_image_whole()
  end)

  it("are removed by gc after the grace, and kept within it", function()
    local r = assert(gc.run(store, { settle = 0 }))
    assert.same({ tags = 0, links = 0, blobs = 0, spool = 0,
      spool_bytes = 0 }, r.leftovers)
    r = assert(gc.run(store, { settle = 0, now = later, dry_run = true }))
    assert.same({ tags = 0, links = 4, blobs = 2, spool = 0,
      spool_bytes = 0 }, r.leftovers)
    for _, d in ipairs(made) do
      assert.is_true(S.exists(d), d)
    end
    r = assert(gc.run(store, { settle = 0, now = later }))
    assert.same({ tags = 0, links = 4, blobs = 2, spool = 0,
      spool_bytes = 0 }, r.leftovers)
    assert.same({}, r.warnings)
    for _, d in ipairs(made) do
      assert.is_false(S.exists(d), d)
    end
    assert_image_whole()
    r = assert(fsck.run(store))
    assert.same({}, r.problems)
    assert.same({}, r.leftovers)
  end)

  it("keeps a directory holding anything else, or a young temp file",
    function()
      local young = S.blob_dir(root, S.digest_of("young"))
      mkdir(young)
      helpers.write_file(young .. "/" .. TMP, "x")
      age_tree(young)
      -- gc's clock stays: the temp file written now is within the grace
      helpers.write_file(young .. "/.tmp-0000000000000001~", "y")
      local junk = S.blob_dir(root, S.digest_of("junk"))
      mkdir(junk .. "/data")
      age_tree(junk)
      local r = assert(gc.run(store, { settle = 0 }))
      assert.equal(0, r.leftovers.blobs)
      assert.is_true(S.exists(young .. "/" .. TMP))
      assert.is_true(S.exists(junk .. "/data"))
      -- data that is a directory is damage, not a leftover
      r = assert(fsck.run(store))
      assert.equal("blob_without_data", r.problems[1].kind)
      assert.equal(1, #r.problems)
    end)
end)

-- The client pushes again what a killed commit left an empty directory
-- for; gc's clean-up runs before each step of that commit.
describe("an upload commit and gc's clean-up", function()
  it("commits whole at every step", function()
    local DATA = string.rep("layer bytes ", 1000)
    local dgst = S.digest_of(DATA)
    local n = 1
    repeat
      local t = helpers.watched_stores(finally)
      local up = assert(t.watched:blob_writer("r"))
      assert(up:write(DATA))
      -- the leftover is old, the upload young: gc's own clock, so that
      -- the data the commit moves in is young to its sweep
      mkdir(S.blob_dir(t.root, dgst))
      age_tree(S.blob_dir(t.root, dgst))
      local k, ran, cleaned = 0, false, 0
      t.driver:watch(function()
        k = k + 1
        if k == n then
          ran = true
          local r = assert(gc.run(t.plain, { settle = 0 }))
          cleaned = r.leftovers.blobs
        end
      end)
      local ok, err = up:commit(dgst, #DATA)
      t.driver:watch(nil)
      assert.is_nil(t.driver.watch_error)
      local label = ("gc before step %d"):format(n)
      assert.is_truthy(ok, label .. ": " .. tostring(err))
      assert.equal(#DATA, t.plain:blob_stat("r", dgst), label)
      assert.equal(#DATA, t.plain:blob_verify(dgst), label)
      -- before the commit's first step the leftover goes: the gc is real
      if n == 1 then assert.equal(1, cleaned) end
      n = n + 1
    until not ran
    assert.is_true(n > 3, "only " .. n - 2 .. " steps")
  end)
end)

-- nginx spools request bodies it cannot stream to <root>/.berth-spool
-- (serve.lua) and removes each file when its request ends; a killed
-- worker leaves its files.
describe("the request body spool", function()
  it("loses the files of dead requests to gc after the spool grace",
    function()
      local store, root = helpers.new_store({ fsync = "none" })
      local spool = root .. "/.berth-spool"
      mkdir(spool)
      helpers.write_file(spool .. "/0000000001", string.rep("x", 1000))
      helpers.write_file(spool .. "/0000000002", string.rep("y", 10))
      helpers.write_file(spool .. "/.serving", "")
      age_tree(spool)
      -- a body arriving now, and a name that is not nginx's
      helpers.write_file(spool .. "/0000000003", "live")
      helpers.write_file(spool .. "/notes", "kept")
      age_tree(spool .. "/notes")
      local r = assert(gc.run(store, { settle = 0, dry_run = true }))
      assert.equal(2, r.leftovers.spool)
      assert.equal(1010, r.leftovers.spool_bytes)
      assert.is_true(S.exists(spool .. "/0000000001"))
      -- the spool grace holds even with a grace of 0
      r = assert(gc.run(store, { settle = 0, grace = 0 }))
      assert.equal(2, r.leftovers.spool)
      assert.equal(1010, r.leftovers.spool_bytes)
      assert.is_false(S.exists(spool .. "/0000000001"))
      assert.is_false(S.exists(spool .. "/0000000002"))
      assert.is_true(S.exists(spool .. "/0000000003"))
      assert.is_true(S.exists(spool .. "/notes"))
      assert.is_true(S.exists(spool .. "/.serving"))
    end)
end)

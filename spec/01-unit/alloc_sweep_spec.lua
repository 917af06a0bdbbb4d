-- The allocation-failure sweep over the public Lua API: each scenario (what
-- the specs do through `require "berth"`, gc, fsck and the driver objects)
-- runs again and again on a fresh store, the nth allocation of libberth
-- failing on the nth run (berth/sys/alloc.h, as spec/01-unit/alloc_sweep.c
-- does for one C scenario), until a run makes fewer than n allocations.
-- A run either completes or stops at a call that returns nil, err,
-- "ENOMEM"; a raise, another code or a crash is a defect. After each run
-- the store, reopened with the allocator healthy, must be consistent:
-- fsck finds no damage (every blob hashes to its digest, every link and
-- reference holds), every tag resolves to its manifest, and what the run
-- was told had succeeded is there (or gone, for a delete).
local helpers = require "helpers"
local berth = require "berth"
local manifest = require "berth.manifest"
local driver = require "berth.driver"
local fsck = require "berth.fsck"
local gc = require "berth.gc"
local S = require "07-gc.support"
local C = require("berth.ffi").C

-- A call that returned nil, err, code: the scenario stops there.
local Stop = {}

-- must(v, err, code) -> v; a failure stops the run with its code.
local function must(v, err, code)
  if v == nil then
    local at = debug.getinfo(2, "l").currentline
    error(setmetatable({ err = tostring(err), code = code,
      at = "line " .. at }, Stop), 0)
  end
  return v
end

-- A result a run that did not stop must have seen.
local function expect(cond, what)
  if not cond then
    error("wrong result: " .. what, 2)
  end
end

local REPO = "sweep/app"

local function manifest_body(cd, csize, layers, subject)
  local list = {}
  for i, l in ipairs(layers) do
    list[i] = ('{"mediaType":"%s","digest":"%s","size":%d}'):format(
      S.OCI_LAYER, l.digest, l.size)
  end
  return ('{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s",'
    .. '"digest":"%s","size":%d},"layers":[%s]%s}'):format(S.OCI_MANIFEST,
    S.OCI_CONFIG, cd, csize, table.concat(list, ","), subject and
    (',"subject":{"mediaType":"%s","digest":"%s","size":%d}'):format(
      S.OCI_MANIFEST, subject.digest, subject.size) or "")
end

local function index_body(images)
  local list = {}
  for i, img in ipairs(images) do
    list[i] = ('{"mediaType":"%s","digest":"%s","size":%d}'):format(
      S.OCI_MANIFEST, img.digest, img.size)
  end
  return ('{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}'):format(
    S.OCI_INDEX, table.concat(list, ","))
end

-- put(store, repo, body, media_type, opts) -> digest; stops on failure.
local function put(store, repo, body, media_type, opts)
  local m = must(manifest.parse(body, media_type))
  local ok, d, err, code = pcall(store.manifest_put, store, repo, m, opts)
  m:close()
  if not ok then error(d, 0) end
  return must(d, err, code)
end

-- Blobs of an image pushed with the allocator healthy.
local function blobs(store, repo, seed)
  local config = '{"architecture":"amd64","os":"linux","seed":"' .. seed
    .. '"}'
  local cd = S.push_blob(store, repo, config)
  local layer = "layer of " .. seed .. "\n" .. helpers.random_bytes(600)
  local ld = S.push_blob(store, repo, layer)
  return cd, #config, { { digest = ld, size = #layer } }
end

-- A tagged image (healthy allocator): { digest, size, body, config,
-- layers }
local function image(store, repo, seed, tag, subject)
  local cd, csize, layers = blobs(store, repo, seed)
  local body = manifest_body(cd, csize, layers, subject)
  local m = assert(manifest.parse(body, S.OCI_MANIFEST))
  local d = assert(store:manifest_put(repo, m, { tag = tag }))
  m:close()
  return { digest = d, size = #body, body = body, config = cd,
    layers = layers }
end

-- Each scenario: setup(store, root) -> ctx with the allocator healthy;
-- run(store, ctx, acked, root) under the failing allocator, recording in
-- acked[what] a check of what it was told had succeeded: fn(store), run on
-- the reopened store (a later call on the same thing replaces it).
local SCENARIOS = {}
local function scenario(name, setup, run)
  SCENARIOS[#SCENARIOS + 1] = { name = name, setup = setup, run = run }
end

scenario("blob put, get, stat, list", function()
  return { data = helpers.random_bytes(3000) }
end, function(store, ctx, acked)
  local d = must(store:blob_put(REPO, ctx.data))
  acked.blob = function(s)
    assert.equal(ctx.data, s:blob_get(REPO, d))
  end
  expect(must(store:blob_stat(REPO, d)) == #ctx.data, "blob_stat")
  expect(must(store:blob_stat(nil, d)) == #ctx.data, "blob_stat(nil)")
  expect(must(store:blob_get(REPO, d)) == ctx.data, "blob_get")
  local r = must(store:blob_reader(REPO, d, 10))
  local part = r:read(100)
  r:close()
  expect(must(part) == ctx.data:sub(11, 110), "reader")
  local list = must(store:blob_list(REPO))
  expect(#list == 1 and list[1] == d, "blob_list")
  list = must(store:blob_list(nil))
  expect(#list == 1, "blob_list(nil)")
  local path = must(store:blob_path(REPO, d))
  expect(path:find(S.hex(d), 1, true) ~= nil, "blob_path")
  must(store:blob_mount("sweep/other", REPO, d))
  acked.mount = function(s)
    assert.equal(#ctx.data, s:blob_stat("sweep/other", d))
  end
  must(store:blob_delete("sweep/other", d))
  acked.mount = function(s)
    assert.is_nil(s:blob_stat("sweep/other", d))
  end
end)

scenario("upload: create, write, flush, resume through open, commit",
function()
  local data = helpers.random_bytes(9000)
  return { data = data, digest = S.digest_of(data) }
end, function(store, ctx, acked)
  local up = must(store:blob_writer(REPO))
  local id = up.id
  must(up:write(ctx.data:sub(1, 4000)))
  must(up:flush())
  must(up:close())
  local st = must(store:upload_open(REPO, id, "r"))
  local size = st:size()
  st:close()
  expect(size == 4000, "upload size after flush")
  up = must(store:upload_open(REPO, id))
  must(up:write(ctx.data:sub(4001)))
  must(up:commit(ctx.digest, #ctx.data))
  acked.upload = function(s)
    assert.equal(ctx.data, s:blob_get(REPO, ctx.digest))
  end
  local up2 = must(store:blob_writer(REPO))
  must(up2:write("abandoned"))
  must(up2:cancel())
end)

scenario("manifest put (image and index, by tag and digest) and get",
function(store)
  local ctx = {}
  ctx.c1, ctx.c1size, ctx.l1 = blobs(store, REPO, "one")
  ctx.c2, ctx.c2size, ctx.l2 = blobs(store, REPO, "two")
  ctx.body1 = manifest_body(ctx.c1, ctx.c1size, ctx.l1)
  ctx.body2 = manifest_body(ctx.c2, ctx.c2size, ctx.l2)
  return ctx
end, function(store, ctx, acked)
  local d1 = put(store, REPO, ctx.body1, S.OCI_MANIFEST, { tag = "v1" })
  acked.image = function(s)
    assert.equal(d1, s:tag_get(REPO, "v1"))
  end
  local m2 = must(manifest.parse(ctx.body2))
  local d2 = m2:digest()
  m2:close()
  expect(put(store, REPO, ctx.body2, S.OCI_MANIFEST, { digest = d2 }) == d2,
    "put by digest")
  acked.by_digest = function(s)
    assert.equal(ctx.body2, (s:manifest_get(REPO, d2)))
  end
  local ibody = index_body({ { digest = d1, size = #ctx.body1 },
    { digest = d2, size = #ctx.body2 } })
  local di = put(store, REPO, ibody, S.OCI_INDEX, { tag = "multi" })
  acked.index = function(s)
    assert.equal(ibody, (s:manifest_get(REPO, "multi")))
  end
  local body, info, code = store:manifest_get(REPO, "v1")
  must(body, info, code)
  expect(body == ctx.body1 and info.digest == d1, "manifest_get by tag")
  body, info, code = store:manifest_get(REPO, di)
  must(body, info, code)
  expect(body == ibody and info.media_type == S.OCI_INDEX,
    "manifest_get by digest")
  info = must(store:manifest_head(REPO, "multi"))
  expect(info.digest == di, "manifest_head")
  local list = must(store:manifest_list(REPO))
  expect(#list == 3, "manifest_list")
end)

scenario("tags: set, list, lookup, get, delete", function(store)
  return { img = image(store, REPO, "tags", "v1"),
    other = image(store, REPO, "other", "o1") }
end, function(store, ctx, acked)
  local d, o = ctx.img.digest, ctx.other.digest
  must(store:tag_set(REPO, "v2", d))
  acked.v2 = function(s) assert.equal(d, s:tag_get(REPO, "v2")) end
  must(store:tag_set_if(REPO, "v3", o, false))
  acked.v3 = function(s) assert.equal(o, s:tag_get(REPO, "v3")) end
  must(store:tag_set_if(REPO, "v3", d, o))
  acked.v3 = function(s) assert.equal(d, s:tag_get(REPO, "v3")) end
  expect(must(store:tag_get(REPO, "v1")) == d, "tag_get")
  local tags = must(store:tag_list(REPO))
  expect(#tags == 4, "tag_list")
  tags = must(store:tag_list(REPO, { n = 2, last = "o1" }))
  expect(#tags == 2 and tags[1] == "v1", "tag_list page")
  tags = must(store:tag_lookup(REPO, d))
  expect(#tags == 3, "tag_lookup")
  must(store:tag_delete(REPO, "v2"))
  acked.v2 = function(s) assert.is_nil(s:tag_get(REPO, "v2")) end
  must(store:tag_delete_if(REPO, "o1", o))
  acked.o1 = function(s) assert.is_nil(s:tag_get(REPO, "o1")) end
  tags = must(store:tag_list(REPO))
  expect(#tags == 2, "tag_list after delete")
  must(store:tag_reindex(REPO))
end)

scenario("referrers", function(store)
  local subject = image(store, REPO, "subject", "v1")
  local ref = image(store, REPO, "sbom", nil, subject)
  return { subject = subject, ref = ref }
end, function(store, ctx)
  local json = must(store:referrers(REPO, ctx.subject.digest))
  expect(json:find(ctx.ref.digest, 1, true) ~= nil, "referrers")
  json = must(store:referrers(REPO, ctx.subject.digest, "application/x"))
  expect(json:find(ctx.ref.digest, 1, true) == nil, "referrers filtered")
  must(store:referrers_rebuild(REPO))
  json = must(store:referrers(REPO, ctx.subject.digest))
  expect(json:find(ctx.ref.digest, 1, true) ~= nil, "referrers rebuilt")
end)

scenario("catalog", function(store)
  image(store, "a/one", "a", "v1")
  image(store, "b/two", "b", "v1")
  S.push_blob(store, "c/blobs-only", "x")
  return {}
end, function(store)
  local list = must(store:catalog())
  expect(#list == 2 and list[1] == "a/one", "catalog")
  list = must(store:catalog({ n = 1, last = "a/one" }))
  expect(#list == 1 and list[1] == "b/two", "catalog page")
  list = must(store:repositories())
  expect(#list == 3, "repositories")
end)

scenario("manifest delete", function(store)
  local a = image(store, REPO, "a", "a")
  local b = image(store, REPO, "b", "b")
  assert(store:tag_set(REPO, "b2", b.digest))
  return { a = a, b = b }
end, function(store, ctx, acked)
  must(store:manifest_delete(REPO, ctx.a.digest))
  acked.deleted_a = function(s)
    assert.is_nil(s:manifest_get(REPO, ctx.a.digest))
    assert.is_nil(s:tag_get(REPO, "a"))
  end
  must(store:manifest_delete(REPO, ctx.b.digest, { "b", "b2" }))
  acked.deleted_b = function(s)
    assert.is_nil(s:manifest_get(REPO, ctx.b.digest))
    assert.same({}, s:tag_list(REPO))
  end
end)

-- gc absorbs a failure (ENOMEM among them) of a read that decides whether
-- something goes by keeping it; the report must then say so in a warning,
-- so that an operator knows gc did less than it was asked (false: such
-- runs are only counted and printed).
local GC_MUST_SAY_WHY = true
local gc_silent = {} -- scenario name -> runs

-- A store with garbage for gc: a tagged image and an index over it, an
-- untagged image, an orphan blob, an upload session.
local function gc_setup(store)
  local kept = image(store, REPO, "kept", "v1")
  local untagged = image(store, REPO, "untagged")
  local ibody = index_body({ kept })
  local m = assert(manifest.parse(ibody, S.OCI_INDEX))
  assert(store:manifest_put(REPO, m, { tag = "multi" }))
  m:close()
  local orphan = S.push_blob(store, REPO, "an orphan blob")
  local up = assert(store:blob_writer(REPO))
  assert(up:write("half an upload"))
  assert(up:close())
  return { kept = kept, untagged = untagged, orphan = orphan,
    all = assert(store:blob_list(nil)) }
end

for _, mode in ipairs({
  { name = "gc", opts = {} },
  { name = "gc deleting untagged", opts = { delete_untagged = true } },
  { name = "gc deleting untagged, dry run",
    opts = { delete_untagged = true, dry_run = true } },
}) do
  scenario(mode.name, gc_setup, function(store, ctx, acked)
    -- (a minute from now: what setup made is past the grace)
    local opts = { grace = 0, settle = 0, upload_grace = 0,
      now = function() return os.time() + 60 end }
    for k, v in pairs(mode.opts) do opts[k] = v end
    acked.gc = function(s)
      local list = s:blob_list(nil)
      if mode.opts.dry_run then -- never removes anything
        assert.same(ctx.all, list)
      end
      -- the tagged image is whole (fsck checks its references)
      assert.equal(ctx.kept.body, (s:manifest_get(REPO, "v1")))
    end
    local report = must(gc.run(store, opts))
    if not mode.opts.dry_run then
      -- What it was asked to remove is gone, or the report says why not.
      acked.gc_removed = function(s)
        local kept = {}
        if s:blob_stat(nil, ctx.orphan) then kept[#kept + 1] = "orphan" end
        if #assert(s:uploads(REPO)) > 0 then kept[#kept + 1] = "upload" end
        if mode.opts.delete_untagged
            and s:manifest_head(REPO, ctx.untagged.digest) then
          kept[#kept + 1] = "untagged manifest"
        end
        if #kept > 0 and #report.warnings == 0 then
          local msg = "gc kept its " .. table.concat(kept, ", ")
            .. " without a warning"
          if GC_MUST_SAY_WHY then
            error(msg, 0)
          end
          gc_silent[mode.name] = (gc_silent[mode.name] or 0) + 1
        end
      end
    end
  end)
end

scenario("fsck, and fsck --repair", function(store)
  image(store, REPO, "fsck", "v1")
  return {}
end, function(store)
  local report = must(fsck.run(store))
  expect(report.ok and report.repositories == 1, "fsck")
  report = must(fsck.run(store, { repair = true }))
  expect(report.ok, "fsck --repair")
end)

-- the driver's own calls, then a store over it
local function drive(d, store_opts, acked, root)
  must(d:put("/a/b", "bytes"))
  expect(must(d:get("/a/b")) == "bytes", "driver get")
  local st = must(d:stat("/a/b"))
  expect(st.size == 5, "driver stat")
  must(d:put_if("/a/b", "other", st.version))
  expect(#must(d:list("/a")) == 1, "driver list")
  local page = must(d:list_page("/a"))
  expect(#page == 1, "driver list_page")
  -- (mem has no list versions, fs none for a directory changed within
  -- its clock's granularity)
  local version, err, code = d:list_version("/a")
  if code ~= "UNSUPPORTED" then
    must(version, err, code)
  end
  must(d:move("/a/b", "/a/c"))
  local lease = must(d:lock("/locks/x"))
  lease:release()
  local w = must(d:writer("/a/w"))
  must(w:write("written"))
  must(w:commit())
  local r = must(d:reader("/a/w", 2))
  local s = r:read(100)
  r:close()
  expect(must(s) == "itten", "driver reader")
  must(d:remove("/a/c"))
  store_opts.driver = d
  local store = must(berth.open(store_opts))
  local data = "through a driver object"
  local dg = must(store:blob_put(REPO, data))
  if root then
    acked.driver = function(s2)
      assert.equal(data, s2:blob_get(REPO, dg))
    end
  end
  expect(must(store:blob_get(REPO, dg)) == data, "store over the driver")
  store:close()
end

scenario("driver objects: fs and mem", function()
  return {}
end, function(_, _, acked, root)
  drive(must(driver.mem()), { fsync = "none" }, acked)
  drive(must(driver.fs(root, { fsync = "none" })), { fsync = "none" },
    acked, root)
end)

scenario("open and close a store", function()
  return {}
end, function(_, _, _, root)
  local store = must(berth.open{ root = root, fsync = "none" })
  must(store:new_epoch())
  store:close()
end)

-- The checks of a store after a run, with the allocator healthy.
local function check_store(root, acked)
  local store = assert(berth.open{ root = root, fsync = "none" })
  local report = assert(fsck.run(store))
  assert.same({}, report.problems)
  assert.same({}, report.errors)
  for _, repo in ipairs(assert(store:repositories())) do
    local tags, err, code = store:tag_list(repo)
    if not tags then
      assert.equal("NAME_UNKNOWN", code, err) -- no tags directory
    end
    for _, tag in ipairs(tags or {}) do
      local d = assert(store:tag_get(repo, tag))
      local _, info = assert(store:manifest_get(repo, tag))
      assert.equal(d, info.digest)
    end
  end
  for _, fn in pairs(acked) do
    fn(store)
  end
  store:close()
end

-- A directory for the sweep's stores: in memory when the system has a
-- tmpfs there (thousands of stores; as alloc_sweep.c does), removed when
-- the suite ends.
local function sweep_base()
  local p = io.popen("mktemp -d /dev/shm/berth-sweep-XXXXXXXXXX 2>/dev/null")
  local path = p:read("*l")
  p:close()
  if not (path and path:match("^/dev/shm/berth%-sweep%-")) then
    return helpers.tmpdir()
  end
  helpers.at_exit(function() os.execute("rm -rf '" .. path .. "'") end)
  return path
end

-- The same defect at many allocations is one line: its first allocation
-- and how many runs had it.
local function add_defect(defects, n, used, msg)
  local key = msg:match("^[^\n]*"):gsub("%x%x%x%x%x%x%x%x+", "#")
    :gsub("%d+", "#")
  local d = defects[key]
  if d then
    d.runs = d.runs + 1
    return
  end
  d = { first = n, used = used, msg = msg, runs = 1 }
  defects[key] = d
  defects[#defects + 1] = d
end

local function defect_lines(defects)
  local lines = {}
  for i, d in ipairs(defects) do
    lines[i] = ("allocation %d of %d (and %d more runs): %s"):format(d.first,
      d.used, d.runs - 1, d.msg)
  end
  return lines
end

describe("each allocation failure of libberth via the Lua API", function()
  local base = sweep_base()
  local total = 0

  local function sweep(sc)
    local defects, runs, completed = {}, 0, 0
    local dir = base .. "/" .. sc.name:gsub("%W", "_")
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    local n = 0
    while true do
      n = n + 1
      local root = dir .. "/" .. n
      local store = assert(berth.open{ root = root, fsync = "none" })
      local ctx = sc.setup(store, root)
      local acked = {}
      C.berth_alloc_fail_at(n)
      local ok, e = pcall(sc.run, store, ctx, acked, root)
      local used = tonumber(C.berth_alloc_count())
      C.berth_alloc_fail_at(0)
      store:close()
      collectgarbage()
      runs = runs + 1
      if ok then
        completed = completed + 1
      elseif getmetatable(e) == Stop then
        if e.code ~= "ENOMEM" then
          add_defect(defects, n, used, ("%s: answered %s (%s), not ENOMEM")
            :format(e.at, tostring(e.code), e.err))
        elseif used < n then
          add_defect(defects, n, used, "ENOMEM without a failure: " .. e.err)
        end
      else
        add_defect(defects, n, used, "raised " .. tostring(e))
      end
      local cok, cerr = pcall(check_store, root, acked)
      if not cok then
        add_defect(defects, n, used, "store left inconsistent: "
          .. tostring(cerr))
      end
      os.execute("rm -rf '" .. root .. "'")
      if used < n then
        break -- every allocation of the scenario has failed once
      end
    end
    total = total + runs
    print(("alloc sweep: %-55s %4d runs (%d completed)"):format(sc.name,
      runs, completed))
    if gc_silent[sc.name] then
      print(("alloc sweep:   %d runs of gc kept garbage without a warning"
        .. " (GC_MUST_SAY_WHY)"):format(gc_silent[sc.name]))
    end
    return defect_lines(defects), runs
  end

  for _, sc in ipairs(SCENARIOS) do
    it(sc.name, function()
      local defects, runs = sweep(sc)
      assert.is_true(runs > 1, "no allocation failed")
      assert.same({}, defects)
    end)
  end

  it("leaves the allocator healthy", function()
    C.berth_alloc_fail_at(0)
    -- (in the sweep's directory: no helper's mktemp, which LeakSanitizer
    -- stops when preloaded into it)
    local store = assert(berth.open{ root = base .. "/healthy",
      fsync = "none" })
    assert(store:blob_put(REPO, "healthy"))
    store:close()
    print(("alloc sweep: %d runs in all"):format(total))
  end)
end)

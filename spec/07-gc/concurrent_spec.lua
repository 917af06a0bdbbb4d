-- THE acceptance spec for online gc: pushes run in separate processes
-- while gc runs over and over with a short grace period. Afterwards every
-- pushed image is whole and every planted old orphan is gone.
local helpers = require "helpers"
local cjson = require "cjson"
local S = require "07-gc.support"
local gc = require "berth.gc"
local fsck = require "berth.fsck"

local PUSHERS = 4
local IMAGES = 10
local GRACE = 2

-- A pusher: IMAGES images into its own repository and into a shared one,
-- each blob uploaded in chunks across two sessions (as two requests), the
-- first layer of each image mounted from its previous image, and some
-- layers whose content is one of the planted orphans (an upload of
-- content already stored: only the link is written), and now and then a
-- first blob committed only after the grace period (a slow client). A push
-- that takes longer than the grace from its first link to its manifest
-- may lose its blobs to gc (they are garbage by then), as on a loaded
-- machine; one that fails is retried from the start, as a client does,
-- and recorded with how long it had taken. Writes one JSON line per image
-- (and per failed attempt) to its result file.
local CHILD = [=[
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
local cjson = require "cjson"
local ffi = require "ffi"
local berth = require "berth"
local digest = require "berth.digest"
local manifest = require "berth.manifest"
local root, idx, n, result, reuse_file, slow = arg[1], tonumber(arg[2]),
  tonumber(arg[3]), arg[4], arg[5], tonumber(arg[6])
math.randomseed(idx * 7919 + os.time())
local store = assert(berth.open{ root = root, fsync = "none" })
local reuse = {}
for line in io.lines(reuse_file) do reuse[#reuse + 1] = line end

ffi.cdef[[
typedef struct { long sec; long nsec; } pusher_timespec;
int clock_gettime(int clock, pusher_timespec *ts);
]]
local ts = ffi.new("pusher_timespec")
local function now() -- the clock file times come from (CLOCK_REALTIME)
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.sec) + tonumber(ts.nsec) / 1e9
end
local first_link -- when the push being made wrote its first link
local touched -- digest -> true: every blob the push being made linked

local function nap()
  if math.random() < 0.3 then
    os.execute(("sleep 0.%02d"):format(math.random(1, 20)))
  end
end

local function bytes(k, seed)
  local t = {}
  for i = 1, k do t[i] = string.char((i * 31 + #seed * 7 + idx) % 256) end
  return seed .. table.concat(t)
end

local function upload(repo, data, slow_ok)
  local d = digest.compute(data)
  local up = assert(store:blob_writer(repo))
  local half = math.floor(#data / 2)
  for i = 1, half, 8192 do
    assert(up:write(data:sub(i, math.min(i + 8191, half))))
  end
  local id = up.id
  assert(up:close())
  nap()
  up = assert(store:upload_open(repo, id))
  for i = half + 1, #data, 8192 do
    assert(up:write(data:sub(i, i + 8191)))
  end
  if slow_ok and slow and math.random() < 0.15 then
    -- a slow client: the final PUT of its first blob comes after the
    -- grace period, so the data is old when it is committed and only its
    -- fresh link protects it until the manifest arrives
    assert(up:close())
    os.execute("sleep " .. slow)
    up = assert(store:upload_open(repo, id))
  end
  first_link = first_link or now()
  touched[d] = true
  local ok, err = up:commit(d, #data)
  if not ok then return nil, err end
  return d, #data
end

local prev = {}
local function push(repo, k, attempt)
  local seed = ("pusher %d image %d attempt %d %s"):format(idx, k, attempt,
    repo)
  local blobs = {}
  first_link, touched = nil, {}
  local config = cjson.encode({ os = "linux", seed = seed })
  local cd, csize = upload(repo, config, true)
  if not cd then return nil, csize end
  blobs[cd] = csize
  local layers = {}
  if prev[repo] then
    first_link = first_link or now()
    local ok, err = store:blob_mount(repo, nil, prev[repo].digest)
    if not ok then return nil, err end
    layers[1] = prev[repo]
    blobs[prev[repo].digest] = prev[repo].size
  end
  for j = 1, 3 do
    local data
    if j == 3 and #reuse > 0 and math.random() < 0.5 then
      data = reuse[math.random(#reuse)] -- an old orphan's content
    else
      data = bytes(20000 + math.random(1, 30000), seed .. " layer " .. j)
    end
    local d, size = upload(repo, data)
    if not d then return nil, size end
    blobs[d] = size
    layers[#layers + 1] = { digest = d, size = size }
    nap()
  end
  local descs = {}
  for i, l in ipairs(layers) do
    descs[i] = { mediaType = "application/vnd.oci.image.layer.v1.tar",
      digest = l.digest, size = l.size }
  end
  local body = cjson.encode({ schemaVersion = 2,
    mediaType = "application/vnd.oci.image.manifest.v1+json",
    config = { mediaType = "application/vnd.oci.image.config.v1+json",
      digest = cd, size = csize },
    layers = descs })
  local m = assert(manifest.parse(body))
  local tag = ("p%d-i%d"):format(idx, k)
  local md, err = store:manifest_put(repo, m, { tag = tag })
  m:close()
  if not md then return nil, err end
  prev[repo] = layers[#layers]
  return { repo = repo, tag = tag, digest = md, blobs = blobs }
end

local out = assert(io.open(result, "w"))
local retries = 0
for k = 1, n do
  for _, repo in ipairs({ "push/p" .. idx, "shared" }) do
    local rec, err
    for attempt = 1, 20 do
      rec, err = push(repo, k, attempt)
      if rec then break end
      io.stderr:write("retry ", repo, " ", k, ": ", tostring(err), "\n")
      out:write(cjson.encode({ failed = tostring(err),
        took = first_link and now() - first_link or 0,
        blobs = touched }), "\n")
      retries = retries + 1
      prev[repo] = nil
    end
    if not rec then
      io.stderr:write("push failed: ", tostring(err), "\n")
      os.exit(3)
    end
    out:write(cjson.encode(rec), "\n")
    out:flush()
  end
end
out:write(cjson.encode({ retries = retries }), "\n")
out:close()
store:close()
]=]

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

describe("gc while pushes run #slow", function()
  it("keeps every pushed image whole and removes the planted orphans",
    function()
      local store, root = helpers.new_store({ fsync = "none" })
      local work = helpers.tmpdir()

      -- Planted an hour ago: orphans (data only, or with an old layer
      -- link in a repository of their own), some of whose content the
      -- pushers upload again.
      local planted, reused = {}, {}
      local reuse_lines = {}
      for i = 1, 24 do
        -- text, so the pushers can read the reused ones as lines
        local data = ("planted orphan %d "):format(i)
          .. helpers.random_bytes(500 + i * 50):gsub(".", function(c)
            return ("%02x"):format(c:byte())
          end)
        local d
        if i % 3 == 0 then
          d = assert(store:blob_put("old/junk", data))
          S.age_layer_link(root, "old/junk", d, 3600)
        else
          d = assert(store:blob_put(nil, data))
        end
        S.age_blob(root, d, 3600)
        if i <= 6 then
          reused[d] = true
          reuse_lines[#reuse_lines + 1] = data
        else
          planted[d] = true
        end
      end
      local reuse_file = work .. "/reuse"
      helpers.write_file(reuse_file, table.concat(reuse_lines, "\n")
        .. (#reuse_lines > 0 and "\n" or ""))

      local script = work .. "/pusher.lua"
      helpers.write_file(script, CHILD)
      for i = 1, PUSHERS do
        local cmd = ("(luajit %s %s %d %d %s %s %s > %s 2>&1; echo $? > %s)"
          .. " &"):format(q(script), q(root), i, IMAGES,
            q(work .. "/result" .. i), q(reuse_file), GRACE + 0.5,
            q(work .. "/log" .. i), q(work .. "/done" .. i))
        assert(os.execute(cmd))
      end
      -- A second collector, through the command line, at the same time.
      local lib = os.getenv("BERTH_LIB") or "build/libberth.so"
      assert(os.execute(("(while [ ! -e %s ]; do BERTH_LIB=%s bin/berth gc"
        .. " --root %s --grace %ds >/dev/null 2>>%s; echo $? >> %s; done;"
        .. " touch %s) &"):format(q(work .. "/stop"), q(lib), q(root), GRACE,
        q(work .. "/cli.err"), q(work .. "/cli.rc"), q(work .. "/cli.done"))))

      local function all_done()
        for i = 1, PUSHERS do
          if not S.exists(work .. "/done" .. i) then return false end
        end
        return true
      end
      local runs, removed, deadline = 0, {}, os.time() + 300
      repeat
        local r = assert(gc.run(store, { grace = GRACE, settle = 0.2 }))
        runs = runs + 1
        for _, b in ipairs(r.removed.blobs) do removed[b.digest] = true end
        assert.same({}, r.warnings)
      until all_done() or os.time() > deadline
      helpers.write_file(work .. "/stop", "")
      assert.is_true(all_done(), "pushers did not finish")
      assert.is_true(runs >= 2, "gc ran " .. runs .. " times")
      -- let the command-line collector finish its last run
      for _ = 1, 600 do
        if S.exists(work .. "/cli.done") then break end
        os.execute("sleep 0.1")
      end
      assert.is_true(S.exists(work .. "/cli.done"))

      -- Every pusher finished cleanly.
      local images, retries, failed = {}, 0, {}
      for i = 1, PUSHERS do
        local rc = helpers.read_file(work .. "/done" .. i)
        assert.equal("0", rc:match("%d+"), helpers.read_file(work .. "/log"
          .. i))
        for line in io.lines(work .. "/result" .. i) do
          local rec = cjson.decode(line)
          if rec.retries then
            retries = retries + rec.retries
          elseif rec.failed then
            failed[#failed + 1] = rec
          else
            images[#images + 1] = rec
          end
        end
      end
      assert.equal(PUSHERS * IMAGES * 2, #images)
      for rc in (helpers.read_file(work .. "/cli.rc") or ""):gmatch("%d+") do
        assert.equal("0", rc, helpers.read_file(work .. "/cli.err"))
      end

      -- One more collection once the pushes are older than the grace:
      -- nothing of theirs goes.
      os.execute("sleep " .. GRACE + 1)
      local last = assert(gc.run(store, { grace = GRACE, settle = 0.2 }))
      for _, b in ipairs(last.removed.blobs) do removed[b.digest] = true end

      -- Every image is whole: the tag resolves, the manifest reads, every
      -- blob it references is linked and hashes to its digest.
      local referenced = {}
      for _, img in ipairs(images) do
        assert.equal(img.digest, store:tag_get(img.repo, img.tag))
        local body = assert(store:manifest_get(img.repo, img.tag))
        local doc = cjson.decode(body)
        assert.equal(img.digest, helpers.sha256sum(body))
        local refs = { doc.config }
        for _, l in ipairs(doc.layers) do refs[#refs + 1] = l end
        for _, ref in ipairs(refs) do
          assert.equal(ref.size, store:blob_stat(img.repo, ref.digest),
            img.repo .. ":" .. img.tag .. " " .. ref.digest)
          assert.equal(ref.size, store:blob_verify(ref.digest))
          if not reused[ref.digest] then
            assert.is_nil(removed[ref.digest], ref.digest)
          end
          referenced[ref.digest] = true
        end
      end
      -- Every planted orphan that no push took up again is gone; the ones
      -- a push took up are there exactly when an image uses them.
      for d in pairs(planted) do
        assert.is_false(S.exists(S.blob_file(root, d)), d)
        assert.is_true(removed[d], d)
      end
      for d in pairs(reused) do
        assert.equal(referenced[d] or false, S.exists(S.blob_file(root, d)),
          d)
      end
      -- A push failed only when it was slower than the grace (the machine
      -- was loaded): its blobs were garbage by then, they went, and the
      -- push started over. A faster push that failed would be a race:
      -- gc removes a link older than its start less the grace, and the
      -- failure came after that start. (0.05 s: file times lag the clock
      -- by a timer tick.) Only planted blobs and those of failed
      -- attempts were removed.
      assert.equal(#failed, retries)
      local lost = {}
      for _, f in ipairs(failed) do
        assert.matches("blob unknown", f.failed, 1, true)
        assert.is_true(f.took > GRACE - 0.05, ("a push failed %.3f s after"
          .. " its first link, within the grace: %s"):format(f.took,
            f.failed))
        for d in pairs(f.blobs) do lost[d] = true end
      end
      for d in pairs(removed) do
        assert.is_true(planted[d] or reused[d] or lost[d] or false, d)
      end
      -- and the store as a whole is sound
      local report = assert(fsck.run(store))
      local msgs = {}
      for _, p in ipairs(report.problems) do msgs[#msgs + 1] = p.message end
      assert.same({}, msgs)
      print(("\n  %d gc runs, %d blobs removed, %d push retries"):format(
        runs + 1, (function()
          local n = 0
          for _ in pairs(removed) do n = n + 1 end
          return n
        end)(), retries))
    end)
end)

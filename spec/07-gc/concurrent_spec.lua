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

describe("gc while pushes run #slow", function()
  it("keeps every pushed image whole and removes the planted orphans",
    function()
      local store, root = helpers.new_store({ fsync = "none" })
      local work = helpers.tmpdir()

      local planted, reused, reuse_file = S.plant_orphans(store, root, work,
        24, 6)
      S.spawn_pushers(root, work, PUSHERS, IMAGES,
        { reuse = reuse_file, slow = GRACE + 0.5 })
      -- A second collector, through the command line, at the same time.
      local lib = os.getenv("BERTH_LIB") or "build/libberth.so"
      -- (it stops too when its directory is gone: a spec that failed)
      assert(os.execute(("(while [ -d %s ] && [ ! -e %s ]; do BERTH_LIB=%s"
        .. " bin/berth gc --root %s --grace %ds >/dev/null 2>>%s;"
        .. " echo $? >> %s; done; touch %s) &"):format(S.q(work),
        S.q(work .. "/stop"), S.q(lib), S.q(root), GRACE,
        S.q(work .. "/cli.err"), S.q(work .. "/cli.rc"),
        S.q(work .. "/cli.done"))))

      local function all_done() return S.pushers_done(work, PUSHERS) end
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
      for i = 1, PUSHERS do
        local rc = helpers.read_file(work .. "/done" .. i)
        assert.equal("0", rc:match("%d+"), helpers.read_file(work .. "/log"
          .. i))
      end
      local images, failed, retries = S.pusher_records(work, PUSHERS)
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

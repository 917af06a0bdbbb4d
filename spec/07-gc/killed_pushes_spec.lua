-- `berth gc --grace 0` killed with SIGKILL at random moments while
-- pushers push (issue 11). After each kill, with no gc since, every image
-- a pusher had acknowledged resolves, and every blob it references answers
-- in its repository and verifies. The kill moment is random; what is
-- asserted holds for any moment.
local helpers = require "helpers"
local S = require "07-gc.support"

local PUSHERS = 3
local ROUNDS = 12
-- Orphans and repositories, to make the sweep longer (it looks for links
-- to each orphan in each repository): a manifest that lands after its
-- repository was marked and before the sweep takes its blobs' links is
-- what a gc killed later must not lose.
local ORPHANS = 800
local REPOS = 20
-- Kill moments: up to a little more than a run with its 1 s settle.
local KILL_WITHIN = 1.5

-- Whether process pid has ended (a zombie has: it writes nothing more).
local function ended(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return true end
  local stat = f:read("*a")
  f:close()
  return stat:match("^%d+ %b() (%a)") == "Z"
end

local function sleep(seconds)
  os.execute(("sleep %.3f"):format(seconds))
end

describe("berth gc killed with SIGKILL while pushes run", function()
  it("loses no blob of an acknowledged image", function()
    local seed = math.floor(S.now() * 1000) % 1e9
    math.randomseed(seed)
    local store, root = helpers.new_store({ fsync = "none" })
    local work = helpers.tmpdir()
    local stop = work .. "/stop"
    finally(function() -- on a failure too: they write into work
      helpers.write_file(stop, "")
      for _ = 1, 600 do
        if S.pushers_done(work, PUSHERS) then break end
        sleep(0.1)
      end
    end)
    for i = 1, REPOS do
      assert(store:blob_put("pad/r" .. i, "an orphan in every pad/ repo"))
    end
    local _, _, reuse = S.plant_orphans(store, root, work, ORPHANS, 4)
    S.spawn_pushers(root, work, PUSHERS, 10000, { reuse = reuse,
      stop = stop })

    local lib = os.getenv("BERTH_LIB") or "build/libberth.so"
    local pidfile = work .. "/gc.pid"
    local function start_gc()
      os.remove(pidfile)
      assert(os.execute(("(exec env BERTH_LIB=%s bin/berth gc --root %s"
        .. " --grace 0 >/dev/null 2>>%s) & echo $! > %s"):format(S.q(lib),
        S.q(root), S.q(work .. "/gc.err"), S.q(pidfile))))
      return assert(tonumber(helpers.read_file(pidfile)))
    end
    local function wait_ended(pid)
      while not ended(pid) do sleep(0.01) end
    end

    local verified = {} -- digest -> true: hashed once already
    local function check(label)
      local images = S.pusher_records(work, PUSHERS)
      for _, img in ipairs(images) do
        local name = img.repo .. ":" .. img.tag
        assert.equal(img.digest, store:tag_get(img.repo, img.tag),
          label .. ": " .. name)
        for d, size in pairs(img.blobs) do
          assert.equal(size, store:blob_stat(img.repo, d),
            ("%s: %s %s"):format(label, name, d))
          if not verified[d] then
            assert.equal(size, store:blob_verify(d), label)
            verified[d] = true
          end
        end
      end
      return #images
    end

    while #S.pusher_records(work, PUSHERS) < 2 * PUSHERS do sleep(0.05) end
    for round = 1, ROUNDS do
      local pid = start_gc()
      local at = math.random() * KILL_WITHIN
      sleep(at)
      os.execute("kill -KILL " .. pid .. " 2>/dev/null")
      wait_ended(pid)
      check(("round %d, killed after %.2f s (seed %d)"):format(round, at,
        seed))
    end
    helpers.write_file(stop, "")
    while not S.pushers_done(work, PUSHERS) do sleep(0.05) end
    for i = 1, PUSHERS do
      assert.equal("0", helpers.read_file(work .. "/done" .. i):match("%d+"),
        helpers.read_file(work .. "/log" .. i))
    end
    local n = check("once the pushes ended")
    wait_ended(start_gc())
    check("after a last whole gc")
    print(("\n  %d images, %d kills"):format(n, ROUNDS))
  end)
end)

-- The request body spool (<root>/.berth-spool, serve.lua): nginx writes a
-- body it cannot stream there and removes the file when the request ends;
-- a kill -9 leaves it. `berth serve` removes what a dead run left, and
-- leaves the spool of a server still running on the store alone.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"

local q = tools.q

-- nginx's own files in the spool (its temp names are digits).
local function spooled(root)
  local list = {}
  for name in tools.stdout("ls -A " .. q(root .. "/.berth-spool")
      .. " 2>/dev/null"):gmatch("[^\n]+") do
    if name:match("^%d+$") then list[#list + 1] = name end
  end
  return list
end

-- Background commands run without the sanitizer runtime the ASan pass
-- preloads (curl deadlocks under it: 04-nginx/server.lua).
local function spawn(cmd)
  os.execute("unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS; " .. cmd)
end

-- Wait for an event (not for time): f() true, within about 30 s.
local function until_true(f, what)
  for _ = 1, 300 do
    if f() then return end
    tools.sleep(0.1)
  end
  error("never: " .. what)
end

describe("the request body spool", function()
  local root, srv

  before_each(function()
    root = helpers.tmpdir()
  end)

  after_each(function()
    if srv then srv:stop() end
    srv = nil
    helpers.rmrf(root)
  end)

  it("a new store's first server holds the spool's lock", function()
    srv = server.start{ root = root .. "/store" }
    local lock = q(root .. "/store/.berth-spool/.serving")
    -- flock(1): exit 1 when the exclusive lock is taken
    assert.is_true(tools.exists(root .. "/store/.berth-spool/.serving"))
    assert.equal("1", tools.stdout("flock -n -x " .. lock .. " true; echo $?")
      :match("%d+"))
  end)

  it("a body cut by kill -9 is spooled; the next start removes it",
    function()
      srv = server.start{ root = root }
      local r = tools.curl("POST", srv.url .. "/v2/spool/test/blobs/uploads/")
      assert.equal(202, r.status)
      local url = tools.location(srv.url, r)
      -- a chunked body (spooled), 2 MiB and then nothing more for as long
      -- as the client lives
      local work = helpers.tmpdir()
      tools.random_file(work .. "/part", 2 * 1024 * 1024)
      local pidfile = work .. "/pid"
      spawn(("setsid sh -c 'echo $$ > %s; exec sh -c \"cat %s; sleep 600\""
        .. " | curl -s -X PATCH -T - -H \"Transfer-Encoding: chunked\""
        .. " -H \"Content-Type: application/octet-stream\""
        .. " %s' > /dev/null 2>&1 &"):format(q(pidfile), q(work .. "/part"),
        q(url)))
      finally(function()
        local client = tonumber(helpers.read_file(pidfile) or "")
        if client then
          os.execute("kill -KILL -" .. client .. " 2>/dev/null")
        end
        helpers.rmrf(work)
      end)
      until_true(function() return #spooled(root) > 0 end,
        "a spooled body")
      tools.wait_gone(tools.kill_tree(srv:pid()), 10)
      assert.equal(1, #spooled(root))
      srv = server.start{ root = root }
      assert.same({}, spooled(root))
    end)

  it("leaves the spool alone while another server on the store runs",
    function()
      local spool = root .. "/.berth-spool"
      assert(os.execute("mkdir -p " .. q(spool)))
      helpers.write_file(spool .. "/0000000007", "a live body")
      -- another server's lock, held until its process goes
      local ready, pidfile = root .. ".ready", root .. ".pid"
      spawn(("setsid sh -c 'echo $$ > %s; exec flock -s %s sh -c"
        .. " \"touch %s; exec sleep 600\"' > /dev/null 2>&1 &"):format(
        q(pidfile), q(spool .. "/.serving"), q(ready)))
      finally(function()
        local holder = tonumber(helpers.read_file(pidfile) or "")
        if holder then
          os.execute("kill -KILL -" .. holder .. " 2>/dev/null")
        end
        os.remove(ready)
        os.remove(pidfile)
      end)
      until_true(function() return tools.exists(ready) end, "the lock held")
      srv = server.start{ root = root }
      assert.same({ "0000000007" }, spooled(root))
      -- and the running server holds the lock itself: a start now would
      -- find it taken
      local out = tools.stdout("flock -n -x " .. q(spool .. "/.serving")
        .. " true && echo free || echo taken")
      assert.matches("taken", out)
    end)
end)

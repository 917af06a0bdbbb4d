-- Loaded by busted before every spec (--helper). Shared fixtures.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path

local helpers = {}

-- Cleanup at the end of the run (busted's "suite end" event): every temp
-- directory and store made through these helpers goes, whichever block
-- made it (before_each, setup, or a test with its own finally).
local cleanup = {}

local ok_busted, busted = pcall(require, "busted")
if ok_busted and type(busted) == "table" and busted.subscribe then
  busted.subscribe({ "suite", "end" }, function()
    for i = #cleanup, 1, -1 do
      pcall(cleanup[i])
    end
    cleanup = {}
    return nil, true
  end)
end

-- finally(fn) in a test registers fn besides those registered before:
-- busted 2 keeps only the last (busted/init.lua: `finally = fn`), which
-- dropped a server's stop when a driver's close came after it. They run
-- last first, each whatever the others do; the first error is the test's.
if ok_busted and type(busted) == "table" and busted.subscribe then
  busted.subscribe({ "test", "start" }, function(element)
    local env = element.env
    local keep = env and env.finally
    if not keep then return nil, true end
    local fns = {}
    env.finally = function(fn)
      fns[#fns + 1] = fn
      if #fns > 1 then return end
      keep(function()
        local first
        for i = #fns, 1, -1 do
          local ok, err = pcall(fns[i])
          if not ok and first == nil then first = err end
        end
        if first ~= nil then error(first, 0) end
      end)
    end
    return nil, true
  end)
end

-- helpers.at_exit(fn): run fn when the suite ends.
function helpers.at_exit(fn)
  cleanup[#cleanup + 1] = fn
end

-- A fresh empty directory under /tmp, removed when the suite ends.
-- mktemp makes the name unique across the processes that run specs at once.
function helpers.tmpdir()
  local p = io.popen("mktemp -d /tmp/berth-spec-XXXXXXXXXX")
  local path = p:read("*l")
  p:close()
  assert(path and path:match("^/tmp/berth%-spec%-"), "mktemp failed")
  helpers.at_exit(function()
    -- a server a spec started there and did not stop: told and stopped
    -- (nginx -p <path>/..., a fast shutdown on TERM), so none outlives
    -- its spec ([n]: not the shell running pkill, whose line holds this)
    local pattern = "[n]ginx: master process nginx -p " .. path .. "/"
    -- (pkill, like curl, deadlocks in setlocale under LD_PRELOAD=libasan.so)
    if os.execute("env -u LD_PRELOAD pkill -TERM -f -- '" .. pattern .. "'")
        == 0 then
      io.stderr:write("spec helpers: a server on " .. path
        .. " was still running at the end; stopped it\n")
    end
    local f = io.open(path, "rb") -- a directory opens on Linux
    if f then
      f:close()
      helpers.rmrf(path)
    end
  end)
  return path
end

-- What the specs add to `berth serve`: run by root, the workers would run
-- as the user berth, who cannot reach the specs' private temporary
-- directories; the specs that check who the workers run as pass none.
helpers.SERVE_AS = io.popen("id -u"):read("*l") == "0" and "--user root" or ""

-- The working directory (the repository root when specs run), from the
-- kernel: $PWD is stale under ctest, which chdirs without updating it.
local cwd
function helpers.cwd()
  if not cwd then
    local p = io.popen("pwd -P")
    cwd = p:read("*l")
    p:close()
  end
  return cwd
end

function helpers.rmrf(path)
  assert(path:match("^/tmp/berth%-"), "refusing to remove " .. path)
  os.execute("rm -rf '" .. path .. "'")
end

-- helpers.read_file(path) -> content | nil
function helpers.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function helpers.write_file(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

-- Random bytes from LuaJIT's PRNG, reproducible per seed.
function helpers.random_bytes(n)
  local t = {}
  for i = 1, n do
    t[i] = string.char(math.random(0, 255))
  end
  return table.concat(t)
end

-- sha256 of a string through the sha256sum tool: an oracle independent of
-- berth's own hashing.
function helpers.sha256sum(data)
  local path = os.tmpname()
  helpers.write_file(path, data)
  local p = io.popen("sha256sum '" .. path .. "'")
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return "sha256:" .. out:match("^(%x+)")
end

-- Two stores on one fresh temp root: `watched` over a fault driver (its
-- watcher sees every driver operation: the JIT must be off), `plain` over
-- the fs driver; closed and removed when the test ends (pass busted's
-- finally, which a module cannot see).
-- -> { watched =, plain =, driver =, root = }
function helpers.watched_stores(finally)
  local berth = require "berth"
  local driver = require "berth.driver"
  local root = helpers.tmpdir()
  local d = assert(driver.fault(assert(driver.fs(root))))
  local watched = assert(berth.open{ root = root, driver = d,
    fsync = "none" })
  local plain = assert(berth.open{ root = root, fsync = "none" })
  finally(function()
    d:watch(nil)
    watched:close()
    plain:close()
    helpers.rmrf(root)
  end)
  return { watched = watched, plain = plain, driver = d, root = root }
end

-- A store on a fresh temp root (fs driver), closed and removed at the end.
function helpers.new_store(opts)
  local berth = require "berth"
  opts = opts or {}
  local root = opts.root or helpers.tmpdir()
  opts.root = root
  local store = assert(berth.open(opts))
  helpers.at_exit(function() store:close() end)
  return store, root
end

return helpers

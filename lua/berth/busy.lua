-- berth.busy: waiting for a lock another process holds. C never waits (a
-- held tag lock answers EBUSY at once), so no nginx worker stalls inside
-- it; Lua waits here: with ngx.sleep where nginx lets the request yield,
-- else blocking (the CLI, a REPL).
local ffi = require "ffi"
require "berth.ffi" -- poll()

local pcall = pcall
local select = select
local unpack = unpack
local min = math.min

local _M = { _VERSION = "0.1.0" }

-- How long a lock may stay held before the caller gets EIO: a holder
-- that hangs is not the client's fault. Tag locks are held for a few link
-- writes.
_M.WAIT = 5
-- Pauses between tries while another process holds the lock: the tag
-- lock is held for a few link writes, a few ms each with fsync.
local FIRST, LONGEST = 0.001, 0.01

-- sleep(seconds): yields inside nginx where it can, else blocks.
function _M.sleep(s)
  if ngx and ngx.sleep and pcall(ngx.sleep, s) then
    return
  end
  ffi.C.poll(nil, 0, s * 1000)
end

-- Seconds now inside nginx (a waiter may be woken before its pause
-- ends), else nil: a blocking pause is as long as asked.
local function now()
  if ngx and ngx.now and ngx.update_time then
    ngx.update_time()
    return ngx.now()
  end
end

-- Inside nginx the waiters of one worker are woken as soon as a wrapped
-- call there ends (it released any lock it took), so the lock passes
-- within a worker at once instead of after a pause; a release by another
-- process is seen at the next try.
local sema, waiters = nil, 0

local function semaphore()
  if sema == nil then
    local ok, s = pcall(function()
      return ngx and ngx.get_phase and require("ngx.semaphore").new()
    end)
    sema = ok and s or false
  end
  return sema
end

local function pause_for(s)
  local sm = semaphore()
  if sm then
    waiters = waiters + 1
    local ok, got, err = pcall(sm.wait, sm, s)
    waiters = waiters - 1
    if ok and (got or err == "timeout") then return end
  end
  _M.sleep(s)
end

local function ended()
  if sema and waiters > 0 then
    sema:post(waiters)
  end
end

local function pack(...)
  return { n = select("#", ...), ... }
end

-- A method raises at its caller's line: called from attempt, that is a
-- line here, and such an error is raised again at the wrapper's caller.
local HERE = "^" .. debug.getinfo(1, "S").short_src:gsub("%p", "%%%0")
  .. ":%d+: (.*)$"

local function attempt(fn, ...)
  local r = pack(fn(...))
  return r
end

-- waiting(fn) -> a function that calls fn(...) again, after a pause,
-- while it fails with "EBUSY", up to WAIT seconds of pauses. fn must be
-- safe to call again after an EBUSY (it did nothing then).
function _M.waiting(fn)
  return function(...)
    local pause, slept, since = FIRST, 0, nil
    while true do
      local ok, r = pcall(attempt, fn, ...)
      if not ok then
        ended()
        local said = type(r) == "string" and r:match(HERE)
        error(said or r, said and 2 or 0)
      end
      if r[1] ~= nil or r[3] ~= "EBUSY" then
        ended()
        return unpack(r, 1, r.n)
      end
      local t = now()
      since = since or t
      if (t and t - since or slept) >= _M.WAIT then
        return nil, tostring(r[2]) .. " (for longer than " .. _M.WAIT
          .. " s)", "EIO"
      end
      pause_for(pause)
      slept = slept + pause
      pause = min(pause * 2, LONGEST)
    end
  end
end

-- wrap(class, names): each of class's methods named waits so.
function _M.wrap(class, names)
  for _, name in ipairs(names) do
    class[name] = _M.waiting(assert(class[name], name))
  end
end

return _M

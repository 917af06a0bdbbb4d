-- Run as the store's owner. Started by root, berth serve's workers run as
-- the store's owner (berth.serve), so what root writes into the store (the
-- master's new cache epoch, a CLI command) must belong to that owner too,
-- or the workers meet a directory they cannot write into.
local _M = {}

-- The owner of root when this process is root and someone else owns the
-- store: -> uid, gid | nil
local function other_owner(root)
  local unistd = require "posix.unistd"
  if unistd.geteuid() ~= 0 then
    return nil
  end
  local st = require("posix.sys.stat").stat(root)
  if not st or st.st_uid == 0 then
    return nil
  end
  return st.st_uid, st.st_gid
end

-- as(root, fn, ...) -> up to three results of fn(...), run with the
-- owner's effective ids
function _M.as(root, fn, ...)
  local uid, gid = other_owner(root)
  if not uid then
    return fn(...)
  end
  local unistd = require "posix.unistd"
  unistd.setpid("G", gid)
  unistd.setpid("U", uid)
  local ok, a, b, c = pcall(fn, ...)
  unistd.setpid("U", 0)
  unistd.setpid("G", 0)
  if not ok then
    error(a, 0)
  end
  return a, b, c
end

-- become(root) -> true | nil, err: for good (a CLI command), so nothing it
-- does later writes as root.
function _M.become(root)
  local uid, gid = other_owner(root)
  if not uid then
    return true
  end
  local unistd = require "posix.unistd"
  local ok, err = unistd.setpid("g", gid)
  if ok then
    ok, err = unistd.setpid("u", uid)
  end
  if not ok then
    return nil, "cannot act as the owner of " .. root .. ": " .. tostring(err)
  end
  return true
end

return _M

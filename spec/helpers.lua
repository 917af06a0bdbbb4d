-- Loaded by busted before every spec (--helper). Shared fixtures.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path

local helpers = {}

local tmp_counter = 0

-- A fresh empty directory under /tmp; removed by the caller's finally().
function helpers.tmpdir()
  tmp_counter = tmp_counter + 1
  local path = string.format("/tmp/berth-spec-%d-%d-%d", os.time(),
    math.random(1, 1e9), tmp_counter)
  assert(os.execute("mkdir -p '" .. path .. "'") == 0)
  return path
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

-- A store on a fresh temp root (fs driver) that finally() removes.
-- Needs berth (lua/berth/init.lua).
function helpers.new_store(opts)
  local berth = require "berth"
  local root = helpers.tmpdir()
  opts = opts or {}
  opts.root = opts.root or root
  local store = assert(berth.open(opts))
  if finally then
    finally(function()
      store:close()
      helpers.rmrf(root)
    end)
  end
  return store, root
end

return helpers

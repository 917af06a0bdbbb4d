-- luajit bench/sha256.lua IMPL SECONDS -> prints SHA-256 MB/s (10^6 bytes)
-- of one berth hasher fed a 64 KiB buffer over and over, in CPU time (as
-- openssl speed measures by default). Run from the repo root.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local digest = require "berth.digest"

local impl = arg[1] or "auto"
local secs = tonumber(arg[2]) or 2
local clock = os.clock

local buf = string.rep("\90\165\195\60", 16384) -- 64 KiB
local h = assert(digest.hasher("sha256", impl))
assert(h:update(buf)) -- warm up

local n = 0
local t0 = clock()
local t
repeat
  for _ = 1, 16 do
    h:update(buf)
  end
  n = n + 16
  t = clock() - t0
until t >= secs
h:close()

io.write(string.format("%.1f\n", n * #buf / t / 1e6))

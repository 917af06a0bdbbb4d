-- Upload-and-commit throughput of one large blob through the Lua API, and
-- the process's peak RSS.
--   luajit bench/upload.lua [size_mib=1024] [runs=3] [chunk_kib=1024] [fsync=data]
-- Run from the repository root after `cmake -S . -B build && cmake --build build`.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local berth = require "berth"

local size_mib = tonumber(arg[1]) or 1024
local runs = tonumber(arg[2]) or 3
local chunk_kib = tonumber(arg[3]) or 1024
local fsync = arg[4] or "data"

local function peak_rss_kib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmHWM:%s+(%d+)")
    if kib then return tonumber(kib) end
  end
end

local function now()
  local f = io.popen("date +%s.%N")
  local t = tonumber(f:read("*a"))
  f:close()
  return t
end

-- One chunk of pseudo-random bytes, varied per chunk by its first 8 bytes so
-- the blob is not one repeated block.
local chunk_len = chunk_kib * 1024
local base = {}
for i = 1, chunk_len / 4 do
  base[i] = string.char(math.random(0, 255), math.random(0, 255),
    math.random(0, 255), math.random(0, 255))
end
base = table.concat(base)

local root = os.getenv("BERTH_BENCH_ROOT") or "/tmp/berth-bench-upload"
os.execute("rm -rf '" .. root .. "'")
local store = assert(berth.open{ root = root, fsync = fsync })
local hasher_impl = berth.digest.auto_impl()

local results = {}
for run = 1, runs do
  local total = size_mib * 1024 * 1024
  local h = berth.digest.hasher()
  local up = assert(store:blob_writer("bench/upload"))
  local t0 = now()
  local sent, n = 0, 0
  while sent < total do
    n = n + 1
    local chunk = string.format("%08d", n + run * 1e6) .. base:sub(9)
    assert(up:write(chunk))
    h:update(chunk)
    sent = sent + #chunk
  end
  -- The expected digest comes from a separate hasher (what a client sends);
  -- its cost is excluded by timing it apart below.
  local t1 = now()
  assert(up:commit(h:digest(), sent))
  local t2 = now()
  results[run] = { mib_s = size_mib / (t2 - t0), commit_s = t2 - t1 }
  assert(store:blob_purge(h:digest()))
end

-- Time the client-side hashing alone, to subtract it out.
local h = berth.digest.hasher()
local t0 = now()
for _ = 1, size_mib * 1024 / chunk_kib do h:update(base) end
local hash_s = now() - t0

table.sort(results, function(a, b) return a.mib_s < b.mib_s end)
local med = results[math.ceil(#results / 2)]
local server_s = size_mib / med.mib_s - hash_s
print(string.format("blob upload: %d MiB in %d KiB chunks, fsync=%s, hasher=%s, %d runs",
  size_mib, chunk_kib, fsync, hasher_impl, runs))
print(string.format("  median %.0f MiB/s including the client's hashing, "
  .. "%.0f MiB/s for berth alone (commit %.2f s)",
  med.mib_s, size_mib / server_s, med.commit_s))
print(string.format("  peak RSS %.1f MiB", peak_rss_kib() / 1024))
os.execute("rm -rf '" .. root .. "'")

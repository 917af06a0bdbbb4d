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

-- A few distinct chunks of pseudo-random bytes, cycled: the blob is not one
-- repeated block, and no chunk is allocated inside the timed loop.
local chunk_len = chunk_kib * 1024
local VARIANTS = 4
local chunks = {}
do
  local words = {}
  for i = 1, chunk_len / 4 do
    words[i] = string.char(math.random(0, 255), math.random(0, 255),
      math.random(0, 255), math.random(0, 255))
  end
  local base = table.concat(words)
  words = nil
  for v = 1, VARIANTS do
    chunks[v] = string.format("%08d", v) .. base:sub(9)
  end
end
collectgarbage()

local root = os.getenv("BERTH_BENCH_ROOT") or "/tmp/berth-bench-upload"
os.execute("rm -rf '" .. root .. "'")
local store = assert(berth.open{ root = root, fsync = fsync })
local n_chunks = size_mib * 1024 / chunk_kib

-- The digest a client would send, computed before the clock starts.
local expected
do
  local h = berth.digest.hasher()
  for i = 1, n_chunks do h:update(chunks[(i - 1) % VARIANTS + 1]) end
  expected = h:digest()
  h:close()
end

local results = {}
for run = 1, runs do
  local up = assert(store:blob_writer("bench/upload"))
  local t0 = now()
  for i = 1, n_chunks do
    assert(up:write(chunks[(i - 1) % VARIANTS + 1]))
  end
  local t1 = now()
  assert(up:commit(expected, n_chunks * chunk_len))
  local t2 = now()
  results[run] = { mib_s = size_mib / (t2 - t0), commit_s = t2 - t1 }
  assert(store:blob_purge(expected))
end

table.sort(results, function(a, b) return a.mib_s < b.mib_s end)
local med = results[math.ceil(#results / 2)]
print(string.format("blob upload: %d MiB in %d KiB chunks, fsync=%s, "
  .. "hasher=%s, %d runs", size_mib, chunk_kib, fsync,
  berth.digest.auto_impl(), runs))
print(string.format("  median %.0f MiB/s write+hash+commit (commit %.2f s)",
  med.mib_s, med.commit_s))
print(string.format("  peak RSS %.1f MiB", peak_rss_kib() / 1024))
os.execute("rm -rf '" .. root .. "'")

-- Tag operations on one repository with many tags, and berth's reverse
-- index against Distribution's way of finding the tags of a digest
-- (reading every tag's current link).
--   luajit bench/tags.lua [count=10000] [runs=5]
-- Run from the repository root after `cmake -S . -B build && cmake --build
-- build` (or with BERTH_LIB pointing at a libberth.so). The store is on the
-- fs driver under /tmp with fsync none, so the numbers are for a warm page
-- cache: file system calls, not disk latency.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local berth = require "berth"
local C = require("berth.ffi").C

local count = tonumber(arg[1]) or 10000
local runs = tonumber(arg[2]) or 5
local REPO = "bench/tags"

-- Wall clock: luasystem (a busted dependency) when present.
local now = os.clock
do
  local ok, system = pcall(require, "system")
  if ok and system.monotime then
    now = system.monotime
  end
end

local root = os.getenv("BERTH_BENCH_ROOT") or "/tmp/berth-bench-tags"
assert(root:match("^/tmp/"), "BERTH_BENCH_ROOT must be under /tmp")
os.execute("rm -rf '" .. root .. "'")
local store = assert(berth.open{ root = root, fsync = "none" })
local drv = C.berth_store_driver(store._p)

-- One manifest per tag, as a CI that tags every build makes them: blob
-- data plus revision link (Distribution's layout, written directly).
local function make_manifest(i)
  local dgst = assert(store:blob_put(nil, '{"build":' .. i .. '}'))
  local path = "/docker/registry/v2/repositories/" .. REPO
    .. "/_manifests/revisions/sha256/" .. dgst:sub(8) .. "/link"
  assert(C.berth_driver_put(drv, path, dgst, #dgst, nil) == 0)
  return dgst
end

local tags, digests = {}, {}
local t0 = now()
for i = 1, count do
  tags[i] = string.format("build-%06d", i)
  digests[i] = make_manifest(i)
  assert(store:tag_set(REPO, tags[i], digests[i]))
end
local setup_s = now() - t0
-- Spare manifests to move tags onto.
local spare = {}
for i = 1, 64 do spare[i] = make_manifest(count + i) end

-- The first lookup builds the index (the tag_sets above kept entries, but
-- no full build has marked it complete yet).
t0 = now()
assert(store:tag_lookup(REPO, digests[1]))
local build_s = now() - t0

math.randomseed(42)
local function random_index() return math.random(1, count) end

-- Median seconds per operation over runs, each timing `iters` calls of fn.
local function measure(iters, fn)
  local per_op = {}
  for r = 1, runs do
    local t = now()
    for i = 1, iters do fn(i) end
    per_op[r] = (now() - t) / iters
  end
  table.sort(per_op)
  return per_op[math.ceil(runs / 2)]
end

-- Distribution's lookup: every tag's current link.
local function naive_lookup(dgst)
  local found = {}
  for _, t in ipairs(assert(store:tag_list(REPO))) do
    if store:tag_get(REPO, t) == dgst then found[#found + 1] = t end
  end
  return found
end

local results = {}
local function row(name, secs, note)
  results[#results + 1] = { name = name, secs = secs, note = note or "" }
end

row("tag_get (random tag)", measure(10000, function()
  assert(store:tag_get(REPO, tags[random_index()]))
end))

row("tag_list (all " .. count .. ")", measure(10, function()
  assert(#store:tag_list(REPO) == count)
end))

local pages = math.ceil(count / 100)
row("tag_list page n=100 by last", measure(1, function()
  local last, n = nil, 0
  while true do
    local page = assert(store:tag_list(REPO, { n = 100, last = last }))
    if #page == 0 then break end
    n = n + #page
    last = page[#page]
  end
  assert(n == count)
end) / (pages + 1), "per page, " .. pages .. " pages walked")

row("tag_lookup (1 of " .. count .. " tags)", measure(1000, function()
  local i = random_index()
  local found = assert(store:tag_lookup(REPO, digests[i]))
  assert(#found == 1 and found[1] == tags[i])
end), "reverse index")

row("naive lookup (read every tag)", measure(3, function()
  local i = random_index()
  local found = naive_lookup(digests[i])
  assert(#found == 1 and found[1] == tags[i])
end), "Distribution's way")

row("tag_set (move to another manifest)", measure(1000, function(i)
  assert(store:tag_set(REPO, tags[random_index()], spare[i % #spare + 1]))
end))

row("tag_reindex (whole repository)", measure(1, function()
  assert(store:tag_reindex(REPO))
end), "fsck; prunes stale entries")

print(string.format("berth tags: %d tags in one repository, fs driver, "
  .. "fsync none, median of %d runs", count, runs))
print(string.format("setup %.1f s (%.0f tag_set/s with a fresh manifest each);"
  .. " first lookup, building the index: %.1f ms", setup_s,
  count / setup_s, build_s * 1e3))
print()
print(string.format("%-38s %12s %12s  %s", "operation", "ops/s", "us/op",
  "note"))
print(string.rep("-", 90))
for _, r in ipairs(results) do
  print(string.format("%-38s %12.0f %12.1f  %s", r.name, 1 / r.secs,
    r.secs * 1e6, r.note))
end
local lookup, naive = results[4].secs, results[5].secs
print()
print(string.format("reverse-index lookup is %.0fx faster than reading "
  .. "every tag", naive / lookup))

store:close()
os.execute("rm -rf '" .. root .. "'")

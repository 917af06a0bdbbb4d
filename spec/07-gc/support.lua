-- Fixtures for the gc and fsck specs: images pushed the way a client does
-- (blobs through upload sessions in chunks, then the manifest and a tag),
-- indexes, referrers, and aging files on disk.
local cjson = require "cjson"
local helpers = require "helpers"
local manifest = require "berth.manifest"

local _M = {}

_M.V2 = "/docker/registry/v2"
_M.OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_M.OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_M.OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_M.OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

-- digest_of(data) -> "sha256:..." by the library (sha256sum is the oracle
-- of the digest specs; here speed matters)
function _M.digest_of(data)
  return require("berth.digest").compute(data)
end

-- push_blob(store, repo, data, chunk?) -> digest, through an upload
-- session written in chunks and committed.
function _M.push_blob(store, repo, data, chunk)
  chunk = chunk or 4096
  local up = assert(store:blob_writer(repo))
  for i = 1, #data, chunk do
    assert(up:write(data:sub(i, i + chunk - 1)))
  end
  local d = _M.digest_of(data)
  assert(up:commit(d, #data))
  return d
end


-- image(store, repo, opts?) -> { digest =, body =, config =, layers = {},
--   blobs = { digest -> size } }
-- opts: tag, seed (string, makes content distinct), layers (count, default
-- 2), size (bytes per layer, default 3000), subject ({ digest, size,
-- media_type }), artifact_type, reuse, push = function(store, repo, data) ->
-- digest (default push_blob).
function _M.image(store, repo, opts)
  opts = opts or {}
  local seed = opts.seed or tostring(math.random(1e9))
  local push = opts.push or _M.push_blob
  local blobs = {}
  local config = cjson.encode({ architecture = "amd64", os = "linux",
    seed = seed })
  local cd = push(store, repo, config)
  blobs[cd] = #config
  local layers = {}
  -- reuse = { { digest =, size = } }: layers stored already, mounted in.
  for _, r in ipairs(opts.reuse or {}) do
    assert(store:blob_mount(repo, nil, r.digest))
    layers[#layers + 1] = { mediaType = _M.OCI_LAYER, digest = r.digest,
      size = r.size }
  end
  for _ = 1, opts.layers or 2 do
    local i = #layers + 1
    local data = ("layer %d of %s\n"):format(i, seed)
      .. helpers.random_bytes(opts.size or 3000)
    local ld = push(store, repo, data)
    blobs[ld] = #data
    layers[i] = { mediaType = _M.OCI_LAYER, digest = ld, size = #data }
  end
  local doc = {
    schemaVersion = 2,
    mediaType = _M.OCI_MANIFEST,
    config = { mediaType = _M.OCI_CONFIG, digest = cd, size = #config },
    layers = layers,
  }
  if opts.artifact_type then
    doc.artifactType = opts.artifact_type
  end
  if opts.subject then
    doc.subject = { mediaType = opts.subject.media_type or _M.OCI_MANIFEST,
      digest = opts.subject.digest, size = opts.subject.size }
  end
  local body = cjson.encode(doc)
  local m = assert(manifest.parse(body, _M.OCI_MANIFEST))
  local d = assert(store:manifest_put(repo, m, { tag = opts.tag }))
  m:close()
  local layer_digests = {}
  for i, l in ipairs(layers) do layer_digests[i] = l.digest end
  return { digest = d, body = body, size = #body, config = cd,
    layers = layer_digests, blobs = blobs }
end

-- index(store, repo, images, tag?) -> { digest =, body =, size = }
function _M.index(store, repo, images, tag)
  local list = {}
  for i, img in ipairs(images) do
    list[i] = { mediaType = _M.OCI_MANIFEST, digest = img.digest,
      size = img.size,
      platform = { os = "linux", architecture = "arch" .. i } }
  end
  local body = cjson.encode({ schemaVersion = 2, mediaType = _M.OCI_INDEX,
    manifests = list })
  local m = assert(manifest.parse(body, _M.OCI_INDEX))
  local d = assert(store:manifest_put(repo, m, { tag = tag }))
  m:close()
  return { digest = d, body = body, size = #body }
end

function _M.hex(d)
  return d:match(":(%x+)$")
end

-- Filesystem path of a blob's data / directory under root.
function _M.blob_file(root, d)
  local hex = _M.hex(d)
  return ("%s%s/blobs/sha256/%s/%s/data"):format(root, _M.V2, hex:sub(1, 2),
    hex)
end

function _M.blob_dir(root, d)
  return (_M.blob_file(root, d):gsub("/data$", ""))
end

function _M.repo_dir(root, repo)
  return root .. _M.V2 .. "/repositories/" .. repo
end

function _M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- age(path, seconds): set a file's mtime that many seconds in the past.
function _M.age(path, seconds)
  assert(os.execute(("touch -m -d @%d '%s'"):format(os.time() - seconds,
    path)))
end

-- age_blob(root, store, digest, seconds): the data and its layer links in
-- every repository.
function _M.age_blob(root, d, seconds)
  _M.age(_M.blob_file(root, d), seconds)
end

-- age_links(root, repo, digest, seconds): the _layers link of d in repo.
function _M.age_layer_link(root, repo, d, seconds)
  _M.age(("%s/_layers/sha256/%s/link"):format(_M.repo_dir(root, repo),
    _M.hex(d)), seconds)
end

function _M.age_revision(root, repo, d, seconds)
  _M.age(("%s/_manifests/revisions/sha256/%s/link"):format(
    _M.repo_dir(root, repo), _M.hex(d)), seconds)
end

-- age_all(root, seconds): every file under the store: a store last
-- touched that long ago.
function _M.age_all(root, seconds)
  assert(os.execute(("find '%s' -type f -exec touch -m -d @%d {} +"):format(
    root, os.time() - seconds)))
end

-- An orphan: blob data with no link anywhere, aged.
function _M.plant(store, root, data, seconds)
  local d = assert(store:blob_put(nil, data))
  if seconds then _M.age_blob(root, d, seconds) end
  return d
end

-- journal(root) -> { path, ... }: the _layers links gc keeps out of the
-- tree (withdrawn or condemned), sorted.
function _M.journal(root)
  local list = {}
  local p = io.popen(("find '%s/berth/v1/unlinked' '%s/berth/v1/"
    .. "condemned-links' -name link 2>/dev/null | sort"):format(root, root))
  for line in p:lines() do list[#list + 1] = line:sub(#root + 1) end
  p:close()
  return list
end

-- A pusher (spawn_pushers): images into its own repository and into a
-- shared one,
-- each blob uploaded in chunks across two sessions (as two requests), the
-- first layer of each image mounted from its previous image, and some
-- layers whose content is one of the planted orphans (an upload of
-- content already stored: only the link is written), and now and then a
-- first blob committed only after the grace period (a slow client). A push
-- that takes longer than the grace from its first link to its manifest
-- may lose its blobs to gc (they are garbage by then), as on a loaded
-- machine; one that fails is retried from the start, as a client does,
-- and recorded with how long it had taken. Writes one JSON line per image
-- (and per failed attempt) to its result file.
_M.PUSHER = [=[
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
local cjson = require "cjson"
local ffi = require "ffi"
local berth = require "berth"
local digest = require "berth.digest"
local manifest = require "berth.manifest"
local root, idx, n, result, reuse_file, slow, stop = arg[1],
  tonumber(arg[2]), tonumber(arg[3]), arg[4], arg[5], tonumber(arg[6]),
  arg[7]
math.randomseed(idx * 7919 + os.time())
local store = assert(berth.open{ root = root, fsync = "none" })
local reuse = {}
for line in io.lines(reuse_file) do reuse[#reuse + 1] = line end

ffi.cdef[[
typedef struct { long sec; long nsec; } pusher_timespec;
int clock_gettime(int clock, pusher_timespec *ts);
]]
local ts = ffi.new("pusher_timespec")
local function now() -- the clock file times come from (CLOCK_REALTIME)
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.sec) + tonumber(ts.nsec) / 1e9
end
local first_link -- when the push being made wrote its first link
local touched -- digest -> true: every blob the push being made linked

local function nap()
  if math.random() < 0.3 then
    os.execute(("sleep 0.%02d"):format(math.random(1, 20)))
  end
end

local function bytes(k, seed)
  local t = {}
  for i = 1, k do t[i] = string.char((i * 31 + #seed * 7 + idx) % 256) end
  return seed .. table.concat(t)
end

local function upload(repo, data, slow_ok)
  local d = digest.compute(data)
  local up = assert(store:blob_writer(repo))
  local half = math.floor(#data / 2)
  for i = 1, half, 8192 do
    assert(up:write(data:sub(i, math.min(i + 8191, half))))
  end
  local id = up.id
  assert(up:close())
  nap()
  up = assert(store:upload_open(repo, id))
  for i = half + 1, #data, 8192 do
    assert(up:write(data:sub(i, i + 8191)))
  end
  if slow_ok and slow and math.random() < 0.15 then
    -- a slow client: the final PUT of its first blob comes after the
    -- grace period, so the data is old when it is committed and only its
    -- fresh link protects it until the manifest arrives
    assert(up:close())
    os.execute("sleep " .. slow)
    up = assert(store:upload_open(repo, id))
  end
  first_link = first_link or now()
  touched[d] = true
  local ok, err = up:commit(d, #data)
  if not ok then return nil, err end
  return d, #data
end

local prev = {}
local function push(repo, k, attempt)
  local seed = ("pusher %d image %d attempt %d %s"):format(idx, k, attempt,
    repo)
  local blobs = {}
  first_link, touched = nil, {}
  local config = cjson.encode({ os = "linux", seed = seed })
  local cd, csize = upload(repo, config, true)
  if not cd then return nil, csize end
  blobs[cd] = csize
  local layers = {}
  if prev[repo] then
    first_link = first_link or now()
    local ok, err = store:blob_mount(repo, nil, prev[repo].digest)
    if not ok then return nil, err end
    layers[1] = prev[repo]
    blobs[prev[repo].digest] = prev[repo].size
  end
  for j = 1, 3 do
    local data
    if j == 3 and #reuse > 0 and math.random() < 0.5 then
      data = reuse[math.random(#reuse)] -- an old orphan's content
    else
      data = bytes(20000 + math.random(1, 30000), seed .. " layer " .. j)
    end
    local d, size = upload(repo, data)
    if not d then return nil, size end
    blobs[d] = size
    layers[#layers + 1] = { digest = d, size = size }
    nap()
  end
  local descs = {}
  for i, l in ipairs(layers) do
    descs[i] = { mediaType = "application/vnd.oci.image.layer.v1.tar",
      digest = l.digest, size = l.size }
  end
  local body = cjson.encode({ schemaVersion = 2,
    mediaType = "application/vnd.oci.image.manifest.v1+json",
    config = { mediaType = "application/vnd.oci.image.config.v1+json",
      digest = cd, size = csize },
    layers = descs })
  local m = assert(manifest.parse(body))
  local tag = ("p%d-i%d"):format(idx, k)
  local md, err = store:manifest_put(repo, m, { tag = tag })
  m:close()
  if not md then return nil, err end
  prev[repo] = layers[#layers]
  return { repo = repo, tag = tag, digest = md, blobs = blobs }
end

local out = assert(io.open(result, "w"))
local retries = 0
local function stopped()
  local f = stop and io.open(stop)
  if f then f:close() end
  return f ~= nil
end
for k = 1, n do
  if stopped() then break end
  for _, repo in ipairs({ "push/p" .. idx, "shared" }) do
    local rec, err
    for attempt = 1, 20 do
      rec, err = push(repo, k, attempt)
      if rec then break end
      io.stderr:write("retry ", repo, " ", k, ": ", tostring(err), "\n")
      out:write(cjson.encode({ failed = tostring(err),
        took = first_link and now() - first_link or 0,
        blobs = touched }), "\n")
      retries = retries + 1
      prev[repo] = nil
    end
    if not rec then
      io.stderr:write("push failed: ", tostring(err), "\n")
      os.exit(3)
    end
    out:write(cjson.encode(rec), "\n")
    out:flush()
  end
end
out:write(cjson.encode({ retries = retries }), "\n")
out:close()
store:close()
]=]

local ffi = require "ffi"
ffi.cdef[[
typedef struct { long sec; long nsec; } support_timespec;
int clock_gettime(int clock, support_timespec *ts);
]]
local ts = ffi.new("support_timespec")

-- now() -> seconds, to the nanosecond (the clock file times come from)
function _M.now()
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.sec) + tonumber(ts.nsec) / 1e9
end

-- q(s) -> s quoted for sh
function _M.q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- plant_orphans(store, root, work, count, reuse) -> planted, reused,
-- reuse_file: count orphans (data only, or every third with a layer link in
-- "old/junk"), with all the store an hour old; the first `reuse` of them
-- written to reuse_file for the pushers to upload again. planted and
-- reused are sets of digests.
function _M.plant_orphans(store, root, work, count, reuse)
  local planted, reused, lines = {}, {}, {}
  for i = 1, count do
    -- text, so the pushers can read the reused ones as lines
    local data = ("planted orphan %d "):format(i)
      .. helpers.random_bytes(500 + i % 24 * 50):gsub(".", function(c)
        return ("%02x"):format(c:byte())
      end)
    local d = assert(store:blob_put(i % 3 == 0 and "old/junk" or nil, data))
    if i <= reuse then
      reused[d] = true
      lines[#lines + 1] = data
    else
      planted[d] = true
    end
  end
  _M.age_all(root, 3600)
  local reuse_file = work .. "/reuse"
  helpers.write_file(reuse_file, table.concat(lines, "\n")
    .. (#lines > 0 and "\n" or ""))
  return planted, reused, reuse_file
end

-- spawn_pushers(root, work, count, images, opts?): count pushers in the
-- background, each pushing `images` images into each of its two
-- repositories; pusher i writes work/result<i>, its output to work/log<i>
-- and, once it has ended, its exit code to work/done<i>. opts: reuse (a
-- file of old orphans' contents, one a line, some pushed again), slow
-- (seconds a slow client waits), stop (a file: no image is started once
-- it exists).
function _M.spawn_pushers(root, work, count, images, opts)
  opts = opts or {}
  local q = _M.q
  local reuse = opts.reuse
  if not reuse then
    reuse = work .. "/no-reuse"
    helpers.write_file(reuse, "")
  end
  local script = work .. "/pusher.lua"
  helpers.write_file(script, _M.PUSHER)
  for i = 1, count do
    -- the subshell's output too: it must not hold the spec's
    local cmd = ("(luajit %s %s %d %d %s %s %s %s > %s 2>&1; echo $? > %s)"
      .. " >/dev/null 2>&1 &"):format(q(script), q(root), i, images,
        q(work .. "/result" .. i), q(reuse), tostring(opts.slow or "none"),
        opts.stop and q(opts.stop) or "", q(work .. "/log" .. i),
        q(work .. "/done" .. i))
    assert(os.execute(cmd))
  end
end

-- pushers_done(work, count) -> whether every pusher has ended
function _M.pushers_done(work, count)
  for i = 1, count do
    if not _M.exists(work .. "/done" .. i) then return false end
  end
  return true
end

-- pusher_records(work, count) -> images, failed, retries: what the pushers
-- wrote so far (a line being written is not yet one). An image is { repo,
-- tag, digest, blobs = { digest -> size } }, a failed attempt { failed =
-- message, took = seconds from its first link, blobs = { digest -> true } }.
function _M.pusher_records(work, count)
  local images, failed, retries = {}, {}, 0
  for i = 1, count do
    local f = io.open(work .. "/result" .. i)
    for line in f and f:lines() or function() end do
      local rec = require("cjson.safe").decode(line)
      if type(rec) ~= "table" then
        break
      elseif rec.retries then
        retries = retries + rec.retries
      elseif rec.failed then
        failed[#failed + 1] = rec
      else
        images[#images + 1] = rec
      end
    end
    if f then f:close() end
  end
  return images, failed, retries
end

-- Run a command, capture stdout and the exit code.
function _M.run(cmd)
  local p = io.popen(cmd .. "; echo \"::rc=$?\"")
  local outp = p:read("*a")
  p:close()
  local rc = tonumber(outp:match("::rc=(%d+)%s*$"))
  return outp:gsub("::rc=%d+%s*$", ""), rc
end

-- A fake env for cmd modules: stdout/stderr collected in strings.
function _M.env(isatty)
  local o, e = {}, {}
  local function sink(t)
    return { write = function(_, ...)
      for i = 1, select("#", ...) do t[#t + 1] = tostring(select(i, ...)) end
      return true
    end, flush = function() end }
  end
  local env = { stdout = sink(o), stderr = sink(e), isatty = isatty or false,
    home = ".", getenv = os.getenv }
  return env, function() return table.concat(o) end,
    function() return table.concat(e) end
end

return _M

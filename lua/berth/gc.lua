-- Garbage collection that is safe while the registry serves pushes, over
-- the store's maintenance methods (berth.store, over gc.h and blob.h).
--
--   local gc = require "berth.gc"
--   local report = assert(gc.run(store, { grace = 3600, dry_run = true }))
--
-- The collector itself (mark, sweep, purge, upload sessions) is C's,
-- core/src/collect.c, which also argues why it needs no lock against
-- pushes; this runs its steps, waits where it says, and then removes:
--
-- After the collector, what a crash left, each unchanged for longer than
-- the grace: tag directories without current/link (a first set or a
-- delete cut short), removed under the tag lock while they still have
-- none (tag_delete_if); a first set whose index link went with one writes
-- it again under that lock (tag.c). Link and blob directories without
-- their file, holding only the fs driver's temp files of a put cut short,
-- or nothing (a commit killed before its data moved in): the temp files
-- go, then the directory only while it is empty (rmdir), so what a push
-- or a commit puts there meanwhile stays, and a put or a move that finds
-- its directory gone makes it again (driver_fs.c). No data is ever
-- removed here, so no condemning is needed. And the request bodies nginx
-- spooled for requests that died (serve.lua's SPOOL): a file there is
-- live only while its body arrives or its request handles it, so it is
-- written to at most client_body_timeout apart; those unchanged for the
-- spool grace (SPOOL_GRACE at least) are no live request's. Age is the
-- only evidence across processes.
-- Only positive evidence removes anything; GC removes no tag.
local ffi = require "ffi"
local C = require("berth.ffi").C
local strlist_take = require("berth.ffi").strlist_take
local errors = require "berth.errors"
local store_mod = require "berth.store"
local busy = require "berth.busy"

local SPOOL = require("berth.serve").SPOOL

local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_string = ffi.string
local fail = errors.fail
local scratch_err = errors.scratch
local c_store = store_mod.c_store
local type = type
local ipairs = ipairs
local error = error
local tostring = tostring
local tonumber = tonumber
local max = math.max
local os_time = os.time

local _M = { _VERSION = "0.1.0" }

-- Defaults: one hour for blobs, a week for upload sessions.
_M.GRACE = 3600
_M.UPLOAD_GRACE = 7 * 86400
_M.SETTLE = 1
-- The least age of a spooled request body gc removes, whatever the grace:
-- nginx writes a body's file as the body arrives, at most
-- client_body_timeout (60 s) apart, and the request moves or removes it
-- as soon as it is whole; 15 times that is no live request's.
_M.SPOOL_GRACE = 15 * 60

-- The maintenance primitives it builds on are the store's methods
-- (berth.store: links, blob_condemn, ...).
_M.LINK_KINDS = store_mod.LINK_KINDS

-- Scratch values of the spool walk; FFI calls are synchronous.
local strlist = ffi_new("berth_strlist")
local stat_out = ffi_new("berth_stat_info")

-- Helpers shared with fsck ----------------------------------------------------

local UNITS = { s = 1, m = 60, h = 3600, d = 86400, w = 7 * 86400 }

-- parse_duration("30m") -> seconds | nil, err. Units s, m, h, d, w; a bare
-- number is seconds; "1h30m" adds up.
function _M.parse_duration(s)
  if type(s) == "number" then
    return s >= 0 and s or nil, "duration must not be negative"
  end
  if type(s) ~= "string" or s == "" then
    return nil, "invalid duration: " .. tostring(s)
  end
  if s:match("^%d+%.?%d*$") then
    return tonumber(s)
  end
  local total, rest = 0, s
  while rest ~= "" do
    local num, unit, tail = rest:match("^(%d+%.?%d*)([smhdw])(.*)$")
    if not num then
      return nil, "invalid duration: " .. s .. " (like 30m, 1h, 7d)"
    end
    total = total + tonumber(num) * UNITS[unit]
    rest = tail
  end
  return total
end

local function noop() end

-- The run ----------------------------------------------------------------

local PHASE = { [C.BERTH_GC_PHASE_MARK] = "mark",
  [C.BERTH_GC_PHASE_SWEEP] = "sweep", [C.BERTH_GC_PHASE_PURGE] = "purge",
  [C.BERTH_GC_PHASE_UPLOADS] = "uploads" }
local EITEROVER = errors.BY_NAME.EITEROVER.value
local gc_out = ffi_new("berth_gc *[1]")
local gc_opts = ffi_new("berth_gc_options")
local gc_progress = ffi_new("berth_gc_progress")
local gc_removal = ffi_new("berth_gc_removal")

-- The collector's report and lists as run reports them.
local function report_of(gc, dry, grace, upload_grace, delete_untagged)
  local r = C.berth_gc_report_of(gc)
  local n = tonumber
  local report = {
    dry_run = dry, grace = grace, upload_grace = upload_grace,
    delete_untagged = delete_untagged,
    blobs = { total = n(r.blobs_total), kept = n(r.blobs_kept),
      kept_bytes = n(r.blobs_kept_bytes), young = n(r.blobs_young),
      young_bytes = n(r.blobs_young_bytes), removed = n(r.blobs_removed),
      removed_bytes = n(r.blobs_removed_bytes),
      reprieved = n(r.blobs_reprieved) },
    manifests = { removed = n(r.manifests_removed),
      restored = n(r.manifests_restored) },
    links = { removed = n(r.links_removed), restored = n(r.links_restored) },
    uploads = { total = n(r.uploads_total), removed = n(r.uploads_removed),
      removed_bytes = n(r.uploads_removed_bytes), busy = n(r.uploads_busy) },
    leftovers = { tags = 0, links = 0, blobs = 0, spool = 0,
      spool_bytes = 0 },
    removed = { blobs = {}, manifests = {}, uploads = {}, leftovers = {} },
    warnings = {},
  }
  local removed = report.removed
  local i = 0
  while C.berth_gc_removed(gc_removal, gc, i) == 0 do
    local kind = gc_removal.kind
    local name = ffi_string(gc_removal.name)
    local repo = gc_removal.repo ~= nil and ffi_string(gc_removal.repo)
      or nil
    local size = n(gc_removal.size)
    if kind == C.BERTH_GC_REMOVED_BLOB then
      removed.blobs[#removed.blobs + 1] = { digest = name, size = size }
    elseif kind == C.BERTH_GC_REMOVED_MANIFEST then
      removed.manifests[#removed.manifests + 1] = { repo = repo,
        digest = name }
    else
      removed.uploads[#removed.uploads + 1] = { repo = repo, id = name,
        size = size, started = n(gc_removal.started) }
    end
    i = i + 1
  end
  i = 0
  local w = C.berth_gc_warning(gc, i)
  while w ~= nil do
    report.warnings[#report.warnings + 1] = ffi_string(w)
    i = i + 1
    w = C.berth_gc_warning(gc, i)
  end
  if r.lost > 0 then
    report.warnings[#report.warnings + 1] = n(r.lost)
      .. " entries of this report were not recorded: out of memory"
  end
  return report
end

-- run(store, opts?) -> report | nil, err, code
-- opts: grace (seconds, default 1h), upload_grace (default 7d),
--   dry_run, delete_untagged, settle (seconds between unlinking and the
--   final checks, default 1), progress = function(phase, done, total),
--   now = function() -> seconds (tests), sleep = function(seconds).
-- The collector is C's (core/src/collect.c: mark, sweep, purge, upload
-- sessions, and why no lock is needed); this runs its steps, waits where
-- it says (settle), then removes what a crash left (phase 4 below).
-- report: { dry_run, grace, upload_grace, delete_untagged,
--   blobs = { total, kept, kept_bytes, young, young_bytes, removed,
--             removed_bytes, reprieved (put back from a gc that was
--             killed) },
--   manifests = { removed, restored }, links = { removed, restored (put
--     back from a gc that was killed) },
--   uploads = { total, removed, removed_bytes, busy },
--   leftovers = { tags, links, blobs, spool, spool_bytes } (what a crash
--     left: phase 4),
--   removed = { blobs = { { digest, size } }, manifests = { { repo,
--     digest } }, uploads = { { repo, id, size, started } },
--     leftovers = { { kind = "tag"|"link"|"blob", repo, tag, link,
--     digest } } },
--   warnings = { message, ... } }
-- Only positive evidence removes anything: a read that fails for another
-- reason than "not there" keeps what it was about, or stops the run (a
-- manifest that cannot be read: its references are unknown).
function _M.run(store, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("options must be a table", 2)
  end
  local grace = opts.grace or _M.GRACE
  local upload_grace = opts.upload_grace or _M.UPLOAD_GRACE
  if type(grace) ~= "number" or grace < 0 or type(upload_grace) ~= "number"
      or upload_grace < 0 then
    error("grace periods must be non-negative numbers of seconds", 2)
  end
  local dry = opts.dry_run and true or false
  local delete_untagged = opts.delete_untagged and true or false
  local settle = opts.settle or _M.SETTLE
  local progress = opts.progress or noop
  local sleep = opts.sleep or busy.sleep
  local now = (opts.now or os_time)()
  local cutoff_ns = (now - grace) * 1e9
  local spool_cutoff_ns = (now - max(grace, _M.SPOOL_GRACE)) * 1e9

  gc_opts.version = C.BERTH_GC_OPTIONS_VERSION
  gc_opts.now_ns = now * 1e9
  gc_opts.grace_ns = grace * 1e9
  gc_opts.upload_grace_ns = upload_grace * 1e9
  gc_opts.dry_run = dry and 1 or 0
  gc_opts.delete_untagged = delete_untagged and 1 or 0
  local rc = C.berth_gc_new(gc_out, c_store(store), gc_opts, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  local gc = ffi_gc(gc_out[0], C.berth_gc_free)
  repeat
    rc = C.berth_gc_step(gc_progress, gc, scratch_err)
    if rc == 0 then
      local phase = tonumber(gc_progress.phase)
      if phase == C.BERTH_GC_PHASE_SETTLE then
        sleep(settle)
      else
        progress(PHASE[phase], tonumber(gc_progress.done),
          tonumber(gc_progress.total))
      end
    end
  until rc ~= 0
  if rc ~= EITEROVER then
    local _, err, code = fail(rc)
    C.berth_gc_free(ffi_gc(gc, nil))
    return nil, err, code
  end
  local report = report_of(gc, dry, grace, upload_grace, delete_untagged)
  C.berth_gc_free(ffi_gc(gc, nil))
  local function warn(msg)
    report.warnings[#report.warnings + 1] = msg
  end
  local repos = store:repositories() or {}

  -- Phase 4: what a crash left ---------------------------------------------
  local function leftover(kind, repo, what)
    report.leftovers[kind .. "s"] = report.leftovers[kind .. "s"] + 1
    local list = report.removed.leftovers
    what.kind, what.repo = kind, repo
    list[#list + 1] = what
  end

  -- Link directories without their link, holding only temp files of a
  -- put cut short (or nothing), and tag directories without current/link;
  -- only what did not change within the grace.
  local function leftover_links(repo)
    local links, lerr = store:links(repo, { "layer", "revision", "tag",
      "tag_index", "empty" })
    if not links then
      warn(repo .. ": links: " .. tostring(lerr))
      return
    end
    local unset, is_unset, newest, empty = {}, {}, {}, {}
    for _, l in ipairs(links) do
      if l.kind == "tag" and l.state == "absent" then
        is_unset[l.tag] = true
        unset[#unset + 1] = l.tag
      elseif l.state == "absent" then
        empty[#empty + 1] = l
      end
      if l.tag and (newest[l.tag] or 0) < l.mtime_ns then
        newest[l.tag] = l.mtime_ns
      end
    end
    for _, l in ipairs(empty) do
      -- within a tag without current link, the tag is judged whole
      if l.mtime_ns < cutoff_ns and not (l.tag and is_unset[l.tag]) then
        local ok, lerr2, lcode = store:link_leftover(repo, l.kind, l.digest,
          l.tag, cutoff_ns, not dry)
        if ok then
          leftover("link", repo, { link = l.kind, digest = l.digest,
            tag = l.tag })
        elseif lcode ~= "EEXISTS" and lcode ~= "ENOTFOUND"
            and lcode ~= "UNSUPPORTED" then
          warn(repo .. ": " .. l.kind .. " link " .. tostring(l.digest)
            .. ": " .. tostring(lerr2))
        end
      end
    end
    for _, t in ipairs(unset) do
      if newest[t] < cutoff_ns then
        local ok, terr, tcode = true, nil, nil
        if not dry then
          ok, terr, tcode = store:tag_delete_if(repo, t, nil)
        end
        if ok then
          leftover("tag", repo, { tag = t })
        elseif tcode ~= "ETAG_CHANGED" and tcode ~= "MANIFEST_UNKNOWN" then
          warn(repo .. ": tag " .. t .. ": " .. tostring(terr))
        end
      end
    end
  end

  -- Blob directories without data: only temp files of a put, or nothing
  -- (a commit killed before its data moved in). Only an empty directory
  -- is removed, so a commit moving data in meanwhile keeps it.
  local function leftover_blobs()
    local all, berr = store:blob_list(nil)
    if not all then
      warn("blobs: " .. tostring(berr))
      return
    end
    for _, d in ipairs(all) do
      local _, _, code = store:blob_info(d)
      if code == "BLOB_UNKNOWN" then
        local ok, lerr, lcode = store:blob_leftover(d, cutoff_ns, not dry)
        if ok then
          leftover("blob", nil, { digest = d })
        elseif lcode ~= "EEXISTS" and lcode ~= "BLOB_UNKNOWN"
            and lcode ~= "UNSUPPORTED" then
          warn(d .. ": " .. tostring(lerr))
        end
      end
    end
  end

  -- Spooled request bodies of requests that died: nginx names its files
  -- with digits; nothing else there is touched.
  local function leftover_spool()
    local drv = C.berth_store_driver(c_store(store))
    local dir = "/" .. SPOOL
    rc = C.berth_driver_list(drv, strlist, dir, scratch_err)
    local files = strlist_take(strlist) -- empty when rc < 0
    if rc < 0 then
      local _, serr, scode = fail(rc)
      if scode ~= "ENOTFOUND" and scode ~= "UNSUPPORTED" then
        warn(dir .. ": " .. tostring(serr))
      end
      return
    end
    for _, name in ipairs(files) do
      local path = dir .. "/" .. name
      if name:match("^%d+$")
          and C.berth_driver_stat(drv, stat_out, path, nil) == 0
          and stat_out.is_dir == 0
          and tonumber(stat_out.mtime_ns) < spool_cutoff_ns then
        local size = tonumber(stat_out.size)
        rc = dry and 0 or C.berth_driver_remove(drv, path, scratch_err)
        if rc == 0 then
          report.leftovers.spool = report.leftovers.spool + 1
          report.leftovers.spool_bytes = report.leftovers.spool_bytes + size
        else
          local _, serr, scode = fail(rc)
          if scode ~= "ENOTFOUND" then
            warn(path .. ": " .. tostring(serr))
          end
        end
      end
    end
  end

  local function leftover_phase()
    for ri, repo in ipairs(repos) do
      progress("leftovers", ri - 1, #repos + 1)
      leftover_links(repo)
    end
    leftover_blobs()
    leftover_spool()
    progress("leftovers", #repos + 1, #repos + 1)
  end

  leftover_phase()
  return report
end

return _M

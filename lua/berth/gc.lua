-- Garbage collection that is safe while the registry serves pushes, over
-- the store's maintenance methods (berth.store, over gc.h and blob.h).
--
--   local gc = require "berth.gc"
--   local report = assert(gc.run(store, { grace = 3600, dry_run = true }))
--
-- WHY NO LOCK IS NEEDED (race analysis)
--
-- Pushes write in this order: blob data (an upload moved into place; its
-- mtime is that of its last written byte), the blob's _layers link (every
-- commit and every mount writes it, so its mtime is the time of the push
-- even when the data was there already), then the manifest: verify that
-- every reference is linked and present, write the manifest's body as a
-- blob, its revision link, then the tag. GC runs in three phases against
-- that, with T0 = the time it starts and cutoff = T0 - grace:
--
-- 1. Mark. For every repository: every tag's target, every revision (with
--    delete_untagged only those tagged, younger than the grace or needed
--    by a kept one: index children and referrers of kept manifests, to a
--    fixpoint; the others are deleted after checking once more that they
--    are still untagged and old), then recursively index children, and
--    config, layers and other blobs of each. A manifest whose type has no
--    schema is read conservatively: every "digest" in it is kept.
-- 2. Sweep. Candidates are the blobs not marked. A candidate is kept when
--    its data is younger than the cutoff, when a _layers link to it in any
--    repository is younger, or when it is any repository's revision (a
--    manifest pushed since). For the others GC first withdraws their (old)
--    _layers links: it moves them to a journal of its own, not away, and a
--    read through a link that finds it missing (a manifest put verifying
--    its references, a pull, a mount's source) moves it back first
--    (blob.h). It then waits `settle` seconds, so that a manifest put that
--    verified before the withdrawal has written its revision; then marks
--    again (new revisions and tags, parsed once; an untagged manifest
--    deleted in phase 1 that a new manifest or tag needs is put back), and
--    the candidates marked now get their links back; then condemns each
--    candidate left (moves its directory out of the tree, blob.h) and lists
--    the repositories again; and finally, per candidate, condemns its
--    withdrawn links (one move: no read puts them back from then on, and a
--    read before it put its link in the tree), checks the same conditions
--    once more, now with ANY _layers link counting (a push wrote it, or a
--    read put it back), and purges the condemned copy and links, or puts
--    both back. A push writes its link and then looks for the data
--    (blob.c): so either this last check sees the link, or the push sees
--    the data condemned and puts it back; a push that takes up a blob gc
--    is purging never loses it. A read through a link that finds the data
--    condemned puts it back too: the link may be one written, or put back,
--    after gc judged the blob, which this last check would see. A gc
--    killed at any point has moved blobs and links out of the tree, never
--    away: the first read through a withdrawn link puts it back, and the
--    next run puts back every one (but links to data that is gone) before
--    it judges anything.
-- 3. Uploads whose startedat is older than upload_grace are purged, each
--    under its writer lock: a session a request is writing is left alone.
-- 4. Leftovers of a crash, each unchanged for longer than the grace: tag
--    directories without current/link (a first set or a delete cut
--    short), removed under the tag lock while they still have none
--    (tag_delete_if); a first set whose index link went with one writes
--    it again under that lock (tag.c). Link and blob directories without
--    their file, holding only the fs driver's temp files of a put cut
--    short, or nothing (a commit killed before its data moved in): the
--    temp files go, then the directory only while it is empty (rmdir),
--    so what a push or a commit puts there meanwhile stays, and a put or
--    a move that finds its directory gone makes it again (driver_fs.c).
--    No data is ever removed here, so no condemning is needed. And the
--    request bodies nginx spooled for requests that died (serve.lua's
--    SPOOL): a file there is live only while its body arrives or its
--    request handles it, so it is written to at most client_body_timeout
--    apart; those unchanged for the spool grace (SPOOL_GRACE at least)
--    are no live request's. Age is the only evidence across processes.
--
-- So a blob pushed during GC is younger than the grace (data or link) and
-- kept; a manifest put during GC references blobs that are marked, young,
-- or old orphans: it reads back their withdrawn links, and the last check
-- keeps them, or finds their links condemned (it then fails with
-- MANIFEST_BLOB_UNKNOWN and the client uploads again). A manifest put that
-- verified before the withdrawal but writes its revision after the second
-- mark is caught by its own second check (berth_manifest_put verifies its
-- references once more after its revision is visible): that read puts a
-- withdrawn link back, which the last check sees, or finds it condemned,
-- and withdraws the manifest. A push must take less than the grace from
-- its first link to its manifest: blobs linked longer ago than that, that
-- no manifest needs, are garbage. A manifest deleted during GC only keeps
-- its blobs one run more.
--
-- Only positive evidence removes anything: a blob or link that cannot be
-- looked at (an i/o error) is kept, and a manifest that cannot be read
-- stops the run (its references are unknown; the links withdrawn so far
-- are put back). A tag whose current link is damaged keeps every manifest
-- of its history. GC removes no tag; it removes revisions only with
-- delete_untagged; it writes no blob data (it moves links back, and
-- writes the revision of a manifest it put back); with a purged blob go
-- its _layers links and the tag history links naming it.
local ffi = require "ffi"
local cjson = require "cjson.safe"
local C = require("berth.ffi").C
local strlist_take = require("berth.ffi").strlist_take
local errors = require "berth.errors"
local store_mod = require "berth.store"
local manifest = require "berth.manifest"
local digest = require "berth.digest"

local SPOOL = require("berth.serve").SPOOL

local ffi_new = ffi.new
local fail = errors.fail
local scratch_err = errors.scratch
local c_store = store_mod.c_store
local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local pcall = pcall
local rawget = rawget
local setmetatable = setmetatable
local getmetatable = getmetatable
local error = error
local tostring = tostring
local tonumber = tonumber
local sort = table.sort
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

-- References of a manifest body that no schema knows, conservatively:
-- every string anywhere in the JSON that is a digest, whatever its key
-- (schema1's "blobSum", Go reads "Digest" as "digest"), and the top-level
-- subject.
local function conservative_refs(body)
  local doc = cjson.decode(body)
  local info = { refs = {}, unparsed = true }
  if type(doc) ~= "table" then
    info.unreadable = true
    return info
  end
  local seen = {}
  local function add(d)
    if type(d) == "string" and not seen[d] and digest.parse(d) then
      seen[d] = true
      info.refs[#info.refs + 1] = { kind = "unknown", digest = d }
    end
  end
  local function walk(t, depth)
    if depth > 64 then return end
    for k, v in pairs(t) do
      if type(v) == "table" then
        if not (depth == 0 and k == "subject") then
          walk(v, depth + 1)
        end
      else
        add(v)
      end
    end
  end
  walk(doc, 0)
  if type(doc.subject) == "table" and type(doc.subject.digest) == "string"
  then
    info.subject = doc.subject.digest
  end
  return info
end

-- manifest_info(store, digest) -> { refs = { descriptor }, subject =,
--   media_type =, unparsed = bool } | nil, err, code
-- The references of the manifest stored as digest (global data, verified
-- as it is read), by the built-in schemas or else conservatively.
function _M.manifest_info(store, dgst)
  local body, err, code = store:blob_get(nil, dgst)
  if not body then
    return nil, err, code
  end
  local m = manifest.parse(body)
  if m then
    local subject = m:subject()
    local info = { refs = m:refs(), subject = subject and subject.digest,
      media_type = m:media_type() }
    m:close()
    return info
  end
  return conservative_refs(body)
end

-- Put back a manifest GC deleted (its body is still stored): revision
-- link and referrers entry, without verifying (its blobs are kept).
local function restore_manifest(store, repo, dgst)
  local body, err, code = store:blob_get(nil, dgst)
  if not body then return nil, err, code end
  local m = manifest.parse(body)
  if not m then
    local doc = cjson.decode(body)
    local mt = type(doc) == "table" and type(doc.mediaType) == "string"
      and doc.mediaType or "application/octet-stream"
    m, err, code = manifest.new({ media_type = mt, body = body })
    if not m then return nil, err, code end
  end
  local ok
  ok, err, code = store:manifest_put(repo, m,
    { digest = dgst, skip_verify = true })
  m:close()
  return ok, err, code
end

-- restore_manifest(store, repo, digest) -> true | nil, err, code
_M.restore_manifest = restore_manifest

local function default_sleep(seconds)
  if seconds <= 0 then return end
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.sleep) == "function" then
    local ok = pcall(ngx.sleep, seconds)
    if ok then return end
  end
  os.execute(("sleep %.3f"):format(seconds))
end

local function sorted_keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  sort(list)
  return list
end

local function noop() end

-- The run ----------------------------------------------------------------

-- A failure that stops the run: raised inside, returned by run.
local Abort = {}

local function abort(msg, code)
  error(setmetatable({ msg = msg, code = code }, Abort), 0)
end

-- run(store, opts?) -> report | nil, err, code
-- opts: grace (seconds, default 1h), upload_grace (default 7d),
--   dry_run, delete_untagged, settle (seconds between unlinking and the
--   final checks, default 1), progress = function(phase, done, total),
--   now = function() -> seconds (tests), sleep = function(seconds).
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
  local sleep = opts.sleep or default_sleep
  local now = (opts.now or os_time)()
  local cutoff_ns = (now - grace) * 1e9
  local upload_cutoff = now - upload_grace
  local spool_cutoff_ns = (now - max(grace, _M.SPOOL_GRACE)) * 1e9

  local report = {
    dry_run = dry, grace = grace, upload_grace = upload_grace,
    delete_untagged = delete_untagged,
    blobs = { total = 0, kept = 0, kept_bytes = 0, young = 0,
      young_bytes = 0, removed = 0, removed_bytes = 0, reprieved = 0 },
    manifests = { removed = 0, restored = 0 },
    links = { removed = 0, restored = 0 },
    uploads = { total = 0, removed = 0, removed_bytes = 0, busy = 0 },
    leftovers = { tags = 0, links = 0, blobs = 0, spool = 0,
      spool_bytes = 0 },
    removed = { blobs = {}, manifests = {}, uploads = {}, leftovers = {} },
    warnings = {},
  }
  local function warn(msg)
    report.warnings[#report.warnings + 1] = msg
  end

  local marked = {}      -- digest -> true: keep the blob
  local done_m = {}      -- digest -> true: manifest marked with its refs
  local infos = {}       -- digest -> manifest info | false (no data)
  local deleted = {}     -- repo -> { digest -> true }: untagged, deleted
  local history = {}     -- digest -> { { repo, tag } }: tag index links
  local candidates = {}  -- { digest, size, links, unlinked, condemned,
                         --   links_condemned, gone }
  local repos

  -- A value or the end of the run.
  local function need(v, err, code)
    if v == nil then abort(tostring(err), code) end
    return v
  end

  -- The references of manifest d; false when its data is not there (or
  -- too large to be a manifest). Anything else stops the run: what it
  -- references is unknown, so nothing may go.
  local function info_of(d)
    local i = infos[d]
    if i == nil then
      local err, code
      i, err, code = _M.manifest_info(store, d)
      if not i then
        if code ~= "BLOB_UNKNOWN" and code ~= "ETOOLARGE" then
          abort("cannot read manifest " .. d .. ": " .. tostring(err)
            .. " (nothing removed after this point; see berth fsck)", code)
        end
        i = false
      end
      infos[d] = i
    end
    return i
  end

  -- Mark d as a manifest of repo (revs: its revisions, to tell children
  -- among conservatively read references), with everything it needs.
  local function mark_manifest(d, revs)
    marked[d] = true
    if done_m[d] then return end
    done_m[d] = true
    local i = info_of(d)
    if not i then return end
    for _, r in ipairs(i.refs) do
      if r.kind == "manifest" or (r.kind == "unknown" and revs[r.digest])
      then
        mark_manifest(r.digest, revs)
      else
        marked[r.digest] = true
      end
    end
  end

  -- The manifests d needs (index children).
  local function children(d, revs)
    local i = info_of(d)
    local list = {}
    if i then
      for _, r in ipairs(i.refs) do
        if r.kind == "manifest" or (r.kind == "unknown" and revs[r.digest])
        then
          list[#list + 1] = r.digest
        end
      end
    end
    return list
  end

  -- One repository's revisions and tags: revs digest -> link, tagged
  -- digest -> true, and the tag history (index links) recorded. A tag
  -- whose current link is damaged counts every digest of its history as
  -- tagged: it may name any of them.
  local function scan(repo, with_history)
    local links = need(store:links(repo, { "revision", "tag",
      "tag_index" }))
    local revs, tagged, broken = {}, {}, {}
    for _, l in ipairs(links) do
      if l.kind == "revision" then
        revs[l.digest] = l
        if l.target and l.target ~= l.digest then
          marked[l.target] = true -- damaged: keep what it names too
        end
      elseif l.kind == "tag" then
        if l.state == "ok" then
          tagged[l.digest] = true
        else
          broken[l.tag] = true
        end
      elseif l.kind == "tag_index" then
        if broken[l.tag] then tagged[l.digest] = true end
        if with_history then
          local h = history[l.digest]
          if not h then
            h = {}
            history[l.digest] = h
          end
          h[#h + 1] = { repo, l.tag }
        end
      end
    end
    return revs, tagged
  end

  -- Phase 1: mark ----------------------------------------------------------
  local function mark_phase()
    repos = need(store:repositories())
    for ri, repo in ipairs(repos) do
      progress("mark", ri - 1, #repos)
      local revs, tagged = scan(repo, true)
      local roots = {}
      for d in pairs(tagged) do roots[#roots + 1] = d end
      for d, l in pairs(revs) do
        if not delete_untagged or tagged[d] or l.state ~= "ok"
            or l.mtime_ns >= cutoff_ns then
          roots[#roots + 1] = d
        end
      end
      if delete_untagged then
        -- Keep what the roots need, to a fixpoint: index children, and
        -- the referrers of every kept manifest.
        local referrers = {}
        for d in pairs(revs) do
          local i = info_of(d)
          if i and i.subject then
            local l = referrers[i.subject]
            if not l then
              l = {}
              referrers[i.subject] = l
            end
            l[#l + 1] = d
          end
        end
        local kept, queue = {}, roots
        while #queue > 0 do
          local d = queue[#queue]
          queue[#queue] = nil
          if not kept[d] then
            kept[d] = true
            for _, c in ipairs(children(d, revs)) do
              queue[#queue + 1] = c
            end
            for _, r in ipairs(referrers[d] or {}) do
              queue[#queue + 1] = r
            end
          end
        end
        local doomed = {}
        for d in pairs(revs) do
          if not kept[d] then doomed[#doomed + 1] = d end
        end
        sort(doomed)
        for _, d in ipairs(doomed) do
          local gone = true
          if not dry then
            -- Still untagged and old? (A push may have tagged it or put
            -- it again.)
            local l = store:link_stat(repo, "revision", d)
            local tags = store:tag_lookup(repo, d)
            if not l or l.mtime_ns >= cutoff_ns or not tags or #tags > 0
            then
              gone = false
            else
              -- only while it has no tag: a tag set now keeps it
              local ok, derr, dcode = store:manifest_delete(repo, d, {})
              if not ok then
                gone = false
                if dcode ~= "ETAG_CHANGED" then
                  warn(repo .. "@" .. d .. ": " .. tostring(derr))
                end
              end
            end
          end
          if gone then
            deleted[repo] = deleted[repo] or {}
            deleted[repo][d] = true
            revs[d] = nil
            report.manifests.removed = report.manifests.removed + 1
          end
        end
        -- what is kept, and what stayed after all (tagged or put again)
        roots = sorted_keys(kept)
        for d in pairs(revs) do roots[#roots + 1] = d end
      end
      for _, d in ipairs(roots) do
        if not (deleted[repo] and deleted[repo][d]) then
          mark_manifest(d, revs)
        end
      end
    end
    progress("mark", #repos, #repos)
  end

  -- Phase 2: sweep ---------------------------------------------------------

  -- Why d must stay ("young", "linked", "manifest", "gone", "unsure"), or
  -- nil with its data's info and the repositories with an old _layers
  -- link to it. any_link: after the unlinking every link is a new one.
  -- condemned: d's directory is out of the tree, and every link is a new
  -- one (the old ones were removed); data back in the tree was put back by
  -- a push.
  local function must_keep(d, condemned)
    local info, _, code = store:blob_info(d)
    if condemned then
      if info then return "young", info end
      if code ~= "BLOB_UNKNOWN" then return "unsure" end
    elseif not info then
      return code == "BLOB_UNKNOWN" and "gone" or "unsure"
    elseif info.mtime_ns >= cutoff_ns then
      return "young", info
    end
    local old = {}
    for _, repo in ipairs(repos) do
      local l, _, lcode = store:link_stat(repo, "layer", d)
      if l then
        if condemned or l.mtime_ns >= cutoff_ns then
          return "linked", info
        end
        old[#old + 1] = repo
      elseif lcode ~= "ENOTFOUND" then
        return "unsure", info
      end
      local r, _, rcode = store:link_stat(repo, "revision", d)
      if r and not (deleted[repo] and deleted[repo][d]) then
        return "manifest", info
      elseif not r and rcode ~= "ENOTFOUND" then
        return "unsure", info
      end
    end
    return nil, info, old
  end

  local function keep_young(size)
    report.blobs.young = report.blobs.young + 1
    report.blobs.young_bytes = report.blobs.young_bytes + size
  end
  -- A condemned candidate that stays goes back into the tree; a failure
  -- leaves it for the next run (reprieve_all), and says so.
  local function reprieve(c)
    if not c.condemned then return end
    c.condemned = false
    local ok, rerr, rcode = store:blob_reprieve(c.digest)
    if not ok and rcode ~= "BLOB_UNKNOWN" then
      warn(c.digest .. ": cannot put back: " .. tostring(rerr))
    end
  end
  -- A candidate that stays gets its withdrawn links back (condemned: from
  -- there); one that cannot be put back is left for the next run
  -- (restore_links), and said. A gone one loses them: they would dangle.
  local function relink(c)
    local all = true
    if c.gone then
      c.unlinked = {}
    end
    for _, repo in ipairs(c.unlinked or {}) do
      local ok, rerr, rcode
      if c.links_condemned then
        ok, rerr, rcode = store:blob_link_reprieve(repo, c.digest)
      else
        ok, rerr, rcode = store:blob_link_restore(repo, c.digest)
      end
      if not ok and rcode ~= "BLOB_UNKNOWN" then -- BLOB_UNKNOWN: a read did
        all = false
        warn(repo .. ": " .. c.digest .. ": cannot put the link back: "
          .. tostring(rerr))
      end
    end
    if c.unlinked and all then
      store:blob_links_purge(c.digest) -- what is left is empty
    end
    c.unlinked = nil
  end
  local function record(c)
    report.blobs.removed = report.blobs.removed + 1
    report.blobs.removed_bytes = report.blobs.removed_bytes + c.size
    local list = report.removed.blobs
    list[#list + 1] = { digest = c.digest, size = c.size }
  end

  -- Put back a manifest deleted in phase 1 that a tag or a new manifest
  -- needs, with the manifests it needs.
  local function restore(repo, d, revs)
    if not (deleted[repo] and deleted[repo][d]) then return end
    local ok, rerr = restore_manifest(store, repo, d)
    if not ok then
      warn(repo .. "@" .. d .. ": cannot put back: " .. tostring(rerr))
      return
    end
    deleted[repo][d] = nil
    revs[d] = true
    report.manifests.removed = report.manifests.removed - 1
    report.manifests.restored = report.manifests.restored + 1
    for _, c in ipairs(children(d, revs)) do restore(repo, c, revs) end
  end

  local function sweep_phase()
    local all = need(store:blob_list(nil))
    repos = need(store:repositories()) -- with those made meanwhile
    report.blobs.total = #all
    for i, d in ipairs(all) do
      if i % 64 == 0 then progress("sweep", i, #all) end
      if marked[d] then
        local info = store:blob_info(d)
        report.blobs.kept = report.blobs.kept + 1
        report.blobs.kept_bytes = report.blobs.kept_bytes
          + (info and info.size or 0)
      else
        local why, info, old = must_keep(d, false)
        if why then
          if info then keep_young(info.size) end
        else
          candidates[#candidates + 1] = { digest = d, size = info.size,
            links = old }
        end
      end
    end
    progress("sweep", #all, #all)

    if dry then
      for _, c in ipairs(candidates) do record(c) end
      return
    end
    if #candidates == 0 and not next(deleted) then
      return
    end
    -- Withdraw their old links: a manifest put or a pull that needs one
    -- puts it back (so the last look counts it), the others stay out.
    for _, c in ipairs(candidates) do
      c.unlinked = {}
      for _, repo in ipairs(c.links) do
        if store:blob_link_withdraw(repo, c.digest) then
          c.unlinked[#c.unlinked + 1] = repo
        end
      end
    end
    sleep(settle)
    -- Mark again: the manifests and tags that arrived meanwhile.
    repos = need(store:repositories())
    for _, repo in ipairs(repos) do
      local revs, tagged = scan(repo, false)
      for d in pairs(tagged) do
        if not revs[d] then restore(repo, d, revs) end
      end
      for d in pairs(revs) do
        if not done_m[d] then
          for _, c in ipairs(children(d, revs)) do
            if not revs[c] then restore(repo, c, revs) end
          end
        end
      end
      for d in pairs(tagged) do mark_manifest(d, revs) end
      for d in pairs(revs) do mark_manifest(d, revs) end
    end
    -- The candidates marked now get their links back. Condemn the others,
    -- then look at each once more. A push that links one from now on finds
    -- its data gone and puts it back (blob.c), so no link this look misses
    -- belongs to a push that succeeded; the repositories are listed again
    -- after condemning for the same reason.
    for _, c in ipairs(candidates) do
      if marked[c.digest] then
        relink(c)
      else
        local ok, cerr, ccode = store:blob_condemn(c.digest)
        c.condemned = ok or false
        c.gone = ccode == "BLOB_UNKNOWN"
        if not ok and not c.gone then
          warn(c.digest .. ": " .. tostring(cerr))
        end
      end
    end
    repos = need(store:repositories())
    local function spare(c, why)
      reprieve(c)
      relink(c)
      if why ~= "gone" then keep_young(c.size) end
    end
    for i, c in ipairs(candidates) do
      progress("purge", i, #candidates)
      local why
      if marked[c.digest] then
        why = "marked"
      elseif not c.condemned then
        why = c.gone and "gone" or "unsure"
      else
        -- no read puts a withdrawn link back from now on; BLOB_UNKNOWN:
        -- there is none left out (reads put them back: this look sees them)
        local ok, lerr, lcode = store:blob_links_condemn(c.digest)
        c.links_condemned = ok or false
        if not ok and lcode ~= "BLOB_UNKNOWN" then
          why = "unsure"
          warn(c.digest .. ": " .. tostring(lerr))
        end
        why = why or must_keep(c.digest, true)
      end
      if why then
        spare(c, why)
      else
        local ok, perr, pcode = store:blob_purge_condemned(c.digest)
        if ok then
          c.condemned = false
          record(c)
          report.links.removed = report.links.removed + #c.unlinked
          c.unlinked = nil
          -- one left (a failure) is dropped by the next run
          store:blob_links_purge(c.digest)
          for _, h in ipairs(history[c.digest] or {}) do
            if store:link_remove(h[1], "tag_index", c.digest, h[2]) then
              report.links.removed = report.links.removed + 1
            end
          end
        elseif pcode == "BLOB_UNKNOWN" then
          c.condemned = false -- a push took the copy back
          spare(c, "linked")
        else
          spare(c, "unsure")
          warn(c.digest .. ": " .. tostring(perr))
        end
      end
    end
  end

  -- Phase 3: upload sessions -----------------------------------------------
  local function upload_phase()
    for ri, repo in ipairs(repos) do
      progress("uploads", ri - 1, #repos)
      local ups, uerr = store:uploads(repo)
      if not ups then
        warn(repo .. ": uploads: " .. tostring(uerr))
        ups = {}
      end
      for _, u in ipairs(ups) do
        report.uploads.total = report.uploads.total + 1
        if u.started < upload_cutoff then
          local ok, perr, pcode = true, nil, nil
          if not dry then
            ok, perr, pcode = store:upload_purge(repo, u.id)
          end
          if ok then
            report.uploads.removed = report.uploads.removed + 1
            report.uploads.removed_bytes = report.uploads.removed_bytes
              + u.size
            local list = report.removed.uploads
            list[#list + 1] = { repo = repo, id = u.id, size = u.size,
              started = u.started }
          elseif pcode == "EBUSY" then
            report.uploads.busy = report.uploads.busy + 1
          elseif pcode ~= "BLOB_UPLOAD_UNKNOWN" then
            warn(repo .. ": upload " .. u.id .. ": " .. tostring(perr))
          end
        end
      end
    end
    progress("uploads", #repos, #repos)
  end

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
    local rc = C.berth_driver_list(drv, strlist, dir, scratch_err)
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

  local ok, err = pcall(function()
    if not dry then
      -- what a killed gc condemned is judged again, from the start
      report.blobs.reprieved = need(store:blob_reprieve_all())
      report.links.restored = need(store:blob_restore_links())
    end
    mark_phase()
    sweep_phase()
    upload_phase()
    leftover_phase()
  end)
  if not ok then
    if getmetatable(err) ~= Abort then
      error(err, 0)
    end
    -- Orphans that stay go back, with their links.
    for _, c in ipairs(candidates) do
      reprieve(c)
      relink(c)
    end
    return nil, err.msg, err.code or "UNKNOWN"
  end

  for repo, set in pairs(deleted) do
    for d in pairs(set) do
      local list = report.removed.manifests
      list[#list + 1] = { repo = repo, digest = d }
    end
  end
  sort(report.removed.manifests, function(a, b)
    return a.repo < b.repo or (a.repo == b.repo and a.digest < b.digest)
  end)
  return report
end

return _M

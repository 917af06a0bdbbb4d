-- fsck: check a store against its invariants, and repair what is broken.
--
--   local fsck = require "berth.fsck"
--   local report = assert(fsck.run(store, { repair = false }))
--   for _, p in ipairs(report.problems) do print(p.kind, p.message) end
--
-- What is checked (Distribution's layout is the truth; see DESIGN.md):
--   corrupt_blob          blob data that does not hash to its digest
--                         (re-hashed, streamed)
--   blob_without_data     a blob directory without its data file
--   unreadable_blob       blob data that cannot be read (a directory, an
--                         i/o error)
--   damaged_link          a link file that is not a digest, or names
--                         another digest than its path
--   dangling_layer_link   _layers link to a blob whose data is gone
--   dangling_revision     revision link to a manifest whose data is gone
--   unreadable_manifest   revision whose content is not a manifest
--   dangling_tag          tag whose current link names no manifest of the
--                         repository (or one whose data is gone)
--   dangling_tag_history  tag index link to a manifest whose data is gone
--   missing_reference     manifest whose config, layer, blob or index child
--                         is not in the repository (non-distributable
--                         layers with urls excepted)
--   stale_upload          upload session older than the upload grace
--
-- What a crash leaves half made is no damage: it is listed apart, in
-- report.leftovers, as gc removes it once older than its grace (and
-- repair at once):
--   tag_without_current   a tag directory without current/link (a first
--                         set or a delete cut short); never listed
--   link_without_file     a link directory without its link, holding
--                         only temp files of a put cut short, or nothing
--   blob_without_data     a blob directory without data, holding only
--                         temp files of a put, or nothing (a commit cut
--                         short); data that is no file stays a problem
--
-- A _layers link a gc withdrew (core/src/collect.c, kept in berth's own area) is no
-- link, and no damage: a read through it puts it back (this check's
-- references too), and the next gc puts back the others.
--
-- With repair, in this order: corrupt blob data and empty blob directories
-- are removed; dangling and damaged links are removed (a dangling tag: the
-- whole tag); a manifest with a missing reference is fixed when what it
-- needs is still in the store (the blob is linked into the repository
-- again, an index child's revision put back), and removed only when the
-- blob is gone from the store entirely (each problem's `fix` says which);
-- this repeats until nothing changes, as removing a manifest can break an
-- index that needs it; stale uploads are purged; then berth's own indexes
-- (referrers, tag reverse index) are rebuilt from the layout for every
-- repository. A following fsck then finds nothing. Repair is meant for an
-- idle store: it does not check twice before it removes.
local gc = require "berth.gc"
local manifest = require "berth.manifest"
local one_line = require("berth.errors").one_line

local type = type
local pcall = pcall
local setmetatable = setmetatable
local getmetatable = getmetatable
local pairs = pairs
local ipairs = ipairs
local error = error
local tostring = tostring
local sort = table.sort
local format = string.format
local os_time = os.time
local os_date = os.date

local _M = { _VERSION = "0.1.0" }

_M.UPLOAD_GRACE = gc.UPLOAD_GRACE

local function noop() end

-- A failure that stops the run: raised inside, returned by run.
local Abort = {}

local function abort(msg, code)
  error(setmetatable({ msg = tostring(msg), code = code }, Abort), 0)
end

local LINK_WHAT = {
  layer = "layer link", revision = "revision link", tag = "tag",
  tag_index = "tag history link",
}

-- run(store, opts?) -> report | nil, err, code
-- opts: repair, upload_grace (seconds, default 7d), verify (default true:
--   re-hash every blob), progress = function(phase, done, total[, unit]),
--   now = function() -> seconds.
-- report: { ok = no problem found, repaired = repair was asked,
--   repositories = n, blobs = { checked, bytes, corrupt }, links = n,
--   manifests = n, uploads = n, problems = { { kind, message, repo?,
--   digest?, tag?, ref?, fix, repaired } }, counts = { kind -> n },
--   leftovers = { { kind, message, repo, tag?, fix, repaired } } (what a
--   crash left; not problems), errors = { message } (repairs that failed) }
function _M.run(store, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("options must be a table", 2)
  end
  local repair = opts.repair and true or false
  local upload_grace = opts.upload_grace or _M.UPLOAD_GRACE
  local progress = opts.progress or noop
  local now = (opts.now or os_time)()

  local report = {
    ok = true, repaired = repair, repositories = 0,
    blobs = { checked = 0, bytes = 0, corrupt = 0 },
    links = 0, manifests = 0, uploads = 0,
    problems = {}, counts = {}, leftovers = {}, errors = {},
  }

  -- problem(p, fix_fn) records p; with repair, fix_fn() -> ok, err, code
  -- runs (what is gone already, ENOTFOUND, is fixed). As a leftover of a
  -- crash (leftover set), p is listed apart and the store is still ok.
  local function problem(p, fix_fn, leftover)
    -- messages carry what the disk holds: one line each (errors.h)
    p.message = one_line(p.message)
    if leftover then
      report.leftovers[#report.leftovers + 1] = p
    else
      report.ok = false
      report.problems[#report.problems + 1] = p
      report.counts[p.kind] = (report.counts[p.kind] or 0) + 1
    end
    p.repaired = false
    if repair and fix_fn then
      local ok, err, code = fix_fn()
      if ok or code == "ENOTFOUND" then
        p.repaired = true
      else
        report.errors[#report.errors + 1] = p.message .. ": repair failed: "
          .. tostring(err)
      end
    end
    return p.repaired
  end

  local function body()
    -- Blobs -------------------------------------------------------------------
    local blobs, err, code = store:blob_list(nil)
    if not blobs then return nil, err, code end
    local present = {} -- digest -> true while the data is there
    local sizes, total = {}, 0
    for _, d in ipairs(blobs) do
      local info = store:blob_info(d)
      if info then
        sizes[d] = info.size
        total = total + info.size
      end
    end
    local done_bytes = 0
    for i, d in ipairs(blobs) do
      progress("verify", done_bytes, total, "bytes")
      if opts.verify == false then
        if sizes[d] then present[d] = true end
      else
        local size, verr, vcode, actual = store:blob_verify(d)
        if size then
          present[d] = true
          report.blobs.bytes = report.blobs.bytes + size
        elseif vcode == "DIGEST_INVALID" then
          report.blobs.corrupt = report.blobs.corrupt + 1
          problem({ kind = "corrupt_blob", digest = d,
            message = format("blob %s is corrupt: its data hashes to %s", d,
              tostring(actual)),
            fix = "remove the blob's data" },
            function() return store:blob_purge(d) end)
        elseif vcode == "BLOB_UNKNOWN" then
          local leftover = store:blob_leftover(d, nil, false)
          problem({ kind = "blob_without_data", digest = d,
            message = format("blob %s has a directory but no data", d),
            fix = "remove the directory" .. (leftover and " (gc does once"
              .. " it is older than the grace)" or "") },
            function() return store:blob_purge(d) end, leftover)
        elseif vcode == "ENOMEM" then
          return nil, verr, vcode
        else
          -- not evidence of damage: never removed
          problem({ kind = "unreadable_blob", digest = d,
            message = format("blob %s cannot be read: %s", d, tostring(verr)),
            fix = "none: check the storage, then run fsck again" })
        end
      end
      report.blobs.checked = i
      done_bytes = done_bytes + (sizes[d] or 0)
    end
    progress("verify", total, total, "bytes")
    local function has_data(d)
      if present[d] ~= nil then return present[d] end
      -- data written since the listing (a store in use); only "not there"
      -- counts as missing
      local info, ierr, icode = store:blob_info(d)
      if not info and icode ~= "BLOB_UNKNOWN" then
        abort(ierr, icode)
      end
      present[d] = info and true or false
      return present[d]
    end

    -- Repositories ----------------------------------------------------------
    local repos
    repos, err, code = store:repositories()
    if not repos then return nil, err, code end
    report.repositories = #repos
    -- The references of manifest d by the built-in schemas; false when
    -- its data is not there or no schema reads it (a type without one has
    -- references fsck cannot check; gc reads those conservatively).
    local infos = {}
    local function info_of(d)
      local i = infos[d]
      if i == nil then
        local text = store:blob_get(nil, d)
        local m = text and manifest.parse(text)
        i = m and { refs = m:refs() } or false
        if m then m:close() end
        infos[d] = i
      end
      return i
    end

    for ri, repo in ipairs(repos) do
      progress("repositories", ri - 1, #repos)
      local links
      links, err, code = store:links(repo, { "layer", "revision", "tag",
        "tag_index", "empty" })
      if not links then return nil, err, code end
      report.links = report.links + #links
      local revs = {}  -- digest -> true: a readable manifest of repo
      local removed = {} -- manifests removed by this run
      local function remove_manifest(d)
        local ok, rerr, rcode = store:manifest_delete(repo, d)
        if not ok and rcode == "MANIFEST_UNKNOWN" then
          ok, rerr = store:link_remove(repo, "revision", d)
        end
        if ok then
          revs[d] = nil
          removed[d] = true
        end
        return ok, rerr
      end

      for _, l in ipairs(links) do
        -- quoted, so that an empty name shows
        local tag = l.tag and ('tag "' .. l.tag .. '"')
        if l.kind == "tag" and l.state == "absent" then
          problem({ kind = "tag_without_current", repo = repo, tag = l.tag,
            message = format("%s: %s has no current link (a set or a delete"
              .. " cut short)", repo, tag),
            fix = "remove the tag directory (gc does once it is older than"
              .. " the grace)" },
            function() return store:tag_delete_if(repo, l.tag, nil) end, true)
        elseif l.state == "absent" then
          -- a directory without its link: no link, a leftover when it holds
          -- only temp files of a put cut short (or nothing)
          report.links = report.links - 1
          if store:link_leftover(repo, l.kind, l.digest, l.tag, nil, false)
          then
            problem({ kind = "link_without_file", repo = repo, link = l.kind,
              digest = l.digest, tag = l.tag,
              message = format("%s: %s %s%s has a directory but no link (a"
                .. " put cut short)", repo, LINK_WHAT[l.kind], l.digest,
                tag and " of " .. tag or ""),
              fix = "remove the directory (gc does once it is older than"
                .. " the grace)" },
              function()
                return store:link_leftover(repo, l.kind, l.digest, l.tag, nil,
                  true)
              end, true)
          end
        elseif l.state ~= "ok" then
          local what = l.kind == "tag" and tag or (LINK_WHAT[l.kind]
            .. (l.digest and " " .. l.digest or "")
            .. (tag and " of " .. tag or ""))
          problem({ kind = "damaged_link", repo = repo, link = l.kind,
            digest = l.digest, tag = l.tag, state = l.state,
            message = format("%s: %s is %s", repo, what,
              l.state == "mismatch" and ("naming " .. tostring(l.target))
                or "not a digest"),
            fix = l.kind == "tag" and "remove the tag" or "remove the link" },
            function()
              return store:link_remove(repo, l.kind, l.digest, l.tag)
            end)
        elseif l.kind == "layer" then
          if not has_data(l.digest) then
            problem({ kind = "dangling_layer_link", repo = repo,
              digest = l.digest,
              message = format("%s: layer link to %s, whose data is gone",
                repo, l.digest),
              fix = "remove the link" },
              function() return store:link_remove(repo, "layer", l.digest) end)
          end
        elseif l.kind == "revision" then
          report.manifests = report.manifests + 1
          if not has_data(l.digest) then
            problem({ kind = "dangling_revision", repo = repo,
              digest = l.digest,
              message = format("%s@%s: manifest whose data is gone", repo,
                l.digest),
              fix = "remove the manifest and its tags" },
              function() return remove_manifest(l.digest) end)
          else
            local ok, merr, mcode = store:manifest_head(repo, l.digest)
            if ok then
              revs[l.digest] = true
            elseif mcode == "MANIFEST_INVALID" then
              problem({ kind = "unreadable_manifest", repo = repo,
                digest = l.digest,
                message = format("%s@%s: %s", repo, l.digest, tostring(merr)),
                fix = "remove the manifest and its tags" },
                function() return remove_manifest(l.digest) end)
            elseif mcode == "EIO" or mcode == "MANIFEST_UNKNOWN" then
              -- corrupt data (reported with the blobs, and removed with them
              -- when repairing), or removed meanwhile: not this check's
              revs[l.digest] = true
            else
              abort(merr, mcode)
            end
          end
        elseif l.kind == "tag" then
          if not revs[l.digest] then
            problem({ kind = "dangling_tag", repo = repo, tag = l.tag,
              digest = l.digest,
              message = format("%s: %s points at %s, which is not a manifest"
                .. " of the repository", repo, tag, l.digest),
              fix = "remove the tag" },
              function() return store:link_remove(repo, "tag", nil, l.tag) end)
          end
        elseif l.kind == "tag_index" then
          if not has_data(l.digest) then
            problem({ kind = "dangling_tag_history", repo = repo, tag = l.tag,
              digest = l.digest,
              message = format("%s: history of %s names %s, whose data is"
                .. " gone", repo, tag, l.digest),
              fix = "remove the history link" },
              function()
                return store:link_remove(repo, "tag_index", l.digest, l.tag)
              end)
          end
        end
      end

      -- Manifests and their references, to a fixpoint when repairing.
      local reported = {}
      local changed = true
      while changed do
        changed = false
        local list = {}
        for d in pairs(revs) do list[#list + 1] = d end
        sort(list)
        for _, d in ipairs(list) do
          local info = revs[d] and info_of(d)
          local refs = info and info.refs or {}
          for _, ref in ipairs(refs) do
            local rd = ref.digest
            local ok
            if ref.urls then
              ok = true
            elseif ref.kind == "manifest" then
              ok = revs[rd] or false
            else
              local size, serr, scode = store:blob_stat(repo, rd)
              if not size and scode ~= "BLOB_UNKNOWN" then
                abort(serr, scode)
              end
              ok = size and true or false
            end
            local key = d .. " " .. rd
            if not ok and not reported[key] then
              reported[key] = true
              local gone = not has_data(rd) or removed[rd]
              local what = ref.kind == "manifest" and "index child" or ref.kind
              local fix
              if gone then
                fix = "remove the manifest: " .. rd
                  .. " is gone from the store"
              elseif ref.kind == "manifest" then
                fix = "put the child manifest back (its data is stored)"
              else
                fix = "link the blob into the repository again (its data is"
                  .. " stored)"
              end
              local fixed = problem({ kind = "missing_reference", repo = repo,
                digest = d, ref = rd, ref_kind = ref.kind,
                message = format("%s@%s: %s %s is not in the repository",
                  repo, d, what, rd),
                fix = fix },
                function()
                  if gone then
                    return remove_manifest(d)
                  elseif ref.kind == "manifest" then
                    local m, perr = store:manifest_restore(repo, rd)
                    if m then revs[rd] = true end
                    return m, perr
                  end
                  return store:blob_mount(repo, nil, rd)
                end)
              if fixed then
                changed = true
                if not revs[d] then break end -- removed: next manifest
              end
            end
          end
        end
      end

      -- Upload sessions
      local ups
      ups, err = store:uploads(repo)
      if not ups then
        report.errors[#report.errors + 1] = repo .. ": uploads: "
          .. tostring(err)
        ups = {}
      end
      report.uploads = report.uploads + #ups
      for _, u in ipairs(ups) do
        if u.started < now - upload_grace then
          problem({ kind = "stale_upload", repo = repo, id = u.id,
            started = u.started, size = u.size,
            message = format("%s: upload %s started %s and is older than the"
              .. " upload grace", repo, u.id,
              os_date("!%Y-%m-%dT%H:%M:%SZ", u.started)),
            fix = "purge the upload" },
            function() return store:upload_purge(repo, u.id) end)
        end
      end

      -- berth's own indexes, rebuilt from the layout.
      if repair then
        local ok, rerr = store:referrers_rebuild(repo)
        if not ok then
          report.errors[#report.errors + 1] = repo .. ": referrers: "
            .. tostring(rerr)
        end
        ok, rerr, code = store:tag_reindex(repo)
        if not ok and code ~= "NAME_UNKNOWN" then
          report.errors[#report.errors + 1] = repo .. ": tag index: "
            .. tostring(rerr)
        end
      end
    end
    progress("repositories", #repos, #repos)
  end

  -- body() -> nothing | nil, err, code; an abort raises
  local ok, r, err, code = pcall(body)
  if not ok then
    if getmetatable(r) ~= Abort then
      error(r, 0)
    end
    return nil, r.msg, r.code or "UNKNOWN"
  end
  if r == nil and err then
    return nil, err, code
  end
  return report
end

return _M

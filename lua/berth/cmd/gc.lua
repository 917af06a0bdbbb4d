-- berth gc: garbage collection, safe while the registry serves pushes
-- (the race analysis is at the top of lua/berth/gc.lua).
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"
local gc = require "berth.gc"

local ipairs = ipairs
local tostring = tostring
local format = string.format
local os_date = os.date

local _M = { _VERSION = "0.1.0" }

_M.summary = "remove unreferenced blobs and stale uploads (safe online)"

_M.usage = [[
usage: berth gc [--dry-run] [--delete-untagged] [--grace DURATION]
                [--upload-grace DURATION] [--json] [--root DIR]
                [--config FILE]
Remove what nothing needs, while the registry keeps serving: blobs that no
tag, manifest, index child or referrer (subject) references and whose data
and links are older than the grace period, and upload sessions started
longer ago than the upload grace; and what a crash left half made (tag,
link and blob directories without their file, spooled request bodies of
dead requests) once older than the grace. Pushes may run meanwhile: what
they upload is younger than the grace, what they reference is kept. Exit
1 when something could not be removed.
  --dry-run                  list what would go and the bytes reclaimed;
                             change nothing
  --delete-untagged          delete manifests no tag reaches first, except
                             index children and referrers of kept ones,
                             and those younger than the grace
  --grace DURATION           keep unreferenced blobs younger than this
                             (30s, 30m, 1h, 7d; default 1h)
  --upload-grace DURATION    purge upload sessions older than this
                             (default 7d)
  --json                     the report as one JSON object: "blobs",
                             "manifests", "uploads" counts and bytes,
                             "removed" lists (what would go with --dry-run)
]] .. args.COMMON_USAGE

local SPEC = { name = "gc", usage = _M.usage,
  flags = { "json", "dry-run", "delete-untagged" },
  options = { grace = "DURATION", ["upload-grace"] = "DURATION" },
  args = {} }

local PHASES = { mark = "marking", sweep = "sweeping", purge = "purging",
  uploads = "uploads", leftovers = "leftovers of a crash" }

-- A gc progress callback drawing one bar per phase on a terminal.
local function progress_bars(env)
  local phase, bar
  return function(p, done, total)
    if p ~= phase then
      if bar then bar.done() end
      phase = p
      bar = out.progress(env, "gc: " .. (PHASES[p] or p), total)
    end
    bar.set(done)
  end, function()
    if bar then bar.done() end
  end
end

local function when(t)
  return os_date("!%Y-%m-%dT%H:%M:%SZ", t)
end

local function json_report(r)
  local removed = r.removed
  out.array(removed.blobs)
  out.array(removed.manifests)
  out.array(removed.uploads)
  out.array(removed.leftovers)
  out.array(r.warnings)
  return r
end

local function text_report(env, r, dry)
  local o = env.stdout
  local verb = dry and "to remove" or "removed"
  if dry then
    for _, m in ipairs(r.removed.manifests) do
      o:write(format("would remove manifest %s@%s\n", m.repo, m.digest))
    end
    for _, b in ipairs(r.removed.blobs) do
      o:write(format("would remove blob %s (%s)\n", b.digest,
        out.size(b.size)))
    end
    for _, u in ipairs(r.removed.uploads) do
      o:write(format("would remove upload %s %s (%s, started %s)\n", u.repo,
        u.id, out.size(u.size), when(u.started)))
    end
  end
  local b = r.blobs
  o:write(format("blobs: %d kept (%s), %d unreferenced but within the"
    .. " grace (%s), %d %s (%s)\n", b.kept, out.size(b.kept_bytes), b.young,
    out.size(b.young_bytes), b.removed, verb, out.size(b.removed_bytes)))
  if r.delete_untagged or r.manifests.removed > 0 then
    o:write(format("manifests: %d %s%s\n", r.manifests.removed, verb,
      r.manifests.restored > 0 and format(" (%d put back: a push needed"
        .. " them)", r.manifests.restored) or ""))
  end
  local u = r.uploads
  o:write(format("uploads: %d %s (%s)%s\n", u.removed, verb,
    out.size(u.removed_bytes),
    u.busy > 0 and format(", %d busy (being written)", u.busy) or ""))
  local l = r.leftovers
  if l.tags + l.links + l.blobs + l.spool > 0 then
    o:write(format("leftovers of a crash: %d tag directories, %d link"
      .. " directories, %d blob directories, %d spooled request bodies (%s)"
      .. " %s\n", l.tags, l.links, l.blobs, l.spool, out.size(l.spool_bytes),
      verb))
  end
  o:write(format("reclaimed: %s%s\n",
    out.size(b.removed_bytes + u.removed_bytes + l.spool_bytes),
    dry and " (dry run: nothing changed)" or ""))
end

-- run(argv, env) -> exit code
function _M.run(argv, env)
  local o, _, code = args.parse(argv, SPEC, env)
  if not o then
    return code
  end
  local grace, upload_grace = gc.GRACE, gc.UPLOAD_GRACE
  local err
  if o.grace then
    grace, err = gc.parse_duration(o.grace)
    if not grace then
      return args.usage_error(env, "gc", _M.usage, "--grace: " .. err)
    end
  end
  if o.upload_grace then
    upload_grace, err = gc.parse_duration(o.upload_grace)
    if not upload_grace then
      return args.usage_error(env, "gc", _M.usage,
        "--upload-grace: " .. err)
    end
  end
  local store
  store, err = args.open_store(o)
  if not store then
    return out.fail(env, "gc", err)
  end
  local progress, finish = progress_bars(env)
  local report, gerr = gc.run(store, {
    grace = grace, upload_grace = upload_grace, dry_run = o.dry_run,
    delete_untagged = o.delete_untagged, progress = progress,
  })
  finish()
  store:close()
  if not report then
    return out.fail(env, "gc", tostring(gerr))
  end
  if o.json then
    out.json(env.stdout, json_report(report))
  else
    text_report(env, report, o.dry_run)
  end
  for _, w in ipairs(report.warnings) do
    out.warn(env, "gc", w)
  end
  return #report.warnings > 0 and 1 or 0
end

return _M

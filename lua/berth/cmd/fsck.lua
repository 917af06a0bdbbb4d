-- berth fsck: check the store (blob content, links, tags, manifest
-- references, uploads) and, with --repair, fix what is broken.
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"
local fsck = require "berth.fsck"
local gc = require "berth.gc"

local ipairs = ipairs
local tostring = tostring
local format = string.format

local _M = { _VERSION = "0.1.0" }

_M.summary = "check blobs, links, tags and manifests; --repair fixes them"

_M.usage = [[
usage: berth fsck [--repair] [--upload-grace DURATION] [--json]
                  [--root DIR] [--config FILE]
Check the store: re-hash every blob, and find links to missing blobs
(layers, revisions, tag current and history links), tags that point at
missing manifests, manifests whose config, layers or index children are
not in their repository (non-distributable layers excepted), unparseable
links and stale upload sessions. Exit 1 when a problem is found, 0 when
the store is clean; with --repair, 0 when every problem was repaired (it
says what it fixed), 1 when one was not.
  --repair                   remove corrupt blobs, dangling and damaged
                             links and tags, stale uploads; link a missing
                             reference again when its data is stored and
                             remove the manifest only when it is gone;
                             rebuild berth's referrers and tag indexes.
                             Best run on an idle store.
  --upload-grace DURATION    uploads older than this are stale (default 7d)
  --json                     {"ok":..,"problems":[{"kind","message","fix",
                             "repaired",..}],"counts":{..},"blobs":{..}}
]] .. args.COMMON_USAGE

local SPEC = { name = "fsck", usage = _M.usage, flags = { "json", "repair" },
  options = { ["upload-grace"] = "DURATION" }, args = {} }

local PHASES = { verify = "verifying blobs", repositories = "repositories" }

local function progress_bars(env)
  local phase, bar
  return function(p, done, total, unit)
    if p ~= phase then
      if bar then bar.done() end
      phase = p
      bar = out.progress(env, "fsck: " .. (PHASES[p] or p), total, unit)
    end
    bar.set(done)
  end, function()
    if bar then bar.done() end
  end
end

-- run(argv, env) -> exit code
function _M.run(argv, env)
  local o, _, code = args.parse(argv, SPEC, env)
  if not o then
    return code
  end
  local upload_grace = gc.UPLOAD_GRACE
  if o.upload_grace then
    local perr
    upload_grace, perr = gc.parse_duration(o.upload_grace)
    if not upload_grace then
      return args.usage_error(env, "fsck", _M.usage,
        "--upload-grace: " .. perr)
    end
  end
  local store, err = args.open_store(o)
  if not store then
    return out.fail(env, "fsck", err)
  end
  local progress, finish = progress_bars(env)
  local report, ferr = fsck.run(store, { repair = o.repair,
    upload_grace = upload_grace, progress = progress })
  finish()
  store:close()
  if not report then
    return out.fail(env, "fsck", tostring(ferr))
  end
  -- what is wrong once fsck is done: with --repair, what it did not fix
  local left = 0
  for _, p in ipairs(report.problems) do
    if not (o.repair and p.repaired) then left = left + 1 end
  end
  if o.json then
    out.array(report.problems)
    out.array(report.leftovers)
    out.array(report.errors)
    out.json(env.stdout, report)
  else
    local w = env.stdout
    for _, p in ipairs(report.problems) do
      w:write(format("%s: %s\n", p.kind, p.message))
      if o.repair then
        w:write(format("  %s: %s\n", p.repaired and "repaired" or "NOT"
          .. " repaired", p.fix))
      else
        w:write(format("  repair would: %s\n", p.fix))
      end
    end
    for _, l in ipairs(report.leftovers) do
      w:write(format("leftover: %s\n  %s: %s\n", l.message,
        o.repair and (l.repaired and "removed" or "NOT removed")
          or "repair would", l.fix))
    end
    local n = #report.leftovers
    w:write(format("checked %d blobs (%s), %d repositories, %d links,"
      .. " %d manifests, %d uploads: %s%s\n", report.blobs.checked,
      out.size(report.blobs.bytes), report.repositories, report.links,
      report.manifests, report.uploads,
      #report.problems == 0 and "no problems"
        or format("%d problem%s%s", #report.problems,
          #report.problems == 1 and "" or "s",
          not o.repair and " (run with --repair to fix)"
            or left == 0 and ", all repaired"
            or format(", %d not repaired", left)),
      n == 0 and "" or format(", %d leftover%s of a crash", n,
        n == 1 and "" or "s")))
  end
  for _, e in ipairs(report.errors) do
    out.warn(env, "fsck", e)
  end
  return (left > 0 or #report.errors > 0) and 1 or 0
end

return _M

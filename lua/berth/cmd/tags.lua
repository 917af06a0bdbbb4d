-- berth tags: the tags of a repository and the digests they point at.
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"

local _M = { _VERSION = "0.1.0" }

_M.summary = "list the tags of a repository with their digests"

_M.usage = [[
usage: berth tags REPO [--json] [--root DIR] [--config FILE]
List the tags of repository REPO, sorted, with the manifest digest each
points at. Exit 1 when REPO is unknown.
  --json          {"repository":..,"tags":[{"name":..,"digest":..}]}
]] .. args.COMMON_USAGE

local SPEC = { name = "tags", usage = _M.usage, flags = { "json" },
  args = { "REPO" } }

-- run(argv, env) -> exit code
function _M.run(argv, env)
  local o, _, code = args.parse(argv, SPEC, env)
  if not o then
    return code
  end
  local repo = o[1]
  local store, err = args.open_store(o)
  if not store then
    return out.fail(env, "tags", err)
  end
  local tags
  tags, err, code = store:tag_list(repo)
  if not tags then
    store:close()
    return out.fail(env, "tags", err, 1, code)
  end
  local list = out.array()
  for i, tag in ipairs(tags) do
    local dgst
    dgst, err = store:tag_get(repo, tag)
    if not dgst then
      store:close()
      return out.fail(env, "tags", repo .. ":" .. tag .. ": " .. err)
    end
    list[i] = { name = tag, digest = dgst }
  end
  store:close()
  if o.json then
    out.json(env.stdout, { repository = repo, tags = list })
    return 0
  end
  local rows = {}
  for i, t in ipairs(list) do
    rows[i] = { t.name, t.digest }
  end
  out.table(env.stdout, { "TAG", "DIGEST" }, rows)
  return 0
end

return _M

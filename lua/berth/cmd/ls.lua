-- berth ls: the repositories of the store, with tag and manifest counts.
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"

local _M = { _VERSION = "0.1.0" }

_M.summary = "list repositories with their tag and manifest counts"

_M.usage = [[
usage: berth ls [--json] [--root DIR] [--config FILE]
List the repositories in the store (the catalog), each with its number of
tags and of manifests.
  --json          {"repositories":[{"name":..,"tags":n,"manifests":n}]}
]] .. args.COMMON_USAGE

local SPEC = { name = "ls", usage = _M.usage, flags = { "json" }, args = {} }

-- A count from a listing; a repository without tags or manifests yet
-- answers NAME_UNKNOWN, which counts as none.
local function count(list, err, code)
  if list then
    return #list
  end
  if code == "NAME_UNKNOWN" then
    return 0
  end
  return nil, err
end

-- run(argv, env) -> exit code
function _M.run(argv, env)
  local o, _, code = args.parse(argv, SPEC, env)
  if not o then
    return code
  end
  local store, err = args.open_store(o)
  if not store then
    return out.fail(env, "ls", err)
  end
  local repos
  repos, err = store:catalog()
  if not repos then
    store:close()
    return out.fail(env, "ls", "catalog: " .. tostring(err))
  end
  local list = out.array()
  for i, repo in ipairs(repos) do
    local ntags, nman
    ntags, err = count(store:tag_list(repo))
    if ntags then
      nman, err = count(store:manifest_list(repo))
    end
    if not nman then
      store:close()
      return out.fail(env, "ls", repo .. ": " .. tostring(err))
    end
    list[i] = { name = repo, tags = ntags, manifests = nman }
  end
  store:close()
  if o.json then
    out.json(env.stdout, { repositories = list })
    return 0
  end
  local rows = {}
  for i, r in ipairs(list) do
    rows[i] = { r.name, r.tags, r.manifests }
  end
  out.table(env.stdout, { "REPOSITORY", "TAGS", "MANIFESTS" }, rows,
    { "l", "r", "r" })
  return 0
end

return _M

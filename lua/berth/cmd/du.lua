-- berth du: space used per repository, with the bytes it shares with
-- other repositories, the total with shared blobs counted once, and the
-- size of the whole store.
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"

local pairs = pairs
local ipairs = ipairs
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

_M.summary = "space per repository, shared blobs, and the store's total"

_M.usage = [[
usage: berth du [--json] [--bytes] [--root DIR] [--config FILE]
Space used by each repository: the blobs linked in it (layers, configs)
and its manifests, sizes from the blob store. SHARED is the part also used
by another repository. The total counts each blob once; the store line
counts every blob in the store, including those no repository links (what
gc may reclaim). Exit 1 when a linked blob has no data.
  --json          {"repositories":[{"name","size","shared","blobs",
                  "manifests"}],"total":{..},"store":{..},
                  "unreferenced":{..}} (sizes in bytes)
  --bytes         sizes in bytes in the table
]] .. args.COMMON_USAGE

local SPEC = { name = "du", usage = _M.usage, flags = { "json", "bytes" },
  args = {} }

-- A listing; NAME_UNKNOWN (nothing of that kind yet) is an empty one.
local function listing(list, err, code)
  if list then
    return list
  end
  if code == "NAME_UNKNOWN" then
    return {}
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
    return out.fail(env, "du", err)
  end
  local repos
  repos, err = store:catalog()
  if not repos then
    store:close()
    return out.fail(env, "du", "catalog: " .. tostring(err))
  end

  local sizes, problems = {}, {}
  local function size_of(d, repo)
    local s = sizes[d]
    if s == nil then
      local serr
      s, serr = store:blob_stat(nil, d)
      if not s then
        problems[#problems + 1] = (repo and repo .. ": " or "")
          .. tostring(serr)
        s = false
      end
      sizes[d] = s
    end
    return s or 0
  end

  -- digests of each repository, and how many repositories use each
  local per, users = {}, {}
  local progress = out.progress(env, "du", #repos)
  for i, repo in ipairs(repos) do
    local blobs, manifests
    blobs, err = listing(store:blob_list(repo))
    if blobs then
      manifests, err = listing(store:manifest_list(repo))
    end
    if not manifests then
      progress.done()
      store:close()
      return out.fail(env, "du", repo .. ": " .. tostring(err))
    end
    local set = {}
    for _, d in ipairs(blobs) do set[d] = true end
    for _, d in ipairs(manifests) do set[d] = true end
    for d in pairs(set) do
      users[d] = (users[d] or 0) + 1
    end
    per[i] = { name = repo, set = set, blobs = #blobs,
      manifests = #manifests }
    progress.update(1)
  end

  local list = out.array()
  local total = { size = 0, blobs = 0 }
  local counted = {}
  for i, r in ipairs(per) do
    local size, shared = 0, 0
    for d in pairs(r.set) do
      local s = size_of(d, r.name)
      size = size + s
      if users[d] > 1 then
        shared = shared + s
      end
      if not counted[d] then
        counted[d] = true
        total.size = total.size + s
        total.blobs = total.blobs + 1
      end
    end
    list[i] = { name = r.name, size = size, shared = shared,
      blobs = r.blobs, manifests = r.manifests }
  end

  local all
  all, err = store:blob_list(nil)
  if not all then
    progress.done()
    store:close()
    return out.fail(env, "du", "blob store: " .. tostring(err))
  end
  local whole = { size = 0, blobs = #all }
  local loose = { size = 0, blobs = 0 }
  for _, d in ipairs(all) do
    local s = size_of(d)
    whole.size = whole.size + s
    if not counted[d] then
      loose.size = loose.size + s
      loose.blobs = loose.blobs + 1
    end
  end
  progress.done()
  store:close()

  if o.json then
    out.json(env.stdout, { repositories = list, total = total,
      store = whole, unreferenced = loose })
  else
    local fmt = o.bytes and tostring or out.size
    local rows = {}
    for i, r in ipairs(list) do
      rows[i] = { r.name, fmt(r.size), fmt(r.shared), r.blobs,
        r.manifests }
    end
    out.table(env.stdout, { "REPOSITORY", "SIZE", "SHARED", "BLOBS",
      "MANIFESTS" }, rows, { "l", "r", "r", "r", "r" })
    env.stdout:write(("total: %s in %d blobs and manifests"
      .. " (shared ones once)\n"):format(fmt(total.size), total.blobs))
    env.stdout:write(("store: %s in %d blobs (%s in %d not in any"
      .. " repository)\n"):format(fmt(whole.size), whole.blobs,
      fmt(loose.size), loose.blobs))
  end
  for _, p in ipairs(problems) do
    out.problem(env, "du", p)
  end
  return #problems > 0 and 1 or 0
end

return _M

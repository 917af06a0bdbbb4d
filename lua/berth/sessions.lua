-- The upload sessions a server holds open for its clients: counted per
-- repository and per client address in a lua_shared_dict (every worker
-- sees the counts), capped (a POST over a cap answers 429 with
-- Retry-After), and purged while serving once abandoned.
--
--   local sessions = require "berth.sessions"
--   local s = sessions.new{ dict = ngx.shared.berth_uploads,
--     max_per_repository = 1000, max_per_client = 100, purge_after = 3600 }
--
-- The counts are this node's and approximate: an entry lives purge_after
-- seconds from the first session it counts, then starts again; a session
-- older than that is purged anyway. So a repository or a client holds
-- about its cap at most, however many POSTs it sends.

local type = type
local ipairs = ipairs
local tostring = tostring
local max = math.max
local os_time = os.time

local _M = { _VERSION = "0.1.0" }
local Sessions = {}
local mt = { __index = Sessions }

_M.DEFAULTS = {
  max_per_repository = 1000,
  max_per_client = 100,
  purge_after = 3600,
}

-- The configuration's `uploads` section.
_M.SCHEMA = { type = "record", fields = {
  max_per_repository = { type = "integer", min = 1 },
  max_per_client = { type = "integer", min = 1 },
  purge_after = { type = "integer", min = 1 },
} }

-- new{ dict = shared dict, max_per_repository =, max_per_client =,
--   purge_after = seconds } -> sessions
function _M.new(opts)
  if type(opts) ~= "table" or opts.dict == nil then
    error("new needs { dict = a lua_shared_dict }", 2)
  end
  local d = _M.DEFAULTS
  return setmetatable({
    dict = opts.dict,
    max_repo = opts.max_per_repository or d.max_per_repository,
    max_client = opts.max_per_client or d.max_per_client,
    age = opts.purge_after or d.purge_after,
  }, mt)
end

local function repo_key(repo) return "r:" .. repo end
local function client_key(client) return "c:" .. tostring(client) end

-- full(repo, client) -> nil | seconds to wait: whether a new session in
-- repo for client would go over a cap
function Sessions:full(repo, client)
  local dict = self.dict
  for _, k in ipairs({ { repo_key(repo), self.max_repo },
      { client_key(client), self.max_client } }) do
    local n = dict:get(k[1])
    if n and n >= k[2] then
      return max(1, math.ceil(dict:ttl(k[1]) or self.age))
    end
  end
  return nil
end

-- opened(id, repo, client): a session a client will come back to
function Sessions:opened(id, repo, client)
  local dict = self.dict
  dict:set("s:" .. id, repo .. "\0" .. tostring(client), self.age)
  dict:incr(repo_key(repo), 1, 0, self.age)
  dict:incr(client_key(client), 1, 0, self.age)
end

-- closed(id): the session is gone (committed, cancelled, purged)
function Sessions:closed(id)
  local dict = self.dict
  local v = dict:get("s:" .. id)
  if not v then return end
  dict:delete("s:" .. id)
  local repo, client = v:match("^(.-)%z(.*)$")
  for _, k in ipairs({ repo_key(repo), client_key(client) }) do
    local n = dict:get(k)
    if n and n > 0 then dict:incr(k, -1) end
  end
end

-- purge(store, now?) -> sessions purged, { warnings }: every session
-- started more than purge_after seconds ago that no request is writing
-- (the store's upload purge takes its writer lock).
function Sessions:purge(store, now)
  local cutoff = (now or os_time()) - self.age
  local purged, warnings = 0, {}
  local repos, err = store:repositories()
  if not repos then
    return 0, { "repositories: " .. tostring(err) }
  end
  for _, repo in ipairs(repos) do
    local ups, uerr = store:uploads(repo)
    if not ups then
      warnings[#warnings + 1] = repo .. ": uploads: " .. tostring(uerr)
      ups = {}
    end
    for _, u in ipairs(ups) do
      if u.started < cutoff then
        local ok, perr, code = store:upload_purge(repo, u.id)
        if ok then
          purged = purged + 1
          self:closed(u.id)
        elseif code ~= "EBUSY" and code ~= "BLOB_UPLOAD_UNKNOWN" then
          warnings[#warnings + 1] = repo .. ": upload " .. u.id .. ": "
            .. tostring(perr)
        end
      end
    end
  end
  if purged > 0 then
    self.dict:incr("purged", purged, 0)
  end
  return purged, warnings
end

-- purged_total() -> sessions purged while serving, since the start
function Sessions:purged_total()
  return self.dict:get("purged") or 0
end

return _M

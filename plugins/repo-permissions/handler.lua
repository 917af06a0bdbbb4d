-- Per-repository permissions from the caller's identity (berth.auth puts
-- ctx.identity and ctx.actions in every operation's ctx): users push and
-- delete only under their own namespace (<user>/...), everyone may pull
-- the public repositories, admins may do anything. ctx.actions, when set,
-- is what the caller's token grants on the repository: nothing beyond it.
local glob = require "berth.glob"

local RepoPermissions = {
  PRIORITY = 2000, -- before every other policy: who comes first
  VERSION = "0.1.0",
}

local function listed(name, list)
  for i = 1, #list do
    if list[i] == name then return true end
  end
  return false
end

local function allow(action)
  return function(_, ctx, conf)
    local repo = ctx.repo
    if repo == nil then return true end -- the catalog: filtered per entry
    local user = type(ctx.identity) == "table" and ctx.identity.name or nil
    local granted = ctx.actions == nil or ctx.actions[action]
    if granted and (listed(user, conf.admins)
        or (conf.owner_namespaces and user
          and repo:sub(1, #user + 1) == user .. "/")
        or (action == "pull" and glob.match_any(repo, conf.public))) then
      return true
    end
    return nil, (user or "anonymous") .. " may not " .. action .. " "
      .. repo, "DENIED"
  end
end

-- What a request will do, asked before its body is read (a push the
-- plugin refuses is not spooled first).
local by_action = { pull = allow("pull"), push = allow("push"),
  delete = allow("delete") }
function RepoPermissions:before_request(ctx, conf)
  local check = by_action[ctx.action]
  if not check then return true end
  return check(self, ctx, conf)
end

RepoPermissions.before_read = allow("pull")
RepoPermissions.before_blob_upload = allow("push")
RepoPermissions.before_blob_commit = allow("push")
RepoPermissions.before_manifest_put = allow("push")
RepoPermissions.before_tag_set = allow("push")
RepoPermissions.before_manifest_delete = allow("delete")
RepoPermissions.before_tag_delete = allow("delete")
RepoPermissions.before_blob_delete = allow("delete")

return RepoPermissions

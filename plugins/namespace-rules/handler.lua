-- Refuse writes (uploads, commits, manifest and tag changes, deletes) to
-- repositories outside the allowed namespaces. Reads are not affected.
local glob = require "berth.glob"

local NamespaceRules = {
  PRIORITY = 1000, -- first: the cheapest check, and others need not run
  VERSION = "0.1.0",
}

-- check(ctx, conf) -> true | nil, err, code
local function check(_, ctx, conf)
  local repo = ctx.repo
  local denied = glob.match_any(repo, conf.deny)
  if denied then
    return nil, "repository " .. repo .. " is closed to pushes (rule "
      .. denied .. ")", "DENIED"
  end
  if conf.allow and not glob.match_any(repo, conf.allow) then
    return nil, "repository " .. repo
      .. " is outside the namespaces open to pushes", "DENIED"
  end
  return true
end

NamespaceRules.before_blob_upload = check
NamespaceRules.before_blob_commit = check
NamespaceRules.before_manifest_put = check
NamespaceRules.before_tag_set = check
NamespaceRules.before_manifest_delete = check
NamespaceRules.before_tag_delete = check
NamespaceRules.before_blob_delete = check

return NamespaceRules

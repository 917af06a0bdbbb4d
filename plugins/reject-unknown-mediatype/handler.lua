-- Refuse manifests whose media type, config, layers or artifact type are
-- not on the configured allow-lists.
local type = type

local RejectUnknownMediatype = {
  PRIORITY = 800,
  VERSION = "0.1.0",
}

-- Which list a descriptor's media type is checked against.
local LIST_OF_KIND = {
  config = "config",
  layer = "layer",
  blob = "layer",
  manifest = "manifest",
}

local function allowed(list, v)
  if list == nil then
    return true
  end
  for i = 1, #list do
    if list[i] == v then
      return true
    end
  end
  return false
end

-- The artifact type the manifest declares. For the built-in types that is
-- its "artifactType" field only: ctx.artifact_type falls back to the
-- config's media type (the referrers API rule), which the config list
-- already covers. Lua handlers report theirs in ctx.artifact_type.
local BUILTIN = require("berth.manifest").IS_BUILTIN

local function artifact_type(ctx)
  if BUILTIN[ctx.media_type] then
    local doc = ctx.manifest
    if type(doc) == "table" and type(doc.artifactType) == "string" then
      return doc.artifactType
    end
    return nil
  end
  return ctx.artifact_type
end

local function refuse(conf, what, v)
  return nil, what .. " media type " .. (v or "(none)")
    .. " is not allowed in this registry", conf.code
end

-- before_manifest_put(ctx, conf) -> true | nil, err, code
function RejectUnknownMediatype:before_manifest_put(ctx, conf)
  if not allowed(conf.manifest, ctx.media_type) then
    return refuse(conf, "manifest", ctx.media_type)
  end
  local at = artifact_type(ctx)
  if at ~= nil and not allowed(conf.artifact_type, at) then
    return nil, "artifact type " .. at .. " is not allowed in this registry",
      conf.code
  end
  local descriptors = ctx.descriptors or {}
  for i = 1, #descriptors do
    local d = descriptors[i]
    local list = LIST_OF_KIND[d.kind] or "layer"
    if not allowed(conf[list], d.media_type) then
      return refuse(conf, list, d.media_type)
    end
  end
  return true
end

return RejectUnknownMediatype

-- Once set, a tag matching the configured patterns may not move to another
-- digest nor be deleted, directly or by deleting its manifest. Pushing the
-- same digest again is allowed (clients retry).
--
-- The registry writes a tag only if it still points where this hook saw it
-- (a compare-and-set in the store), and on a change asks again: of two
-- first pushes racing each other, one wins and the other is refused (its
-- manifest stays stored, untagged, for gc).
local glob = require "berth.glob"

local ImmutableTags = {
  PRIORITY = 700,
  VERSION = "0.1.0",
}

local function immutable(conf, tag)
  return glob.match_any(tag, conf.patterns) ~= nil
    and glob.match_any(tag, conf.exclude) == nil
end

-- before_tag_set(ctx, conf): manifest puts with a tag come here too.
function ImmutableTags:before_tag_set(ctx, conf)
  local old = ctx.old_digest
  if old and old ~= ctx.digest and immutable(conf, ctx.tag) then
    return nil, "tag " .. ctx.tag .. " is immutable: it points at " .. old,
      "DENIED"
  end
  return true
end

-- before_tag_delete(ctx, conf)
function ImmutableTags:before_tag_delete(ctx, conf)
  if ctx.old_digest and immutable(conf, ctx.tag) then
    return nil, "tag " .. ctx.tag .. " is immutable and cannot be deleted",
      "DENIED"
  end
  return true
end

-- before_manifest_delete(ctx, conf): deleting a manifest deletes its tags.
function ImmutableTags:before_manifest_delete(ctx, conf)
  local tags = ctx.tags or {}
  for i = 1, #tags do
    if immutable(conf, tags[i]) then
      return nil, "manifest " .. ctx.digest .. " carries immutable tag "
        .. tags[i], "DENIED"
    end
  end
  return true
end

return ImmutableTags

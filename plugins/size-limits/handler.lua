-- Refuse manifests and blobs over the configured limits.
local tostring = tostring

local SizeLimits = {
  PRIORITY = 900,
  VERSION = "0.1.0",
}

-- Blob kinds whose size counts against blob_bytes (not index children).
local BLOB_KIND = { config = true, layer = true, blob = true }

local function over(what, n, limit_name, limit)
  return nil, what .. " is " .. tostring(n) .. " bytes, over the "
    .. limit_name .. " limit of " .. tostring(limit), "DENIED"
end

-- before_manifest_put(ctx, conf) -> true | nil, err, code
function SizeLimits:before_manifest_put(ctx, conf)
  local max = conf.manifest_bytes
  if max and ctx.size and ctx.size > max then
    return over("manifest", ctx.size, "manifest_bytes", max)
  end
  local descriptors = ctx.descriptors or {}
  local layers = 0
  for i = 1, #descriptors do
    local d = descriptors[i]
    if d.kind == "layer" then
      layers = layers + 1
    end
    if conf.blob_bytes and BLOB_KIND[d.kind] and d.size
        and d.size > conf.blob_bytes then
      return over("blob " .. d.digest, d.size, "blob_bytes", conf.blob_bytes)
    end
  end
  if conf.max_layers and layers > conf.max_layers then
    return nil, "manifest has " .. layers .. " layers, over the max_layers "
      .. "limit of " .. conf.max_layers, "DENIED"
  end
  return true
end

-- before_blob_commit(ctx, conf): ctx.size is what was received (or, for a
-- mount, the blob's size), not what the client claims.
function SizeLimits:before_blob_commit(ctx, conf)
  local max = conf.blob_bytes
  if max and ctx.size and ctx.size > max then
    return over("blob " .. tostring(ctx.digest), ctx.size, "blob_bytes", max)
  end
  return true
end

return SizeLimits

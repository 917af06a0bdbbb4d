-- The store the REPL specs open: two repositories, several tags, and a real
-- OCI image manifest (config + a 1.5 MiB layer) pushed through the Lua API.
local manifest = require "berth.manifest"

local _M = {}

_M.CONFIG = '{"architecture":"amd64","os":"linux",'
  .. '"rootfs":{"type":"layers","diff_ids":[]}}'
_M.LAYER_SIZE = 1572864 -- 1.5 MiB
_M.MISSING = "sha256:" .. string.rep("0", 64)

-- populate(store) -> { digest =, body =, config =, layer = }
-- library/app: latest, v1.0, v1.1 (one manifest); team/tool: stable.
function _M.populate(store)
  local layer = string.rep("berth", _M.LAYER_SIZE / 5 + 1):sub(1,
    _M.LAYER_SIZE)
  local out = {}
  for _, repo in ipairs({ "library/app", "team/tool" }) do
    out.config = assert(store:blob_put(repo, _M.CONFIG))
    out.layer = assert(store:blob_put(repo, layer))
  end
  -- Keys in the order registries write them; the pretty-printer keeps it.
  out.body = table.concat({
    '{"schemaVersion":2,',
    '"mediaType":"application/vnd.oci.image.manifest.v1+json",',
    '"config":{"mediaType":"application/vnd.oci.image.config.v1+json",',
    '"digest":"', out.config, '","size":', #_M.CONFIG, '},',
    '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",',
    '"digest":"', out.layer, '","size":', _M.LAYER_SIZE, '}],',
    '"annotations":{"org.opencontainers.image.title":"app"}}',
  })
  local m = assert(manifest.parse(out.body))
  out.digest = assert(store:manifest_put("library/app", m, { tag = "latest" }))
  for _, tag in ipairs({ "v1.0", "v1.1" }) do
    assert(store:tag_set("library/app", tag, out.digest))
  end
  local m2 = assert(manifest.parse(out.body))
  assert(store:manifest_put("team/tool", m2, { tag = "stable" }))
  return out
end

return _M

-- Fixtures for the gc and fsck specs: images pushed the way a client does
-- (blobs through upload sessions in chunks, then the manifest and a tag),
-- indexes, referrers, and aging files on disk.
local cjson = require "cjson"
local helpers = require "helpers"
local manifest = require "berth.manifest"

local _M = {}

_M.V2 = "/docker/registry/v2"
_M.OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_M.OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_M.OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_M.OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

-- digest_of(data) -> "sha256:..." by the library (sha256sum is the oracle
-- of the digest specs; here speed matters)
function _M.digest_of(data)
  return require("berth.digest").compute(data)
end

-- push_blob(store, repo, data, chunk?) -> digest, through an upload
-- session written in chunks and committed.
function _M.push_blob(store, repo, data, chunk)
  chunk = chunk or 4096
  local up = assert(store:blob_writer(repo))
  for i = 1, #data, chunk do
    assert(up:write(data:sub(i, i + chunk - 1)))
  end
  local d = _M.digest_of(data)
  assert(up:commit(d, #data))
  return d
end


-- image(store, repo, opts?) -> { digest =, body =, config =, layers = {},
--   blobs = { digest -> size } }
-- opts: tag, seed (string, makes content distinct), layers (count, default
-- 2), size (bytes per layer, default 3000), subject ({ digest, size,
-- media_type }), artifact_type, reuse, push = function(store, repo, data) ->
-- digest (default push_blob).
function _M.image(store, repo, opts)
  opts = opts or {}
  local seed = opts.seed or tostring(math.random(1e9))
  local push = opts.push or _M.push_blob
  local blobs = {}
  local config = cjson.encode({ architecture = "amd64", os = "linux",
    seed = seed })
  local cd = push(store, repo, config)
  blobs[cd] = #config
  local layers = {}
  -- reuse = { { digest =, size = } }: layers stored already, mounted in.
  for _, r in ipairs(opts.reuse or {}) do
    assert(store:blob_mount(repo, nil, r.digest))
    layers[#layers + 1] = { mediaType = _M.OCI_LAYER, digest = r.digest,
      size = r.size }
  end
  for _ = 1, opts.layers or 2 do
    local i = #layers + 1
    local data = ("layer %d of %s\n"):format(i, seed)
      .. helpers.random_bytes(opts.size or 3000)
    local ld = push(store, repo, data)
    blobs[ld] = #data
    layers[i] = { mediaType = _M.OCI_LAYER, digest = ld, size = #data }
  end
  local doc = {
    schemaVersion = 2,
    mediaType = _M.OCI_MANIFEST,
    config = { mediaType = _M.OCI_CONFIG, digest = cd, size = #config },
    layers = layers,
  }
  if opts.artifact_type then
    doc.artifactType = opts.artifact_type
  end
  if opts.subject then
    doc.subject = { mediaType = opts.subject.media_type or _M.OCI_MANIFEST,
      digest = opts.subject.digest, size = opts.subject.size }
  end
  local body = cjson.encode(doc)
  local m = assert(manifest.parse(body, _M.OCI_MANIFEST))
  local d = assert(store:manifest_put(repo, m, { tag = opts.tag }))
  m:close()
  local layer_digests = {}
  for i, l in ipairs(layers) do layer_digests[i] = l.digest end
  return { digest = d, body = body, size = #body, config = cd,
    layers = layer_digests, blobs = blobs }
end

-- index(store, repo, images, tag?) -> { digest =, body =, size = }
function _M.index(store, repo, images, tag)
  local list = {}
  for i, img in ipairs(images) do
    list[i] = { mediaType = _M.OCI_MANIFEST, digest = img.digest,
      size = img.size,
      platform = { os = "linux", architecture = "arch" .. i } }
  end
  local body = cjson.encode({ schemaVersion = 2, mediaType = _M.OCI_INDEX,
    manifests = list })
  local m = assert(manifest.parse(body, _M.OCI_INDEX))
  local d = assert(store:manifest_put(repo, m, { tag = tag }))
  m:close()
  return { digest = d, body = body, size = #body }
end

function _M.hex(d)
  return d:match(":(%x+)$")
end

-- Filesystem path of a blob's data / directory under root.
function _M.blob_file(root, d)
  local hex = _M.hex(d)
  return ("%s%s/blobs/sha256/%s/%s/data"):format(root, _M.V2, hex:sub(1, 2),
    hex)
end

function _M.blob_dir(root, d)
  return (_M.blob_file(root, d):gsub("/data$", ""))
end

function _M.repo_dir(root, repo)
  return root .. _M.V2 .. "/repositories/" .. repo
end

function _M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- age(path, seconds): set a file's mtime that many seconds in the past.
function _M.age(path, seconds)
  assert(os.execute(("touch -m -d @%d '%s'"):format(os.time() - seconds,
    path)))
end

-- age_blob(root, store, digest, seconds): the data and its layer links in
-- every repository.
function _M.age_blob(root, d, seconds)
  _M.age(_M.blob_file(root, d), seconds)
end

-- age_links(root, repo, digest, seconds): the _layers link of d in repo.
function _M.age_layer_link(root, repo, d, seconds)
  _M.age(("%s/_layers/sha256/%s/link"):format(_M.repo_dir(root, repo),
    _M.hex(d)), seconds)
end

function _M.age_revision(root, repo, d, seconds)
  _M.age(("%s/_manifests/revisions/sha256/%s/link"):format(
    _M.repo_dir(root, repo), _M.hex(d)), seconds)
end

-- age_all(root, seconds): every file under the store: a store last
-- touched that long ago.
function _M.age_all(root, seconds)
  assert(os.execute(("find '%s' -type f -exec touch -m -d @%d {} +"):format(
    root, os.time() - seconds)))
end

-- An orphan: blob data with no link anywhere, aged.
function _M.plant(store, root, data, seconds)
  local d = assert(store:blob_put(nil, data))
  if seconds then _M.age_blob(root, d, seconds) end
  return d
end

-- Run a command, capture stdout and the exit code.
function _M.run(cmd)
  local p = io.popen(cmd .. "; echo \"::rc=$?\"")
  local outp = p:read("*a")
  p:close()
  local rc = tonumber(outp:match("::rc=(%d+)%s*$"))
  return outp:gsub("::rc=%d+%s*$", ""), rc
end

-- A fake env for cmd modules: stdout/stderr collected in strings.
function _M.env(isatty)
  local o, e = {}, {}
  local function sink(t)
    return { write = function(_, ...)
      for i = 1, select("#", ...) do t[#t + 1] = tostring(select(i, ...)) end
      return true
    end, flush = function() end }
  end
  local env = { stdout = sink(o), stderr = sink(e), isatty = isatty or false,
    home = ".", getenv = os.getenv }
  return env, function() return table.concat(o) end,
    function() return table.concat(e) end
end

return _M

-- Shared fixtures for the plugin, hook and registry specs:
-- images pushed into a real store, a fake store that records its calls
-- (libgit2's fake_backend idea), and plugins that record what they see.
local cjson = require "cjson.safe"

local support = {}

local OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
local OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
local OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
support.OCI_MANIFEST = OCI_MANIFEST
support.OCI_INDEX = "application/vnd.oci.image.index.v1+json"
support.OCI_CONFIG = OCI_CONFIG
support.OCI_LAYER = OCI_LAYER
support.DOCKER_MANIFEST =
  "application/vnd.docker.distribution.manifest.v2+json"
support.MISSING = "sha256:" .. string.rep("0", 64)

-- Debian's lua-cjson (2.1.0) has no array_mt: an empty Lua table encodes
-- as {}. support.EMPTY stands for [] in what support.encode gets.
local EMPTY = "__berth_empty_array__"
support.EMPTY = EMPTY

-- encode(doc) -> JSON text, with EMPTY as []
function support.encode(doc)
  local s = assert(cjson.encode(doc))
  return (s:gsub('"__berth_empty_array__"', "[]"))
end

-- image(opts) -> body: an OCI image manifest. opts: config = descriptor,
-- layers = { descriptor, ... }, subject =, artifactType =, annotations =,
-- media_type = (false: leave mediaType out)
function support.image(opts)
  local doc = {
    schemaVersion = 2,
    config = opts.config,
    layers = (opts.layers and #opts.layers > 0) and opts.layers or EMPTY,
    subject = opts.subject,
    artifactType = opts.artifact_type,
    annotations = opts.annotations,
  }
  if opts.media_type ~= false then
    doc.mediaType = opts.media_type or OCI_MANIFEST
  end
  return support.encode(doc)
end

-- push_blobs(store, repo, contents, media_type?) -> { descriptor, ... }
function support.push_blobs(store, repo, contents, media_type)
  local out = {}
  for i, c in ipairs(contents) do
    local d = assert(store:blob_put(repo, c))
    out[i] = { mediaType = media_type or OCI_LAYER, digest = d, size = #c }
  end
  return out
end

-- image_in(store, repo, opts) -> body, config descriptor, layers: the
-- config and layers are put into the store first, so the image can be
-- stored. opts: layers = number of layers (default 1), layer_size,
-- salt (makes distinct images), plus image() options.
function support.image_in(store, repo, opts)
  opts = opts or {}
  local salt = opts.salt or ""
  local cfg = support.push_blobs(store, repo, { "{" .. salt .. "}" },
    OCI_CONFIG)[1]
  local contents = {}
  for i = 1, opts.layers or 1 do
    contents[i] = "layer " .. i .. " " .. salt
      .. string.rep("x", opts.layer_size or 0)
  end
  local layers = support.push_blobs(store, repo, contents)
  local img = {}
  for k, v in pairs(opts) do img[k] = v end
  img.config, img.layers = cfg, layers
  return support.image(img), cfg, layers
end

-- A plugin whose phases append "<name>:<phase>" to log and keep a copy of
-- each ctx. behaviour[phase] = function(self, ctx, conf) overrides one.
function support.recorder(name, priority, log, behaviour)
  local seen = {}
  local h = { PRIORITY = priority or 0, VERSION = "0.1.0", seen = seen }
  local hooks = require "berth.hooks"
  for _, phase in ipairs(hooks.PHASES) do
    h[phase] = function(self, ctx, conf)
      log[#log + 1] = name .. ":" .. phase
      local copy = {}
      for k, v in pairs(ctx) do copy[k] = v end
      seen[#seen + 1] = { phase = phase, ctx = copy }
      if behaviour and behaviour[phase] then
        return behaviour[phase](self, ctx, conf)
      end
      return true
    end
  end
  return h
end

-- The ctx a recorder saw for phase (the last one).
function support.ctx_of(h, phase)
  for i = #h.seen, 1, -1 do
    if h.seen[i].phase == phase then
      return h.seen[i].ctx
    end
  end
  return nil
end

-- The phases a recorder saw, in order.
function support.phases(h)
  local t = {}
  for i, s in ipairs(h.seen) do
    t[i] = s.phase
  end
  return t
end

-- A fake upload: records its calls in log.
local function fake_upload(log, repo, id, size)
  local up = { id = id, _size = size or 0 }
  function up:size() return self._size end
  function up:write(s)
    log[#log + 1] = "upload:write"
    self._size = self._size + #s
    return true
  end
  function up:commit(dgst, sz)
    log[#log + 1] = "upload:commit"
    self.committed = { dgst, sz }
    return true
  end
  function up:cancel()
    log[#log + 1] = "upload:cancel"
    self.cancelled = true
    return true
  end
  function up:close()
    log[#log + 1] = "upload:close"
    return true
  end
  return up
end
support.fake_upload = fake_upload

-- fake_store(log) -> a store that keeps tags and manifests in tables and
-- appends "store:<method>" to log on every call.
function support.fake_store(log)
  local st = { tags = {}, manifests = {}, calls = {} }
  local function record(name, ...)
    log[#log + 1] = "store:" .. name
    st.calls[#st.calls + 1] = { name = name, args = { ... } }
  end
  function st:blob_stat(repo, dgst)
    record("blob_stat", repo, dgst)
    return 42
  end
  function st:blob_path(repo, dgst)
    record("blob_path", repo, dgst)
    return "/nonexistent/" .. dgst
  end
  function st:blob_send(repo, dgst)
    record("blob_send", repo, dgst)
    return { kind = "file", path = "/nonexistent/" .. dgst, rel = dgst }
  end
  function st:blob_reader(repo, dgst, offset)
    record("blob_reader", repo, dgst, offset)
    return {}
  end
  function st:blob_delete(repo, dgst)
    record("blob_delete", repo, dgst)
    return true
  end
  function st:blob_mount(repo, from, dgst)
    record("blob_mount", repo, from, dgst)
    return true
  end
  function st:blob_writer(repo)
    record("blob_writer", repo)
    return fake_upload(log, repo, "upload-1")
  end
  function st:upload_open(repo, id, mode)
    record("upload_open", repo, id, mode)
    return fake_upload(log, repo, id, 7)
  end
  -- The tags of dgst, sorted.
  local function tags_of(self, repo, dgst)
    local t = {}
    for k, d in pairs(self.tags) do
      local r, tag = k:match("^(.*):([^:]*)$")
      if r == repo and d == dgst then t[#t + 1] = tag end
    end
    table.sort(t)
    return t
  end
  -- A compare-and-set tag write, as berth_tag_set_if: expected false
  -- means "must not exist".
  local function changed(self, repo, tag, expected)
    if expected == nil then return false end
    return (self.tags[repo .. ":" .. tag] or false) ~= expected
  end
  function st:manifest_put(repo, m, opts)
    record("manifest_put", repo, m, opts)
    local d = opts.digest or m:digest()
    self.manifests[repo .. "@" .. d] = m:body()
    if opts.tag then
      if changed(self, repo, opts.tag, opts.tag_expected) then
        return nil, "tag changed meanwhile", "ETAG_CHANGED"
      end
      self.tags[repo .. ":" .. opts.tag] = d
    end
    return d
  end
  function st:manifest_get(repo, ref)
    record("manifest_get", repo, ref)
    return "{}", { digest = ref, size = 2, media_type = OCI_MANIFEST }
  end
  function st:manifest_head(repo, ref)
    record("manifest_head", repo, ref)
    return { digest = ref, size = 2, media_type = OCI_MANIFEST }
  end
  function st:manifest_delete(repo, dgst, expected_tags)
    record("manifest_delete", repo, dgst)
    if expected_tags then
      local now = tags_of(self, repo, dgst)
      local want = { unpack(expected_tags) }
      table.sort(want)
      if table.concat(now, "\0") ~= table.concat(want, "\0") then
        return nil, "the tags changed meanwhile", "ETAG_CHANGED"
      end
    end
    for k, d in pairs(self.tags) do
      if d == dgst and k:sub(1, #repo + 1) == repo .. ":" then
        self.tags[k] = nil
      end
    end
    return true
  end
  function st:manifest_list(repo)
    record("manifest_list", repo)
    return {}
  end
  function st:referrers(repo, subject, artifact_type)
    record("referrers", repo, subject, artifact_type)
    return '{"schemaVersion":2,"manifests":[]}'
  end
  function st:tag_get(repo, tag)
    record("tag_get", repo, tag)
    local d = self.tags[repo .. ":" .. tag]
    if not d then
      return nil, "tag unknown: " .. tag, "MANIFEST_UNKNOWN"
    end
    return d
  end
  function st:tag_set(repo, tag, dgst)
    record("tag_set", repo, tag, dgst)
    self.tags[repo .. ":" .. tag] = dgst
    return true
  end
  function st:tag_set_if(repo, tag, dgst, expected)
    record("tag_set_if", repo, tag, dgst, expected)
    if changed(self, repo, tag, expected) then
      return nil, "tag changed meanwhile", "ETAG_CHANGED"
    end
    self.tags[repo .. ":" .. tag] = dgst
    return true
  end
  function st:tag_delete(repo, tag)
    record("tag_delete", repo, tag)
    self.tags[repo .. ":" .. tag] = nil
    return true
  end
  function st:tag_delete_if(repo, tag, expected)
    record("tag_delete_if", repo, tag, expected)
    if changed(self, repo, tag, expected) then
      return nil, "tag changed meanwhile", "ETAG_CHANGED"
    end
    if not self.tags[repo .. ":" .. tag] then
      return nil, "tag unknown: " .. tag, "MANIFEST_UNKNOWN"
    end
    self.tags[repo .. ":" .. tag] = nil
    return true
  end
  function st:tag_list(repo, opts)
    record("tag_list", repo, opts)
    return { "a", "b" }
  end
  function st:tag_lookup(repo, dgst)
    record("tag_lookup", repo, dgst)
    return tags_of(self, repo, dgst)
  end
  function st:catalog(opts)
    record("catalog", opts)
    return { "r" }
  end
  function st:close() return true end
  return st
end

-- The store calls a fake store received, by name.
function support.store_calls(log)
  local t = {}
  for _, e in ipairs(log) do
    local name = e:match("^store:(.*)$")
    if name then t[#t + 1] = name end
  end
  return t
end

-- Cleanups of the running test. busted keeps one finally per test (a
-- second call replaces the first), so one function runs them all.
local pending = {}
local function run_pending()
  for i = #pending, 1, -1 do
    local f = pending[i]
    pending[i] = nil
    f()
  end
end

-- new_store(finally) -> store on a fresh root, closed and removed when the
-- test ends. busted's finally lives in the spec's environment, not in
-- helpers.lua's, so the spec passes it in.
function support.new_store(finally)
  local helpers = require "helpers"
  local store, root = helpers.new_store({ fsync = "none" })
  pending[#pending + 1] = function()
    store:close()
    helpers.rmrf(root)
  end
  finally(run_pending)
  return store, root
end

-- write_tmp(dir, name, content) -> path
function support.write_tmp(dir, name, content)
  local helpers = require "helpers"
  local path = dir .. "/" .. name
  helpers.write_file(path, content)
  return path
end

return support

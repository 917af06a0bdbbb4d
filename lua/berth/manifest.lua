-- Manifests: parsed by the built-in schemas (manifest.parse) or built by a
-- Lua handler (manifest.new), and the store methods that put, get, delete
-- and list them, and answer the referrers API.
local ffi = require "ffi"
local json_encode = require("berth.json").encode
local ffi_mod = require "berth.ffi"
local C = ffi_mod.C
local errors = require "berth.errors"
local store_mod = require "berth.store"

local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_string = ffi.string
local fail = errors.fail
local c_string = ffi_mod.c_string
local scratch_err = errors.scratch
local Store = store_mod.Store
local parse_digest = store_mod.parse_digest
local names = store_mod.names
local live = store_mod.live
local take_buf = store_mod.take_buf
local buf = store_mod.buf
local type = type
local ipairs = ipairs
local floor = math.floor
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getmetatable = getmetatable

local _M = { _VERSION = "0.1.0" }

local Manifest = {}
local manifest_mt = { __index = Manifest }
_M.Manifest = Manifest

local KIND = { config = 1, layer = 2, manifest = 3, blob = 4 }
local KIND_NAME = { "config", "layer", "manifest", "blob" }

-- The media types with a built-in schema (BUILTIN lists them, IS_BUILTIN
-- is the set) and the size limit, as core/include/berth/manifest.h
-- defines them.
_M.BUILTIN, _M.IS_BUILTIN = {}, {}
for _, name in ipairs({ "OCI_MANIFEST", "OCI_INDEX", "DOCKER_MANIFEST",
    "DOCKER_LIST" }) do
  _M[name] = ffi_string(C.berth_schema_media_type(C["BERTH_SCHEMA_" .. name]))
  _M.BUILTIN[#_M.BUILTIN + 1] = _M[name]
  _M.IS_BUILTIN[_M[name]] = true
end
_M.MAX = tonumber(C.berth_manifest_max())

-- Scratch values reused across calls; FFI calls are synchronous.
local manifest_out = ffi_new("berth_manifest *[1]")
-- tag_expected's own digest: parse_digest's is taken by opts.digest
local tag_expected_in = ffi_new("berth_digest")
local desc = ffi_new("berth_descriptor")
local len_out = ffi_new("size_t[1]")
local info = ffi_new("berth_manifest_info")
local put_opts = ffi_new("berth_manifest_put_options")
local strlist = ffi_new("berth_strlist")

-- The one constructor of manifest objects: owns p from here on.
local function wrap(p)
  return setmetatable({ _p = ffi_gc(p, C.berth_manifest_free) }, manifest_mt)
end

local function manifest_ptr(self, level)
  local p = self._p
  if not p then
    error("manifest is closed", level or 3)
  end
  return p
end

local function invalid(msg)
  return nil, "manifest invalid: " .. msg, "MANIFEST_INVALID"
end

-- -> true | nil, err, code
local function check_body(body, content_type)
  if type(body) ~= "string" then
    error("body must be a string", 3)
  end
  local ok, err, code = c_string(content_type, "content type",
    "MANIFEST_INVALID", true, 3)
  return ok, err, code
end

-- detect(content_type, body) -> media type | nil, err, code: the one rule
-- for what a manifest is (berth_manifest_detect): the Content-Type, unless
-- it is missing or generic; then the body's mediaType, else an index when
-- it has "manifests", else an image manifest.
local detect_out = ffi_new("char[256]")

function _M.detect(content_type, body)
  local ok, err, code = check_body(body, content_type)
  if not ok then return nil, err, code end
  local rc = C.berth_manifest_detect(detect_out, 256, content_type, body,
    #body, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return ffi_string(detect_out)
end

-- parse(body, content_type?) -> m | nil, err, code
-- Of the media type detect() gives. UNSUPPORTED: no built-in schema for it.
function _M.parse(body, content_type)
  local ok, err, code = check_body(body, content_type)
  if not ok then return nil, err, code end
  local rc = C.berth_manifest_parse(manifest_out, content_type, body, #body,
    scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return wrap(manifest_out[0])
end

-- Fill the scratch descriptor from a table; nil, err, code when it holds
-- something the C side cannot take. The table's strings stay referenced
-- by it for the duration of the C call that follows. Raises at the level
-- of manifest.new's caller (fill_descriptor < add_ref < build < new).
local function fill_descriptor(d, what, default_kind)
  if type(d) ~= "table" then
    error(what .. " must be a table", 5)
  end
  local kind = KIND[d.kind or default_kind]
  if not kind then
    error(what .. ": unknown kind " .. tostring(d.kind), 5)
  end
  if type(d.digest) ~= "string" then
    error(what .. ": digest must be a string", 5)
  end
  local size = d.size
  if size ~= nil and (type(size) ~= "number" or size ~= floor(size))
  then
    error(what .. ": size must be an integer", 5)
  end
  for _, k in ipairs({ "media_type", "artifact_type" }) do
    local ok, err, code = c_string(d[k], what .. ": " .. k,
      "MANIFEST_INVALID", true, 5)
    if not ok then return nil, err, code end
  end
  desc.kind = kind
  if C.berth_digest_parse(desc.digest, d.digest, #d.digest, scratch_err)
      < 0 then
    return invalid(what .. ".digest: " .. ffi_string(scratch_err.message))
  end
  -- Without a size, the store does not check it against the blob's.
  desc.size = size or -1
  desc.media_type = d.media_type
  desc.artifact_type = d.artifact_type
  desc.has_urls = d.urls and 1 or 0
  local platform = d.platform
  if platform ~= nil then
    if type(platform) ~= "table" then
      error(what .. ": platform must be a table of strings", 5)
    end
    for _, k in ipairs({ "os", "architecture" }) do
      local ok, err, code = c_string(platform[k], what .. ": platform." .. k,
        "MANIFEST_INVALID", true, 5)
      if not ok then return nil, err, code end
    end
  end
  desc.platform_os = platform and platform.os or nil
  desc.platform_arch = platform and platform.architecture or nil
  return true
end

local function add_ref(p, d, what, default_kind, is_subject)
  local ok, err, code = fill_descriptor(d, what, default_kind)
  if not ok then
    return nil, err, code
  end
  local rc = C.berth_manifest_add_ref(p, desc, is_subject, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

local function build(m, spec)
  local p = m._p
  local refs = spec.refs or {}
  if type(refs) ~= "table" then
    error("refs must be a table", 3)
  end
  for i = 1, #refs do
    local ok, err, code = add_ref(p, refs[i], "refs[" .. i .. "]", "blob", 0)
    if not ok then return nil, err, code end
  end
  if spec.subject ~= nil then
    local ok, err, code = add_ref(p, spec.subject, "subject", "manifest", 1)
    if not ok then return nil, err, code end
  end
  if spec.artifact_type ~= nil then
    local ok, err, code = c_string(spec.artifact_type, "artifact_type",
      "MANIFEST_INVALID", false, 3)
    if not ok then return nil, err, code end
    local rc = C.berth_manifest_set_artifact_type(p, spec.artifact_type,
      scratch_err)
    if rc < 0 then return fail(rc) end
  end
  if spec.annotations ~= nil then
    if type(spec.annotations) ~= "table" then
      error("annotations must be a table", 3)
    end
    local json, err = json_encode(spec.annotations)
    if not json then
      return invalid("annotations: " .. tostring(err))
    end
    local rc = C.berth_manifest_set_annotations(p, json, scratch_err)
    if rc < 0 then return fail(rc) end
  end
  return m
end

-- new{ media_type =, body =, refs = { descriptor, ... }, subject = ?,
--      artifact_type = ?, annotations = ? } -> m | nil, err, code
-- For Lua handlers: a manifest of any media type whose references the
-- handler found. A descriptor is { kind = "config"|"layer"|"manifest"|
-- "blob" (default "blob"), digest =, size = ?, media_type = ?,
-- artifact_type = ?, urls = true|nil, platform = { os =, architecture = } }.
function _M.new(spec)
  if type(spec) ~= "table" then
    error("manifest spec must be a table", 2)
  end
  local ok, err, code = c_string(spec.media_type, "media_type",
    "MANIFEST_INVALID", false, 2)
  if not ok then return nil, err, code end
  if type(spec.body) ~= "string" then
    error("body must be a string", 2)
  end
  local rc = C.berth_manifest_new(manifest_out, spec.media_type, spec.body,
    #spec.body, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  local m = wrap(manifest_out[0])
  ok, err, code = build(m, spec)
  if not ok then
    m:close()
    return nil, err, code
  end
  return m
end

-- is_manifest(v) -> true when v is a manifest object
function _M.is_manifest(v)
  return type(v) == "table" and getmetatable(v) == manifest_mt
end

local function opt_string(s)
  if s == nil then
    return nil
  end
  return ffi_string(s)
end

local function descriptor_table(d)
  local t = {
    kind = KIND_NAME[tonumber(d.kind)],
    digest = ffi_string(d.digest.str),
    size = tonumber(d.size),
    media_type = opt_string(d.media_type),
    artifact_type = opt_string(d.artifact_type),
    urls = d.has_urls ~= 0 or nil,
  }
  if d.platform_os ~= nil or d.platform_arch ~= nil then
    t.platform = {
      os = opt_string(d.platform_os),
      architecture = opt_string(d.platform_arch),
    }
  end
  return t
end

-- media_type() -> string
function Manifest:media_type()
  return ffi_string(C.berth_manifest_media_type(manifest_ptr(self)))
end

-- digest() -> "sha256:..." of the body
function Manifest:digest()
  return ffi_string(C.berth_manifest_digest(manifest_ptr(self)).str)
end

-- body() -> the exact bytes
function Manifest:body()
  local p = manifest_ptr(self)
  local b = C.berth_manifest_body(p, len_out)
  return ffi_string(b, len_out[0])
end

-- refs() -> { descriptor, ... } (config first for image manifests)
function Manifest:refs()
  local p = manifest_ptr(self)
  local n = tonumber(C.berth_manifest_ref_count(p))
  local list = {}
  for i = 1, n do
    list[i] = descriptor_table(C.berth_manifest_ref(p, i - 1))
  end
  return list
end

-- subject() -> descriptor | nil
function Manifest:subject()
  local d = C.berth_manifest_subject(manifest_ptr(self))
  if d == nil then
    return nil
  end
  return descriptor_table(d)
end

-- artifact_type() -> artifactType, else the config's media type, else nil
function Manifest:artifact_type()
  return opt_string(C.berth_manifest_artifact_type(manifest_ptr(self)))
end

-- annotations() -> JSON object text | nil
function Manifest:annotations()
  return opt_string(C.berth_manifest_annotations(manifest_ptr(self)))
end

-- close() -> true; idempotent.
function Manifest:close()
  local p = self._p
  if not p then
    return true
  end
  self._p = nil
  C.berth_manifest_free(ffi_gc(p, nil))
  return true
end

-- Store methods ----------------------------------------------------------

local function info_table()
  return {
    digest = ffi_string(info.digest.str),
    size = tonumber(info.size),
    media_type = ffi_string(info.media_type),
  }
end

-- manifest_put(repo, m, { tag =, digest =, skip_verify =,
--   allow_foreign_layers = (default true) }) -> digest | nil, err, code
function Store:manifest_put(repo, m, opts)
  local p = live(self)
  if not _M.is_manifest(m) then
    error("manifest must be a manifest object", 2)
  end
  local mp = manifest_ptr(m, 2)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("options must be a table", 2)
  end
  local ok, nerr, ncode = names(repo, "repository", opts.tag, "tag?")
  if not ok then return nil, nerr, ncode end
  put_opts.version = 2
  put_opts.tag = opts.tag
  put_opts.expected = nil
  put_opts.tag_expected = nil
  put_opts.flags = opts.skip_verify and 1 or 0
  -- tag_expected: a digest, or false for "the tag must not exist"
  if opts.tag_expected ~= nil then
    put_opts.flags = put_opts.flags + 2
    if opts.tag_expected then
      local d, err, code = parse_digest(opts.tag_expected, 3, tag_expected_in)
      if not d then return nil, err, code end
      put_opts.tag_expected = d
    end
  end
  put_opts.allow_foreign_layers = opts.allow_foreign_layers == false and 0
    or 1
  if opts.digest ~= nil then
    local d, err, code = parse_digest(opts.digest)
    if not d then return nil, err, code end
    put_opts.expected = d
  end
  local rc = C.berth_manifest_put(p, repo, mp, put_opts, scratch_err)
  -- No pointers into Lua strings outlive the call.
  put_opts.tag = nil
  put_opts.expected = nil
  put_opts.tag_expected = nil
  if rc < 0 then
    return fail(rc)
  end
  -- m (the owner of mp) is used here, so it lived through the call.
  return opts.digest or m:digest()
end

-- manifest_get(repo, ref) -> body, { digest =, size =, media_type = }
--   | nil, err, code. ref is a tag or a digest.
function Store:manifest_get(repo, ref)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository", ref, "reference")
  if not ok then return nil, nerr, ncode end
  local rc = C.berth_manifest_get(buf, info, p, repo, ref, scratch_err)
  if rc < 0 then
    C.berth_buf_dispose(buf)
    return fail(rc)
  end
  return take_buf(), info_table()
end

-- manifest_head(repo, ref) -> { digest =, size =, media_type = }
--   | nil, err, code
function Store:manifest_head(repo, ref)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository", ref, "reference")
  if not ok then return nil, nerr, ncode end
  local rc = C.berth_manifest_get(nil, info, p, repo, ref, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return info_table()
end

-- manifest_delete(repo, digest) -> true | nil, err, code: the manifest and
-- every tag pointing at it.
-- With expected_tags (a list), only if those are the tags pointing at it,
-- as one step; "ETAG_CHANGED" otherwise (berth_manifest_delete_if).
local expected_list = ffi_new("berth_strlist")

function Store:manifest_delete(repo, dgst, expected_tags)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository")
  if not ok then return nil, nerr, ncode end
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  local rc
  if expected_tags == nil then
    rc = C.berth_manifest_delete(p, repo, d, scratch_err)
  else
    if type(expected_tags) ~= "table" then
      error("expected tags must be a list", 2)
    end
    for _, t in ipairs(expected_tags) do
      ok, nerr, ncode = names(t, "tag")
      if not ok then
        C.berth_strlist_dispose(expected_list)
        return nil, nerr, ncode
      end
      rc = C.berth_strlist_add(expected_list, t, #t, scratch_err)
      if rc < 0 then
        C.berth_strlist_dispose(expected_list)
        return fail(rc)
      end
    end
    rc = C.berth_manifest_delete_if(p, repo, d, expected_list, scratch_err)
    C.berth_strlist_dispose(expected_list)
  end
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- manifest_list(repo) -> { digest, ... } sorted | nil, err, code
function Store:manifest_list(repo)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository")
  if not ok then return nil, nerr, ncode end
  local rc = C.berth_manifest_list(strlist, p, repo, scratch_err)
  if rc < 0 then
    C.berth_strlist_dispose(strlist)
    return fail(rc)
  end
  local list = {}
  for i = 0, tonumber(strlist.count) - 1 do
    list[i + 1] = ffi_string(strlist.items[i])
  end
  C.berth_strlist_dispose(strlist)
  return list
end

-- referrers(repo, subject, artifact_type?) -> OCI image index JSON text
--   | nil, err, code
function Store:referrers(repo, subject, artifact_type)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository", artifact_type,
    "artifact_type?")
  if not ok then return nil, nerr, ncode end
  local d, err, code = parse_digest(subject)
  if not d then return nil, err, code end
  local rc = C.berth_referrers_list(buf, p, repo, d, artifact_type,
    scratch_err)
  if rc < 0 then
    C.berth_buf_dispose(buf)
    return fail(rc)
  end
  return take_buf()
end

-- referrers_rebuild(repo) -> true | nil, err, code
function Store:referrers_rebuild(repo)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository")
  if not ok then return nil, nerr, ncode end
  local rc = C.berth_referrers_rebuild(p, repo, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

return _M

-- Manifests: parsed by the built-in schemas (manifest.parse) or built by a
-- Lua handler (manifest.new). The store's methods that put, get, delete and
-- list them are in berth.store.
local ffi = require "ffi"
local json_encode = require("berth.json").encode
local ffi_mod = require "berth.ffi"
local C = ffi_mod.C
local errors = require "berth.errors"

local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_string = ffi.string
local fail = errors.fail
local c_string = ffi_mod.c_string
local scratch_err = errors.scratch
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
local desc = ffi_new("berth_descriptor")
local len_out = ffi_new("size_t[1]")

-- The one constructor of manifest objects: owns p from here on.
local function wrap(p)
  return setmetatable({ _p = ffi_gc(p, C.berth_manifest_free) }, manifest_mt)
end

local function manifest_ptr(self)
  local p = self._p
  if not p then
    error("manifest is closed", 3)
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

return _M

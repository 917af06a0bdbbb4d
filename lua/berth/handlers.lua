-- Manifest schema handlers by media type (Distribution's
-- RegisterManifestSchema, one registry per berth registry instance).
--
-- A handler is a table
--   { media_type = "...",
--     parse = function(body, doc) -> obj | nil, err, code,
--     references = function(obj) -> { descriptor, ... },
--     validate = function(obj, store) -> true | nil, err, code,  (optional)
--     subject = function(obj) -> descriptor | nil,               (optional)
--     artifact_type = function(obj) -> string | nil,             (optional)
--     annotations = function(obj) -> table | nil }               (optional)
-- where doc is the body decoded as JSON (nil when it is not JSON) and a
-- descriptor is { kind = "config"|"layer"|"manifest"|"blob" (default
-- "blob"), digest =, size =, media_type =, artifact_type = }.
--
-- The four standard types are built in, backed by the C parsers. For a Lua
-- handler the registry builds the C manifest from what the handler reports
-- (manifest.new), so the store verifies and records exactly those blobs.
local cjson = require "cjson.safe"
local manifest = require "berth.manifest"

local type = type
local pairs = pairs
local pcall = pcall
local error = error
local tostring = tostring
local setmetatable = setmetatable
local floor = math.floor
local sort = table.sort

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

_M.BUILTIN = manifest.BUILTIN

local KINDS = { config = true, layer = true, manifest = true, blob = true }

local function builtin(media_type)
  return {
    media_type = media_type,
    builtin = true,
    parse = function(body)
      return manifest.parse(body, media_type)
    end,
    references = function(m)
      return m:refs()
    end,
    subject = function(m)
      return m:subject()
    end,
    artifact_type = function(m)
      return m:artifact_type()
    end,
  }
end

local OPTIONAL = { "validate", "subject", "artifact_type", "annotations" }

local function check_handler(h)
  if type(h) ~= "table" then
    error("handler must be a table", 3)
  end
  if type(h.media_type) ~= "string" or h.media_type == "" then
    error("handler media_type must be a non-empty string", 3)
  end
  if type(h.parse) ~= "function" then
    error("handler " .. h.media_type .. ": parse must be a function", 3)
  end
  if type(h.references) ~= "function" then
    error("handler " .. h.media_type .. ": references must be a function", 3)
  end
  for i = 1, #OPTIONAL do
    local f = h[OPTIONAL[i]]
    if f ~= nil and type(f) ~= "function" then
      error("handler " .. h.media_type .. ": " .. OPTIONAL[i]
        .. " must be a function", 3)
    end
  end
end

-- new() -> handler registry with the built-ins registered
function _M.new()
  local by_type = {}
  for i = 1, #_M.BUILTIN do
    by_type[_M.BUILTIN[i]] = builtin(_M.BUILTIN[i])
  end
  return setmetatable({ by_type = by_type }, mt)
end

-- register(handler) -> true; raises if its media type is taken
function _M:register(h)
  check_handler(h)
  if self.by_type[h.media_type] then
    error("manifest media type registration would overwrite existing: "
      .. h.media_type, 2)
  end
  self.by_type[h.media_type] = h
  return true
end

-- override(handler) -> the handler it replaces; raises if there is none
function _M:override(h)
  check_handler(h)
  local old = self.by_type[h.media_type]
  if not old then
    error("no handler to override for " .. h.media_type
      .. " (use register)", 2)
  end
  self.by_type[h.media_type] = h
  return old
end

-- find(media_type) -> handler | nil
function _M:find(media_type)
  return self.by_type[media_type]
end

-- media_types() -> sorted list of registered media types
function _M:media_types()
  local t = {}
  for k in pairs(self.by_type) do
    t[#t + 1] = k
  end
  sort(t)
  return t
end

local function invalid(msg, code)
  return nil, msg, code or "MANIFEST_INVALID"
end

-- Handler results are untrusted data: check the shape, copy, default kind.
local function check_descriptor(d, what)
  if type(d) ~= "table" then
    return nil, what .. " must be a table"
  end
  if type(d.digest) ~= "string" then
    return nil, what .. " has no digest"
  end
  if type(d.size) ~= "number" or d.size < 0 or floor(d.size) ~= d.size then
    return nil, what .. " " .. d.digest .. " has no valid size"
  end
  local kind = d.kind or "blob"
  if not KINDS[kind] then
    return nil, what .. " " .. d.digest .. " has unknown kind "
      .. tostring(kind)
  end
  if d.media_type ~= nil and type(d.media_type) ~= "string" then
    return nil, what .. " " .. d.digest .. " has a non-string media_type"
  end
  return {
    kind = kind,
    digest = d.digest,
    size = d.size,
    media_type = d.media_type,
    artifact_type = type(d.artifact_type) == "string" and d.artifact_type
      or nil,
    urls = d.urls and true or nil,
    platform = type(d.platform) == "table" and d.platform or nil,
  }
end

-- Call a handler function; a raise is the handler's failure, not berth's.
local function call(h, name, ...)
  local ok, res, err, code = pcall(h[name], ...)
  if not ok then
    return nil, "handler " .. h.media_type .. ": " .. name .. " failed: "
      .. tostring(res), "MANIFEST_INVALID"
  end
  return res, err, code
end

local function parse_lua(h, media_type, body, doc)
  local obj, err, code = call(h, "parse", body, doc)
  if obj == nil then
    return invalid(err or "invalid " .. media_type .. " manifest", code)
  end
  local refs
  refs, err, code = call(h, "references", obj)
  if refs == nil and err then
    return invalid(err, code)
  end
  if type(refs or {}) ~= "table" then
    return invalid("handler " .. media_type .. ": references must return "
      .. "a table")
  end
  local descriptors = {}
  for i = 1, #(refs or {}) do
    local d
    d, err = check_descriptor(refs[i], "reference #" .. i)
    if not d then
      return invalid(err)
    end
    descriptors[i] = d
  end
  local subject, artifact_type, annotations
  if h.subject then
    subject, err, code = call(h, "subject", obj)
    if err then return invalid(err, code) end
    if subject ~= nil then
      subject, err = check_descriptor(subject, "subject")
      if not subject then return invalid(err) end
      subject.kind = "manifest"
    end
  end
  if h.artifact_type then
    artifact_type, err, code = call(h, "artifact_type", obj)
    if err then return invalid(err, code) end
    if artifact_type ~= nil and type(artifact_type) ~= "string" then
      return invalid("handler " .. media_type
        .. ": artifact_type must return a string")
    end
  end
  if h.annotations then
    annotations, err, code = call(h, "annotations", obj)
    if err then return invalid(err, code) end
  elseif type(doc) == "table" and type(doc.annotations) == "table" then
    annotations = doc.annotations
  end
  local ok, m, merr, mcode = pcall(manifest.new, {
    media_type = media_type,
    body = body,
    refs = descriptors,
    subject = subject,
    artifact_type = artifact_type,
    annotations = annotations,
  })
  if not ok then
    return invalid("handler " .. media_type .. ": " .. tostring(m))
  end
  if not m then
    return invalid(merr, mcode)
  end
  return {
    obj = obj,
    c = m,
    descriptors = descriptors,
    subject = subject,
    artifact_type = artifact_type,
  }
end

local function parse_builtin(h, media_type, body)
  local m, err, code = manifest.parse(body, media_type)
  if not m then
    if code == "UNSUPPORTED" then
      code = "MANIFEST_INVALID"
    end
    return nil, err, code
  end
  return {
    obj = m,
    c = m,
    descriptors = m:refs(),
    subject = m:subject(),
    artifact_type = m:artifact_type(),
  }
end

-- parse(content_type, body) -> parsed | nil, err, code
-- parsed = { media_type, handler, doc, descriptors, subject, artifact_type,
--            digest, size, obj (the handler's), c (the C manifest to store;
--            the caller closes it: parsed.c:close()) }
function _M:parse(content_type, body)
  if type(body) ~= "string" then
    error("body must be a string", 2)
  end
  if content_type ~= nil and type(content_type) ~= "string" then
    error("content type must be a string", 2)
  end
  -- The store's own rule (C), so both say the same of any request.
  local media_type, err, code = manifest.detect(content_type, body)
  if not media_type then
    return nil, err, code
  end
  local h = self.by_type[media_type]
  if not h then
    return invalid("unsupported manifest media type: " .. media_type)
  end
  local doc = cjson.decode(body)
  if type(doc) ~= "table" then
    doc = nil
  end
  local p
  if h.builtin then
    p, err, code = parse_builtin(h, media_type, body)
  else
    p, err, code = parse_lua(h, media_type, body, doc)
  end
  if not p then
    return nil, err, code
  end
  p.media_type = media_type
  p.handler = h
  p.doc = doc
  p.size = #body
  p.digest = p.c:digest()
  return p
end

-- validate(parsed, store) -> true | nil, err, code: the handler's own
-- checks beyond what the store verifies (blob existence).
function _M:validate(parsed, store)
  local h = parsed.handler
  if not h.validate then
    return true
  end
  -- As with hooks: false, or nil with a message, refuses; nothing passes.
  local ok, err, code = call(h, "validate", parsed.obj, store)
  if ok == false or (ok == nil and err ~= nil) then
    return invalid(err or "manifest rejected by handler " .. h.media_type,
      code)
  end
  return true
end

return _M

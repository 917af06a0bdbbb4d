-- Helpers the image commands share (inspect, cat, import, export): image
-- references on the command line and the shape of manifest documents.
local cjson = require "cjson.safe"
local manifest = require "berth.manifest"

local type = type
local ipairs = ipairs
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

_M.OCI_MANIFEST = manifest.OCI_MANIFEST
_M.OCI_INDEX = manifest.OCI_INDEX
_M.DOCKER_MANIFEST = manifest.DOCKER_MANIFEST
_M.DOCKER_LIST = manifest.DOCKER_LIST
_M.REF_NAME = "org.opencontainers.image.ref.name"

local INDEX_TYPES = { [_M.OCI_INDEX] = true, [_M.DOCKER_LIST] = true }

-- is_digest(s) -> true when s looks like "algo:hex"
function _M.is_digest(s)
  return type(s) == "string" and s:find("^[%w+._-]+:%x+$") ~= nil
end

-- valid_tag(s) -> true for the OCI tag grammar [a-zA-Z0-9_][a-zA-Z0-9._-]*
function _M.valid_tag(s)
  return type(s) == "string" and #s <= 128
    and s:find("^[%w_][%w._-]*$") ~= nil
end

-- split_ref("repo:tag" | "repo@digest" | "repo") -> repo, tag|nil,
-- digest|nil. A ':' followed by a '/' is part of the name, not a tag.
function _M.split_ref(s)
  local repo, dgst = s:match("^(.-)@(.+)$")
  if repo then
    return repo, nil, dgst
  end
  local name, tag = s:match("^(.*):([^:/]*)$")
  if name and name ~= "" then
    return name, tag
  end
  return s
end

-- decode(body) -> document (a table) | nil, err
function _M.decode(body)
  local doc, err = cjson.decode(body)
  if type(doc) ~= "table" then
    return nil, "not a JSON object" .. (err and ": " .. err or "")
  end
  return doc
end

-- is_index(doc, media_type?) -> true for an OCI index or a Docker list
function _M.is_index(doc, media_type)
  if media_type and INDEX_TYPES[media_type] then
    return true
  end
  if INDEX_TYPES[doc.mediaType] then
    return true
  end
  return media_type == nil and doc.mediaType == nil
    and type(doc.manifests) == "table" and doc.config == nil
end

-- media_type(doc, declared?) -> the manifest's media type: declared (a
-- descriptor's or the store's), else the document's, else guessed
function _M.media_type(doc, declared)
  if type(declared) == "string" and declared ~= "" then
    return declared
  end
  if type(doc.mediaType) == "string" then
    return doc.mediaType
  end
  if type(doc.manifests) == "table" then
    return _M.OCI_INDEX
  end
  return _M.OCI_MANIFEST
end

local function is_descriptor(d)
  return type(d) == "table" and type(d.digest) == "string"
end

-- children(doc, media_type?) -> { descriptor, ... } of the manifests an
-- index lists (empty for an image manifest)
function _M.children(doc, media_type)
  local list = {}
  if not _M.is_index(doc, media_type) then
    return list
  end
  for _, d in ipairs(type(doc.manifests) == "table" and doc.manifests
    or {}) do
    if is_descriptor(d) then
      list[#list + 1] = d
    end
  end
  return list
end

-- blobs(doc) -> { { role = "config"|"layer"|"blob", desc = descriptor },
-- ... } of an image manifest: its config, then its layers (an artifact's
-- "blobs" too)
function _M.blobs(doc)
  local list = {}
  if is_descriptor(doc.config) then
    list[#list + 1] = { role = "config", desc = doc.config }
  end
  for _, key in ipairs({ "layers", "blobs" }) do
    if type(doc[key]) == "table" then
      for _, d in ipairs(doc[key]) do
        if is_descriptor(d) then
          list[#list + 1] = { role = key == "layers" and "layer" or "blob",
            desc = d }
        end
      end
    end
  end
  return list
end

-- platform(p) -> "os/arch[/variant]" | nil
function _M.platform(p)
  if type(p) ~= "table" then
    return nil
  end
  local s = tostring(p.os or "?") .. "/" .. tostring(p.architecture or "?")
  if type(p.variant) == "string" and p.variant ~= "" then
    s = s .. "/" .. p.variant
  end
  return s
end

-- blob_file(layout_dir, digest) -> path of the blob in an OCI layout
--   | nil, err
function _M.blob_file(dir, dgst)
  local algo, hex = tostring(dgst):match("^([%w+._-]+):(%x+)$")
  if not algo then
    return nil, "invalid digest: " .. tostring(dgst)
  end
  return dir .. "/blobs/" .. algo .. "/" .. hex
end

return _M

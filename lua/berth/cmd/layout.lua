-- OCI image layouts on disk (image-spec image-layout.md): the oci-layout
-- file, index.json and blobs/<algo>/<hex>, for berth import and export.
local cjson = require "cjson.safe"
local digest = require "berth.digest"
local out = require "berth.cmd.out"
local image = require "berth.cmd.image"

local type = type
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local io_open = io.open
local os_rename = os.rename
local os_remove = os.remove

local _M = { _VERSION = "0.1.0" }

_M.VERSION = "1.0.0"

-- Bytes per read or write when streaming a blob: 64 KiB keeps LuaJIT's
-- garbage small (1 MiB chunks let RSS grow by tens of MiB).
_M.CHUNK = 64 * 1024

-- q(s) -> s quoted for sh
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function exists(path)
  local f = io_open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end
_M.exists = exists

local function is_dir(path)
  return exists(path .. "/.")
end
_M.is_dir = is_dir

-- file_size(path) -> bytes | nil, err
function _M.file_size(path)
  local f, err = io_open(path, "rb")
  if not f then
    return nil, err
  end
  local n = f:seek("end")
  f:close()
  return n
end

-- read_file(path) -> content | nil, err
local function read_file(path)
  local f, err, errno = io_open(path, "rb")
  if not f then
    return nil, err, errno
  end
  local s = f:read("*a")
  f:close()
  if not s then
    return nil, "cannot read " .. path
  end
  return s
end
_M.read_file = read_file

local tmp_count = 0

-- A temporary name beside path, for write-then-rename.
local function tmp_name(path)
  tmp_count = tmp_count + 1
  return ("%s.tmp-%d-%d"):format(path, tmp_count, math.random(1, 1e9))
end

-- write_file(path, content) -> true | nil, err: atomically (rename)
function _M.write_file(path, content)
  local tmp = tmp_name(path)
  local f, err = io_open(tmp, "wb")
  if not f then
    return nil, err
  end
  local ok, werr = f:write(content)
  local cok, cerr = f:close()
  if not ok or not cok then
    os_remove(tmp)
    return nil, "write " .. path .. ": " .. tostring(werr or cerr)
  end
  ok, err = os_rename(tmp, path)
  if not ok then
    os_remove(tmp)
    return nil, err
  end
  return true
end

-- mkdir(path) -> true | nil, err: with parents
function _M.mkdir(path)
  if is_dir(path) then
    return true
  end
  local r = os.execute("mkdir -p -- " .. q(path) .. " 2>/dev/null")
  if (r == true or r == 0) and is_dir(path) then
    return true
  end
  return nil, "cannot create directory " .. path
end

-- is_empty_dir(path) -> true when path is a directory with no entries
local function is_empty_dir(path)
  local p = io.popen("ls -A -- " .. q(path) .. " 2>/dev/null")
  local first = p:read("*l")
  p:close()
  return first == nil
end

-- split(arg) -> dir, tag|nil for "DIR[:TAG]"; a name that is itself a
-- directory (and whose part before ':' is not) keeps its ':'.
function _M.split(s)
  local dir, tag = s:match("^(.*):([^:/]+)$")
  if dir and dir ~= "" and not (is_dir(s) and not is_dir(dir)) then
    return dir, tag
  end
  return s, nil
end

-- Layout ----------------------------------------------------------------------

local Layout = {}
local layout_mt = { __index = Layout }

-- open(dir) -> layout | nil, err: an existing OCI layout
function _M.open(dir)
  local text = read_file(dir .. "/oci-layout")
  if not text then
    if not is_dir(dir) then
      return nil, dir .. ": no such directory"
    end
    return nil, dir .. ": not an OCI image layout (no oci-layout file)"
  end
  local doc = cjson.decode(text)
  if type(doc) ~= "table" or type(doc.imageLayoutVersion) ~= "string" then
    return nil, dir .. "/oci-layout: no imageLayoutVersion"
  end
  local body, err = read_file(dir .. "/index.json")
  if not body then
    return nil, dir .. "/index.json: " .. tostring(err)
  end
  local index = cjson.decode(body)
  if type(index) ~= "table" then
    return nil, dir .. "/index.json: not a JSON object"
  end
  if index.manifests == nil then
    index.manifests = {}
  end
  if type(index.manifests) ~= "table" then
    return nil, dir .. "/index.json: manifests is not an array"
  end
  return setmetatable({ dir = dir, index = index }, layout_mt)
end

-- create(dir) -> layout | nil, err: an existing layout, or a new one in
-- a missing or empty directory (written by save)
function _M.create(dir)
  if exists(dir .. "/oci-layout") then
    return _M.open(dir)
  end
  if is_dir(dir) and not is_empty_dir(dir) then
    return nil, dir .. ": not empty and not an OCI image layout"
  end
  local ok, err = _M.mkdir(dir)
  if not ok then
    return nil, err
  end
  return setmetatable({ dir = dir, new = true, index = {
    schemaVersion = 2,
    mediaType = image.OCI_INDEX,
    manifests = {},
  } }, layout_mt)
end

-- ref_names() -> { name, ... } of the ref.name annotations in index.json
function Layout:ref_names()
  local names = {}
  for _, d in ipairs(self.index.manifests) do
    local a = type(d) == "table" and d.annotations
    if type(a) == "table" and a[image.REF_NAME] then
      names[#names + 1] = tostring(a[image.REF_NAME])
    end
  end
  return names
end

-- find(tag|nil) -> descriptor | nil, err: the manifest tagged tag (ref.name
-- annotation), or the only manifest when tag is nil
function Layout:find(tag)
  local list = self.index.manifests
  if tag == nil then
    if #list == 1 and type(list[1]) == "table" then
      return list[1]
    end
    if #list == 0 then
      return nil, self.dir .. ": index.json lists no manifests"
    end
    return nil, self.dir .. ": index.json lists " .. #list
      .. " manifests; name one as " .. self.dir .. ":TAG (tags: "
      .. table.concat(self:ref_names(), ", ") .. ")"
  end
  for _, d in ipairs(list) do
    local a = type(d) == "table" and d.annotations
    if type(a) == "table" and a[image.REF_NAME] == tag then
      return d
    end
  end
  return nil, self.dir .. ": no manifest tagged " .. tag .. " (tags: "
    .. table.concat(self:ref_names(), ", ") .. ")"
end

-- path(digest) -> the blob's file | nil, err
function Layout:path(dgst)
  return image.blob_file(self.dir, dgst)
end

-- has(digest, size?) -> true when the blob file exists (with that size)
function Layout:has(dgst, size)
  local path = self:path(dgst)
  if not path then
    return false
  end
  local n = _M.file_size(path)
  return n ~= nil and (type(size) ~= "number" or n == size)
end

-- What a blob that does not open is: missing (ENOENT), or there and not
-- readable (permissions, a symlink loop), which is not the same problem.
local ENOENT = 2
local function unreadable(self, dgst, why, errno)
  if errno == ENOENT then
    return self.dir .. ": blob " .. dgst .. " missing"
  end
  return self.dir .. ": blob " .. dgst .. " cannot be read: " .. tostring(why)
end

-- read(digest, size?) -> content, verified | nil, err: a small blob
-- (a manifest) read whole
function Layout:read(dgst, size)
  local path, err = self:path(dgst)
  if not path then
    return nil, err
  end
  local body, why, errno = read_file(path)
  if not body then
    return nil, unreadable(self, dgst, why, errno)
  end
  local algo = dgst:match("^([^:]+):")
  local got = digest.compute(body, algo)
  if got ~= dgst then
    return nil, self.dir .. ": blob " .. dgst .. " has digest "
      .. tostring(got)
  end
  if type(size) == "number" and size ~= #body then
    return nil, self.dir .. ": blob " .. dgst .. " has " .. #body
      .. " bytes, its descriptor says " .. size
  end
  return body
end

-- open_blob(digest) -> file handle | nil, err: to stream a blob out
function Layout:open_blob(dgst)
  local path, err = self:path(dgst)
  if not path then
    return nil, err
  end
  local f, why, errno = io_open(path, "rb")
  if not f then
    return nil, unreadable(self, dgst, why, errno)
  end
  return f
end

local function blob_dir(self, dgst)
  local algo = dgst:match("^([^:]+):")
  return self.dir .. "/blobs/" .. tostring(algo)
end

-- write(digest, content) -> true | nil, err: a small blob, verified
function Layout:write(dgst, content)
  local algo = dgst:match("^([^:]+):")
  if digest.compute(content, algo) ~= dgst then
    return nil, "blob " .. dgst .. ": content does not match its digest"
  end
  local ok, err = _M.mkdir(blob_dir(self, dgst))
  if not ok then
    return nil, err
  end
  return _M.write_file(self:path(dgst), content)
end

-- write_stream(digest, size|nil, next_chunk, progress?) -> bytes
--   | nil, err: stream a blob from next_chunk() (-> string, "" at the end,
--   or nil, err) into its file, hashing as it goes; the file appears only
--   when the digest (and size) match
function Layout:write_stream(dgst, size, next_chunk, progress)
  local ok, err = _M.mkdir(blob_dir(self, dgst))
  if not ok then
    return nil, err
  end
  local path = self:path(dgst)
  local algo = dgst:match("^([^:]+):")
  local h
  h, err = digest.hasher(algo)
  if not h then
    return nil, err
  end
  local tmp = tmp_name(path)
  local f
  f, err = io_open(tmp, "wb")
  if not f then
    h:close()
    return nil, err
  end
  local n = 0
  local function fail(msg)
    f:close()
    os_remove(tmp)
    h:close()
    return nil, msg
  end
  while true do
    local chunk, cerr = next_chunk()
    if not chunk then
      return fail("blob " .. dgst .. ": " .. tostring(cerr))
    end
    if chunk == "" then
      break
    end
    h:update(chunk)
    local wok, werr = f:write(chunk)
    if not wok then
      return fail("write " .. path .. ": " .. tostring(werr))
    end
    n = n + #chunk
    if progress then
      progress.update(#chunk)
    end
  end
  local got = h:digest()
  if got ~= dgst then
    return fail("blob " .. dgst .. ": the store gave content with digest "
      .. tostring(got))
  end
  if type(size) == "number" and n ~= size then
    return fail(("blob %s: %d bytes, expected %d"):format(dgst, n, size))
  end
  h:close()
  local cok, cerr = f:close()
  if not cok then
    os_remove(tmp)
    return nil, "write " .. path .. ": " .. tostring(cerr)
  end
  ok, err = os_rename(tmp, path)
  if not ok then
    os_remove(tmp)
    return nil, err
  end
  return n
end

-- tag(descriptor, tag|nil): add the descriptor to index.json (in memory),
-- replacing the entry that had the same ref.name
function Layout:tag(desc, tag)
  local kept = out.array()
  for _, d in ipairs(self.index.manifests) do
    local a = type(d) == "table" and d.annotations
    local same_name = tag and type(a) == "table" and a[image.REF_NAME] == tag
    local same_untagged = not tag and type(d) == "table"
      and d.digest == desc.digest
      and not (type(a) == "table" and a[image.REF_NAME])
    if not same_name and not same_untagged then
      kept[#kept + 1] = d
    end
  end
  local entry = {
    mediaType = desc.mediaType,
    digest = desc.digest,
    size = desc.size,
  }
  if tag then
    entry.annotations = { [image.REF_NAME] = tag }
  end
  kept[#kept + 1] = entry
  self.index.manifests = kept
end

-- save() -> true | nil, err: write oci-layout (when missing) and index.json
function Layout:save()
  local ok, err
  if not exists(self.dir .. "/oci-layout") then
    ok, err = _M.write_file(self.dir .. "/oci-layout",
      '{"imageLayoutVersion":"' .. _M.VERSION .. '"}')
    if not ok then
      return nil, err
    end
  end
  local text
  text, err = out.encode(self.index)
  if not text then
    return nil, "index.json: " .. err
  end
  return _M.write_file(self.dir .. "/index.json", text)
end

return _M

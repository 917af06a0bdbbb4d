-- The store object: blobs, links and uploads over libberth.
local ffi = require "ffi"
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
local error = error
local setmetatable = setmetatable
local pairs = pairs
local tonumber = tonumber

local _M = { _VERSION = "0.1.0" }

local Store = {}
local store_mt = { __index = Store }
local Upload = {}
local upload_mt = { __index = Upload }
local Reader = {}
local reader_mt = { __index = Reader }
local Follower = {}
local follower_mt = { __index = Follower }

local FSYNC = { none = 0, data = 1, full = 2 }
local ALGO = { sha256 = 1, sha384 = 2, sha512 = 3 }

-- Scratch values reused across calls; FFI calls are synchronous.
local store_out = ffi_new("berth_store *[1]")
local upload_out = ffi_new("berth_upload *[1]")
local follower_out = ffi_new("berth_follower *[1]")
local reader_out = ffi_new("berth_reader *[1]")
local iter_out = ffi_new("berth_blob_iter *[1]")
local size_out = ffi_new("uint64_t[1]")
local n_out = ffi_new("size_t[1]")
local dgst_in = ffi_new("berth_digest")
local dgst_out = ffi_new("berth_digest")
local buf = ffi_new("berth_buf")
local rel_buf = ffi_new("berth_buf")

local read_buf, read_buf_size = nil, 0
local function get_read_buf(size)
  if size > read_buf_size then
    read_buf = ffi_new("char[?]", size)
    read_buf_size = size
  end
  return read_buf
end

-- Parse a digest string into the scratch berth_digest, or into `into`
-- (a second digest of the same call).
local function parse_digest(s, level, into)
  level = level or 3
  local ok, err, code = c_string(s, "digest", "DIGEST_INVALID", false, level)
  if not ok then
    return nil, err, code
  end
  into = into or dgst_in
  local rc = C.berth_digest_parse(into, s, #s, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return into
end

-- The string arguments of the store's bindings, by kind: what the
-- argument is called and the code of a refusal; "?" allows nil.
local NAME = {
  repository = { "repository name", "NAME_INVALID" },
  tag = { "tag", "TAG_INVALID" },
  reference = { "reference", "TAG_INVALID" }, -- a digest: DIGEST_INVALID
  upload = { "upload id", "BLOB_UPLOAD_UNKNOWN" },
  file = { "local file", "EINVAL" },
  artifact_type = { "artifact type", "EINVAL" },
  last = { "last", "EINVAL" },
}
do
  local optional = {}
  for kind, v in pairs(NAME) do
    optional[kind .. "?"] = { v[1], v[2], true }
  end
  for kind, v in pairs(optional) do
    NAME[kind] = v
  end
end

local function name(s, kind)
  local k = NAME[kind]
  local ok, err, code = c_string(s, k[1], k[2], k[3], 4)
  if not ok and kind == "reference" and s:find(":", 1, true) then
    code = "DIGEST_INVALID"
  end
  return ok, err, code
end

-- Every string a store binding gives C goes through here, in one step
-- with the type check (c_string). Digests go through parse_digest.
-- names(s1, kind1, s2?, kind2?) -> true | nil, err, code
local function names(s1, k1, s2, k2)
  local ok, err, code = name(s1, k1)
  if ok and k2 then
    ok, err, code = name(s2, k2)
  end
  return ok, err, code
end

-- Take the buffer's content as a string and release its memory.
local function take_buf()
  local s = ffi_string(buf.ptr, buf.len)
  C.berth_buf_dispose(buf)
  return s
end

-- open(opts) -> store | nil, err, code
function _M.open(opts)
  if type(opts) ~= "table" then
    error("options must be a table", 2)
  end
  local o = ffi_new("berth_store_options")
  o.version = 1
  o.root = opts.root
  local drv = opts.driver
  if type(drv) == "table" then
    -- A driver object (berth.driver): the store takes it over.
    if not drv._p then
      error("driver is closed", 2)
    end
    o.custom = drv._p
  else
    o.driver = drv
  end
  local fsync = FSYNC[opts.fsync or "full"]
  if not fsync then
    error("fsync must be none, data or full", 2)
  end
  o.fsync = fsync
  local rc = C.berth_store_open(store_out, o, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  local p = ffi_gc(store_out[0], C.berth_store_free)
  -- A handed-over driver stays usable (fault arming) while the store lives.
  local store = setmetatable({ _p = p, root = opts.root, _fsync = fsync,
    _driver = type(drv) == "table" and drv or nil }, store_mt)
  if type(drv) == "table" then
    drv:_hand_over(store)
  end
  return store
end

-- close() -> true; idempotent.
function Store:close()
  local p = self._p
  if not p then
    return true
  end
  self._p = nil
  if self._driver then
    self._driver:_unwatch() -- the store still holds the driver
    self._driver._p = nil
  end
  C.berth_store_free(ffi_gc(p, nil))
  return true
end

-- new_epoch() -> true | nil, err, code: berth's caches may be stale
-- (another registry wrote the store); they are rebuilt on first use.
function Store:new_epoch()
  local p = self._p
  if not p then
    error("store is closed", 2)
  end
  local rc = C.berth_store_new_epoch(p, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

local function live(self)
  local p = self._p
  if not p then
    error("store is closed", 3)
  end
  return p
end

-- blob_stat(repo|nil, digest) -> size | nil, err, code
function Store:blob_stat(repo, dgst)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository?")
  if not ok then return nil, nerr, ncode end
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  local rc = C.berth_blob_stat(size_out, p, repo, d, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return tonumber(size_out[0])
end

-- Default limit for blob_get: the manifest size limit of the API.
local GET_MAX = tonumber(C.berth_manifest_max())

-- blob_get(repo|nil, digest, max?) -> content | nil, err, code
function Store:blob_get(repo, dgst, max)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository?")
  if not ok then return nil, nerr, ncode end
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  local rc = C.berth_blob_get(buf, p, repo, d, max or GET_MAX, scratch_err)
  if rc < 0 then
    C.berth_buf_dispose(buf)
    return fail(rc)
  end
  return take_buf()
end

-- blob_path(repo|nil, digest) -> local file path, path under the blobs
--   directory (berth_blob_local_path) | nil, err, code
function Store:blob_path(repo, dgst)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository?")
  if not ok then return nil, nerr, ncode end
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  local rc = C.berth_blob_local_path(buf, rel_buf, p, repo, d, scratch_err)
  if rc < 0 then
    C.berth_buf_dispose(buf)
    C.berth_buf_dispose(rel_buf)
    return fail(rc)
  end
  local rel = ffi_string(rel_buf.ptr, rel_buf.len)
  C.berth_buf_dispose(rel_buf)
  return take_buf(), rel
end

-- blob_put(repo|nil, data, algo?) -> digest | nil, err, code
function Store:blob_put(repo, data, algo)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository?")
  if not ok then return nil, nerr, ncode end
  if type(data) ~= "string" then
    error("data must be a string", 2)
  end
  local a = ALGO[algo or "sha256"]
  if not a then
    error("unknown digest algorithm: " .. tostring(algo), 2)
  end
  local rc = C.berth_blob_put(dgst_out, p, repo, a, data, #data, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return ffi_string(dgst_out.str)
end

-- blob_mount(repo, from|nil, digest) -> true | nil, err, code
function Store:blob_mount(repo, from, dgst)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository", from, "repository?")
  if not ok then return nil, nerr, ncode end
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  local rc = C.berth_blob_mount(p, repo, from, d, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- blob_delete(repo, digest) -> true | nil, err, code: unlinks from repo.
function Store:blob_delete(repo, dgst)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository")
  if not ok then return nil, nerr, ncode end
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  local rc = C.berth_blob_unlink(p, repo, d, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- blob_purge(digest) -> true | nil, err, code: removes the data itself.
function Store:blob_purge(dgst)
  local p = live(self)
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  local rc = C.berth_blob_purge(p, d, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- blob_list(repo|nil) -> { digest, ... } | nil, err, code
function Store:blob_list(repo)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository?")
  if not ok then return nil, nerr, ncode end
  local rc = C.berth_blob_iter_new(iter_out, p, repo, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  local it = ffi_gc(iter_out[0], C.berth_blob_iter_free)
  local list, n = {}, 0
  while true do
    rc = C.berth_blob_iter_next(dgst_out, it, scratch_err)
    if rc < 0 then
      break
    end
    n = n + 1
    list[n] = ffi_string(dgst_out.str)
  end
  C.berth_blob_iter_free(ffi_gc(it, nil))
  if rc ~= errors.BY_NAME.EITEROVER.value then
    return fail(rc)
  end
  return list
end

-- blob_reader(repo|nil, digest, offset?) -> reader | nil, err, code
function Store:blob_reader(repo, dgst, offset)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository?")
  if not ok then return nil, nerr, ncode end
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  local rc = C.berth_blob_open(reader_out, p, repo, d, offset or 0,
    scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  -- The C reader holds the C store (berth_blob_open).
  return setmetatable({ _p = ffi_gc(reader_out[0], C.berth_reader_free) },
    reader_mt)
end

-- read(n) -> string ("" at the end) | nil, err, code
function Reader:read(n)
  local r = self._p
  if not r then
    error("reader is closed", 2)
  end
  local b = get_read_buf(n)
  local rc = C.berth_reader_read(r, b, n, n_out, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return ffi_string(b, n_out[0])
end

function Reader:close()
  local r = self._p
  if not r then
    return true
  end
  self._p = nil
  C.berth_reader_free(ffi_gc(r, nil))
  return true
end

-- follow(local_file) -> follower | nil, err, code
-- Hash a local file on a thread while something else appends to it (a
-- request body being spooled), for Upload:adopt; see berth_follower_start.
function Store:follow(local_file)
  live(self)
  local ok, err, code = names(local_file, "file")
  if not ok then return nil, err, code end
  local flags = self._fsync ~= FSYNC.none and 1 or 0
  local rc = C.berth_follower_start(follower_out, local_file, flags,
    scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return setmetatable({ _p = ffi_gc(follower_out[0], C.berth_follower_free) },
    follower_mt)
end

-- hashed() -> bytes hashed so far | nil, err, code (the thread failed)
function Follower:hashed()
  local f = self._p
  if not f then
    return nil, "follower is closed", "EINVAL"
  end
  local rc = C.berth_follower_progress(f, size_out, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return tonumber(size_out[0])
end

-- close() -> true: stop the thread now rather than at collection
function Follower:close()
  local f = self._p
  if f then
    self._p = nil
    C.berth_follower_free(ffi_gc(f, nil))
  end
  return true
end

local function new_upload(up, writable, repo)
  local u = ffi_gc(up, C.berth_upload_free)
  return setmetatable({
    _p = u, -- holds the C store (berth_upload_create)
    repo = repo,
    writable = writable,
    id = ffi_string(C.berth_upload_id(u)),
  }, upload_mt)
end

-- blob_writer(repo) -> upload | nil, err, code: a new upload session.
function Store:blob_writer(repo)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository")
  if not ok then return nil, nerr, ncode end
  local rc = C.berth_upload_create(upload_out, p, repo, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return new_upload(upload_out[0], true, repo)
end

-- upload_open(repo, id, mode?) -> upload | nil, err, code
-- mode "w" (default) takes the session's writer; "r" only reads status.
function Store:upload_open(repo, id, mode)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository", id, "upload")
  if not ok then return nil, nerr, ncode end
  local flags = (mode or "w") == "w" and 1 or 0
  local rc = C.berth_upload_open(upload_out, p, repo, id, flags, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return new_upload(upload_out[0], flags == 1, repo)
end

local function closed_upload()
  return nil, "upload is closed", "EINVAL"
end

-- size() -> bytes received so far
function Upload:size()
  local u = self._p
  if not u then return closed_upload() end
  return tonumber(C.berth_upload_size(u))
end

-- started() -> seconds since the epoch
function Upload:started()
  local u = self._p
  if not u then return closed_upload() end
  return tonumber(C.berth_upload_started(u))
end

-- write(chunk) -> true | nil, err, code
function Upload:write(chunk)
  local u = self._p
  if not u then return closed_upload() end
  if type(chunk) ~= "string" then
    error("chunk must be a string", 2)
  end
  local rc = C.berth_upload_write(u, chunk, #chunk, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- adopt(local_file, follower?) -> true | nil, err, code: move a whole local
-- file in as the (empty) upload's content; "UNSUPPORTED" when the driver
-- cannot. With a follower of that file (Store:follow), its hash is taken
-- instead of reading the file again.
function Upload:adopt(local_file, follower)
  local u = self._p
  if not u then return closed_upload() end
  local ok, err, code = names(local_file, "file")
  if not ok then return nil, err, code end
  local f = follower and follower._p or nil
  local rc = C.berth_upload_adopt(u, local_file, f, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- flush() -> true | nil, err, code: save the hash state for the next request
function Upload:flush()
  local u = self._p
  if not u then return closed_upload() end
  local rc = C.berth_upload_flush(u, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

local function release(self)
  local u = self._p
  self._p = nil
  C.berth_upload_free(ffi_gc(u, nil))
end

-- commit(digest, size?) -> true | nil, err, code. The upload is closed
-- afterwards, whatever the outcome.
function Upload:commit(dgst, size)
  local u = self._p
  if not u then return closed_upload() end
  local d, err, code = parse_digest(dgst)
  if not d then
    release(self)
    return nil, err, code
  end
  local rc = C.berth_upload_commit(u, d, size or -1, scratch_err)
  release(self)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- cancel() -> true | nil, err, code; safe after commit or close.
function Upload:cancel()
  local u = self._p
  if not u then return true end
  local rc = C.berth_upload_cancel(u, scratch_err)
  release(self)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- close() -> true | nil, err, code: save the hash state (when writing) and
-- release the session; its data stays for the next request.
function Upload:close()
  if not self._p then
    return true
  end
  local ok, err, code = true, nil, nil
  if self.writable then
    ok, err, code = self:flush()
  end
  release(self)
  return ok, err, code
end

-- For the modules that add methods to Store (berth.manifest, berth.tag):
-- the class and the argument helpers, so there is one way to do each.
_M.Store = Store
_M.Upload = Upload
_M.Reader = Reader
_M.Follower = Follower
_M.parse_digest = parse_digest
_M.names = names
_M.live = live
_M.take_buf = take_buf
_M.buf = buf

return _M

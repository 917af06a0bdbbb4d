-- The store object, in one place: blobs, uploads, manifests, tags, the
-- catalog, and the maintenance primitives that gc and fsck build on, over
-- libberth. Every method decodes its arguments with args() below.
--   local store = assert(require("berth.store").open{ root = "/srv/r" })
--   assert(store:tag_set("library/alpine", "3.20", digest))
local ffi = require "ffi"
local bit = require "bit"
local ffi_mod = require "berth.ffi"
local C = ffi_mod.C
local errors = require "berth.errors"
local manifest = require "berth.manifest"

local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_cast = ffi.cast
local ffi_string = ffi.string
local fail = errors.fail
local c_string = ffi_mod.c_string
local scratch_err = errors.scratch
local type = type
local error = error
local select = select
local setmetatable = setmetatable
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local floor = math.floor
local bor = bit.bor

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
local EITEROVER = errors.BY_NAME.EITEROVER.value

-- Scratch values reused across calls; FFI calls are synchronous.
local store_out = ffi_new("berth_store *[1]")
local upload_out = ffi_new("berth_upload *[1]")
local follower_out = ffi_new("berth_follower *[1]")
local reader_out = ffi_new("berth_reader *[1]")
local iter_out = ffi_new("berth_blob_iter *[1]")
local size_out = ffi_new("uint64_t[1]")
local n_out = ffi_new("size_t[1]")
local count_out = ffi_new("int[1]")
local dgst_out = ffi_new("berth_digest")
local buf = ffi_new("berth_buf")
local rel_buf = ffi_new("berth_buf")
local list = ffi_new("berth_strlist")

local read_buf, read_buf_size = nil, 0
local function get_read_buf(size)
  if size > read_buf_size then
    read_buf = ffi_new("char[?]", size)
    read_buf_size = size
  end
  return read_buf
end

-- The one argument decoder of the store's methods and of its uploads'.
-- ARG says, by kind, what an argument is called and what it may be: a name
-- handed to C (with the code of its refusal), a digest (parsed), a count
-- (a non-negative integer), a number, a value of an enumeration (enum:
-- value -> what C gets), a manifest object, an options table. A kind
-- ending in "?" also allows nil (for a count or a number: its default).
local LINK_KIND = { layer = 1, revision = 2, tag = 4, tag_index = 8 }
local ARG = {
  repository = { "repository name", "NAME_INVALID" },
  tag = { "tag", "TAG_INVALID" },
  reference = { "reference", "TAG_INVALID" }, -- a digest: DIGEST_INVALID
  upload = { "upload id", "BLOB_UPLOAD_UNKNOWN" },
  file = { "local file", "EINVAL" },
  artifact_type = { "artifact type", "EINVAL" },
  last = { "last", "EINVAL" },
  digest = { "digest", "DIGEST_INVALID", digest = true },
  max = { "max", count = true },
  offset = { "offset", count = true },
  size = { "size", count = true },
  n = { "n", count = true },
  cutoff = { "cutoff", number = true },
  link_kind = { "link kind", enum = LINK_KIND,
    names = "layer, revision, tag, tag_index" },
  mode = { "mode", enum = { w = 1, r = 0 }, names = "w, r" },
  manifest = { "manifest", manifest = true },
  options = { "options", options = true },
}
do
  local optional = {}
  for kind, a in pairs(ARG) do
    local o = { optional = true }
    for k, v in pairs(a) do
      o[k] = v
    end
    optional[kind .. "?"] = o
  end
  for kind, a in pairs(optional) do
    ARG[kind] = a
  end
end

-- The scratch digests of one call, one per digest argument.
local digests = { ffi_new("berth_digest"), ffi_new("berth_digest") }
local is_manifest = manifest.is_manifest
local NUMBER_MAX = 2 ^ 63

-- decode(level, kind, value, ...) -> true, digest... | nil, err, code
-- Checks each value against its kind, in order. A value of the wrong type
-- raises at level (counted as error() counts them from decode: the
-- caller of the method); a name with a NUL byte or a bad digest is an
-- error return. The digests come back parsed, in the order of their
-- arguments, each in its own scratch berth_digest (an absent one: nil).
local function decode(level, ...)
  local d1, d2
  local nd = 0
  for i = 1, select("#", ...), 2 do
    local kind, v = select(i, ...)
    local a = ARG[kind]
    if v == nil and a.optional then
      if a.digest then
        nd = nd + 1
      end
    elseif a.count then
      if type(v) ~= "number" or not (v >= 0 and v < NUMBER_MAX)
          or v ~= floor(v) then
        error(a[1] .. " must be a non-negative integer", level)
      end
    elseif a.number then
      if type(v) ~= "number" then
        error(a[1] .. " must be a number", level)
      end
    elseif a.enum then
      if a.enum[v] == nil then
        error(a[1] .. " must be one of " .. a.names, level)
      end
    elseif a.manifest then
      if not is_manifest(v) then
        error("manifest must be a manifest object", level)
      end
      if not v._p then
        error("manifest is closed", level)
      end
    elseif a.options then
      if type(v) ~= "table" then
        error("options must be a table", level)
      end
    else
      local ok, err, code = c_string(v, a[1], a[2], false, level)
      if not ok then
        if kind == "reference" and v:find(":", 1, true) then
          code = "DIGEST_INVALID"
        end
        return nil, err, code
      end
      if a.digest then
        nd = nd + 1
        local d = digests[nd]
        local rc = C.berth_digest_parse(d, v, #v, scratch_err)
        if rc < 0 then
          return fail(rc)
        end
        if nd == 1 then d1 = d else d2 = d end
      end
    end
  end
  return true, d1, d2
end

-- args(self, kind, value, ...) -> C store, digest... | nil, err, code:
-- decode() for a store method, after checking that the store is open.
local function args(self, ...)
  local p = self._p
  if not p then
    error("store is closed", 3)
  end
  local ok, d1, d2 = decode(4, ...)
  if not ok then
    return nil, d1, d2
  end
  return p, d1, d2
end

-- Take the buffer's content as a string and release its memory.
local function take_buf()
  local s = ffi_string(buf.ptr, buf.len)
  C.berth_buf_dispose(buf)
  return s
end

-- The scratch list as a Lua array; its C memory is released.
local function take_list(l)
  return ffi_mod.strlist_take(l or list)
end

-- The answer of a C call that fills the scratch list, or only succeeds or
-- fails: -> list | true | nil, err, code
local function list_result(rc)
  if rc < 0 then
    C.berth_strlist_dispose(list)
    return fail(rc)
  end
  return take_list()
end

local function done(rc)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- The store ------------------------------------------------------------------

-- open(opts) -> store | nil, err, code
function _M.open(opts)
  if type(opts) ~= "table" then
    error("options must be a table", 2)
  end
  local o = ffi_new("berth_store_options")
  o.version = 1
  o.root = opts.root
  local drv = opts.driver
  if drv == "s3" then
    -- the bucket holds the store; root only holds local state (serve's
    -- run directory and spool)
    local s3 = opts.s3 or {}
    for _, k in ipairs({ "regionendpoint", "bucket", "accesskey",
        "secretkey" }) do
      if type(s3[k]) ~= "string" then
        return nil, "an s3 store needs store.s3." .. k .. " (or "
          .. "REGISTRY_STORAGE_S3_" .. k:upper() .. ")", "EINVAL"
      end
    end
    local err, code
    drv, err, code = require("berth.driver").s3{
      endpoint = s3.regionendpoint, bucket = s3.bucket, region = s3.region,
      access_key = s3.accesskey, secret_key = s3.secretkey,
      root = s3.rootdirectory }
    if not drv then return nil, err, code end
  end
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
  local p = args(self)
  return done(C.berth_store_new_epoch(p, scratch_err))
end

-- Blobs ----------------------------------------------------------------------

-- blob_stat(repo|nil, digest) -> size | nil, err, code
function Store:blob_stat(repo, dgst)
  local p, d, code = args(self, "repository?", repo, "digest", dgst)
  if not p then return nil, d, code end
  local rc = C.berth_blob_stat(size_out, p, repo, d, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return tonumber(size_out[0])
end

-- Default limit for blob_get: the manifest size limit of the API.
local GET_MAX = manifest.MAX

-- blob_get(repo|nil, digest, max?) -> content | nil, err, code
function Store:blob_get(repo, dgst, max)
  local p, d, code = args(self, "repository?", repo, "digest", dgst,
    "max?", max)
  if not p then return nil, d, code end
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
  local p, d, code = args(self, "repository?", repo, "digest", dgst)
  if not p then return nil, d, code end
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

local send_kind = ffi_new("berth_send_kind[1]")

-- blob_send(repo|nil, digest) -> how a server sends the blob's bytes:
--   { kind = "file", path = local file, rel = path under the blobs
--   directory } | { kind = "url", url = } | nil, err, code
--   (berth_blob_send; "UNSUPPORTED": read it, blob_reader)
function Store:blob_send(repo, dgst)
  local p, d, code = args(self, "repository?", repo, "digest", dgst)
  if not p then return nil, d, code end
  local rc = C.berth_blob_send(send_kind, buf, rel_buf, p, repo, d,
    scratch_err)
  if rc < 0 then
    C.berth_buf_dispose(buf)
    C.berth_buf_dispose(rel_buf)
    return fail(rc)
  end
  local where = take_buf()
  if send_kind[0] == C.BERTH_SEND_URL then
    return { kind = "url", url = where }
  end
  local rel = ffi_string(rel_buf.ptr, rel_buf.len)
  C.berth_buf_dispose(rel_buf)
  return { kind = "file", path = where, rel = rel }
end

-- blob_put(repo|nil, data, algo?) -> digest | nil, err, code
function Store:blob_put(repo, data, algo)
  local p, err, code = args(self, "repository?", repo)
  if not p then return nil, err, code end
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
  local p, d, code = args(self, "repository", repo, "repository?", from,
    "digest", dgst)
  if not p then return nil, d, code end
  return done(C.berth_blob_mount(p, repo, from, d, scratch_err))
end

-- blob_delete(repo, digest) -> true | nil, err, code: unlinks from repo.
function Store:blob_delete(repo, dgst)
  local p, d, code = args(self, "repository", repo, "digest", dgst)
  if not p then return nil, d, code end
  return done(C.berth_blob_unlink(p, repo, d, scratch_err))
end

-- blob_purge(digest) -> true | nil, err, code: removes the data itself.
function Store:blob_purge(dgst)
  local p, d, code = args(self, "digest", dgst)
  if not p then return nil, d, code end
  return done(C.berth_blob_purge(p, d, scratch_err))
end

-- blob_list(repo|nil) -> { digest, ... } | nil, err, code
function Store:blob_list(repo)
  local p, err, code = args(self, "repository?", repo)
  if not p then return nil, err, code end
  local rc = C.berth_blob_iter_new(iter_out, p, repo, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  local it = ffi_gc(iter_out[0], C.berth_blob_iter_free)
  local t, n = {}, 0
  while true do
    rc = C.berth_blob_iter_next(dgst_out, it, scratch_err)
    if rc < 0 then
      break
    end
    n = n + 1
    t[n] = ffi_string(dgst_out.str)
  end
  C.berth_blob_iter_free(ffi_gc(it, nil))
  if rc ~= EITEROVER then
    return fail(rc)
  end
  return t
end

-- blob_reader(repo|nil, digest, offset?) -> reader | nil, err, code
function Store:blob_reader(repo, dgst, offset)
  local p, d, code = args(self, "repository?", repo, "digest", dgst,
    "offset?", offset)
  if not p then return nil, d, code end
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

-- Uploads --------------------------------------------------------------------

-- follow(local_file) -> follower | nil, err, code
-- Hash a local file on a thread while something else appends to it (a
-- request body being spooled), for Upload:adopt; see berth_follower_start.
function Store:follow(local_file)
  local p, err, code = args(self, "file", local_file)
  if not p then return nil, err, code end
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
  local p, err, code = args(self, "repository", repo)
  if not p then return nil, err, code end
  local rc = C.berth_upload_create(upload_out, p, repo, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return new_upload(upload_out[0], true, repo)
end

-- upload_open(repo, id, mode?) -> upload | nil, err, code
-- mode "w" (default) takes the session's writer; "r" only reads status.
function Store:upload_open(repo, id, mode)
  local p, err, code = args(self, "repository", repo, "upload", id,
    "mode?", mode)
  if not p then return nil, err, code end
  local flags = ARG.mode.enum[mode or "w"]
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
  return done(C.berth_upload_write(u, chunk, #chunk, scratch_err))
end

-- adopt(local_file, follower?) -> true | nil, err, code: move a whole local
-- file in as the (empty) upload's content; "UNSUPPORTED" when the driver
-- cannot. With a follower of that file (Store:follow), its hash is taken
-- instead of reading the file again.
function Upload:adopt(local_file, follower)
  local u = self._p
  if not u then return closed_upload() end
  local ok, err, code = decode(3, "file", local_file)
  if not ok then return nil, err, code end
  local f = follower and follower._p or nil
  return done(C.berth_upload_adopt(u, local_file, f, scratch_err))
end

-- flush() -> true | nil, err, code: save the hash state for the next request
function Upload:flush()
  local u = self._p
  if not u then return closed_upload() end
  return done(C.berth_upload_flush(u, scratch_err))
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
  local ok, d, code = decode(3, "digest", dgst, "size?", size)
  if not ok then
    release(self)
    return nil, d, code
  end
  local rc = C.berth_upload_commit(u, d, size or -1, scratch_err)
  release(self)
  return done(rc)
end

-- cancel() -> true | nil, err, code; safe after commit or close.
function Upload:cancel()
  local u = self._p
  if not u then return true end
  local rc = C.berth_upload_cancel(u, scratch_err)
  release(self)
  return done(rc)
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

-- Manifests ------------------------------------------------------------------

local info = ffi_new("berth_manifest_info")
local put_opts = ffi_new("berth_manifest_put_options")
local expected_list = ffi_new("berth_strlist")
local NONE = {}

local function info_table()
  return {
    digest = ffi_string(info.digest.str),
    size = tonumber(info.size),
    media_type = ffi_string(info.media_type),
  }
end

-- manifest_put(repo, m, { tag =, digest =, tag_expected =, skip_verify =,
--   allow_foreign_layers = (default true) }) -> digest | nil, err, code
-- tag_expected: the digest the tag must point at, or false for "the tag
-- must not exist".
function Store:manifest_put(repo, m, opts)
  local p, err, code = args(self, "manifest", m, "options?", opts)
  if not p then return nil, err, code end
  opts = opts or NONE
  local expected = opts.tag_expected
  local ok, d, e = decode(3, "repository", repo, "tag?", opts.tag,
    "digest?", opts.digest, "digest?", expected or nil)
  if not ok then return nil, d, e end
  -- The tag is set by tag_set(_if), which waits for the tag lock
  -- (berth.busy): a held lock then costs a retry of the tag alone, not of
  -- the manifest's verification and durable writes.
  local tag = opts.tag
  if tag ~= nil then
    local rc = C.berth_name_validate(repo, #repo, scratch_err)
    if rc == 0 then
      rc = C.berth_tag_validate(tag, #tag, scratch_err)
    end
    if rc < 0 then return fail(rc) end -- before anything is written
  end
  put_opts.version = 2
  put_opts.tag = nil
  put_opts.expected = d
  put_opts.tag_expected = nil
  put_opts.flags = opts.skip_verify and 1 or 0
  put_opts.allow_foreign_layers = opts.allow_foreign_layers == false and 0
    or 1
  local rc = C.berth_manifest_put(p, repo, m._p, put_opts, scratch_err)
  -- No pointers into Lua strings outlive the call.
  put_opts.expected = nil
  if rc < 0 then
    return fail(rc)
  end
  -- m (the owner of its C manifest) is used here, so it lived through the
  -- call.
  local stored = opts.digest or m:digest()
  if tag ~= nil then
    local tagged, terr, tcode
    if expected ~= nil then
      tagged, terr, tcode = self:tag_set_if(repo, tag, stored, expected)
    else
      tagged, terr, tcode = self:tag_set(repo, tag, stored)
    end
    if not tagged then return nil, terr, tcode end
  end
  return stored
end

-- manifest_get(repo, ref) -> body, { digest =, size =, media_type = }
--   | nil, err, code. ref is a tag or a digest.
function Store:manifest_get(repo, ref)
  local p, err, code = args(self, "repository", repo, "reference", ref)
  if not p then return nil, err, code end
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
  local p, err, code = args(self, "repository", repo, "reference", ref)
  if not p then return nil, err, code end
  local rc = C.berth_manifest_get(nil, info, p, repo, ref, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return info_table()
end

-- manifest_delete(repo, digest, expected_tags?) -> true | nil, err, code:
-- the manifest and every tag pointing at it. With expected_tags (a list),
-- only if those are the tags pointing at it, as one step; "ETAG_CHANGED"
-- otherwise (berth_manifest_delete_if).
function Store:manifest_delete(repo, dgst, expected_tags)
  local p, d, code = args(self, "repository", repo, "digest", dgst)
  if not p then return nil, d, code end
  if expected_tags == nil then
    return done(C.berth_manifest_delete(p, repo, d, scratch_err))
  end
  if type(expected_tags) ~= "table" then
    error("expected tags must be a list", 2)
  end
  for _, t in ipairs(expected_tags) do
    local ok, err
    ok, err, code = decode(3, "tag", t)
    if not ok then
      C.berth_strlist_dispose(expected_list)
      return nil, err, code
    end
    local rc = C.berth_strlist_add(expected_list, t, #t, scratch_err)
    if rc < 0 then
      C.berth_strlist_dispose(expected_list)
      return fail(rc)
    end
  end
  local rc = C.berth_manifest_delete_if(p, repo, d, expected_list,
    scratch_err)
  C.berth_strlist_dispose(expected_list)
  return done(rc)
end

-- manifest_list(repo) -> { digest, ... } sorted | nil, err, code
function Store:manifest_list(repo)
  local p, err, code = args(self, "repository", repo)
  if not p then return nil, err, code end
  return list_result(C.berth_manifest_list(list, p, repo, scratch_err))
end

-- referrers(repo, subject, artifact_type?) -> OCI image index JSON text
--   | nil, err, code
function Store:referrers(repo, subject, artifact_type)
  local p, d, code = args(self, "repository", repo, "digest", subject,
    "artifact_type?", artifact_type)
  if not p then return nil, d, code end
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
  local p, err, code = args(self, "repository", repo)
  if not p then return nil, err, code end
  return done(C.berth_referrers_rebuild(p, repo, scratch_err))
end

-- Tags and the catalog -------------------------------------------------------

local SIZE_MAX = ffi_cast("size_t", 0) - 1

-- The { n =, last = } of a listing (n nil: all) of a method's caller:
-- -> true, last, n | nil, err, code
local function page_args(opts)
  decode(4, "options?", opts)
  opts = opts or NONE
  local ok, err, code = decode(4, "last?", opts.last, "n?", opts.n)
  if not ok then return nil, err, code end
  return true, opts.last, opts.n or SIZE_MAX
end

-- tag_get(repo, tag) -> digest | nil, err, code
function Store:tag_get(repo, tag)
  local p, err, code = args(self, "repository", repo, "tag", tag)
  if not p then return nil, err, code end
  local rc = C.berth_tag_get(dgst_out, p, repo, tag, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return ffi_string(dgst_out.str)
end

-- tag_set(repo, tag, digest) -> true | nil, err, code
function Store:tag_set(repo, tag, dgst)
  local p, d, code = args(self, "repository", repo, "tag", tag,
    "digest", dgst)
  if not p then return nil, d, code end
  return done(C.berth_tag_set(p, repo, tag, d, scratch_err))
end

-- tag_set_if(repo, tag, digest, expected) -> true | nil, err, code
-- Only if the tag points at expected (nil or false: only if it does not
-- exist), as one step; "ETAG_CHANGED" otherwise (berth_tag_set_if).
function Store:tag_set_if(repo, tag, dgst, expected)
  local p, d, e = args(self, "repository", repo, "tag", tag, "digest", dgst,
    "digest?", expected or nil)
  if not p then return nil, d, e end
  return done(C.berth_tag_set_if(p, repo, tag, d, e, scratch_err))
end

-- tag_delete(repo, tag) -> true | nil, err, code
function Store:tag_delete(repo, tag)
  local p, err, code = args(self, "repository", repo, "tag", tag)
  if not p then return nil, err, code end
  return done(C.berth_tag_delete(p, repo, tag, scratch_err))
end

-- tag_delete_if(repo, tag, expected) -> true | nil, err, code
-- Only if the tag points at expected (nil or false: only if it has no
-- current link), as one step; "ETAG_CHANGED" otherwise.
function Store:tag_delete_if(repo, tag, expected)
  local p, e, code = args(self, "repository", repo, "tag", tag,
    "digest?", expected or nil)
  if not p then return nil, e, code end
  return done(C.berth_tag_delete_if(p, repo, tag, e, scratch_err))
end

-- Whole tag lists are kept per store object (so per nginx worker) under
-- the version of the repository's tags directory: a list of 1,000 tags
-- costs ~0.5 ms to read and sort, a version one stat. At most
-- TAG_CACHE_REPOS repositories; when full it starts again empty. A tag
-- directory without a current link (a first set under way, or cut short)
-- is not listed, and gets its link without changing the version: those
-- are looked at again on each use, one stat each.
local TAG_CACHE_REPOS = 64
local version_buf = ffi_new("char[96]")
local unset_list = ffi_new("berth_strlist")
local EMANIFEST_UNKNOWN = errors.BY_NAME.MANIFEST_UNKNOWN.value

-- Does any of the names have a current link now?
local function any_set(p, repo, unset)
  for i = 1, #unset do
    if C.berth_tag_get(dgst_out, p, repo, unset[i], scratch_err)
        ~= EMANIFEST_UNKNOWN then
      return true
    end
  end
  return false
end

local function cached_tags(self, p, repo)
  if C.berth_tag_list_version(p, repo, version_buf, scratch_err) < 0 then
    return nil -- no version now (or no tags directory): no cache
  end
  local version = ffi_string(version_buf)
  local cache = self._tag_cache
  if not cache then
    cache = { count = 0, repos = {} }
    self._tag_cache = cache
  end
  local entry = cache.repos[repo]
  if entry and entry.version == version
      and not any_set(p, repo, entry.unset) then
    return entry.tags
  end
  local rc = C.berth_tag_list_all(list, unset_list, p, repo, scratch_err)
  if rc < 0 then
    C.berth_strlist_dispose(list)
    return nil
  end
  local tags = take_list()
  local unset = take_list(unset_list)
  if not entry then
    if cache.count >= TAG_CACHE_REPOS then
      cache.count, cache.repos = 0, {}
    end
    cache.count = cache.count + 1
  end
  -- The version was read before the list: the list is at least as new.
  cache.repos[repo] = { version = version, tags = tags, unset = unset }
  return tags
end

-- The page of a sorted list after last, at most n: a new table.
local function page_of(tags, last, n)
  local lo, hi = 1, #tags + 1
  if last then
    while lo < hi do -- first index whose tag sorts after last
      local mid = floor((lo + hi) / 2)
      if tags[mid] <= last then lo = mid + 1 else hi = mid end
    end
  end
  local page = {}
  for i = lo, #tags do
    if #page >= n then break end
    page[#page + 1] = tags[i]
  end
  return page
end

-- tag_list(repo, { n =, last = }?) -> { tag, ... } | nil, err, code
function Store:tag_list(repo, opts)
  local p, err, code = args(self, "repository", repo)
  if not p then return nil, err, code end
  local ok, last, n = page_args(opts)
  if not ok then return nil, last, n end
  local tags = cached_tags(self, p, repo)
  if tags then
    return page_of(tags, last, tonumber(n))
  end
  return list_result(C.berth_tag_list(list, p, repo, last, n, scratch_err))
end

-- tag_lookup(repo, digest) -> { tag, ... } | nil, err, code
function Store:tag_lookup(repo, dgst)
  local p, d, code = args(self, "repository", repo, "digest", dgst)
  if not p then return nil, d, code end
  return list_result(C.berth_tag_lookup(list, p, repo, d, scratch_err))
end

-- manifest_restore(repo, digest) -> true | nil, err, code: put back a
-- manifest gc or fsck deleted whose body is still stored, unverified
-- (berth_gc_manifest_restore).
function Store:manifest_restore(repo, dgst)
  local p, d, code = args(self, "repository", repo, "digest", dgst)
  if not p then return nil, d, code end
  return done(C.berth_gc_manifest_restore(p, repo, d, scratch_err))
end

-- tag_reindex(repo) -> true | nil, err, code
function Store:tag_reindex(repo)
  local p, err, code = args(self, "repository", repo)
  if not p then return nil, err, code end
  return done(C.berth_tag_reindex(p, repo, scratch_err))
end

-- catalog({ n =, last = }?) -> { repository, ... } | nil, err, code
function Store:catalog(opts)
  local p = args(self)
  local ok, last, n = page_args(opts)
  if not ok then return nil, last, n end
  return list_result(C.berth_catalog_list(list, p, last, n, scratch_err))
end

-- Maintenance: the primitives gc and fsck build on ---------------------------

local KIND_NAME = { [1] = "layer", [2] = "revision", [4] = "tag",
  [8] = "tag_index" }
local STATE_NAME = { [0] = "ok", "absent", "damaged", "mismatch" }
local LINK_EMPTY = 16 -- BERTH_GC_LINK_EMPTY
_M.LINK_KINDS = { "layer", "revision", "tag", "tag_index" }

local stat_out = ffi_new("berth_stat_info")
local link_out = ffi_new("berth_gc_link")
local link_iter_out = ffi_new("berth_gc_link_iter *[1]")
local gc_upload_out = ffi_new("berth_gc_upload")
local upload_iter_out = ffi_new("berth_gc_upload_iter *[1]")

-- repositories() -> { name, ... } | nil, err, code: every repository,
-- also those without manifests (uploads or layers only), catalog order.
function Store:repositories()
  local p = args(self)
  return list_result(C.berth_gc_repo_list(list, p, scratch_err))
end

-- blob_info(digest) -> { size =, mtime = seconds, mtime_ns = }
--   | nil, err, code: the data file, links not looked at.
function Store:blob_info(dgst)
  local p, d, code = args(self, "digest", dgst)
  if not p then return nil, d, code end
  local rc = C.berth_gc_blob_stat(stat_out, p, d, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  local ns = tonumber(stat_out.mtime_ns)
  return { size = tonumber(stat_out.size), mtime_ns = ns, mtime = ns / 1e9 }
end

-- blob_condemn(digest), blob_reprieve(digest), blob_purge_condemned(digest),
-- blob_links_condemn(digest), blob_links_purge(digest)
--   -> true | nil, err, code (BLOB_UNKNOWN: nothing to move or remove):
-- the steps of a purge that pushes may race (core/include/berth/blob.h).
for name, fn in pairs({ blob_condemn = "berth_blob_condemn",
    blob_reprieve = "berth_blob_reprieve",
    blob_purge_condemned = "berth_blob_purge_condemned",
    blob_links_condemn = "berth_blob_links_condemn",
    blob_links_purge = "berth_blob_links_purge" }) do
  Store[name] = function(self, dgst)
    local p, d, code = args(self, "digest", dgst)
    if not p then return nil, d, code end
    return done(C[fn](p, d, scratch_err))
  end
end

-- blob_link_withdraw(repo, digest), blob_link_restore(repo, digest),
-- blob_link_reprieve(repo, digest) -> true | nil, err, code
-- (BLOB_UNKNOWN: nothing to move): gc's journal of _layers links (blob.h).
for name, fn in pairs({ blob_link_withdraw = "berth_blob_link_withdraw",
    blob_link_restore = "berth_blob_link_restore",
    blob_link_reprieve = "berth_blob_link_reprieve" }) do
  Store[name] = function(self, repo, dgst)
    local p, d, code = args(self, "repository", repo, "digest", dgst)
    if not p then return nil, d, code end
    return done(C[fn](p, repo, d, scratch_err))
  end
end

-- blob_reprieve_all(), blob_restore_links() -> count | nil, err, code: put
-- back every blob, every _layers link, a gc condemned or withdrew and did
-- not finish with (it was killed).
for name, fn in pairs({ blob_reprieve_all = "berth_gc_reprieve_all",
    blob_restore_links = "berth_gc_restore_links" }) do
  Store[name] = function(self)
    local p = args(self)
    local rc = C[fn](count_out, p, scratch_err)
    if rc < 0 then
      return fail(rc)
    end
    return count_out[0]
  end
end

-- blob_verify(digest) -> size | nil, err, code, actual_digest
-- Re-hashes the data on disk; code DIGEST_INVALID when it does not match
-- (actual_digest then says what it hashes to), BLOB_UNKNOWN when missing.
function Store:blob_verify(dgst)
  local p, d, code = args(self, "digest", dgst)
  if not p then return nil, d, code end
  local rc = C.berth_gc_blob_verify(dgst_out, size_out, p, d, scratch_err)
  if rc < 0 then
    local actual = dgst_out.algo ~= 0 and ffi_string(dgst_out.str) or nil
    local _, e, c = fail(rc)
    return nil, e, c, actual
  end
  return tonumber(size_out[0])
end

local function link_table(l)
  local kind = tonumber(l.kind)
  local t = {
    kind = KIND_NAME[kind],
    state = STATE_NAME[tonumber(l.state)],
    digest = l.digest.algo ~= 0 and ffi_string(l.digest.str) or nil,
    target = l.target.algo ~= 0 and ffi_string(l.target.str) or nil,
    mtime_ns = tonumber(l.mtime_ns),
  }
  t.mtime = t.mtime_ns / 1e9
  if kind >= 4 then
    t.tag = ffi_string(l.tag)
  end
  return t
end

-- links(repo, kinds?) -> { link, ... } | nil, err, code
-- kinds: a list of "layer", "revision", "tag" (current links), "tag_index"
-- (default all), and "empty": also the link directories of those kinds
-- without their file (state "absent"). A link is { kind =, state = "ok"|
-- "absent"|"damaged"|"mismatch", digest = named by the path (a tag: its
-- target), target = the content when it is a digest, tag =, mtime =,
-- mtime_ns = (absent: of the directory) }.
function Store:links(repo, kinds)
  local p, err, code = args(self, "repository", repo)
  if not p then return nil, err, code end
  local mask = 0
  if kinds == nil then
    mask = 15
  else
    if type(kinds) ~= "table" then
      error("kinds must be a list", 2)
    end
    for _, k in ipairs(kinds) do
      if k ~= "empty" then
        decode(3, "link_kind", k)
      end
      mask = bor(mask, k == "empty" and LINK_EMPTY or LINK_KIND[k])
    end
  end
  local rc = C.berth_gc_link_iter_new(link_iter_out, p, repo, mask,
    scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  local it = ffi_gc(link_iter_out[0], C.berth_gc_link_iter_free)
  local t = {}
  while true do
    rc = C.berth_gc_link_iter_next(link_out, it, scratch_err)
    if rc < 0 then
      break
    end
    t[#t + 1] = link_table(link_out)
  end
  C.berth_gc_link_iter_free(ffi_gc(it, nil))
  if rc ~= EITEROVER then
    return fail(rc)
  end
  return t
end

-- The arguments of a link call, by its kind: the tags' links need a tag,
-- and a tag's current link has no digest (a digest given is ignored).
local LINK_TAG = { [1] = "tag?", [2] = "tag?", [4] = "tag", [8] = "tag" }
local LINK_DIGEST = { [1] = "digest", [2] = "digest", [4] = "digest?",
  [8] = "digest" }

-- link_stat(repo, kind, digest|nil, tag|nil) -> link | nil, err, code
-- ("ENOTFOUND" when there is no link file)
function Store:link_stat(repo, kind, dgst, tag)
  local p = args(self, "link_kind", kind)
  local k = LINK_KIND[kind]
  local ok, d, code = decode(3, "repository", repo, LINK_TAG[k], tag,
    LINK_DIGEST[k], k ~= 4 and dgst or nil)
  if not ok then return nil, d, code end
  local rc = C.berth_gc_link_stat(link_out, p, repo, k, d, tag, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return link_table(link_out)
end

-- link_remove(repo, kind, digest|nil, tag|nil) -> true | nil, err, code
-- Removes the link and its directory; kind "tag" removes the whole tag.
function Store:link_remove(repo, kind, dgst, tag)
  local p = args(self, "link_kind", kind)
  local k = LINK_KIND[kind]
  local ok, d, code = decode(3, "repository", repo, LINK_TAG[k], tag,
    LINK_DIGEST[k], k ~= 4 and dgst or nil)
  if not ok then return nil, d, code end
  return done(C.berth_gc_link_remove(p, repo, k, d, tag, scratch_err))
end

-- What "any age" is to the leftover calls: past every mtime.
local ANY_AGE = 2 ^ 62

-- link_leftover(repo, kind, digest, tag|nil, cutoff_ns|nil, remove)
--   -> true | nil, err, code ("EEXISTS": not a leftover, "ENOTFOUND")
-- Is the link's directory what a put cut short leaves (no link file, only
-- temp files, nothing changed since cutoff_ns; nil: any age)? With
-- remove, it goes (berth_gc_link_leftover).
function Store:link_leftover(repo, kind, dgst, tag, cutoff_ns, remove)
  local p = args(self, "link_kind", kind)
  local k = LINK_KIND[kind]
  local ok, d, code = decode(3, "repository", repo, LINK_TAG[k], tag,
    LINK_DIGEST[k], k ~= 4 and dgst or nil, "cutoff?", cutoff_ns)
  if not ok then return nil, d, code end
  return done(C.berth_gc_link_leftover(p, repo, k, d, tag,
    cutoff_ns or ANY_AGE, remove and 1 or 0, scratch_err))
end

-- blob_leftover(digest, cutoff_ns|nil, remove) -> true | nil, err, code
-- ("EEXISTS": not a leftover, "BLOB_UNKNOWN": no directory): is the blob's
-- directory without data what a crash leaves (berth_gc_blob_leftover)?
function Store:blob_leftover(dgst, cutoff_ns, remove)
  local p, d, code = args(self, "digest", dgst, "cutoff?", cutoff_ns)
  if not p then return nil, d, code end
  return done(C.berth_gc_blob_leftover(p, d, cutoff_ns or ANY_AGE,
    remove and 1 or 0, scratch_err))
end

-- uploads(repo) -> { { id =, started =, has_startedat =, size = }, ... }
--   | nil, err, code
function Store:uploads(repo)
  local p, err, code = args(self, "repository", repo)
  if not p then return nil, err, code end
  local rc = C.berth_gc_upload_iter_new(upload_iter_out, p, repo,
    scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  local it = ffi_gc(upload_iter_out[0], C.berth_gc_upload_iter_free)
  local t = {}
  while true do
    rc = C.berth_gc_upload_iter_next(gc_upload_out, it, scratch_err)
    if rc < 0 then
      break
    end
    t[#t + 1] = {
      id = ffi_string(gc_upload_out.id),
      started = tonumber(gc_upload_out.started),
      has_startedat = gc_upload_out.has_startedat ~= 0,
      size = tonumber(gc_upload_out.size),
    }
  end
  C.berth_gc_upload_iter_free(ffi_gc(it, nil))
  if rc ~= EITEROVER then
    return fail(rc)
  end
  return t
end

-- upload_purge(repo, id) -> true | nil, err, code ("EBUSY" while a request
-- writes it, "BLOB_UPLOAD_UNKNOWN")
function Store:upload_purge(repo, id)
  local p, err, code = args(self, "repository", repo, "upload", id)
  if not p then return nil, err, code end
  return done(C.berth_gc_upload_purge(p, repo, id, scratch_err))
end

-- c_store(store) -> the C store of an open store object, for the modules
-- that call the C API with it (gc's walk of the spool); raises at the
-- caller when it is closed.
function _M.c_store(store)
  local p = args(store)
  return p
end

-- The tag lock answers EBUSY at once (berth__tag_lock): the methods that
-- take it wait in berth.busy, never inside C.
require("berth.busy").wrap(Store, { "tag_set", "tag_set_if", "tag_delete",
  "tag_delete_if", "manifest_delete", "link_remove" })

_M.Store = Store
_M.Upload = Upload
_M.Reader = Reader
_M.Follower = Follower

return _M

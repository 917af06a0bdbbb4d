-- berth.driver: storage drivers as Lua objects, for specs and tools.
--
--   local driver = require "berth.driver"
--   local d = driver.fs("/srv/registry", { fsync = "data" })
--   assert(d:put("/a/b", "hello"))
--   local s, err, code = d:get("/a/b")
--
-- Failures are `nil, message, code` (code such as "ENOTFOUND", "EBUSY").
-- A driver must outlive its readers and writers: each keeps a reference to
-- its driver, and using one after d:close() raises an error.
local ffi = require "ffi"
local ffi_mod = require "berth.ffi"
local C = ffi_mod.C
local strlist_take = ffi_mod.strlist_take
local c_string = ffi_mod.c_string
local errors = require "berth.errors"

local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_string = ffi.string
local ffi_cast = ffi.cast
local setmetatable = setmetatable
local getmetatable = getmetatable
local tostring = tostring
local tonumber = tonumber
local type = type
local error = error
local pcall = pcall

local scratch = errors.scratch
local fail = errors.fail

local SIZE_MAX = ffi_cast("size_t", -1)

local FSYNC = {
  none = C.BERTH_FSYNC_NONE,
  data = C.BERTH_FSYNC_DATA,
  full = C.BERTH_FSYNC_FULL,
}

local FAULT = {
  off = C.BERTH_FAULT_OFF,
  fail_one = C.BERTH_FAULT_FAIL_ONE,
  crash = C.BERTH_FAULT_CRASH,
  short_write = C.BERTH_FAULT_SHORT_WRITE,
}

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local Reader = {}
local reader_mt = { __index = Reader }

local Writer = {}
local writer_mt = { __index = Writer }

-- Scratch output records, reused by every call (calls are synchronous).
local out_driver = ffi_new("berth_driver *[1]")
local out_reader = ffi_new("berth_reader *[1]")
local out_writer = ffi_new("berth_writer *[1]")
local out_stat = ffi_new("berth_stat_info[1]")
local out_size = ffi_new("size_t[1]")
local out_list = ffi_new("berth_strlist[1]") -- empty between calls

-- One berth_buf for get/local_path; its memory is kept between calls
-- unless a big file made it big.
local KEEP_BUF = 64 * 1024
local buf = ffi_gc(ffi_new("berth_buf[1]"), function(b)
  C.berth_buf_dispose(b)
end)

local function take_buf()
  local b = buf[0]
  local s = b.len > 0 and ffi_string(b.ptr, b.len) or ""
  if b.cap > KEEP_BUF then
    C.berth_buf_dispose(buf)
  end
  return s
end

-- A byte buffer for reads, grown on demand.
local read_buf, read_cap = nil, 0

local function get_read_buf(n)
  if n > read_cap then
    read_cap = n
    read_buf = ffi_new("char[?]", n)
  end
  return read_buf
end

-- -> true | nil, err, code (a NUL byte); raises when not a string
local function check_path(path, what)
  local ok, err, code = c_string(path, what or "path", "EINVAL", false, 3)
  return ok, err, code
end

local function ptr_of(self)
  local p = self._p
  if not p then
    error("driver is closed", 3)
  end
  return p
end

-- The one place a driver cdata gets its finalizer.
local function wrap(p, is_fault)
  return setmetatable({ _p = ffi_gc(p, C.berth_driver_free),
                        _fault = is_fault or false }, mt)
end

-- fs(root, { fsync = "none" | "data" | "full" }) -> driver | nil, err, code
function _M.fs(root, opts)
  local ok, err, code = check_path(root, "root")
  if not ok then return nil, err, code end
  local policy = FSYNC[opts and opts.fsync or "none"]
  if not policy then
    error("fsync must be \"none\", \"data\" or \"full\"", 2)
  end
  local rc = C.berth_driver_fs_new(out_driver, root, policy, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return wrap(out_driver[0])
end

-- mem() -> driver | nil, err, code
function _M.mem()
  local rc = C.berth_driver_mem_new(out_driver, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return wrap(out_driver[0])
end

-- s3{ endpoint =, bucket =, region =, access_key =, secret_key =, root =,
--   attempts = } -> driver | nil, err, code: a bucket of object storage
-- (the names of Distribution's s3 section: regionendpoint, bucket, region,
-- accesskey, secretkey, rootdirectory). Work in progress: no appending
-- writers yet (UNSUPPORTED).
local s3_opts = ffi.new("berth_s3_options")
function _M.s3(o)
  if type(o) ~= "table" then
    error("s3 options must be a table", 2)
  end
  for _, k in ipairs({ "endpoint", "bucket", "region", "access_key",
      "secret_key", "root" }) do
    local optional = k == "region" or k == "root"
    local ok, err, code = c_string(o[k], "s3 option " .. k, "EINVAL",
      optional, 2)
    if not ok then return nil, err, code end
  end
  s3_opts.version = C.BERTH_S3_OPTIONS_VERSION
  s3_opts.endpoint = o.endpoint
  s3_opts.bucket = o.bucket
  s3_opts.region = o.region
  s3_opts.access_key = o.access_key
  s3_opts.secret_key = o.secret_key
  s3_opts.root = o.root
  s3_opts.attempts = o.attempts or 0
  local rc = ffi_mod.load_s3().berth_driver_s3_new(out_driver, s3_opts,
    scratch)
  -- the driver copied them: no pointer into a Lua string stays
  s3_opts.endpoint, s3_opts.bucket, s3_opts.region = nil, nil, nil
  s3_opts.access_key, s3_opts.secret_key, s3_opts.root = nil, nil, nil
  if rc < 0 then
    return fail(rc)
  end
  return wrap(out_driver[0])
end

-- fault(inner) -> driver | nil, err, code; takes over inner, which is then
-- closed as far as Lua is concerned
function _M.fault(inner)
  if getmetatable(inner) ~= mt then
    error("inner must be a driver", 2)
  end
  local ip = inner._p
  if not ip then
    error("inner driver is closed", 2)
  end
  local rc = C.berth_driver_fault_new(out_driver, ip, scratch)
  if rc < 0 then
    return fail(rc)
  end
  local p = out_driver[0]
  inner._p = nil
  ffi_gc(ip, nil)
  return wrap(p, true)
end

-- d:get(path, max?) -> content | nil, err, code
function _M.get(self, path, max)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  local rc = C.berth_driver_get(p, buf, path, max or SIZE_MAX, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return take_buf()
end

-- d:put(path, data) -> true | nil, err, code
function _M.put(self, path, data)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  if type(data) ~= "string" then
    error("data must be a string", 2)
  end
  local rc = C.berth_driver_put(p, path, data, #data, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- d:put_if(path, data, expected?) -> true | nil, err, code ("ECHANGED"):
-- only if path holds nothing (expected nil) or holds that version
function _M.put_if(self, path, data, expected)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if ok and expected ~= nil then
    ok, err, code = check_path(expected, "expected")
  end
  if not ok then return nil, err, code end
  if type(data) ~= "string" then
    error("data must be a string", 2)
  end
  local rc = C.berth_driver_put_if(p, path, data, #data, expected, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- d:stat(path) -> { size =, mtime_ns =, is_dir =, version = } | nil, err,
-- code; version changes with a file's content ("" for a directory)
-- (mtime_ns is a Lua number: exact to about a quarter of a microsecond)
function _M.stat(self, path)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  local rc = C.berth_driver_stat(p, out_stat, path, scratch)
  if rc < 0 then
    return fail(rc)
  end
  local st = out_stat[0]
  return {
    size = tonumber(st.size),
    mtime_ns = tonumber(st.mtime_ns),
    is_dir = st.is_dir ~= 0,
    version = ffi_string(st.version),
  }
end

-- d:list(path) -> { name, ... } sorted | nil, err, code
function _M.list(self, path)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  local l = out_list
  local rc = C.berth_driver_list(p, l, path, scratch)
  if rc < 0 then
    return fail(rc) -- the list is left empty
  end
  local names = strlist_take(l[0])
  return names
end

local page_next = ffi_gc(ffi_new("berth_buf[1]"), function(b)
  C.berth_buf_dispose(b)
end)

-- d:list_page(path, cursor?) -> { name, ... } sorted, the next page's
-- cursor (nil after the last page) | nil, err, code
function _M.list_page(self, path, cursor)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if ok and cursor ~= nil then
    ok, err, code = check_path(cursor, "cursor")
  end
  if not ok then return nil, err, code end
  local l = out_list
  local rc = C.berth_driver_list_page(p, l, path, cursor or "", page_next,
    scratch)
  if rc < 0 then
    return fail(rc) -- the list is left empty
  end
  local names = strlist_take(l[0])
  local n = page_next[0]
  return names, n.len > 0 and ffi_string(n.ptr, n.len) or nil
end

-- d:move(from, to) -> true | nil, err, code
function _M.move(self, from, to)
  local p = ptr_of(self)
  local ok, err, code = check_path(from)
  if ok then ok, err, code = check_path(to) end
  if not ok then return nil, err, code end
  local rc = C.berth_driver_move(p, from, to, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- d:remove(path) -> true | nil, err, code
function _M.remove(self, path)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  local rc = C.berth_driver_remove(p, path, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- d:local_path(path) -> filesystem path | nil, err, code
function _M.local_path(self, path)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  local rc = C.berth_driver_local_path(p, buf, path, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return take_buf()
end

local out_send = ffi_new("berth_send_kind[1]")

-- d:send(path) -> "file" | "url", where (a local path or a URL) | nil,
-- err, code: how a server hands the file's bytes to a client
function _M.send(self, path)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  local rc = C.berth_driver_send(p, out_send, buf, path, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return out_send[0] == C.BERTH_SEND_URL and "url" or "file", take_buf()
end

-- d:import(path, local_file) -> true | nil, err, code; moves local_file
-- (outside the store) to path
function _M.import(self, path, local_file)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if ok then ok, err, code = check_path(local_file, "local_file") end
  if not ok then return nil, err, code end
  local rc = C.berth_driver_import(p, path, local_file, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

local out_list_version = ffi_new("char[?]", C.BERTH_LIST_VERSION_MAX)

-- d:list_version(path) -> token | nil, err, code
function _M.list_version(self, path)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  local rc = C.berth_driver_list_version(p, path, out_list_version, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return ffi_string(out_list_version)
end

-- d:leftover(path, cutoff_ns, remove?) -> true (a leftover; gone with
-- remove) | nil, err, code ("EEXISTS": not one)
function _M.leftover(self, path, cutoff_ns, remove)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  if type(cutoff_ns) ~= "number" then
    error("cutoff_ns must be a number", 2)
  end
  local rc = C.berth_driver_leftover(p, path, cutoff_ns, remove and 1 or 0,
    scratch)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

local out_lease = ffi_new("berth_lease *[1]")

local Lease = {}
local lease_mt = { __index = Lease }

-- d:lock(path) -> lease | nil, err, code ("EBUSY": held elsewhere); the
-- lock is held until lease:release() or the lease is collected
function _M.lock(self, path)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  local rc = C.berth_driver_lock(p, out_lease, path, scratch)
  if rc < 0 then
    return fail(rc)
  end
  local l = out_lease[0]
  return setmetatable({ _p = l ~= nil and ffi_gc(l, C.berth_lease_free)
                        or nil }, lease_mt)
end

-- lease:release() -> true; idempotent
function Lease.release(self)
  local p = self._p
  if p then
    self._p = nil
    C.berth_lease_free(ffi_gc(p, nil))
  end
  return true
end

-- d:reader(path, offset?) -> reader | nil, err, code
function _M.reader(self, path, offset)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  offset = offset or 0
  if type(offset) ~= "number" or offset < 0 then
    error("offset must be a non-negative number", 2)
  end
  local rc = C.berth_driver_reader(p, out_reader, path, offset, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return setmetatable({ _p = ffi_gc(out_reader[0], C.berth_reader_free),
                        _d = self }, reader_mt)
end

-- d:writer(path, append?) -> writer | nil, err, code
function _M.writer(self, path, append)
  local p = ptr_of(self)
  local ok, err, code = check_path(path)
  if not ok then return nil, err, code end
  local rc = C.berth_driver_writer(p, out_writer, path, append and 1 or 0,
                                   scratch)
  if rc < 0 then
    return fail(rc)
  end
  return setmetatable({ _p = ffi_gc(out_writer[0], C.berth_writer_free),
                        _d = self }, writer_mt)
end

-- d:arm(mode, nth) -> true; fault drivers only, mode "off" | "fail_one" |
-- "crash" | "short_write"
function _M.arm(self, mode, nth)
  local p = ptr_of(self)
  if not self._fault then
    error("not a fault driver", 2)
  end
  local m = FAULT[mode]
  if not m then
    error("unknown fault mode: " .. tostring(mode), 2)
  end
  C.berth_driver_fault_arm(p, m, nth or 0)
  return true
end

-- d:count() -> operations since the last arm; fault drivers only
function _M.count(self)
  local p = ptr_of(self)
  if not self._fault then
    error("not a fault driver", 2)
  end
  return tonumber(C.berth_driver_fault_count(p))
end

-- d:watch(fn | nil) -> true; fault drivers only. fn(op, path, to) runs
-- before each driver operation (berth_driver_fault_watch), so that a spec
-- can run another actor at an exact point of a store call. It is a C
-- callback: the JIT must be off (jit.off()) in the process. An error in fn
-- does not cross the C frames: the first is kept in d.watch_error.
function _M.watch(self, fn)
  local p = ptr_of(self)
  if not self._fault then
    error("not a fault driver", 2)
  end
  self:_unwatch()
  if fn then
    local function opt(s) return s ~= nil and ffi_string(s) or nil end
    self._watch = ffi_cast("berth_fault_watch_fn",
      function(_, op, path, to)
        local ok, err = pcall(fn, ffi_string(op), opt(path), opt(to))
        if not ok and self.watch_error == nil then
          self.watch_error = err
        end
      end)
    C.berth_driver_fault_watch(p, self._watch, nil)
  end
  return true
end

-- Clear the watcher while the C driver is alive, then free its callback
-- (FFI callbacks are a small pool and never collected).
function _M._unwatch(self)
  if self._watch then
    C.berth_driver_fault_watch(self._p, nil, nil)
    self._watch:free()
    self._watch = nil
  end
end

-- d:close() -> true; idempotent. A driver handed to a store is the store's
-- to free: closing it then only lets go of it.
function _M.close(self)
  local p = self._p
  if not p then
    return true
  end
  if not self._handed_over then
    self:_unwatch()
  end
  self._p = nil
  if not self._handed_over then
    C.berth_driver_free(ffi_gc(p, nil))
  end
  return true
end

-- For berth.store: the store now owns the C driver (and frees it), while
-- this object stays usable (fault arming) until the store closes; it keeps
-- the store, so the store is not collected while the driver is in use.
function _M._hand_over(self, store)
  ffi_gc(self._p, nil)
  self._handed_over = true
  self._store = store
end

-- A reader's or writer's cdata, checking that it and its driver are open.
local function handle_of(self, what)
  local p = self._p
  if not p then
    error(what .. " is closed", 3)
  end
  if not self._d._p then
    error("driver is closed", 3)
  end
  return p
end

-- r:read(n?) -> up to n bytes (default 64 KiB), "" at the end | nil, err,
-- code
function Reader.read(self, n)
  local p = handle_of(self, "reader")
  n = n or 65536
  if type(n) ~= "number" or n < 1 then
    error("n must be a positive number", 2)
  end
  local b = get_read_buf(n)
  local rc = C.berth_reader_read(p, b, n, out_size, scratch)
  if rc < 0 then
    return fail(rc)
  end
  local got = tonumber(out_size[0])
  return got > 0 and ffi_string(b, got) or ""
end

-- r:close() -> true; idempotent
function Reader.close(self)
  local p = self._p
  if not p then
    return true
  end
  self._p = nil
  C.berth_reader_free(ffi_gc(p, nil))
  return true
end

-- w:write(s) -> true | nil, err, code
function Writer.write(self, s)
  local p = handle_of(self, "writer")
  if type(s) ~= "string" then
    error("data must be a string", 2)
  end
  local rc = C.berth_writer_write(p, s, #s, scratch)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- w:size() -> bytes in the file, including what this writer appended
function Writer.size(self)
  return tonumber(C.berth_writer_size(handle_of(self, "writer")))
end

-- w:commit() -> true | nil, err, code
function Writer.commit(self)
  local rc = C.berth_writer_commit(handle_of(self, "writer"), scratch)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- w:truncate(size) -> true | nil, err, code; cuts the file back to size
-- bytes, durably as commit
function Writer.truncate(self, size)
  if type(size) ~= "number" or size < 0 or size % 1 ~= 0 then
    error("size must be a non-negative integer", 2)
  end
  local rc = C.berth_writer_truncate(handle_of(self, "writer"), size,
    scratch)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- w:cancel() -> true | nil, err, code; removes the file
function Writer.cancel(self)
  local rc = C.berth_writer_cancel(handle_of(self, "writer"), scratch)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- w:close() -> true; keeps what was written, releases the lock; idempotent
function Writer.close(self)
  local p = self._p
  if not p then
    return true
  end
  self._p = nil
  C.berth_writer_free(ffi_gc(p, nil))
  return true
end

return _M

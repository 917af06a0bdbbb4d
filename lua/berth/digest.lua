-- Content digests ("sha256:<hex>") and streaming hashers over libberth
-- (core/include/berth/digest.h). A hasher's state saves to Go's
-- MarshalBinary bytes, so an upload can resume in another worker or in
-- CNCF Distribution.
local ffi = require "ffi"
local C = require("berth.ffi").C
local errors = require "berth.errors"

local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_string = ffi.string
local error = error
local type = type
local tonumber = tonumber
local setmetatable = setmetatable

local scratch = errors.scratch
local fail = errors.fail

local _M = { _VERSION = "0.1.0" }

local ALGO = { sha256 = 1, sha384 = 2, sha512 = 3 }
local ALGO_NAME = { "sha256", "sha384", "sha512" }
local IMPL = { auto = 0, mbedtls = 1, ["sha-ni"] = 2 }
local IMPL_NAME = { [1] = "mbedtls", [2] = "sha-ni" }

-- Scratch buffers; the calls are synchronous, so one of each is enough.
local dgst = ffi_new("berth_digest")
local hasher_out = ffi_new("berth_hasher *[1]")
local state_buf = ffi_new("unsigned char[204]") -- BERTH_HASHER_STATE_MAX
local state_len = ffi_new("size_t[1]")
local mac = ffi_new("unsigned char[32]") -- BERTH_HMAC_SHA256_LEN

local function algo_of(algo)
  if algo == nil then
    return 1
  end
  if type(algo) ~= "string" then
    error("algorithm must be a string", 3)
  end
  return ALGO[algo]
end

local function impl_of(impl)
  if impl == nil then
    return 0
  end
  local v = IMPL[impl]
  if not v then
    error("implementation must be \"auto\", \"mbedtls\" or \"sha-ni\"", 3)
  end
  return v
end

-- parse(s) -> "algo:hex", algo | nil, err, "DIGEST_INVALID"
function _M.parse(s)
  if type(s) ~= "string" then
    error("digest must be a string", 2)
  end
  local rc = C.berth_digest_parse(dgst, s, #s, scratch)
  if rc ~= 0 then
    return fail(rc)
  end
  return ffi_string(dgst.str), ALGO_NAME[tonumber(dgst.algo)]
end

-- compute(data, algo?) -> "algo:hex" | nil, err, code
function _M.compute(data, algo)
  if type(data) ~= "string" then
    error("data must be a string", 2)
  end
  local a = algo_of(algo)
  if not a then
    return nil, "unknown digest algorithm: " .. algo, "EINVAL"
  end
  local rc = C.berth_digest_compute(dgst, a, data, #data, scratch)
  if rc ~= 0 then
    return fail(rc)
  end
  return ffi_string(dgst.str)
end

-- hmac_sha256(key, msg) -> 32 raw bytes | nil, err, code
function _M.hmac_sha256(key, msg)
  if type(key) ~= "string" then
    error("key must be a string", 2)
  end
  if type(msg) ~= "string" then
    error("message must be a string", 2)
  end
  local rc = C.berth_hmac_sha256(mac, key, #key, msg, #msg, scratch)
  if rc ~= 0 then
    return fail(rc)
  end
  return ffi_string(mac, 32)
end

-- auto_impl() -> "sha-ni" | "mbedtls"
function _M.auto_impl()
  return ffi_string(C.berth_hasher_auto_name())
end

local Hasher = {}
local hasher_mt = { __index = Hasher }

-- The one place a berth_hasher gets its finalizer.
local function wrap(p)
  return setmetatable({ _p = ffi_gc(p, C.berth_hasher_free) }, hasher_mt)
end

local function ptr(self)
  local p = self._p
  if not p then
    error("hasher is closed", 3)
  end
  return p
end

-- hasher(algo?, impl?) -> hasher | nil, err, code
function _M.hasher(algo, impl)
  local a = algo_of(algo)
  local i = impl_of(impl)
  if not a then
    return nil, "unknown digest algorithm: " .. algo, "EINVAL"
  end
  local rc = C.berth_hasher_new(hasher_out, a, i, scratch)
  if rc ~= 0 then
    return fail(rc)
  end
  local p = hasher_out[0]
  hasher_out[0] = nil
  return wrap(p)
end

-- restore(state, impl?) -> hasher | nil, err, code
function _M.restore(state, impl)
  if type(state) ~= "string" then
    error("state must be a string", 2)
  end
  local i = impl_of(impl)
  local rc = C.berth_hasher_restore(hasher_out, state, #state, i, scratch)
  if rc ~= 0 then
    return fail(rc)
  end
  local p = hasher_out[0]
  hasher_out[0] = nil
  return wrap(p)
end

-- h:update(s) -> true | nil, err, code
function Hasher:update(s)
  local p = ptr(self)
  if type(s) ~= "string" then
    error("data must be a string", 2)
  end
  local rc = C.berth_hasher_update(p, s, #s, scratch)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

-- h:digest() -> "algo:hex" | nil, err, code; the hasher carries on
function Hasher:digest()
  local p = ptr(self)
  local rc = C.berth_hasher_digest(dgst, p, scratch)
  if rc ~= 0 then
    return fail(rc)
  end
  return ffi_string(dgst.str)
end

-- h:size() -> bytes fed so far
function Hasher:size()
  return tonumber(C.berth_hasher_size(ptr(self)))
end

-- h:algo() -> "sha256" | "sha384" | "sha512"
function Hasher:algo()
  return ALGO_NAME[tonumber(C.berth_hasher_algo(ptr(self)))]
end

-- h:impl() -> "sha-ni" | "mbedtls"
function Hasher:impl()
  return IMPL_NAME[tonumber(C.berth_hasher_impl_of(ptr(self)))]
end

-- h:save() -> state bytes (Go MarshalBinary) | nil, err, code
function Hasher:save()
  local p = ptr(self)
  state_len[0] = 204
  local rc = C.berth_hasher_save(state_buf, state_len, p, scratch)
  if rc ~= 0 then
    return fail(rc)
  end
  return ffi_string(state_buf, state_len[0])
end

-- h:close() -> true; safe to call twice
function Hasher:close()
  if not self._p then
    return true
  end
  local p = self._p
  self._p = nil
  C.berth_hasher_free(ffi_gc(p, nil))
  return true
end

return _M

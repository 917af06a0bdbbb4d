-- berth's error table, read from libberth (core/include/berth/errors.def),
-- so Lua and C share one definition.
--
-- Failures in the Lua API are `nil, message, code`, where code is the OCI
-- code ("BLOB_UNKNOWN") or, for errors without one, the enum name ("EIO").
local ffi = require "ffi"
local C = require("berth.ffi").C

local ffi_new = ffi.new
local ffi_string = ffi.string

local _M = { _VERSION = "0.1.0" }

-- code name -> { value =, name =, oci =, code = (oci or name), http =,
--   api = (the OCI code an HTTP client gets), message = }
local BY_NAME = {}
-- numeric value -> the same record
local BY_VALUE = {}

do
  local name = ffi_new("const char *[1]")
  local oci = ffi_new("const char *[1]")
  local http = ffi_new("int[1]")
  local api = ffi_new("const char *[1]")
  local message = ffi_new("const char *[1]")
  for i = 0, C.berth_error_count() - 1 do
    local value = C.berth_error_code_at(i)
    assert(C.berth_error_info(value, name, oci, http, api, message) == 0)
    local rec = {
      value = value,
      name = ffi_string(name[0]),
      oci = oci[0] ~= nil and ffi_string(oci[0]) or nil,
      http = http[0],
      api = ffi_string(api[0]),
      message = ffi_string(message[0]),
    }
    rec.code = rec.oci or rec.name
    BY_NAME[rec.name] = rec
    if rec.oci and not BY_NAME[rec.oci] then
      BY_NAME[rec.oci] = rec
    end
    BY_VALUE[value] = rec
  end
end

_M.BY_NAME = BY_NAME
_M.BY_VALUE = BY_VALUE

-- code_of(value) -> "BLOB_UNKNOWN" | "EIO" | "UNKNOWN"
function _M.code_of(value)
  local rec = BY_VALUE[value]
  return rec and rec.code or "UNKNOWN"
end

-- lookup(code) -> record | nil, for an OCI code or an enum name
function _M.lookup(code)
  return BY_NAME[code]
end

-- one_line(s) -> s with its control bytes escaped (\n, \xNN), the rule
-- of C's messages (berth_error_escape), for the messages Lua makes.
function _M.one_line(s)
  s = tostring(s)
  if not s:find("%c") then
    return s
  end
  local cap = 4 * #s + 1
  local out = ffi_new("char[?]", cap)
  return ffi_string(out, C.berth_error_escape(out, cap, s, #s))
end

-- One scratch error record, reused by every call (the FFI calls are
-- synchronous, so one per Lua state is enough).
local scratch = ffi_new("berth_error")
_M.scratch = scratch

-- fail(rc) -> nil, message, code: the failure triple for a C return code,
-- with the message the C side left in the scratch record.
function _M.fail(rc)
  local message
  if scratch.code == rc and scratch.message[0] ~= 0 then
    message = ffi_string(scratch.message)
  else
    local rec = BY_VALUE[rc]
    message = rec and rec.message or ("error " .. tostring(rc))
  end
  return nil, message, _M.code_of(rc)
end

return _M

-- The _state of an upload's Location, as CNCF Distribution writes and
-- checks it (registry/handlers/hmac.go) when berth shares its http.secret:
--
--   base64url, padded, of HMAC-SHA256(secret, json) .. json
--   json = {"Name":"<repository>","UUID":"<id>","Offset":<bytes>,
--           "StartedAt":"<RFC 3339>"}
--
-- with the fields in that order and written as Go's json.Marshal writes
-- them, so the token berth signs for an upload is the one Distribution
-- would sign for it.
local ffi = require "ffi"
local bit = require "bit"
local cjson = require "cjson.safe"
local C = require("berth.ffi").C
local hmac_sha256 = require("berth.digest").hmac_sha256

local ffi_new = ffi.new
local ffi_string = ffi.string
local type = type
local error = error
local floor = math.floor
local os_date = os.date
local bor = bit.bor
local bxor = bit.bxor
local byte = string.byte

local _M = { _VERSION = "0.1.0" }

local BASE64_URL_PAD = 2 -- berth_base64_mode BERTH_BASE64_URL_PAD
local MAC_LEN = 32

-- One scratch buffer; the calls are synchronous.
local buf = ffi_new("berth_buf")

-- Repository names and upload ids need no escaping in JSON (nor in Go's
-- HTML-safe JSON); anything else is not a name berth opens.
local NEEDS_ESCAPE = '[%c"\\<>&\128-\255]'

local function check_secret(secret)
  if type(secret) ~= "string" or secret == "" then
    error("secret must be a non-empty string", 3)
  end
end

local function is_count(v)
  return type(v) == "number" and v >= 0 and floor(v) == v and v < 2 ^ 53
end

-- Compare without an early exit.
local function equal(a, b)
  if #a ~= #b then
    return false
  end
  local diff = 0
  for i = 1, #a do
    diff = bor(diff, bxor(byte(a, i), byte(b, i)))
  end
  return diff == 0
end

-- pack(secret, { name =, id =, offset = bytes, started = unix seconds })
-- -> token (not yet escaped for a query string)
function _M.pack(secret, st)
  check_secret(secret)
  if type(st.name) ~= "string" or st.name:find(NEEDS_ESCAPE) then
    error("name must be a repository name", 2)
  end
  if type(st.id) ~= "string" or st.id:find(NEEDS_ESCAPE) then
    error("id must be an upload id", 2)
  end
  if not is_count(st.offset) then
    error("offset must be a non-negative integer", 2)
  end
  if not is_count(st.started) then
    error("started must be a non-negative integer", 2)
  end
  -- StartedAt is Distribution's startedat (whole seconds, UTC), which Go
  -- writes as RFC 3339 with "Z"
  local json = ('{"Name":"%s","UUID":"%s","Offset":%d,"StartedAt":"%s"}')
    :format(st.name, st.id, st.offset,
      os_date("!%Y-%m-%dT%H:%M:%SZ", st.started))
  local msg = hmac_sha256(secret, json) .. json
  local rc = C.berth_base64_encode(buf, msg, #msg, BASE64_URL_PAD, nil)
  local token = rc == 0 and ffi_string(buf.ptr, buf.len)
  C.berth_buf_dispose(buf)
  if not token then
    error("out of memory", 2)
  end
  return token
end

local function invalid(why)
  return nil, "upload state " .. why, "BLOB_UPLOAD_INVALID"
end

-- unpack(secret, token) -> { name =, id =, offset =, started = string }
-- | nil, err, "BLOB_UPLOAD_INVALID". Fields Go would ignore are ignored.
function _M.unpack(secret, token)
  check_secret(secret)
  if type(token) ~= "string" or token == "" then
    return invalid("missing (_state)")
  end
  local rc = C.berth_base64_decode(buf, token, #token, BASE64_URL_PAD, nil)
  local raw = rc == 0 and ffi_string(buf.ptr, buf.len)
  C.berth_buf_dispose(buf)
  if not raw then
    return invalid("is not base64url")
  end
  if #raw < MAC_LEN then
    return invalid("is too short")
  end
  local json = raw:sub(MAC_LEN + 1)
  if not equal(hmac_sha256(secret, json), raw:sub(1, MAC_LEN)) then
    return invalid("does not verify (another secret?)")
  end
  local doc = cjson.decode(json)
  if type(doc) ~= "table" or type(doc.Name) ~= "string"
      or type(doc.UUID) ~= "string" or not is_count(doc.Offset) then
    return invalid("is not Name, UUID and Offset")
  end
  return { name = doc.Name, id = doc.UUID, offset = doc.Offset,
    started = type(doc.StartedAt) == "string" and doc.StartedAt or nil }
end

return _M

-- One table of error codes (core/include/berth/errors.def, read by
-- lua/berth/errors.lua): the code each error goes by in Lua, and what an
-- HTTP client gets for it, status and OCI error code. lua/berth/http.lua
-- keeps no table of its own, and every code literal in lua/ and plugins/
-- is one of the table's.
local errors = require "berth.errors"
local http = require "berth.http"
local cjson = require "cjson.safe"

-- The error codes a client may see: the OCI distribution spec's, and
-- Distribution's UNKNOWN and UNAVAILABLE for what the spec has none for.
local WIRE = {
  BLOB_UNKNOWN = true, BLOB_UPLOAD_INVALID = true, BLOB_UPLOAD_UNKNOWN = true,
  DIGEST_INVALID = true, MANIFEST_BLOB_UNKNOWN = true, MANIFEST_INVALID = true,
  MANIFEST_UNKNOWN = true, NAME_INVALID = true, NAME_UNKNOWN = true,
  SIZE_INVALID = true, UNAUTHORIZED = true, DENIED = true, UNSUPPORTED = true,
  TOOMANYREQUESTS = true, UNKNOWN = true, UNAVAILABLE = true,
}

-- Every row of the table, by its Lua code.
local function rows()
  local t = {}
  for _, rec in pairs(errors.BY_VALUE) do
    t[rec.code] = rec
  end
  return t
end

-- Lua patterns for where a code literal stands: the third value of a
-- failure (`return nil, msg, "X"`, possibly on a line of its own), a
-- comparison or assignment to a code, a code default, a refusal, an
-- error_response call, a JSON error body.
local CODE = '"([A-Z][A-Z0-9_]+)"'
local CONTEXTS = {
  ",%s*" .. CODE .. "%s*%)?%s*$",
  "^%s*" .. CODE .. "%s*%)?%s*$",
  "[%w_]*[cC]ode%s*[=~]=%s*" .. CODE,
  "[%w_.]*[cC]ode%s*=%s*" .. CODE,
  "[cC]ode%s+or%s+" .. CODE,
  "code = {[^}]*default = " .. CODE,
  "return%s+" .. CODE .. "%s*$",
  "refuse%(%d+,[^\"]*" .. CODE,
  "error_response%(" .. CODE,
  '"code"%s*:%s*' .. CODE,
}

-- scan() -> { code = "file:line", ... } for lua/ and plugins/ (not specs)
local function scan()
  local found = {}
  local list = io.popen("find lua plugins -name '*.lua' -not -path '*/spec/*'"
    .. " | sort")
  for path in list:lines() do
    local n = 0
    for line in io.lines(path) do
      n = n + 1
      for _, pat in ipairs(CONTEXTS) do
        local init = 1
        while true do
          local s, e, code = line:find(pat, init)
          if not s then break end
          found[code] = found[code] or (path .. ":" .. n)
          init = e + 1
        end
      end
    end
  end
  list:close()
  return found
end

describe("the error table", function()
  it("gives every code an HTTP status and a client's error code", function()
    local n = 0
    for code, rec in pairs(rows()) do
      n = n + 1
      assert.is_true(rec.http >= 400 and rec.http <= 599,
        code .. " has HTTP status " .. tostring(rec.http))
      assert.is_true(WIRE[rec.api] ~= nil,
        code .. " answers " .. tostring(rec.api))
    end
    assert.is_true(n >= 28)
  end)

  it("is what http.lua answers, code by code", function()
    for code, rec in pairs(rows()) do
      local r = http.error_response(code, "m")
      assert.equal(rec.http, r.status, code)
      assert.equal(rec.api, cjson.decode(r.body).errors[1].code, code)
    end
  end)

  it("answers a code it does not know as 500 UNKNOWN", function()
    for _, code in ipairs({ "NO_SUCH_CODE", false }) do
      local r = http.error_response(code or nil, "m")
      assert.equal(500, r.status)
      assert.equal("UNKNOWN", cjson.decode(r.body).errors[1].code)
    end
  end)

  it("has every code literal of lua/ and plugins/", function()
    local found = scan()
    -- the scan sees each form (else this test could not fail)
    for _, code in ipairs({ "DENIED", "EINVAL", "TAG_INVALID",
        "ETAG_CHANGED", "TOOMANYREQUESTS", "MANIFEST_INVALID", "ENOTFOUND",
        "UNAUTHORIZED", "BLOB_UPLOAD_INVALID" }) do
      assert.is_string(found[code], code)
    end
    local n = 0
    for code, where in pairs(found) do
      n = n + 1
      local rec = errors.lookup(code)
      assert.is_true(rec ~= nil and rec.code == code, where .. ": " .. code
        .. " is not a code of core/include/berth/errors.def"
        .. (rec and " (it is " .. rec.code .. ")" or ""))
    end
    assert.is_true(n >= 20)
  end)
end)

-- errors.h: a message is one line. Untrusted bytes in it (a media type,
-- a tag from a URL) must not start a line of their own in a log.
describe("messages", function()
  local ffi = require "ffi"
  local C = require("berth.ffi").C
  local manifest = require "berth.manifest"
  local registry = require "berth.registry"
  local helpers = require "helpers"

  local FAKE = "x\nFAKE LOG LINE\r\27[31m\0"

  it("are one line when C formats them (berth_error_set, _sys)", function()
    local err = ffi.new("berth_error")
    assert.equal(-13, C.berth_error_set(err, -13, "bad: %s!", FAKE))
    assert.equal([[bad: x\nFAKE LOG LINE\r\x1b[31m!]],
      ffi.string(err.message))
    C.berth_error_sys(err, -2, 2, "open %s", "a\nb")
    assert.equal([[open a\nb: No such file or directory]],
      ffi.string(err.message))
    -- cut at the record's size, never inside an escape
    C.berth_error_set(err, -1, "%s", string.rep("\n", 200))
    local m = ffi.string(err.message)
    assert.equal(254, #m)
    assert.equal(string.rep([[\n]], 127), m)
  end)

  it("are one line when Lua passes them on (errors.one_line)", function()
    assert.equal([[a\nb\tc\x7f]], errors.one_line("a\nb\tc\127"))
    assert.equal("caf\195\169 ok", errors.one_line("caf\195\169 ok"))
    assert.equal("", errors.one_line(""))
  end)

  it("of the manifest parser carry an untrusted media type escaped",
      function()
    local body = '{"schemaVersion":2,"mediaType":"x\\nFAKE LOG LINE"}'
    local _, err, code = manifest.parse(body)
    assert.equal("UNSUPPORTED", code)
    assert.equal([[unsupported manifest media type: x\nFAKE LOG LINE]], err)
  end)

  it("of the registry's log are one line", function()
    local store, root = helpers.new_store({ fsync = "none" })
    local lines = {}
    local reg = assert(registry.new({ store = store,
      log = function(msg) lines[#lines + 1] = msg end,
      plugins = { { name = "noisy", handler = { PRIORITY = 1,
        VERSION = "0.1.0",
        after_manifest_put = function()
          return nil, "oops\nFAKE LOG LINE"
        end,
      } } } }))
    local body = require("03-plugins.support").image_in(store, "r")
    assert(reg:put_manifest("r", "t", body))
    store:close()
    helpers.rmrf(root)
    assert.equal(1, #lines)
    assert.is_nil(lines[1]:find("\n"))
    assert.matches([[oops\nFAKE LOG LINE]], lines[1], 1, true)
  end)
end)

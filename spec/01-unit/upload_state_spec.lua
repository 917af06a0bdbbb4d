-- The _state token of an upload's Location when berth and CNCF
-- Distribution share a secret (Distribution's registry/handlers/hmac.go):
-- base64url with padding of HMAC-SHA256(secret, json) .. json.
local upload_state = require "berth.upload_state"

local ID = "0f5b6a52-7f0e-4c4e-9a55-3b2f2d6a8c11"

-- Tokens docker-registry 2.8.2 wrote (secret "s3") for one upload of a/b:
-- its POST answer (StartedAt to the nanosecond, as Go's clock gave it) and
-- a GET of the status (StartedAt as read back from startedat).
local DIST_ID = "f3dc4168-0a1a-49e5-a236-cadb5eb7c84d"
local DIST_POST = "iowoyZc9wzfK77sx2p0SEpJznyvr6gWLKIbHWS76J4p7Ik5hbWUiOiJhL2"
  .. "IiLCJVVUlEIjoiZjNkYzQxNjgtMGExYS00OWU1LWEyMzYtY2FkYjVlYjdjODRkIiwiT2Zm"
  .. "c2V0IjowLCJTdGFydGVkQXQiOiIyMDI2LTEyLTAzVDExOjQxOjQ5LjM0MjAyNTA4NloifQ=="
local DIST_GET = "ssZgOmVnfPK-aPTH7MfeSjRibPJEqHLys0WtKWtEp-J7Ik5hbWUiOiJhL2Ii"
  .. "LCJVVUlEIjoiZjNkYzQxNjgtMGExYS00OWU1LWEyMzYtY2FkYjVlYjdjODRkIiwiT2Zmc2V0"
  .. "IjowLCJTdGFydGVkQXQiOiIyMDI2LTEyLTAzVDExOjQxOjQ5WiJ9"

-- Made with openssl (dgst -sha256 -hmac, then base64 | tr '+/' '-_'),
-- secret "a shared secret": one, two and no padding characters.
local OPENSSL = {
  { { name = "a/bcd", id = ID, offset = 5, started = 0 },
    "ESbFvnyyrkSXTFkBWHzdoyyBtK3lyjsVdPHc1l6IVHd7Ik5hbWUiOiJhL2JjZCIsIlVVSUQi"
    .. "OiIwZjViNmE1Mi03ZjBlLTRjNGUtOWE1NS0zYjJmMmQ2YThjMTEiLCJPZmZzZXQiOjUsIl"
    .. "N0YXJ0ZWRBdCI6IjE5NzAtMDEtMDFUMDA6MDA6MDBaIn0=" },
  { { name = "a/bc", id = ID, offset = 5, started = 0 },
    "9kg5VgTxjq9e7Qvl_elny41ZCc7THqPcEpHzRhyHuDF7Ik5hbWUiOiJhL2JjIiwiVVVJRCI6"
    .. "IjBmNWI2YTUyLTdmMGUtNGM0ZS05YTU1LTNiMmYyZDZhOGMxMSIsIk9mZnNldCI6NSwiU3"
    .. "RhcnRlZEF0IjoiMTk3MC0wMS0wMVQwMDowMDowMFoifQ==" },
  { { name = "team/sub/app", id = ID, offset = 1099511627776,
      started = 1709251199 },
    "QPTAC1lPcOPNOwkUmuniXnYh0bVgRyMA5VAVyjP2cql7Ik5hbWUiOiJ0ZWFtL3N1Yi9hcHAi"
    .. "LCJVVUlEIjoiMGY1YjZhNTItN2YwZS00YzRlLTlhNTUtM2IyZjJkNmE4YzExIiwiT2Zmc2"
    .. "V0IjoxMDk5NTExNjI3Nzc2LCJTdGFydGVkQXQiOiIyMDI0LTAyLTI5VDIzOjU5OjU5WiJ9" },
}

local SECRET = "a shared secret"

local function assert_invalid(st, err, code)
  assert.is_nil(st)
  assert.is_string(err)
  assert.equal("BLOB_UPLOAD_INVALID", code)
  assert.is_nil(err:find("\n"))
end

-- Base64url (padded) by hand, for tokens the module would never make.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local function b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    for k = 3, 0, -1 do
      local x = math.floor(v / 64 ^ k) % 64
      out[#out + 1] = B64:sub(x + 1, x + 1)
    end
    if not b then
      out[#out], out[#out - 1] = "=", "="
    elseif not c then
      out[#out] = "="
    end
  end
  return table.concat(out)
end

local function sign(secret, json)
  return b64url(require("berth.digest").hmac_sha256(secret, json) .. json)
end

describe("upload_state.pack", function()
  it("writes what docker-registry writes, byte for byte", function()
    assert.equal(DIST_GET, upload_state.pack("s3", { name = "a/b",
      id = DIST_ID, offset = 0, started = 1796298109 }))
  end)

  for _, v in ipairs(OPENSSL) do
    it("matches openssl for " .. v[1].name .. " at " .. v[1].offset,
      function()
      assert.equal(v[2], upload_state.pack(SECRET, v[1]))
    end)
  end

  it("raises on contract violations", function()
    local ok = { name = "a/b", id = ID, offset = 0, started = 0 }
    assert.has_error(function() upload_state.pack(nil, ok) end,
      "secret must be a non-empty string")
    assert.has_error(function() upload_state.pack("", ok) end,
      "secret must be a non-empty string")
    assert.has_error(function()
      upload_state.pack(SECRET, { name = 'a"b', id = ID, offset = 0,
        started = 0 })
    end, "name must be a repository name")
    assert.has_error(function()
      upload_state.pack(SECRET, { name = "a/b", id = ID, offset = -1,
        started = 0 })
    end, "offset must be a non-negative integer")
    assert.has_error(function()
      upload_state.pack(SECRET, { name = "a/b", id = ID, offset = 0 })
    end, "started must be a non-negative integer")
  end)
end)

describe("upload_state.unpack", function()
  it("reads docker-registry's tokens", function()
    for _, tok in ipairs({ DIST_POST, DIST_GET }) do
      local st, err = upload_state.unpack("s3", tok)
      assert.is_nil(err)
      assert.equal("a/b", st.name)
      assert.equal(DIST_ID, st.id)
      assert.equal(0, st.offset)
    end
    assert.equal("2026-12-03T11:41:49.342025086Z",
      upload_state.unpack("s3", DIST_POST).started)
  end)

  it("round-trips what pack writes", function()
    for _, v in ipairs(OPENSSL) do
      local st = assert(upload_state.unpack(SECRET, v[2]))
      assert.equal(v[1].name, st.name)
      assert.equal(v[1].id, st.id)
      assert.equal(v[1].offset, st.offset)
      assert.equal(os.date("!%Y-%m-%dT%H:%M:%SZ", v[1].started), st.started)
      assert.equal(v[2], upload_state.pack(SECRET, { name = st.name,
        id = st.id, offset = st.offset, started = v[1].started }))
    end
  end)

  it("ignores fields it does not know, as Go does", function()
    -- newer Distribution adds DigestAlgorithm
    local st = assert(upload_state.unpack(SECRET, sign(SECRET,
      '{"Name":"a/b","UUID":"' .. ID .. '","Offset":7,"StartedAt":'
      .. '"2024-01-01T00:00:00Z","DigestAlgorithm":"sha512"}')))
    assert.equal(7, st.offset)
  end)

  it("refuses a token under another secret", function()
    assert_invalid(upload_state.unpack("s4", DIST_GET))
    assert_invalid(upload_state.unpack(SECRET, DIST_GET))
  end)

  it("refuses a token changed anywhere", function()
    local tok = OPENSSL[3][2]
    for _, i in ipairs({ 1, 20, 43, 44, 60, #tok - 1 }) do
      local c = tok:sub(i, i) == "A" and "B" or "A"
      assert_invalid(upload_state.unpack(SECRET,
        tok:sub(1, i - 1) .. c .. tok:sub(i + 1)))
    end
  end)

  it("refuses what is not a padded base64url token", function()
    local padded = OPENSSL[2][2]
    for _, bad in ipairs({
      "",
      "!!!!",
      padded:gsub("=", ""),                 -- padding left off (Go: error)
      padded .. "==",
      (padded:gsub("%-", "+"):gsub("_", "/")), -- the standard alphabet
      b64url("too short for a mac"),
    }) do
      assert_invalid(upload_state.unpack(SECRET, bad))
    end
    assert_invalid(upload_state.unpack(SECRET, nil))
  end)

  it("refuses a signed token that is not an upload state", function()
    for _, json in ipairs({
      "not json",
      "[1,2]",
      '"a string"',
      '{"Name":1,"UUID":"' .. ID .. '","Offset":0}',
      '{"Name":"a/b","UUID":null,"Offset":0}',
      '{"Name":"a/b","UUID":"' .. ID .. '","Offset":"0"}',
      '{"Name":"a/b","UUID":"' .. ID .. '","Offset":1.5}',
      '{"Name":"a/b","UUID":"' .. ID .. '"}',
    }) do
      assert_invalid(upload_state.unpack(SECRET, sign(SECRET, json)))
    end
  end)

  it("raises when the secret is not a non-empty string", function()
    assert.has_error(function() upload_state.unpack(nil, DIST_GET) end,
      "secret must be a non-empty string")
  end)
end)

-- JWT verification in C (core/src/auth.c) through berth.auth: keys from
-- PEM files, certificates and JWKS; RS256 and ES256 tokens minted here
-- with the fixture keys (openssl signs); every way a token is refused.
local helpers = require "helpers"
local support = require "09-auth.support"
local auth = require "berth.auth"

local fixture, mint, claims = support.fixture, support.mint, support.claims
local ISSUER, SERVICE = support.ISSUER, support.SERVICE

local function keys(...)
  return assert(auth.load_keys({ ... }))
end

local function opts(over)
  local o = { issuer = ISSUER, audience = SERVICE, leeway = 60 }
  for k, v in pairs(over or {}) do
    if v == false then o[k] = nil else o[k] = v end
  end
  return o
end

-- refused(token, keyset, message pattern, opts): nil, message, UNAUTHORIZED,
-- and the message never holds the token or a part of it
local function refused(token, ks, pattern, o)
  local ok, err, code = ks:verify(token, opts(o))
  assert.is_nil(ok)
  assert.equal("UNAUTHORIZED", code)
  assert.matches(pattern, err)
  for part in token:gmatch("[^.]+") do
    if #part >= 8 then
      assert.is_nil(err:find(part, 1, true), "message leaks the token")
    end
  end
  return err
end

-- Independent oracles for the key ids: openssl's DER, sha256sum, Lua.
local B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
local function base32(bytes)
  local bits, out = {}, {}
  for i = 1, #bytes do
    local b = bytes:byte(i)
    for j = 7, 0, -1 do bits[#bits + 1] = math.floor(b / 2 ^ j) % 2 end
  end
  for i = 1, #bits - 4, 5 do
    local v = 0
    for j = 0, 4 do v = v * 2 + bits[i + j] end
    out[#out + 1] = B32:sub(v + 1, v + 1)
  end
  return table.concat(out)
end

local function sha256_bytes(data)
  local hex = helpers.sha256sum(data):match("^sha256:(%x+)$")
  return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

local function libtrust_of(pub)
  local der = support.must("openssl pkey -pubin -in " .. support.q(pub)
    .. " -outform DER | base64 -w0")
  local raw = assert(auth.base64_decode((der:gsub("%s", ""))))
  local b = base32(sha256_bytes(raw):sub(1, 30))
  return (b:gsub("(....)", "%1:"):sub(1, -2))
end

describe("token keys", function()
  it("load from PEM public keys, PKCS#1, certificates and bundles",
    function()
    assert.equal(1, keys(fixture("rsa.pub")):count())
    assert.equal(1, keys(fixture("rsa-pkcs1.pub")):count())
    assert.equal(1, keys(fixture("ec.pub")):count())
    assert.equal(1, keys(fixture("rsa.crt")):count())
    local ks = keys(fixture("bundle.pem"))
    assert.equal(2, ks:count())
    assert.equal("RS256", ks:info(1).alg)
    assert.equal("ES256", ks:info(2).alg)
    -- the certificate's key is the key itself
    assert.equal(keys(fixture("rsa.pub")):info(1).libtrust,
      ks:info(1).libtrust)
    assert.equal(keys(fixture("rsa-pkcs1.pub")):info(1).thumbprint,
      ks:info(1).thumbprint)
  end)

  it("know each key by its libtrust id and its RFC 7638 thumbprint",
    function()
    local rsa = keys(fixture("rsa.pub")):info(1)
    assert.equal(libtrust_of(fixture("rsa.pub")), rsa.libtrust)
    assert.matches("^[A-Z2-7:]+$", rsa.libtrust)
    assert.equal(59, #rsa.libtrust)
    local ec = keys(fixture("ec.pub")):info(1)
    assert.equal(libtrust_of(fixture("ec.pub")), ec.libtrust)
    -- RFC 7638 from the JWKS members, hashed by sha256sum
    local jwks = require("cjson").decode(helpers.read_file(
      fixture("jwks.json")))
    local j = jwks.keys[2]
    local canon = ('{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}')
      :format(j.x, j.y)
    assert.equal(support.b64url(sha256_bytes(canon)), ec.thumbprint)
    local r = jwks.keys[1]
    canon = ('{"e":"%s","kty":"RSA","n":"%s"}'):format(r.e, r.n)
    assert.equal(support.b64url(sha256_bytes(canon)), rsa.thumbprint)
  end)

  it("load a JWKS, skipping encryption keys and other key types",
    function()
    local ks = keys(fixture("jwks.json"))
    assert.equal(3, ks:count())
    assert.same({ "rsa-1", "ec-1", "ec-2" },
      { ks:info(1).kid, ks:info(2).kid, ks:info(3).kid })
    -- the JWK and the PEM file are the same keys
    assert.equal(keys(fixture("rsa.pub")):info(1).libtrust,
      ks:info(1).libtrust)
    assert.equal(keys(fixture("ec2.pub")):info(1).libtrust,
      ks:info(3).libtrust)
  end)

  it("refuse private keys, weak keys, other curves and broken files",
    function()
    local function bad(pattern, ...)
      local ks, err, code = auth.load_keys({ ... })
      assert.is_nil(ks)
      assert.equal("EINVAL", code)
      assert.matches(pattern, err)
      return err
    end
    local err = bad("a private key; give the public key or the certificate",
      fixture("rsa.key"))
    assert.is_nil(err:find("MII", 1, true))
    bad("RSA key of 1024 bits %(at least 2048%)", fixture("rsa1024.pub"))
    bad("EC key not on curve P%-256", fixture("ec384.pub"))
    bad("No such file", fixture("missing.pub"))
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/empty.pem", "")
    bad("no public key or certificate", dir .. "/empty.pem")
    helpers.write_file(dir .. "/cut.pem", "-----BEGIN PUBLIC KEY-----\nMIIB")
    bad("malformed PEM block", dir .. "/cut.pem")
    helpers.write_file(dir .. "/junk.pem",
      "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n")
    bad("malformed PEM", dir .. "/junk.pem")
    -- a good file, then a bad one: nothing of the call is kept
    bad("private key", fixture("ec.pub"), fixture("ec.key"))
    helpers.write_file(dir .. "/private.json", '{"keys":[{"kty":"EC",'
      .. '"crv":"P-256","x":"a","y":"b","d":"secret"}]}')
    err = bad("holds private key material", dir .. "/private.json")
    assert.is_nil(err:find("secret", 1, true))
    helpers.write_file(dir .. "/none.json", '{"keys":[{"kty":"oct",'
      .. '"k":"c2VjcmV0"}]}')
    bad("holds private key material", dir .. "/none.json")
    helpers.write_file(dir .. "/okp.json", '{"keys":[{"kty":"OKP",'
      .. '"crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}')
    bad("no RS256 or ES256 signing key", dir .. "/okp.json")
    helpers.write_file(dir .. "/short.json", '{"keys":[{"kty":"EC",'
      .. '"crv":"P-256","x":"AAAA","y":"AAAA"}]}')
    bad("coordinates must be 32 bytes", dir .. "/short.json")
    helpers.write_file(dir .. "/notjson.json", '{"keys": [')
    bad("notjson%.json: not valid JSON$", dir .. "/notjson.json")
    helpers.write_file(dir .. "/twice.json", '{"keys": [], "keys": []}')
    bad('twice%.json: duplicate key "keys"$', dir .. "/twice.json")
  end)
end)

describe("JWT verification", function()
  local rsa, ec, cert, jwks

  setup(function()
    rsa = keys(fixture("rsa.pub"))
    ec = keys(fixture("ec.pub"))
    cert = keys(fixture("rsa.crt"))
    jwks = keys(fixture("jwks.json"))
  end)

  it("accepts a good RS256 token and returns its subject and access",
    function()
    local c = assert(rsa:verify(mint(claims()), opts()))
    assert.equal("alice", c.subject)
    assert.same({ { type = "repository", name = "alice/app",
      actions = { "pull", "push" } } }, c.access)
    assert.is_number(c.expires)
    -- against the certificate too
    assert(cert:verify(mint(claims()), opts()))
  end)

  it("accepts a good ES256 token (raw r||s signature)", function()
    for _ = 1, 5 do -- r or s with a high bit or a leading zero byte
      local c = assert(ec:verify(mint(claims(), { alg = "ES256" }), opts()))
      assert.equal("alice", c.subject)
    end
  end)

  it("gives an empty access list and subject when they are absent",
    function()
    local c = assert(rsa:verify(mint(claims{ access = false, sub = false }),
      opts()))
    assert.equal("", c.subject)
    assert.same({}, c.access)
  end)

  it("refuses a token without exp, expired, or not yet valid", function()
    refused(mint(claims{ exp = false }), rsa, "^token has no expiry")
    local now = os.time()
    refused(mint(claims{ exp = now - 61, iat = now - 600, nbf = false }),
      rsa, "^token expired$")
    refused(mint(claims{ exp = now - 1, iat = now - 600, nbf = false }),
      rsa, "^token expired$", { leeway = 0 })
    -- within the leeway
    assert(rsa:verify(mint(claims{ exp = now - 30, iat = now - 600,
      nbf = false }), opts()))
    refused(mint(claims{ nbf = now + 600 }), rsa, "^token not valid yet")
    assert(rsa:verify(mint(claims{ nbf = now + 30, iat = false }), opts()))
    refused(mint(claims{ iat = now + 600, nbf = false }), rsa,
      "issued in the future")
    refused(mint(claims{ iat = now + 200, exp = now + 100, nbf = false }),
      rsa, "issued after it expires", { leeway = 300 })
    -- an exp far beyond any clock
    assert.is_true(assert(rsa:verify(mint(claims{ exp = 1e300 }),
      opts())).expires > 9e18)
    refused(mint(claims{ exp = "tomorrow" }), rsa, "exp is not a number")
    -- the clock can be given
    assert(rsa:verify(mint(claims{ exp = 1000, iat = 500, nbf = 500 }),
      opts{ now = 900 }))
  end)

  it("refuses the wrong issuer or audience", function()
    refused(mint(claims{ iss = "someone-else" }), rsa,
      "^token issuer not accepted$")
    refused(mint(claims{ iss = false }), rsa, "^token issuer not accepted$")
    refused(mint(claims{ aud = "other-registry" }), rsa,
      "^token audience is not this service$")
    refused(mint(claims{ aud = false }), rsa, "audience")
    refused(mint(claims{ aud = { "a", "b" } }), rsa, "audience")
    assert(rsa:verify(mint(claims{ aud = { "a", SERVICE } }), opts()))
    -- unchecked when not asked for
    assert(rsa:verify(mint(claims{ iss = "x", aud = "y" }),
      { leeway = 60 }))
  end)

  it("refuses forged and tampered tokens", function()
    refused(mint(claims(), { key = fixture("forger-rsa.key") }), rsa,
      "^token signature invalid$")
    refused(mint(claims(), { alg = "ES256", key = fixture("forger-ec.key") }),
      ec, "^token signature invalid$")
    -- claims swapped after signing
    local good = mint(claims())
    local h, _, s = good:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    local evil = support.b64url(require("cjson").encode(claims{
      sub = "root", access = { { type = "repository", name = "*",
        actions = { "*" } } } }))
    refused(h .. "." .. evil .. "." .. s, rsa, "^token signature invalid$")
    -- a signature cut short, or of ES256's length but garbage
    refused(h .. "." .. select(2, good:match("^([^.]+)%.([^.]+)")) .. "."
      .. s:sub(1, 100), rsa, "^token signature invalid$")
    refused(mint(claims(), { alg = "ES256", signature = ("\1"):rep(64) }),
      ec, "^token signature invalid$")
    refused(mint(claims(), { alg = "ES256", signature = ("\1"):rep(63) }),
      ec, "^token signature invalid$")
  end)

  it("refuses alg none, HS256 and every other algorithm", function()
    refused(mint(claims(), { alg = "none" }), rsa,
      "^token algorithm none not accepted")
    refused(mint(claims(), { alg = "none", signature = "x" }), rsa,
      "^token algorithm none not accepted")
    refused(mint(claims(), { alg = "None" }), rsa, "algorithm None")
    -- HMAC keyed with the public key (the classic confusion) or anything
    local pub = helpers.read_file(fixture("rsa.pub"))
    refused(mint(claims(), { alg = "HS256", key = pub }), rsa,
      "^token algorithm HS256 not accepted")
    refused(mint(claims(), { alg = "HS256", key = "secret" }), jwks,
      "^token algorithm HS256 not accepted")
    for _, alg in ipairs({ "RS384", "RS512", "PS256", "ES384", "ES512",
      "EdDSA", "rs256" }) do
      refused(mint(claims(), { alg = "RS256", header = { alg = alg } }), rsa,
        "^token algorithm " .. alg:gsub("%p", "%%%0") .. " not accepted")
    end
    refused(mint(claims(), { header = { alg = 256 } }), rsa, "no alg")
    refused(mint(claims(), { header = { crit = { "exp" } } }), rsa,
      "critical extensions")
  end)

  it("refuses a header alg that does not fit the key", function()
    -- ES256 header, only an RSA key to check it with, and the reverse
    refused(mint(claims(), { alg = "ES256" }), rsa, "^no ES256 key")
    refused(mint(claims(), { alg = "RS256" }), ec, "^no RS256 key")
    -- an RSA signature under an ES256 header, with both keys trusted
    local both = keys(fixture("bundle.pem"))
    local rsa_signed = mint(claims())
    local _, p, s = rsa_signed:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    local es_header = support.b64url('{"alg":"ES256","typ":"JWT"}')
    refused(es_header .. "." .. p .. "." .. s, both,
      "^token signature invalid$")
    -- a kid that names a key of the other type
    refused(mint(claims(), { alg = "ES256", kid = "rsa-1" }), jwks,
      "^token key id rsa%-1 unknown %(or not an ES256 key%)")
  end)

  it("selects JWKS keys by kid", function()
    local ec2 = fixture("ec2.key")
    assert(jwks:verify(mint(claims(), { alg = "ES256", key = ec2,
      kid = "ec-2" }), opts()))
    assert(jwks:verify(mint(claims(), { alg = "ES256", kid = "ec-1" }),
      opts()))
    assert(jwks:verify(mint(claims(), { kid = "rsa-1" }), opts()))
    -- the right kid, the wrong key: only that key is tried
    refused(mint(claims(), { alg = "ES256", key = ec2, kid = "ec-1" }), jwks,
      "^token signature invalid$")
    refused(mint(claims(), { alg = "ES256", key = ec2, kid = "nope" }), jwks,
      "^token key id nope unknown")
    -- a key skipped for its use is unknown
    refused(mint(claims(), { alg = "ES256", key = ec2, kid = "enc-1" }),
      jwks, "^token key id enc%-1 unknown")
    -- without kid, every key of the type is tried
    assert(jwks:verify(mint(claims(), { alg = "ES256", key = ec2 }), opts()))
    refused(mint(claims(), { kid = 42 }), jwks, "kid is not a string")
  end)

  it("selects PEM keys by libtrust id or thumbprint", function()
    local both = keys(fixture("bundle.pem"))
    local info = both:info(1)
    assert(both:verify(mint(claims(), { kid = info.libtrust }), opts()))
    assert(both:verify(mint(claims(), { kid = info.thumbprint }), opts()))
    refused(mint(claims(), { kid = both:info(2).libtrust }), both,
      "^token key id .* unknown %(or not an RS256 key%)")
  end)

  it("refuses a header or claims that repeat a member", function()
    -- cJSON would judge each on its first value, Go on its last: a token
    -- two readers see differently is refused
    local now = os.time()
    local pull_only = { { type = "repository", name = "alice/app",
      actions = { "pull" } } }
    for name, again in pairs({
      exp = { exp = now - 3600 },
      aud = { aud = "another-registry" },
      iss = { iss = "evil-issuer" },
      access = { access = pull_only },
      sub = { sub = "bob" },
    }) do
      refused(mint(claims(), { repeat_claims = again }), rsa,
        "^token malformed: claims: duplicate key \"" .. name .. "\"$")
    end
    local both = keys(fixture("bundle.pem"))
    refused(mint(claims(), { kid = both:info(1).libtrust,
      repeat_header = { kid = both:info(2).libtrust } }), both,
      "^token malformed: header: duplicate key \"kid\"$")
    refused(mint(claims(), { repeat_header = { alg = "none" } }), rsa,
      "^token malformed: header: duplicate key \"alg\"$")
    -- a repeat inside a nested object counts too
    local input = support.b64url('{"alg":"RS256"}') .. "."
      .. support.b64url(('{"exp":%d,"access":[{"type":"repository",'
        .. '"name":"alice/app","actions":["pull","push"],'
        .. '"actions":["pull"]}]}'):format(now + 300))
    refused(input .. "." .. support.b64url(support.sign(input,
      fixture("rsa.key"), "RS256")), rsa,
      '^token malformed: claims: duplicate key "actions"$',
      { issuer = false, audience = false })
  end)

  it("refuses malformed tokens", function()
    local good = mint(claims())
    refused("", rsa, "length 0")
    refused(("a"):rep(65537), rsa, "length 65537")
    refused("abc", rsa, "not three parts")
    refused("a.b", rsa, "not three parts")
    refused(good .. ".x", rsa, "not three parts")
    refused("eyJhbGciOiJSUzI1NiJ9.e30.a+b", rsa, "not base64url")
    refused("eyJhbGciOiJSUzI1NiJ9=.e30.AA", rsa, "not base64url")
    refused(support.b64url("[1]") .. ".e30.AA", rsa, "header is not a JSON")
    refused(support.b64url("{") .. ".e30.AA", rsa,
      "^token malformed: header: not valid JSON$")
    -- claims are read only when the signature holds
    local function with_payload(payload)
      local input = support.b64url('{"alg":"RS256"}') .. "."
        .. support.b64url(payload)
      return input .. "." .. support.b64url(support.sign(input,
        fixture("rsa.key"), "RS256"))
    end
    refused(with_payload("not json"), rsa,
      "^token malformed: claims: not valid JSON$")
    refused(with_payload('{"exp":9999999999,"access":{}}'), rsa,
      "access is not an array", { issuer = false, audience = false })
    refused(with_payload('{"exp":9999999999,"sub":5}'), rsa,
      "sub is not a string", { issuer = false, audience = false })
  end)
end)

describe("base64", function()
  it("decodes standard and url alphabets, canonical input only", function()
    assert.equal("hello", auth.base64_decode("aGVsbG8="))
    assert.equal("hello", auth.base64_decode("aGVsbG8"))
    assert.equal("hello", auth.base64_decode("aGVsbG8", true))
    assert.equal("\251\255", auth.base64_decode("-_8", true))
    assert.equal("\251\255", auth.base64_decode("+/8="))
    assert.equal("", auth.base64_decode(""))
    assert.is_nil(auth.base64_decode("aGVsbG8=", true))
    assert.is_nil(auth.base64_decode("+/8", true))
    assert.is_nil(auth.base64_decode("aGVsbG9"))  -- leftover bits set
    assert.is_nil(auth.base64_decode("a"))
    assert.is_nil(auth.base64_decode("aG=Vs"))
    assert.is_nil(auth.base64_decode("aGVs bG8="))
  end)
end)

-- Digest strings, hashers on both SHA-256 implementations, and the saved
-- state format (Go's MarshalBinary, shared with CNCF Distribution).
local helpers = require "helpers"
local digest = require "berth.digest"

local HEX64 = string.rep("0123456789abcdef", 4)
local HEX96 = string.rep("0123456789abcdef", 6)
local HEX128 = string.rep("0123456789abcdef", 8)

local HAVE_SHANI = digest.auto_impl() == "sha-ni"

-- Implementations SHA-256 can run on here.
local IMPLS = HAVE_SHANI and { "mbedtls", "sha-ni" } or { "mbedtls" }

-- sha384sum/sha512sum, an oracle outside berth (coreutils).
local function shasum(algo, data)
  local path = os.tmpname()
  helpers.write_file(path, data)
  local p = io.popen(algo .. "sum '" .. path .. "'")
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return algo .. ":" .. out:match("^(%x+)")
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function unhex(s)
  return (s:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- Feed data in random-sized chunks (some empty).
local function feed(h, data)
  local pos = 1
  while pos <= #data do
    local n = math.random(0, 200)
    if math.random(1, 8) == 1 then n = math.random(0, 3000) end
    assert(h:update(data:sub(pos, pos + n - 1)))
    pos = pos + n
  end
end

local function hash_with(impl, data, algo)
  local h = assert(digest.hasher(algo or "sha256", impl))
  feed(h, data)
  local d = h:digest()
  h:close()
  return d
end

local function assert_fail(code, ok, err, got_code)
  assert.is_nil(ok)
  assert.is_string(err)
  assert.is_true(#err > 0)
  assert.equal(code, got_code)
end

describe("digest.parse", function()
  it("accepts sha256, sha384 and sha512", function()
    for algo, h in pairs({ sha256 = HEX64, sha384 = HEX96, sha512 = HEX128 }) do
      local s, a = digest.parse(algo .. ":" .. h)
      assert.equal(algo .. ":" .. h, s)
      assert.equal(algo, a)
    end
  end)

  local bad = {
    ["an unknown algorithm"] = "md5:" .. HEX64,
    ["sha1"] = "sha1:" .. HEX64:sub(1, 40),
    ["an uppercase algorithm"] = "SHA256:" .. HEX64,
    ["uppercase hex"] = "sha256:" .. HEX64:upper(),
    ["short hex"] = "sha256:" .. HEX64:sub(2),
    ["long hex"] = "sha256:" .. HEX64 .. "0",
    ["sha512 hex under sha256"] = "sha256:" .. HEX128,
    ["sha256 hex under sha512"] = "sha512:" .. HEX64,
    ["sha384 with short hex"] = "sha384:" .. HEX64,
    ["the empty string"] = "",
    ["a missing colon"] = "sha256" .. HEX64,
    ["no hex"] = "sha256:",
    ["no algorithm"] = ":" .. HEX64,
    ["a trailing newline"] = "sha256:" .. HEX64 .. "\n",
    ["leading whitespace"] = " sha256:" .. HEX64,
    ["an embedded NUL"] = "sha256:" .. HEX64:sub(1, 32) .. "\0"
      .. HEX64:sub(34),
    ["a NUL in the algorithm"] = "sha2\0006:" .. HEX64,
    ["non-hex"] = "sha256:" .. HEX64:sub(1, 63) .. "g",
    ["a second colon"] = "sha256::" .. HEX64:sub(2),
  }
  for what, s in pairs(bad) do
    it("rejects " .. what, function()
      assert_fail("DIGEST_INVALID", digest.parse(s))
    end)
  end

  it("names the input in the message, on one line, truncated", function()
    local _, err = digest.parse("sha256:" .. HEX64 .. "\n")
    assert.matches("sha256:0123", err, 1, true)
    assert.is_nil(err:find("\n", 1, true))
    _, err = digest.parse(string.rep("x", 10000))
    assert.is_true(#err < 200)
  end)

  it("raises when the digest is not a string", function()
    assert.has_error(function() digest.parse(nil) end,
      "digest must be a string")
    assert.has_error(function() digest.parse(42) end)
  end)
end)

describe("known answers", function()
  local vectors = {
    { "sha256", "",
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    { "sha256", "abc",
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { "sha256", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    { "sha256", string.rep("a", 1000000),
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
    { "sha384", "abc",
      "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
      .. "8086072ba1e7cc2358baeca134c825a7" },
    { "sha512", "abc",
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
      .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f" },
  }

  for _, v in ipairs(vectors) do
    local algo, msg, want = v[1], v[2], v[1] .. ":" .. v[3]
    local label = algo .. " of " .. (#msg > 60 and (#msg .. " bytes")
      or string.format("%q", msg))

    it(label .. " via compute", function()
      assert.equal(want, digest.compute(msg, algo))
    end)

    local impls = algo == "sha256" and { "auto", "mbedtls", "sha-ni" }
      or { "auto", "mbedtls" }
    for _, impl in ipairs(impls) do
      it(label .. " on " .. impl .. " in one update and in chunks", function()
        if impl == "sha-ni" and not HAVE_SHANI then
          pending("this CPU has no SHA extensions")
          return
        end
        local h = assert(digest.hasher(algo, impl))
        assert(h:update(msg))
        assert.equal(want, h:digest())
        assert.equal(#msg, h:size())
        h:close()
        assert.equal(want, hash_with(impl, msg, algo))
      end)
    end
  end

  it("compute defaults to sha256", function()
    assert.equal(
      "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      digest.compute("abc"))
  end)
end)

describe("hasher", function()
  before_each(function()
    math.randomseed(20240601)
  end)

  it("reports its algorithm and implementation", function()
    local h = assert(digest.hasher())
    assert.equal("sha256", h:algo())
    assert.equal(digest.auto_impl(), h:impl())
    assert.equal(0, h:size())
    h:close()
    h = assert(digest.hasher("sha256", "mbedtls"))
    assert.equal("mbedtls", h:impl())
    h:close()
    h = assert(digest.hasher("sha512"))
    assert.equal("sha512", h:algo())
    assert.equal("mbedtls", h:impl())
    h:close()
  end)

  it("auto picks sha-ni exactly when the CPU has it", function()
    local cpuinfo = helpers.read_file("/proc/cpuinfo")
    if not cpuinfo then
      pending("no /proc/cpuinfo")
      return
    end
    local flags = cpuinfo:match("\nflags%s*:([^\n]*)") or ""
    local has = flags:find(" sha_ni", 1, true)
      and flags:find(" sse4_1", 1, true) and flags:find(" ssse3", 1, true)
    assert.equal(has and "sha-ni" or "mbedtls", digest.auto_impl())
  end)

  it("sha-ni equals mbedtls and sha256sum on random inputs", function()
    if not HAVE_SHANI then
      pending("this CPU has no SHA extensions")
      return
    end
    local sizes = {}
    for n = 0, 130 do sizes[#sizes + 1] = n end
    for _, n in ipairs({ 183, 184, 191, 192, 193, 255, 256, 257, 1000, 4095,
                         4096, 4097, 10000 }) do
      sizes[#sizes + 1] = n
    end
    for _ = 1, 100 do sizes[#sizes + 1] = math.random(0, 10000) end
    for _, n in ipairs(sizes) do
      local data = helpers.random_bytes(n)
      local want = hash_with("mbedtls", data)
      assert.equal(want, hash_with("sha-ni", data), "size " .. n)
      assert.equal(want, hash_with("sha-ni", data), "size " .. n)
    end
    for _, n in ipairs({ 0, 55, 56, 63, 64, 65, 119, 120, 127, 128, 9999 }) do
      local data = helpers.random_bytes(n)
      assert.equal(helpers.sha256sum(data), hash_with("sha-ni", data))
    end
  end)

  it("mbedtls agrees with sha256sum, sha384sum and sha512sum", function()
    local sizes = { 0, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 5000 }
    for _, n in ipairs(sizes) do
      local data = helpers.random_bytes(n)
      assert.equal(helpers.sha256sum(data), hash_with("mbedtls", data))
      assert.equal(shasum("sha384", data), hash_with("mbedtls", data, "sha384"))
      assert.equal(shasum("sha512", data), hash_with("mbedtls", data, "sha512"))
    end
  end)

  it("digest() leaves the hasher as it was", function()
    for _, algo in ipairs({ "sha256", "sha384", "sha512" }) do
      for _, impl in ipairs(algo == "sha256" and IMPLS or { "mbedtls" }) do
        local data = helpers.random_bytes(3000)
        local h = assert(digest.hasher(algo, impl))
        for cut = 0, 3000, 97 do
          assert(h:update(data:sub(h:size() + 1, cut)))
          assert.equal(digest.compute(data:sub(1, cut), algo), h:digest())
          assert.equal(digest.compute(data:sub(1, cut), algo), h:digest())
        end
        assert(h:update(data:sub(h:size() + 1)))
        assert.equal(digest.compute(data, algo), h:digest())
        h:close()
      end
    end
  end)

  it("fails on an unknown algorithm", function()
    assert_fail("EINVAL", digest.hasher("md5"))
    assert_fail("EINVAL", digest.compute("abc", "sha1"))
  end)

  it("sha-ni does not do sha384 or sha512", function()
    assert_fail("UNSUPPORTED", digest.hasher("sha384", "sha-ni"))
    assert_fail("UNSUPPORTED", digest.hasher("sha512", "sha-ni"))
  end)

  it("sha-ni on a CPU without it is unsupported", function()
    if HAVE_SHANI then
      pending("this CPU has SHA extensions")
      return
    end
    assert_fail("UNSUPPORTED", digest.hasher("sha256", "sha-ni"))
  end)

  it("raises on contract violations", function()
    assert.has_error(function() digest.hasher("sha256", "fast") end)
    assert.has_error(function() digest.hasher(256) end)
    assert.has_error(function() digest.compute(nil) end)
    local h = assert(digest.hasher())
    assert.has_error(function() h:update(42) end)
    h:close()
  end)

  it("close is idempotent and later calls raise", function()
    local h = assert(digest.hasher())
    assert.is_true(h:close())
    assert.is_true(h:close())
    assert.has_error(function() h:update("x") end, "hasher is closed")
    assert.has_error(function() h:digest() end, "hasher is closed")
    assert.has_error(function() h:save() end, "hasher is closed")
  end)

  it("is freed by the GC when not closed", function()
    for _ = 1, 1000 do
      local h = assert(digest.hasher("sha512"))
      h:update("x")
    end
    collectgarbage()
    collectgarbage()
  end)
end)

describe("saved state", function()
  before_each(function()
    math.randomseed(20240602)
  end)

  local IV = "6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19"

  for _, impl in ipairs({ "mbedtls", "sha-ni" }) do
    it("sha256 after \"abc\" on " .. impl .. " is Go's encoding", function()
      if impl == "sha-ni" and not HAVE_SHANI then
        pending("this CPU has no SHA extensions")
        return
      end
      local h = assert(digest.hasher("sha256", impl))
      assert(h:update("abc"))
      local st = h:save()
      assert.equal(108, #st)
      assert.equal("sha\3", st:sub(1, 4))
      assert.equal(IV, hex(st:sub(5, 36)))
      assert.equal("abc" .. string.rep("\0", 61), st:sub(37, 100))
      assert.equal("\0\0\0\0\0\0\0\3", st:sub(101, 108))
      h:close()
    end)

    -- h after one block of 'a', from an independent pure-Python SHA-256.
    it("sha256 after 64 'a' + \"bc\" on " .. impl .. " is Go's", function()
      if impl == "sha-ni" and not HAVE_SHANI then
        pending("this CPU has no SHA extensions")
        return
      end
      local want = "73686103"
        .. "df5bb81ce81e0626fb45a8944fd40f31b25e6816d6d499c1ab90492900635e66"
        .. "6263" .. string.rep("00", 62) .. "0000000000000042"
      local h = assert(digest.hasher("sha256", impl))
      assert(h:update(string.rep("a", 64) .. "bc"))
      assert.equal(want, hex(h:save()))
      h:close()
      h = assert(digest.restore(unhex(want), impl))
      assert.equal("sha256:2eac2ab13a13bd7eb0771ce0647c9cdd"
        .. "db62d4a1bebdd1829780810962280a84", h:digest())
      h:close()
    end)
  end

  it("sha384 and sha512 states are 204 bytes with Go's magic", function()
    for algo, magic in pairs({ sha384 = "sha\4", sha512 = "sha\7" }) do
      local h = assert(digest.hasher(algo))
      assert(h:update("abc"))
      local st = h:save()
      assert.equal(204, #st)
      assert.equal(magic, st:sub(1, 4))
      assert.equal("abc" .. string.rep("\0", 125), st:sub(69, 196))
      assert.equal("\0\0\0\0\0\0\0\3", st:sub(197, 204))
      h:close()
    end
  end)

  it("restores at random offsets into either implementation", function()
    local cases = {}
    for _, from in ipairs(IMPLS) do
      for _, to in ipairs(IMPLS) do
        cases[#cases + 1] = { "sha256", from, to }
      end
    end
    cases[#cases + 1] = { "sha384", "mbedtls", "auto" }
    cases[#cases + 1] = { "sha512", "mbedtls", "mbedtls" }
    for _, c in ipairs(cases) do
      local algo, from, to = c[1], c[2], c[3]
      for _ = 1, 40 do
        local n = math.random(0, 5000)
        local data = helpers.random_bytes(n)
        local cut = math.random(0, n)
        if math.random(1, 4) == 1 then
          cut = math.min(n, 64 * math.random(0, 8) + math.random(-1, 1))
          cut = math.max(cut, 0)
        end
        local h = assert(digest.hasher(algo, from))
        feed(h, data:sub(1, cut))
        local st = h:save()
        h:close()
        local r = assert(digest.restore(st, to))
        assert.equal(cut, r:size())
        assert.equal(algo, r:algo())
        if to ~= "auto" then assert.equal(to, r:impl()) end
        assert.equal(st, r:save())
        feed(r, data:sub(cut + 1))
        assert.equal(digest.compute(data, algo), r:digest(),
          algo .. " " .. from .. "->" .. to .. " at " .. cut .. "/" .. n)
        r:close()
      end
    end
  end)

  it("ignores garbage after the pending bytes, as Go does", function()
    local h = assert(digest.hasher())
    assert(h:update("abc"))
    local st = h:save()
    h:close()
    st = st:sub(1, 39) .. string.rep("\255", 61) .. st:sub(101)
    for _, impl in ipairs(IMPLS) do
      local r = assert(digest.restore(st, impl))
      assert(r:update("def"))
      assert.equal(digest.compute("abcdef"), r:digest())
      r:close()
    end
  end)

  it("rejects a wrong magic or length", function()
    local h = assert(digest.hasher())
    local st = h:save()
    h:close()
    local h5 = assert(digest.hasher("sha512"))
    local st5 = h5:save()
    h5:close()
    local bad = {
      "", "sha", "sha\3",
      "xha\3" .. st:sub(5),
      "sha\2" .. st:sub(5),           -- sha224
      "sha\5" .. st5:sub(5),          -- sha512/224
      "sha\3" .. st5:sub(5),          -- sha256 magic, sha512 length
      "sha\7" .. st:sub(5),           -- sha512 magic, sha256 length
      st:sub(1, 107), st .. "\0",
      st5:sub(1, 203), st5 .. "\0",
    }
    for _, s in ipairs(bad) do
      for _, impl in ipairs({ "auto", "mbedtls" }) do
        assert_fail("EINVAL", digest.restore(s, impl))
      end
    end
  end)

  it("restoring sha512 onto sha-ni is unsupported", function()
    local h = assert(digest.hasher("sha512"))
    local st = h:save()
    h:close()
    assert_fail("UNSUPPORTED", digest.restore(st, "sha-ni"))
  end)

  it("raises when the state is not a string", function()
    assert.has_error(function() digest.restore(nil) end,
      "state must be a string")
    assert.has_error(function() digest.restore("x", "nope") end)
  end)
end)

describe("hmac_sha256", function()
  -- RFC 4231, section 4: the SHA-256 results of test cases 1-4, 6 and 7
  -- (5 truncates its output). Keys and data in hex when not text.
  local AA131 = string.rep("aa", 131)
  local vectors = {
    { "case 1", string.rep("0b", 20), hex("Hi There"),
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { "case 2 (short key)", hex("Jefe"), hex("what do ya want for nothing?"),
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { "case 3", string.rep("aa", 20), string.rep("dd", 50),
      "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
    { "case 4", "0102030405060708090a0b0c0d0e0f10111213141516171819",
      string.rep("cd", 50),
      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    { "case 6 (key longer than a block)", AA131,
      hex("Test Using Larger Than Block-Size Key - Hash Key First"),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { "case 7 (key and data longer than a block)", AA131,
      hex("This is a test using a larger than block-size key and a larger "
        .. "than block-size data. The key needs to be hashed before being "
        .. "used by the HMAC algorithm."),
      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
  }
  for _, v in ipairs(vectors) do
    it("RFC 4231 " .. v[1], function()
      local mac = digest.hmac_sha256(unhex(v[2]), unhex(v[3]))
      assert.equal(32, #mac)
      assert.equal(v[4], hex(mac))
    end)
  end

  -- openssl as the oracle, at the block-size edges of the key. It wants
  -- a key of at least one byte; 64 zero bytes are the same HMAC key as
  -- the empty one (RFC 2104 pads keys with zeros to the block size).
  it("agrees with openssl for keys of 0 to 200 bytes", function()
    for _, n in ipairs({ 0, 1, 63, 64, 65, 200 }) do
      local key = helpers.random_bytes(n)
      local msg = helpers.random_bytes(100 + n)
      local path = os.tmpname()
      helpers.write_file(path, msg)
      local p = io.popen("openssl dgst -sha256 -mac HMAC -macopt hexkey:"
        .. (n == 0 and string.rep("00", 64) or hex(key)) .. " < '" .. path
        .. "'")
      local out = p:read("*a")
      p:close()
      os.remove(path)
      local want = out:match("= (%x+)")
      assert.is_string(want, out)
      assert.equal(want, hex(digest.hmac_sha256(key, msg)), "key of " .. n)
    end
  end)

  it("raises when key or message is not a string", function()
    assert.has_error(function() digest.hmac_sha256(nil, "m") end,
      "key must be a string")
    assert.has_error(function() digest.hmac_sha256("k", 1) end,
      "message must be a string")
  end)
end)

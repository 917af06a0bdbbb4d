-- htpasswd files (core/src/auth.c through berth.auth): bcrypt entries as
-- `htpasswd -B` writes them, checked with libcrypt; every other kind of
-- entry refused when the file is loaded.
local helpers = require "helpers"
local support = require "09-auth.support"
local auth = require "berth.auth"

local fixture = support.fixture

local function load(path)
  return assert(auth.load_htpasswd(path))
end

local function denied(ok, err, code)
  assert.is_nil(ok)
  assert.equal("UNAUTHORIZED", code)
  -- one message whatever went wrong: it tells nothing about the users
  assert.equal("invalid user name or password", err)
end

local function has_htpasswd()
  local _, ok = support.sh("command -v htpasswd")
  return ok
end

describe("htpasswd", function()
  it("loads bcrypt entries and checks passwords", function()
    local h = load(fixture("htpasswd"))
    assert.equal(3, h:count())
    assert.is_true(h:verify("alice", "alice-secret"))
    assert.is_true(h:verify("bob", "bob-secret"))
    assert.is_true(h:verify("carol", "carol-secret"))
  end)

  it("refuses a wrong password and an unknown user alike", function()
    local h = load(fixture("htpasswd"))
    denied(h:verify("alice", "bob-secret"))
    denied(h:verify("alice", "alice-secret "))
    denied(h:verify("alice", ""))
    denied(h:verify("mallory", "alice-secret"))
    denied(h:verify("", ""))
    denied(h:verify("Alice", "alice-secret"))
    -- a NUL inside the password is not cut short into a match
    denied(h:verify("alice", "alice-secret\0tail"))
  end)

  it("refuses passwords longer than bcrypt reads", function()
    -- bcrypt reads 72 bytes: every password sharing them would log in
    local long = ("0123456789"):rep(8) -- 80 bytes
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/users", "dave:" .. support.bcrypt(long)
      .. "\n" .. "erin:" .. support.bcrypt(long:sub(1, 72)) .. "\n")
    local h = load(dir .. "/users")
    denied(h:verify("dave", long))
    denied(h:verify("dave", long:sub(1, 72) .. "anything"))
    denied(h:verify("erin", long:sub(1, 72) .. "x"))
    -- 72 bytes is what bcrypt checks whole
    assert.is_true(h:verify("dave", long:sub(1, 72)))
    assert.is_true(h:verify("erin", long:sub(1, 72)))
    denied(h:verify("erin", long:sub(1, 71)))
  end)

  it("refuses MD5, SHA-1 and plain text entries at load time", function()
    local function bad(name, kind)
      local h, err, code = auth.load_htpasswd(fixture(name))
      assert.is_nil(h)
      assert.equal("EINVAL", code)
      assert.equal("htpasswd file " .. fixture(name) .. " line 1: user "
        .. "mallory has " .. kind .. "; only bcrypt entries are accepted "
        .. "(htpasswd -B)", err)
      -- neither the hash nor the password shows in the message
      local line = helpers.read_file(fixture(name))
      assert.is_nil(err:find(line:match(":(.-)%s*$"), 1, true))
    end
    bad("htpasswd-md5", "an MD5 (apr1) hash")
    bad("htpasswd-sha", "a SHA-1 hash")
    bad("htpasswd-plain", "plain text or a DES crypt hash")
  end)

  it("refuses crypt and SHA-crypt entries, malformed lines and duplicates",
    function()
    local dir = helpers.tmpdir()
    local alice = helpers.read_file(fixture("htpasswd")):match("^[^\n]+")
    local cases = {
      { "u:$1$abc$def\n", "an MD5%-crypt hash" },
      { "u:$6$salt$hash\n", "a SHA%-crypt hash" },
      { "u:$2y$05$short\n", "a malformed bcrypt hash" },
      { "u:$2y$99$" .. ("a"):rep(53) .. "\n", "a malformed bcrypt hash" },
      { "u:$2x$05$" .. ("a"):rep(53) .. "\n", "a malformed bcrypt hash" },
      { "no colon here\n", "line 1: not user:hash" },
      { ":$2y$05$" .. ("a"):rep(53) .. "\n", "line 1: not user:hash" },
      { alice .. "\n" .. alice .. "\n", "line 2: user alice appears twice" },
    }
    for i, c in ipairs(cases) do
      local path = dir .. "/h" .. i
      helpers.write_file(path, c[1])
      local h, err, code = auth.load_htpasswd(path)
      assert.is_nil(h)
      assert.equal("EINVAL", code)
      assert.matches(c[2], err)
    end
    local h, err, code = auth.load_htpasswd(dir .. "/missing")
    assert.is_nil(h)
    assert.equal("EINVAL", code)
    assert.matches("No such file", err)
  end)

  it("skips blank lines and comments, and takes CRLF line ends", function()
    local dir = helpers.tmpdir()
    local text = helpers.read_file(fixture("htpasswd"))
    helpers.write_file(dir .. "/h", "# users\r\n\r\n"
      .. text:gsub("\n", "\r\n"))
    local h = load(dir .. "/h")
    assert.equal(3, h:count())
    assert.is_true(h:verify("bob", "bob-secret"))
    -- an empty file: nobody gets in
    helpers.write_file(dir .. "/empty", "")
    local e = load(dir .. "/empty")
    assert.equal(0, e:count())
    denied(e:verify("alice", "alice-secret"))
  end)

  it("takes the $2a$ and $2b$ spellings of bcrypt", function()
    local dir = helpers.tmpdir()
    local line = helpers.read_file(fixture("htpasswd")):match("^[^\n]+")
    for _, v in ipairs({ "a", "b" }) do
      helpers.write_file(dir .. "/h" .. v, (line:gsub("%$2y%$", "$2" .. v
        .. "$")) .. "\n")
      local h = load(dir .. "/h" .. v)
      assert.is_true(h:verify("alice", "alice-secret"))
      denied(h:verify("alice", "wrong"))
    end
  end)

  it("checks what htpasswd -B writes now, at another cost", function()
    if not has_htpasswd() then
      pending("htpasswd not installed (Debian: apache2-utils)")
      return
    end
    local dir = helpers.tmpdir()
    local path = dir .. "/h"
    support.must("htpasswd -B -C 8 -b -c " .. support.q(path)
      .. " dave 'pa:ss w0rd!'")
    local h = load(path)
    assert.matches("^dave:%$2y%$08%$", helpers.read_file(path))
    assert.is_true(h:verify("dave", "pa:ss w0rd!"))
    denied(h:verify("dave", "pa:ss"))
  end)

  it("spends a bcrypt on an unknown user too", function()
    if not has_htpasswd() then
      pending("htpasswd not installed (Debian: apache2-utils)")
      return
    end
    local path = helpers.tmpdir() .. "/h"
    support.must("htpasswd -B -C 10 -b -c " .. support.q(path) .. " erin pw")
    local h = load(path)
    local function cpu(user)
      local t0 = os.clock()
      for _ = 1, 3 do h:verify(user, "wrong") end
      return os.clock() - t0
    end
    local known, unknown = cpu("erin"), cpu("nobody")
    assert.is_true(known > 0.03, "cost 10 is a few tens of ms")
    assert.is_true(unknown > known / 2 and unknown < known * 2,
      ("known %.3f s, unknown %.3f s"):format(known, unknown))
  end)

  it("closes idempotently", function()
    local h = load(fixture("htpasswd"))
    assert.is_true(h:close())
    assert.is_true(h:close())
  end)
end)

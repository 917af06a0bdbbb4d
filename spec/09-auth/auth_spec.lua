-- berth.auth: configuration, check() (challenges, 401/403/429), failed-login
-- counting, the Basic login cache, and the HTTP API with access control in
-- process (lua/berth/http.lua): ctx.identity and ctx.actions reach the
-- hooks, the catalog is filtered, mounts need pull on their source.
local helpers = require "helpers"
local support = require "09-auth.support"
local psupport = require "03-plugins.support"
local auth = require "berth.auth"
local http = require "berth.http"
local registry = require "berth.registry"
local client = require "05-http.client"

local fixture, mint, claims = support.fixture, support.mint, support.claims
local ISSUER, SERVICE = support.ISSUER, support.SERVICE
local REALM = "https://auth.example/token"

local function token_conf(over)
  local c = { mode = "token", realm = REALM, service = SERVICE,
    issuer = ISSUER, keys = { fixture("rsa.pub"), fixture("jwks.json") } }
  for k, v in pairs(over or {}) do
    if v == false then c[k] = nil else c[k] = v end
  end
  return c
end

local function bearer(tok)
  return { authorization = "Bearer " .. tok }
end

local function scope(name, ...)
  return { type = "repository", name = name, actions = { ... } }
end

-- A fake clock the specs move.
local function clock(t)
  local c = { t = t or os.time() }
  c.fn = function() return c.t end
  return c
end

describe("auth configuration", function()
  it("checks the mode's required fields and the key files", function()
    local function bad(pattern, conf)
      local a, err, code = auth.new(conf)
      assert.is_nil(a)
      assert.equal("EINVAL", code)
      assert.matches(pattern, err)
    end
    bad("mode token needs 'issuer'", token_conf{ issuer = false })
    bad("mode token needs 'keys'", token_conf{ keys = false })
    bad("mode htpasswd needs 'htpasswd'", { mode = "htpasswd" })
    bad("field 'mode' must be one of none, token, htpasswd",
      { mode = "ldap" })
    bad("unknown field 'secret'", { mode = "none", secret = "x" })
    bad("field 'keys' must be a path or a non%-empty list",
      token_conf{ keys = {} })
    bad("a private key", token_conf{ keys = fixture("rsa.key") })
    bad("MD5", { mode = "htpasswd", htpasswd = fixture("htpasswd-md5") })
    bad("field 'leeway' must be at least 0", token_conf{ leeway = -1 })
    assert(auth.new(token_conf{ keys = fixture("rsa.crt") }))
    assert.is_false(assert(auth.new{}):enabled())
  end)

  it("loads a configuration file, paths relative to it", function()
    local dir = helpers.tmpdir()
    support.must("cp " .. fixture("htpasswd") .. " " .. dir .. "/users")
    helpers.write_file(dir .. "/auth.lua", 'mode = "htpasswd"\n'
      .. 'htpasswd = "users"\nmax_failures = 3\n')
    local conf = assert(auth.load(dir .. "/auth.lua"))
    assert.equal(dir .. "/users", conf.htpasswd)
    assert.equal(3, conf.max_failures)
    assert.equal(60, conf.window)
    local a = assert(auth.new(conf))
    assert.equal(3, a.users:count())
    helpers.write_file(dir .. "/bad.lua", 'return { mode = "token", x = 1 }')
    local c, err, code = auth.load(dir .. "/bad.lua")
    assert.is_nil(c)
    assert.equal("EINVAL", code)
    assert.matches("unknown field 'x'", err)
  end)
end)

describe("auth:check in token mode", function()
  local a, clk

  before_each(function()
    clk = clock()
    a = assert(auth.new(token_conf{ max_failures = 100 }, { clock = clk.fn }))
  end)

  it("challenges a request without a token, naming the scope", function()
    local id, status, challenge, code, msg = a:check({},
      scope("alice/app", "pull", "push"), "10.0.0.1")
    assert.is_nil(id)
    assert.equal(401, status)
    assert.equal("UNAUTHORIZED", code)
    assert.equal("authentication required", msg)
    assert.equal('Bearer realm="' .. REALM .. '",service="' .. SERVICE
      .. '",scope="repository:alice/app:pull,push"', challenge)
    -- the base route: no scope
    local _, _, ch = a:check({}, nil, "10.0.0.1")
    assert.equal('Bearer realm="' .. REALM .. '",service="' .. SERVICE .. '"',
      ch)
    -- a name that could break the header is left out of it
    _, _, ch = a:check({}, scope('a"b\r\nX: y', "pull"), "10.0.0.1")
    assert.is_nil(ch:find("scope", 1, true))
  end)

  it("accepts a good token: identity and granted actions", function()
    local tok = mint(claims())
    local id, actions = a:check(bearer(tok), scope("alice/app", "pull"))
    assert.equal("alice", id.name)
    assert.equal("token", id.via)
    assert.same({ pull = true, push = true }, actions)
    -- ES256 from the JWKS, by kid
    id = a:check(bearer(mint(claims(), { alg = "ES256", kid = "ec-1" })),
      scope("alice/app", "push"))
    assert.equal("alice", id.name)
    -- the scheme is case-insensitive
    assert(a:check({ authorization = "bearer " .. tok },
      scope("alice/app", "pull")))
  end)

  it("answers 401 invalid_token for every bad token", function()
    local now = os.time()
    local bad = {
      mint(claims{ exp = now - 3600, iat = now - 7200, nbf = false }),
      mint(claims{ nbf = now + 3600 }),
      mint(claims{ iss = "evil" }),
      mint(claims{ aud = "other" }),
      mint(claims(), { key = fixture("forger-rsa.key") }),
      mint(claims(), { alg = "none" }),
      mint(claims(), { alg = "HS256", key = "secret" }),
      "not-a-token",
    }
    for _, tok in ipairs(bad) do
      local id, status, challenge, code = a:check(bearer(tok),
        scope("alice/app", "pull"))
      assert.is_nil(id)
      assert.equal(401, status)
      assert.equal("UNAUTHORIZED", code)
      assert.matches(',error="invalid_token"$', challenge)
    end
    -- Basic credentials are not a token
    local id, status = a:check({ authorization = support.basic("alice",
      "alice-secret") }, scope("alice/app", "pull"))
    assert.is_nil(id)
    assert.equal(401, status)
    -- two Authorization headers
    id, status = a:check({ authorization = { "Bearer x", "Bearer y" } },
      scope("alice/app", "pull"))
    assert.is_nil(id)
    assert.equal(401, status)
  end)

  it("answers 403 DENIED for a genuine token without the action",
    function()
    local pull_only = mint(claims{ access = { { type = "repository",
      name = "alice/app", actions = { "pull" } } } })
    assert(a:check(bearer(pull_only), scope("alice/app", "pull")))
    local id, status, challenge, code, msg = a:check(bearer(pull_only),
      scope("alice/app", "pull", "push"))
    assert.is_nil(id)
    assert.equal(403, status)
    assert.equal("DENIED", code)
    assert.equal("access to repository:alice/app:pull,push not granted", msg)
    assert.matches('scope="repository:alice/app:pull,push",'
      .. 'error="insufficient_scope"$', challenge)
    -- a token for another repository
    local _, st = a:check(bearer(mint(claims())), scope("bob/app", "pull"))
    assert.equal(403, st)
    -- the catalog needs registry:catalog:*
    _, st = a:check(bearer(mint(claims())), { type = "registry",
      name = "catalog", actions = { "*" } })
    assert.equal(403, st)
    assert(a:check(bearer(mint(claims{ access = { { type = "registry",
      name = "catalog", actions = { "*" } } } })), { type = "registry",
      name = "catalog", actions = { "*" } }))
    -- names are exact: a glob in a token grants nothing else
    _, st = a:check(bearer(mint(claims{ access = { { type = "repository",
      name = "*", actions = { "pull" } } } })), scope("alice/app", "pull"))
    assert.equal(403, st)
    -- "*" as an action grants every action on that name
    assert(a:check(bearer(mint(claims{ access = { { type = "repository",
      name = "alice/app", actions = { "*" } } } })),
      scope("alice/app", "delete")))
  end)
end)

describe("auth:check in htpasswd mode", function()
  it("challenges with Basic and accepts the users' passwords", function()
    local a = assert(auth.new({ mode = "htpasswd", realm = "my registry",
      htpasswd = fixture("htpasswd") }))
    local id, status, challenge = a:check({}, scope("x/y", "pull"))
    assert.is_nil(id)
    assert.equal(401, status)
    assert.equal('Basic realm="my registry",charset="UTF-8"', challenge)
    local actions
    id, actions = a:check({ authorization = support.basic("bob",
      "bob-secret") }, scope("x/y", "pull", "push"))
    assert.equal("bob", id.name)
    assert.equal("basic", id.via)
    -- a login pulls and pushes; deletes are for the configured admins
    assert.is_true(actions.push and actions.pull)
    assert.is_nil(actions.delete)
    local admin = assert(auth.new({ mode = "htpasswd", realm = "my registry",
      htpasswd = fixture("htpasswd"), admins = { "carol" } }))
    id, actions = admin:check({ authorization = support.basic("carol",
      "carol-secret") }, scope("x/y", "delete"))
    assert.equal("carol", id.name)
    assert.is_true(actions.delete)
    id, status = admin:check({ authorization = support.basic("bob",
      "bob-secret") }, scope("x/y", "delete"))
    assert.is_nil(id)
    assert.equal(403, status)
    for _, value in ipairs({ support.basic("bob", "nope"),
      support.basic("nobody", "bob-secret"), "Basic !!!", "Basic",
      "Basic " .. auth.base64_decode("", false) .. "Ym9i" }) do
      id, status = a:check({ authorization = value }, scope("x/y", "pull"))
      assert.is_nil(id)
      assert.equal(401, status)
    end
  end)

  it("takes empty Basic credentials (skopeo's when it has none) as none",
    function()
    for _, conf in ipairs({ { mode = "htpasswd",
        htpasswd = fixture("htpasswd") }, token_conf{} }) do
      conf.max_failures = 2
      local a = assert(auth.new(conf))
      local want = { a:check({}, scope("x/y", "pull"), "10.0.0.1") }
      for _, value in ipairs({ "Basic Og==", "basic  Og== " }) do
        for _ = 1, 3 do -- no failed login either
          assert.same(want, { a:check({ authorization = value },
            scope("x/y", "pull"), "10.0.0.1") })
        end
      end
      assert.equal(401, want[2])
      assert.equal("authentication required", want[5])
    end
  end)

  it("remembers a verified login for cache_ttl seconds only", function()
    local clk = clock()
    local a = assert(auth.new({ mode = "htpasswd",
      htpasswd = fixture("htpasswd"), cache_ttl = 30 }, { clock = clk.fn }))
    local calls = 0
    local real = a.users
    a.users = { verify = function(_, u, p)
      calls = calls + 1
      return real:verify(u, p)
    end }
    local good = { authorization = support.basic("alice", "alice-secret") }
    assert(a:check(good))
    assert(a:check(good))
    assert.equal(1, calls)
    -- a wrong password is never served from the cache
    assert.is_nil(a:check({ authorization = support.basic("alice", "x") }))
    assert.equal(2, calls)
    clk.t = clk.t + 31
    assert(a:check(good))
    assert.equal(3, calls)
  end)
end)

describe("failed logins", function()
  it("block an address with 429 after max_failures, until the window ends",
    function()
    local clk = clock(1000)
    local a = assert(auth.new({ mode = "htpasswd",
      htpasswd = fixture("htpasswd"), max_failures = 3, window = 60 },
      { clock = clk.fn }))
    local bad = { authorization = support.basic("alice", "guess") }
    local good = { authorization = support.basic("alice", "alice-secret") }
    -- asking without credentials is no failure
    for _ = 1, 5 do
      local _, st = a:check({}, nil, "10.0.0.9")
      assert.equal(401, st)
    end
    for _ = 1, 3 do
      local _, st = a:check(bad, nil, "10.0.0.9")
      assert.equal(401, st)
    end
    clk.t = clk.t + 10
    local id, status, challenge, code, msg, retry = a:check(good, nil,
      "10.0.0.9")
    assert.is_nil(id)
    assert.equal(429, status)
    assert.is_nil(challenge)
    assert.equal("TOOMANYREQUESTS", code)
    assert.equal("too many failed logins from this address; retry in 50 s",
      msg)
    assert.equal(50, retry)
    -- another address is not affected
    assert(a:check(good, nil, "10.0.0.10"))
    clk.t = clk.t + 50
    assert(a:check(good, nil, "10.0.0.9"))
  end)

  it("count in a shared dict when one is given", function()
    -- the ngx.shared.DICT methods berth.auth uses
    local dict = { data = {}, exp = {}, now = os.time() }
    function dict:get(k)
      if self.exp[k] and self.exp[k] <= self.now then self.data[k] = nil end
      return self.data[k]
    end
    function dict:ttl(k) return self.exp[k] - self.now end
    function dict:incr(k, by, init, ttl)
      if self:get(k) == nil then
        self.data[k] = init
        self.exp[k] = self.now + ttl
      end
      self.data[k] = self.data[k] + by
      return self.data[k]
    end
    local a = assert(auth.new(token_conf{ max_failures = 2, window = 30 },
      { dict = dict, clock = function() return dict.now end }))
    a:check(bearer("bad"), nil, "1.2.3.4")
    a:check(bearer("bad"), nil, "1.2.3.4")
    assert.equal(2, dict.data["berth-auth:1.2.3.4"])
    local _, status, _, _, _, retry = a:check(bearer(mint(claims())), nil,
      "1.2.3.4")
    assert.equal(429, status)
    assert.equal(30, retry)
    dict.now = dict.now + 30
    assert(a:check(bearer(mint(claims())), nil, "1.2.3.4"))
  end)
end)

describe("the HTTP API with access control", function()
  local app, c, reg, seen

  local function req(method, path, tok, opts)
    opts = opts or {}
    opts.headers = opts.headers or {}
    if tok then opts.headers.Authorization = "Bearer " .. tok end
    return c:request(method, path, opts)
  end

  local function error_code(resp)
    local doc = require("cjson").decode(resp.body)
    return doc.errors[1].code
  end

  local function push_token(name, ...)
    local access = {}
    for _, n in ipairs({ name, ... }) do
      access[#access + 1] = { type = "repository", name = n,
        actions = { "pull", "push", "delete" } }
    end
    return mint(claims{ access = access })
  end

  before_each(function()
    seen = {}
    local spy_plugin = { PRIORITY = 1, VERSION = "0",
      before_blob_upload = function(_, ctx)
        seen[#seen + 1] = { op = ctx.op, repo = ctx.repo,
          identity = ctx.identity, actions = ctx.actions }
      end,
      before_read = function(_, ctx)
        if ctx.op == "catalog" and ctx.repo == "alice/hidden" then
          return nil, "hidden", "DENIED"
        end
      end }
    reg = assert(registry.new{ root = helpers.tmpdir(), delete = true,
      plugins = { { name = "spy", handler = spy_plugin } } })
    app = http.new{ registry = reg,
      auth = assert(auth.new(token_conf{ max_failures = 1000 })) }
    c = client.in_process(app)
  end)

  after_each(function()
    reg:close()
  end)

  it("challenges GET /v2/ without a token and welcomes one with any token",
    function()
    local r = req("GET", "/v2/")
    assert.equal(401, r.status)
    assert.equal("UNAUTHORIZED", error_code(r))
    assert.equal('Bearer realm="' .. REALM .. '",service="' .. SERVICE .. '"',
      client.header(r, "WWW-Authenticate"))
    assert.equal("registry/2.0",
      client.header(r, "Docker-Distribution-API-Version"))
    r = req("GET", "/v2/", mint(claims{ access = false }))
    assert.equal(200, r.status)
  end)

  it("puts identity and actions into the hooks' ctx", function()
    local r = req("POST", "/v2/alice/app/blobs/uploads/", push_token(
      "alice/app"))
    assert.equal(202, r.status)
    assert.equal(1, #seen)
    assert.equal("start_upload", seen[1].op)
    assert.equal("alice", seen[1].identity.name)
    assert.equal("token", seen[1].identity.via)
    assert.same({ pull = true, push = true, delete = true }, seen[1].actions)
  end)

  it("refuses before any handler runs: 401, 403", function()
    local r = req("POST", "/v2/alice/app/blobs/uploads/")
    assert.equal(401, r.status)
    assert.equal('Bearer realm="' .. REALM .. '",service="' .. SERVICE
      .. '",scope="repository:alice/app:pull,push"',
      client.header(r, "WWW-Authenticate"))
    local pull_only = mint(claims{ access = { { type = "repository",
      name = "alice/app", actions = { "pull" } } } })
    r = req("POST", "/v2/alice/app/blobs/uploads/", pull_only)
    assert.equal(403, r.status)
    assert.equal("DENIED", error_code(r))
    r = req("POST", "/v2/bob/app/blobs/uploads/", push_token("alice/app"))
    assert.equal(403, r.status)
    r = req("DELETE", "/v2/alice/app/manifests/v1", pull_only)
    assert.equal(403, r.status)
    assert.matches('scope="repository:alice/app:delete"',
      client.header(r, "WWW-Authenticate"))
    assert.equal(0, #seen)
    -- unknown routes and methods need no identity
    assert.equal(404, req("GET", "/v3/").status)
    assert.equal(405, req("PATCH", "/v2/_catalog").status)
  end)

  it("pushes and pulls a blob with a push token", function()
    local tok = push_token("alice/app")
    local data = "layer bytes"
    local dgst = helpers.sha256sum(data)
    local r = req("POST", "/v2/alice/app/blobs/uploads/?digest=" .. dgst, tok,
      { body = data })
    assert.equal(201, r.status)
    r = req("GET", "/v2/alice/app/blobs/" .. dgst, tok)
    assert.equal(200, r.status)
    assert.equal(data, r.body)
    local pull_only = mint(claims{ access = { { type = "repository",
      name = "alice/app", actions = { "pull" } } } })
    assert.equal(200, req("HEAD", "/v2/alice/app/blobs/" .. dgst,
      pull_only).status)
    assert.equal(403, req("GET", "/v2/bob/app/blobs/" .. dgst,
      pull_only).status)
  end)

  it("mounts only from a repository the caller may pull", function()
    local data = "shared layer"
    local dgst = assert(reg.store:blob_put("bob/secret", data))
    local tok = push_token("alice/app")
    -- no pull on bob/secret: an ordinary upload session instead
    local r = req("POST", "/v2/alice/app/blobs/uploads/?mount=" .. dgst
      .. "&from=bob/secret", tok)
    assert.equal(202, r.status)
    -- nor without from (it would take the blob from any repository)
    r = req("POST", "/v2/alice/app/blobs/uploads/?mount=" .. dgst, tok)
    assert.equal(202, r.status)
    assert.is_nil((reg.store:blob_stat("alice/app", dgst)))
    -- with pull on the source it mounts
    r = req("POST", "/v2/alice/app/blobs/uploads/?mount=" .. dgst
      .. "&from=bob/secret", push_token("alice/app", "bob/secret"))
    assert.equal(201, r.status)
  end)

  it("lists only the repositories the caller may pull", function()
    for _, name in ipairs({ "alice/a", "alice/b", "alice/hidden", "bob/x",
      "public/base", "zed/z" }) do
      local body = psupport.image_in(reg.store, name)
      local m = assert(require("berth.manifest").parse(body))
      assert(reg.store:manifest_put(name, m, { tag = "v1" }))
      m:close()
    end
    local function access(...)
      local t = { { type = "registry", name = "catalog", actions = { "*" } } }
      for _, n in ipairs({ ... }) do
        t[#t + 1] = { type = "repository", name = n, actions = { "pull" } }
      end
      return mint(claims{ access = t })
    end
    local tok = access("alice/a", "alice/b", "alice/hidden", "public/base")
    local r = req("GET", "/v2/_catalog", tok)
    assert.equal(200, r.status)
    -- alice/hidden: the token grants it, a before_read hook does not
    assert.same({ "alice/a", "alice/b", "public/base" },
      require("cjson").decode(r.body).repositories)
    -- pages are filled from what is visible
    r = req("GET", "/v2/_catalog?n=2", tok)
    assert.same({ "alice/a", "alice/b" },
      require("cjson").decode(r.body).repositories)
    assert.equal('</v2/_catalog?last=alice/b&n=2>; rel="next"',
      client.header(r, "Link"))
    r = req("GET", "/v2/_catalog?n=2&last=alice/b", tok)
    assert.same({ "public/base" },
      require("cjson").decode(r.body).repositories)
    assert.is_nil(client.header(r, "Link"))
    -- without registry:catalog:*
    r = req("GET", "/v2/_catalog", push_token("alice/a"))
    assert.equal(403, r.status)
    assert.matches('scope="registry:catalog:%*"',
      client.header(r, "WWW-Authenticate"))
  end)
end)

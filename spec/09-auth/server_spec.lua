-- Access control through a real nginx (`berth serve --auth-config`, or the
-- auth section of --config), driven with curl: every token case, Basic
-- logins, the repo-permissions plugin, rate limiting, catalog filtering,
-- bodies refused before they are spooled, and no secret in the logs.
local helpers = require "helpers"
local support = require "09-auth.support"
local psupport = require "03-plugins.support"
local berth = require "berth"

local curl, mint, claims = support.curl, support.mint, support.claims
local ISSUER, SERVICE = support.ISSUER, support.SERVICE
local q = support.q

-- a store with images in repos, for the catalog (the server opens it)
local function store_with(repos)
  local root = helpers.tmpdir()
  local store = assert(berth.open{ root = root })
  for _, name in ipairs(repos) do
    local body = psupport.image_in(store, name)
    local m = assert(berth.manifest.parse(body))
    assert(store:manifest_put(name, m, { tag = "v1" }))
    m:close()
  end
  store:close()
  return root
end

local function bearer(tok)
  return { headers = { "Authorization: Bearer " .. tok } }
end

local function access(...)
  local t = {}
  for _, e in ipairs({ ... }) do
    local rtype, name, actions = e:match("^([^:]+):(.+):([^:]+)$")
    local list = {}
    for a in actions:gmatch("[^,]+") do list[#list + 1] = a end
    t[#t + 1] = { type = rtype, name = name, actions = list }
  end
  return t
end

-- everything a server logged: neither a token nor a password
local function assert_no_secrets(srv, secrets)
  local text = srv:log_text()
  assert.is_true(#text > 0)
  for _, s in ipairs(secrets) do
    assert.is_nil(text:find(s, 1, true), "the log holds a secret")
  end
end

describe("berth serve in token mode", function()
  local ts, srv, secrets

  setup(function()
    ts = support.token_server()
    local conf = support.auth_config{ mode = "token", realm = ts.url,
      service = SERVICE, issuer = ISSUER, keys = { support.abs("rsa.crt") },
      max_failures = 1000 }
    srv = support.serve{ auth_config = conf,
      root = store_with({ "alice/app", "alice/lib", "bob/app",
        "public/base" }) }
    secrets = {}
  end)

  teardown(function()
    if srv then
      assert_no_secrets(srv, secrets)
      srv:stop()
    end
    if ts then ts:stop() end
  end)

  local function tok(c, o)
    local t = mint(claims(c), o)
    secrets[#secrets + 1] = t:match("%.([^.]+)$") -- the signature
    return t
  end

  it("challenges a request without a token", function()
    local r = curl("GET", srv.url .. "/v2/")
    assert.equal(401, r.status)
    assert.equal("UNAUTHORIZED", support.error_code(r))
    assert.equal('Bearer realm="' .. ts.url .. '",service="' .. SERVICE
      .. '"', r.headers["www-authenticate"])
    assert.equal("registry/2.0", r.headers["docker-distribution-api-version"])
    r = curl("GET", srv.url .. "/v2/alice/app/tags/list")
    assert.equal(401, r.status)
    assert.equal('Bearer realm="' .. ts.url .. '",service="' .. SERVICE
      .. '",scope="repository:alice/app:pull"', r.headers["www-authenticate"])
    r = curl("HEAD", srv.url .. "/v2/alice/app/manifests/v1")
    assert.equal(401, r.status)
  end)

  it("refuses expired, early, foreign, forged and unsigned tokens", function()
    local now = os.time()
    local cases = {
      expired = tok{ exp = now - 3600, iat = now - 7200, nbf = false },
      not_yet = tok{ nbf = now + 3600 },
      issuer = tok{ iss = "evil-issuer" },
      audience = tok{ aud = "another-registry" },
      forged = tok({}, { key = support.fixture("forger-rsa.key") }),
      none = tok({}, { alg = "none" }),
      hs256 = tok({}, { alg = "HS256", key = "secret" }),
      es256_no_key = tok({}, { alg = "ES256" }),
      garbage = "abc.def.ghi",
    }
    for name, t in pairs(cases) do
      local r = curl("GET", srv.url .. "/v2/alice/app/tags/list", bearer(t))
      assert.equal(401, r.status, name)
      assert.equal("UNAUTHORIZED", support.error_code(r), name)
      assert.matches('error="invalid_token"', r.headers["www-authenticate"],
        1, name)
    end
  end)

  it("refuses tokens whose claims repeat a member", function()
    -- each judged on its first value would pass
    local now = os.time()
    local pull_only = access("repository:alice/app:pull")
    for name, again in pairs({
      exp = { exp = now - 3600 },
      aud = { aud = "another-registry" },
      iss = { iss = "evil-issuer" },
      access = { access = pull_only },
    }) do
      local t = mint(claims{ access = access("repository:alice/app:pull,push") },
        { repeat_claims = again })
      secrets[#secrets + 1] = t:match("%.([^.]+)$")
      local r = curl("POST", srv.url .. "/v2/alice/app/blobs/uploads/",
        bearer(t))
      assert.equal(401, r.status, name)
      assert.equal("UNAUTHORIZED", support.error_code(r), name)
      assert.matches('error="invalid_token"', r.headers["www-authenticate"],
        1, name)
    end
  end)

  it("takes a 20 KiB token, and answers a header over the limit in JSON",
    function()
    -- many repositories in one token, as a CI system's may have
    local grants = { "repository:alice/app:pull,push" }
    for i = 1, 300 do
      grants[#grants + 1] = ("repository:alice/project-%03d/component:pull")
        :format(i)
    end
    local t = tok{ access = access(unpack(grants)) }
    assert.is_true(#t > 20 * 1024, #t)
    local r = curl("GET", srv.url .. "/v2/alice/app/tags/list", bearer(t))
    assert.equal(200, r.status)
    -- past the documented limit: JSON, not nginx's HTML page
    r = curl("GET", srv.url .. "/v2/alice/app/tags/list",
      bearer(("x"):rep(80 * 1024)))
    assert.equal(431, r.status)
    assert.equal("application/json", r.headers["content-type"])
    assert.equal("UNSUPPORTED", support.error_code(r))
    assert.matches("request header", r.json.errors[1].message, 1, true)
  end)

  it("answers 403 for another repository and for a pull-only push",
    function()
    local t = tok{ access = access("repository:alice/app:pull") }
    local r = curl("GET", srv.url .. "/v2/alice/app/tags/list", bearer(t))
    assert.equal(200, r.status)
    assert.same({ "v1" }, r.json.tags)
    r = curl("GET", srv.url .. "/v2/bob/app/tags/list", bearer(t))
    assert.equal(403, r.status)
    assert.equal("DENIED", support.error_code(r))
    r = curl("POST", srv.url .. "/v2/alice/app/blobs/uploads/", bearer(t))
    assert.equal(403, r.status)
    assert.equal("DENIED", support.error_code(r))
    assert.matches('scope="repository:alice/app:pull,push",'
      .. 'error="insufficient_scope"', r.headers["www-authenticate"])
  end)

  it("pushes and pulls a blob with a good token", function()
    local t = tok{ access = access("repository:alice/app:pull,push") }
    local data = "a layer, pushed with a token\n"
    local dgst = helpers.sha256sum(data)
    local r = curl("POST", srv.url .. "/v2/alice/app/blobs/uploads/?digest="
      .. dgst, { data = data, headers = { "Authorization: Bearer " .. t,
        "Content-Type: application/octet-stream" } })
    assert.equal(201, r.status)
    r = curl("GET", srv.url .. "/v2/alice/app/blobs/" .. dgst, bearer(t))
    assert.equal(200, r.status)
    assert.equal(data, r.body)
    -- chunked (spooled by nginx) too
    local data2 = "chunked layer\n"
    r = curl("POST", srv.url .. "/v2/alice/app/blobs/uploads/?digest="
      .. helpers.sha256sum(data2), { data = data2, headers = {
        "Authorization: Bearer " .. t, "Transfer-Encoding: chunked" } })
    assert.equal(201, r.status)
  end)

  it("refuses a body before nginx spools it", function()
    -- 3 MB at 300 kB/s: ten seconds if nginx read the body before the
    -- refusal (curl stops sending when the answer comes early)
    local path = support.tmp("big")
    support.must("head -c 3000000 /dev/urandom > " .. q(path))
    local t0 = os.time()
    local r = curl("POST", srv.url .. "/v2/alice/app/blobs/uploads/?digest="
      .. "sha256:" .. ("0"):rep(64), { file = path, args = "--limit-rate 300k",
        headers = { "Transfer-Encoding: chunked" } })
    assert.equal(401, r.status)
    assert.equal("UNAUTHORIZED", support.error_code(r))
    assert.is_true(os.time() - t0 <= 4, "the body was read first")
  end)

  it("gets tokens from the token endpoint with Basic credentials",
    function()
    local r = curl("GET", ts.url .. "?service=" .. SERVICE
      .. "&scope=repository:alice/lib:pull,push",
      { user = "alice:alice-secret" })
    assert.equal(200, r.status)
    assert.equal(r.json.token, r.json.access_token)
    secrets[#secrets + 1] = r.json.token:match("%.([^.]+)$")
    r = curl("GET", srv.url .. "/v2/alice/lib/tags/list", bearer(r.json.token))
    assert.equal(200, r.status)
    r = curl("GET", ts.url .. "?service=" .. SERVICE
      .. "&scope=repository:alice/lib:pull", { user = "alice:wrong" })
    assert.equal(401, r.status)
  end)

  it("filters the catalog to what the token may pull", function()
    local t = tok{ access = access("registry:catalog:*",
      "repository:alice/app:pull", "repository:alice/lib:pull,push",
      "repository:public/base:pull", "repository:bob/app:push") }
    local r = curl("GET", srv.url .. "/v2/_catalog", bearer(t))
    assert.equal(200, r.status)
    assert.same({ "alice/app", "alice/lib", "public/base" },
      r.json.repositories)
    r = curl("GET", srv.url .. "/v2/_catalog?n=1&last=alice/app", bearer(t))
    assert.same({ "alice/lib" }, r.json.repositories)
    assert.equal('</v2/_catalog?last=alice/lib&n=1>; rel="next"',
      r.headers["link"])
    r = curl("GET", srv.url .. "/v2/_catalog", bearer(tok()))
    assert.equal(403, r.status)
    assert.matches('scope="registry:catalog:%*"', r.headers["www-authenticate"])
  end)
end)

local LONG_PASSWORD = ("dave's long passphrase "):rep(4) -- 92 bytes

describe("berth serve in htpasswd mode with repo-permissions", function()
  local srv

  setup(function()
    local dir = helpers.tmpdir()
    support.must("cp " .. support.fixture("htpasswd") .. " " .. q(dir
      .. "/users"))
    local f = assert(io.open(dir .. "/users", "a"))
    f:write("dave:", support.bcrypt(LONG_PASSWORD), "\n")
    f:close()
    -- the auth section of the registry configuration; paths relative to it
    helpers.write_file(dir .. "/berth.lua", [[
auth = { mode = "htpasswd", realm = "berth test", htpasswd = "users",
  max_failures = 1000 }
plugins = { { name = "repo-permissions", config = {
  public = { "public/**" }, admins = { "carol" } } } }
]])
    srv = support.serve{ config = dir .. "/berth.lua", root = store_with({
      "alice/app", "bob/app", "public/base" }) }
  end)

  teardown(function()
    if srv then
      assert_no_secrets(srv, { "alice-secret", "bob-secret", "carol-secret",
        support.basic("alice", "alice-secret"):sub(7) })
      srv:stop()
    end
  end)

  it("challenges with Basic and takes the users' passwords", function()
    local r = curl("GET", srv.url .. "/v2/")
    assert.equal(401, r.status)
    assert.equal('Basic realm="berth test",charset="UTF-8"',
      r.headers["www-authenticate"])
    -- empty credentials (skopeo's when it has none) are none
    r = curl("GET", srv.url .. "/v2/",
      { headers = { "Authorization: Basic Og==" } })
    assert.equal(401, r.status)
    assert.equal('Basic realm="berth test",charset="UTF-8"',
      r.headers["www-authenticate"])
    assert.equal("authentication required", r.json.errors[1].message)
    r = curl("GET", srv.url .. "/v2/", { user = "alice:alice-secret" })
    assert.equal(200, r.status)
    -- bcrypt reads 72 bytes: a longer password is never checked whole
    for _, cred in ipairs({ "alice:bob-secret", "mallory:alice-secret",
      "alice:", "dave:" .. LONG_PASSWORD,
      "dave:" .. LONG_PASSWORD:sub(1, 72) .. "guess" }) do
      r = curl("GET", srv.url .. "/v2/", { user = cred })
      assert.equal(401, r.status)
      assert.equal("UNAUTHORIZED", support.error_code(r))
      assert.equal("invalid user name or password", r.json.errors[1].message)
    end
  end)

  it("lets the plugin allow and refuse", function()
    local data = "alice's layer\n"
    local dgst = helpers.sha256sum(data)
    local r = curl("POST", srv.url .. "/v2/alice/app/blobs/uploads/?digest="
      .. dgst, { data = data, user = "alice:alice-secret" })
    assert.equal(201, r.status)
    r = curl("POST", srv.url .. "/v2/bob/app/blobs/uploads/?digest="
      .. dgst, { data = data, user = "alice:alice-secret" })
    assert.equal(403, r.status)
    assert.equal("DENIED", support.error_code(r))
    assert.equal("alice may not push bob/app", r.json.errors[1].message)
    r = curl("GET", srv.url .. "/v2/alice/app/blobs/" .. dgst,
      { user = "bob:bob-secret" })
    assert.equal(403, r.status)
    r = curl("GET", srv.url .. "/v2/public/base/manifests/v1",
      { user = "bob:bob-secret" })
    assert.equal(200, r.status)
    r = curl("GET", srv.url .. "/v2/alice/app/blobs/" .. dgst,
      { user = "carol:carol-secret" })
    assert.equal(200, r.status)
    assert.equal(data, r.body)
  end)

  it("filters the catalog by the plugin's read rule", function()
    local function catalog(cred)
      local r = curl("GET", srv.url .. "/v2/_catalog", { user = cred })
      assert.equal(200, r.status)
      return r.json.repositories
    end
    assert.same({ "bob/app", "public/base" }, catalog("bob:bob-secret"))
    assert.same({ "alice/app", "public/base" }, catalog("alice:alice-secret"))
    assert.same({ "alice/app", "bob/app", "public/base" },
      catalog("carol:carol-secret"))
  end)
end)

describe("failed logins through nginx", function()
  it("answer 429 after max_failures from one address, in every worker",
    function()
    local conf = support.auth_config{ mode = "htpasswd",
      htpasswd = support.abs("htpasswd"), max_failures = 4, window = 60 }
    local srv = support.serve{ auth_config = conf, workers = 3 }
    finally(function() srv:stop() end)
    for _ = 1, 4 do
      assert.equal(401, curl("GET", srv.url .. "/v2/",
        { user = "alice:guess" }).status)
    end
    for _ = 1, 4 do -- each a new connection, to any worker
      local r = curl("GET", srv.url .. "/v2/", { user = "alice:alice-secret" })
      assert.equal(429, r.status)
      assert.equal("TOOMANYREQUESTS", support.error_code(r))
      local retry = tonumber(r.headers["retry-after"])
      assert.is_true(retry >= 1 and retry <= 60)
    end
  end)
end)

describe("berth serve in htpasswd mode without a permissions policy",
  function()
  it("lets every login pull and push, and only the admins delete",
    function()
    local conf = support.auth_config{ mode = "htpasswd",
      htpasswd = support.abs("htpasswd"), admins = { "carol" },
      max_failures = 1000 }
    local srv = support.serve{ auth_config = conf, delete = true,
      root = store_with({ "bob/app" }) }
    finally(function() srv:stop() end)
    local url = srv.url .. "/v2/bob/app/manifests/v1"
    local r = curl("GET", url, { user = "alice:alice-secret" })
    assert.equal(200, r.status)
    local digest = r.headers["docker-content-digest"]
    -- alice may not delete bob's image; carol, an admin, may
    r = curl("DELETE", srv.url .. "/v2/bob/app/manifests/" .. digest,
      { user = "alice:alice-secret" })
    assert.equal(403, r.status)
    assert.equal("DENIED", support.error_code(r))
    assert.equal(200, curl("GET", url, { user = "bob:bob-secret" }).status)
    r = curl("DELETE", srv.url .. "/v2/bob/app/manifests/" .. digest,
      { user = "carol:carol-secret" })
    assert.equal(202, r.status)
    -- pushing is every login's
    local data = "alice pushes anywhere without a policy\n"
    r = curl("POST", srv.url .. "/v2/bob/app/blobs/uploads/?digest="
      .. helpers.sha256sum(data), { data = data, user = "alice:alice-secret" })
    assert.equal(201, r.status)
  end)
end)

describe("a lockout", function()
  it("holds only the address that failed, for every user", function()
    local conf = support.auth_config{ mode = "htpasswd",
      htpasswd = support.abs("htpasswd"), max_failures = 3, window = 60 }
    local srv = support.serve{ auth_config = conf, workers = 2 }
    finally(function() srv:stop() end)
    local other = { args = "--interface 127.0.0.2" }
    local function from(opts, user)
      opts.user = user
      return curl("GET", srv.url .. "/v2/", opts)
    end
    for _, guess in ipairs({ "alice:guess", "bob:guess", "carol:guess" }) do
      assert.equal(401, from({ args = other.args }, guess).status)
    end
    -- 127.0.0.2 is locked out, its correct logins too (README)
    assert.equal(429, from({ args = other.args }, "bob:bob-secret").status)
    -- the same users from another address log in
    assert.equal(200, from({}, "alice:alice-secret").status)
    assert.equal(200, from({}, "bob:bob-secret").status)
  end)
end)

describe("berth serve with a bad access control configuration", function()
  it("does not start", function()
    local conf = support.auth_config{ mode = "htpasswd",
      htpasswd = support.abs("htpasswd-md5") }
    local root = helpers.tmpdir()
    local out, ok = support.sh("timeout 20 env BERTH_LIB="
      .. q(os.getenv("BERTH_LIB") or "build/libberth.so")
      .. " bin/berth serve " .. helpers.SERVE_AS .. " --listen 127.0.0.1:"
      .. support.free_port() .. " --root " .. q(root) .. " --auth-config "
      .. q(conf), true)
    assert.is_false(ok)
    -- refused before nginx starts (berth serve checks its configuration)
    assert.matches("^berth serve: access control: auth: htpasswd file .* user "
      .. "mallory has an MD5 %(apr1%) hash", out)
    assert.is_nil(out:find("serving", 1, true))
    assert.is_nil(out:find("$apr1$", 1, true))
  end)
end)

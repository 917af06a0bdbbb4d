local helpers = require "helpers"
local support = require "03-plugins.support"
local registry = require "berth.registry"

local ALL = { pull = true, push = true, delete = true }

local function new(conf)
  local store = support.new_store(finally)
  local reg = assert(registry.new({ store = store, delete = true,
    plugins = { { name = "repo-permissions", config = conf } } }))
  return reg, store
end

-- ctx as berth.auth leaves it for a logged-in user
local function as(name, actions)
  return { identity = name and { name = name, via = "basic" } or nil,
    actions = actions or ALL }
end

local function denied(msg, ok, err, code)
  assert.is_nil(ok)
  assert.equal(msg, err)
  assert.equal("DENIED", code)
end

-- a stored image (the rule does not apply to the store itself)
local function stored(store, repo)
  local body = support.image_in(store, repo)
  local m = assert(require("berth.manifest").parse(body))
  local dgst = assert(store:manifest_put(repo, m, { tag = "v1" }))
  m:close()
  return body, dgst
end

describe("repo-permissions", function()
  it("lets users push only under their own namespace", function()
    local reg, store = new({})
    local up = assert(reg:start_upload("alice/app", as("alice")))
    assert(up:write("x"))
    assert(reg:commit_upload(up, helpers.sha256sum("x"), nil, as("alice")))
    local body = support.image_in(store, "alice/app")
    assert(reg:put_manifest("alice/app", "v1", body, support.OCI_MANIFEST,
      as("alice")))
    local msg = "bob may not push alice/app"
    denied(msg, reg:start_upload("alice/app", as("bob")))
    denied(msg, reg:put_manifest("alice/app", "v2", body,
      support.OCI_MANIFEST, as("bob")))
    denied(msg, reg:set_tag("alice/app", "v3", helpers.sha256sum(body),
      as("bob")))
    -- a prefix is not a namespace
    denied("alice may not push alicefoo/app",
      reg:start_upload("alicefoo/app", as("alice")))
    denied("alice may not push alice", reg:start_upload("alice", as("alice")))
    -- nobody logged in: no pushes at all
    denied("anonymous may not push alice/app",
      reg:start_upload("alice/app", {}))
  end)

  it("lets everyone pull the public repositories, owners their own",
    function()
    local reg, store = new({ public = { "public/**" } })
    local body = stored(store, "public/base/img")
    stored(store, "alice/app")
    assert.equal(body, (reg:get_manifest("public/base/img", "v1", as("bob"))))
    assert.equal(body, (reg:get_manifest("public/base/img", "v1", {})))
    assert(reg:get_manifest("alice/app", "v1", as("alice")))
    denied("bob may not pull alice/app",
      reg:get_manifest("alice/app", "v1", as("bob")))
    denied("anonymous may not pull alice/app",
      reg:list_tags("alice/app", nil, {}))
    -- public is for pulling only
    denied("bob may not push public/base/img",
      reg:start_upload("public/base/img", as("bob")))
    -- the catalog itself is not refused (berth.auth filters its entries)
    assert.same({ "alice/app", "public/base/img" }, reg:catalog(nil, {}))
  end)

  it("limits deletes to owners and admins", function()
    local reg, store = new({ admins = { "root" } })
    local _, dgst = stored(store, "alice/app")
    denied("bob may not delete alice/app",
      reg:delete_manifest("alice/app", "v1", as("bob")))
    denied("bob may not delete alice/app",
      reg:delete_blob("alice/app", dgst, as("bob")))
    assert(reg:delete_manifest("alice/app", "v1", as("alice")))
    assert(reg:delete_manifest("alice/app", dgst, as("root")))
  end)

  it("lets admins do anything, and grants nothing a token did not",
    function()
    local reg, store = new({ admins = { "root" }, public = { "public/*" } })
    stored(store, "alice/app")
    assert(reg:get_manifest("alice/app", "v1", as("root")))
    assert(reg:start_upload("bob/x", as("root"))):cancel()
    -- a token that grants only pull: even the owner cannot push
    denied("alice may not push alice/app",
      reg:start_upload("alice/app", as("alice", { pull = true })))
    assert(reg:get_manifest("alice/app", "v1", as("alice", { pull = true })))
    denied("root may not push bob/x",
      reg:start_upload("bob/x", as("root", { pull = true })))
  end)

  it("can switch owner namespaces off", function()
    local reg = new({ owner_namespaces = false, admins = { "root" } })
    denied("alice may not push alice/app",
      reg:start_upload("alice/app", as("alice")))
    assert(reg:start_upload("alice/app", as("root"))):cancel()
  end)

  it("refuses a bad configuration", function()
    local store = support.new_store(finally)
    local reg, err = registry.new({ store = store, plugins = { {
      name = "repo-permissions", config = { admins = "root" } } } })
    assert.is_nil(reg)
    assert.matches("field 'admins' must be an array", err)
  end)
end)

describe("repo-permissions behind htpasswd logins (in process)", function()
  it("allows and refuses through the HTTP API, and filters the catalog",
    function()
    local auth = require "berth.auth"
    local http = require "berth.http"
    local client = require "05-http.client"
    local basic = require("09-auth.support").basic
    local reg, store = new({ public = { "public/**" } })
    stored(store, "alice/app")
    stored(store, "bob/app")
    stored(store, "public/base")
    local app = http.new{ registry = reg, auth = assert(auth.new{
      mode = "htpasswd", htpasswd = "spec/fixtures/auth/htpasswd" }) }
    local c = client.in_process(app)
    local function get(path, user, password)
      return c:request("GET", path, { headers = {
        Authorization = basic(user, password) } })
    end
    local function catalog(user, password)
      local r = get("/v2/_catalog", user, password)
      assert.equal(200, r.status)
      return require("cjson").decode(r.body).repositories
    end
    assert.equal(200, get("/v2/alice/app/manifests/v1", "alice",
      "alice-secret").status)
    local r = get("/v2/alice/app/manifests/v1", "bob", "bob-secret")
    assert.equal(403, r.status)
    assert.matches('"code":"DENIED"', r.body)
    assert.equal("bob may not pull alice/app",
      require("cjson").decode(r.body).errors[1].message)
    assert.equal(200, get("/v2/public/base/tags/list", "bob",
      "bob-secret").status)
    r = c:request("POST", "/v2/alice/app/blobs/uploads/", { headers = {
      Authorization = basic("bob", "bob-secret") } })
    assert.equal(403, r.status)
    r = c:request("POST", "/v2/bob/app/blobs/uploads/", { headers = {
      Authorization = basic("bob", "bob-secret") } })
    assert.equal(202, r.status)
    assert.same({ "bob/app", "public/base" }, catalog("bob", "bob-secret"))
    assert.same({ "alice/app", "public/base" },
      catalog("alice", "alice-secret"))
    assert.same({ "public/base" }, catalog("carol", "carol-secret"))
  end)
end)

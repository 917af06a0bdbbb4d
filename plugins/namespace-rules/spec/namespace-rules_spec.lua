local helpers = require "helpers"
local support = require "03-plugins.support"
local registry = require "berth.registry"

local function new(conf)
  local store = support.new_store(finally)
  local reg = assert(registry.new({ store = store, delete = true,
    plugins = { { name = "namespace-rules", config = conf } } }))
  return reg, store
end

local function assert_denied(msg, ok, err, code)
  assert.is_nil(ok)
  assert.equal(msg, err)
  assert.equal("DENIED", code)
end

describe("namespace-rules", function()
  it("allows pushes to allowed repositories", function()
    local reg, store = new({ allow = { "team/**" } })
    local up = assert(reg:start_upload("team/a/b"))
    assert(up:write("x"))
    assert(reg:commit_upload(up, helpers.sha256sum("x")))
    local body = support.image_in(store, "team/app")
    assert(reg:put_manifest("team/app", "v1", body, support.OCI_MANIFEST))
  end)

  it("refuses every kind of write outside the allowed namespaces",
      function()
    local reg, store = new({ allow = { "team/*" } })
    local msg = "repository other/app is outside the namespaces open to "
      .. "pushes"
    assert_denied(msg, reg:start_upload("other/app"))
    local body = support.image_in(store, "other/app")
    local dgst = helpers.sha256sum(body)
    assert_denied(msg, reg:put_manifest("other/app", "v1", body,
      support.OCI_MANIFEST))
    assert_denied(msg, reg:set_tag("other/app", "v1", dgst))
    assert_denied(msg, reg:delete_manifest("other/app", dgst))
    assert_denied(msg, reg:delete_manifest("other/app", "v1"))
    assert_denied(msg, reg:delete_blob("other/app", dgst))
    local src = assert(store:blob_put("team/x", "shared"))
    assert_denied(msg, reg:mount_blob("other/app", "team/x", src))
    -- "*" stays within one path segment
    assert_denied("repository team/a/b is outside the namespaces open to "
      .. "pushes", reg:start_upload("team/a/b"))
    assert.is_nil((store:tag_get("other/app", "v1")))
  end)

  it("refuses a commit into a denied repository", function()
    local reg, store = new({ deny = { "frozen/**" } })
    -- an upload begun before the rule: its commit is refused too
    local up = assert(store:blob_writer("frozen/app"))
    up.repo = "frozen/app"
    assert(up:write("late"))
    assert_denied("repository frozen/app is closed to pushes (rule "
      .. "frozen/**)", reg:commit_upload(up, helpers.sha256sum("late")))
    assert.is_nil((store:blob_stat(nil, helpers.sha256sum("late"))))
  end)

  it("lets deny win over allow, and allows all without an allow list",
      function()
    local reg = new({ allow = { "team/**" }, deny = { "team/secret*" } })
    assert_denied("repository team/secret-app is closed to pushes (rule "
      .. "team/secret*)", reg:start_upload("team/secret-app"))
    assert(reg:start_upload("team/app")):cancel()
    local reg2 = new({ deny = { "tmp/**" } })
    assert(reg2:start_upload("anything/goes")):cancel()
    assert_denied("repository tmp/x is closed to pushes (rule tmp/**)",
      reg2:start_upload("tmp/x"))
  end)

  it("does not affect reads", function()
    local reg, store = new({ allow = { "team/**" } })
    -- content that predates the rule
    local body = support.image_in(store, "legacy/app")
    local m = assert(require("berth.manifest").parse(body))
    assert(store:manifest_put("legacy/app", m, { tag = "v1" }))
    m:close()
    assert.equal(body, (reg:get_manifest("legacy/app", "v1")))
    assert.is_table(reg:head_manifest("legacy/app", "v1"))
    assert.same({ "v1" }, reg:list_tags("legacy/app"))
    assert.same({ "legacy/app" }, reg:catalog())
    local _, _, code = reg:get_manifest("other/none", "v1")
    assert.equal("MANIFEST_UNKNOWN", code)
  end)
end)

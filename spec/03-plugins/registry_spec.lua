local helpers = require "helpers"
local support = require "03-plugins.support"
local registry = require "berth.registry"

local function assert_fails(code, ok, err, got_code)
  assert.is_nil(ok)
  assert.is_string(err)
  assert.equal(code, got_code)
end

describe("registry configuration", function()
  local dir

  before_each(function()
    dir = helpers.tmpdir()
  end)

  after_each(function()
    helpers.rmrf(dir)
  end)

  local function conf_file(src)
    return support.write_tmp(dir, "berth.conf.lua", src)
  end

  it("loads a file that returns a table and fills defaults", function()
    local path = conf_file([[
      return {
        store = { root = "/var/lib/berth", fsync = "data" },
        plugins = {
          { name = "immutable-tags", config = { patterns = { "v*" } } },
          { name = "mine", path = "policies/mine.lua", sandbox = true },
        },
        handlers = { "handlers/chart.lua", "some.module" },
      }
    ]])
    local conf = assert(registry.load(path))
    assert.same({ root = "/var/lib/berth", fsync = "data" }, conf.store)
    assert.is_false(conf.delete)
    assert.equal("immutable-tags", conf.plugins[1].name)
    -- paths are relative to the file
    assert.equal(dir .. "/policies/mine.lua", conf.plugins[2].path)
    assert.same({ dir .. "/handlers/chart.lua", "some.module" },
      conf.handlers)
  end)

  it("loads a file that sets globals, with os.getenv", function()
    local path = conf_file([[
      store = { root = os.getenv("HOME") and "/tmp/x" or "/tmp/y" }
      delete = true
    ]])
    local conf = assert(registry.load(path))
    assert.is_true(conf.delete)
    assert.is_string(conf.store.root)
    assert.same({}, conf.plugins)
  end)

  it("names the file and the field in its errors", function()
    local path = conf_file("return { stroe = {} }")
    local ok, err, code = registry.load(path)
    assert.is_nil(ok)
    assert.equal(path .. ": unknown field 'stroe'", err)
    assert.equal("EINVAL", code)

    path = conf_file('return { store = { fsync = "sometimes" } }')
    ok, err, code = registry.load(path)
    assert.is_nil(ok)
    assert.equal(path .. ": field 'store.fsync' must be one of none, data, "
      .. "full, got sometimes", err)
    assert.equal("EINVAL", code)

    path = conf_file('return { delete = "yes" }')
    ok, err = registry.load(path)
    assert.is_nil(ok)
    assert.equal(path .. ": field 'delete' must be a boolean, got string", err)

    path = conf_file('return { plugins = { { config = {} } } }')
    ok, err = registry.load(path)
    assert.is_nil(ok)
    assert.equal(path .. ": field 'plugins[1].name' is required", err)

    path = conf_file("return 42")
    ok, err = registry.load(path)
    assert.is_nil(ok)
    assert.equal(path .. ": must return a table, got number", err)
  end)

  it("names the file in syntax and run-time errors", function()
    local path = conf_file("return {")
    local ok, err, code = registry.load(path)
    assert.is_nil(ok)
    assert.equal(path, err:sub(1, #path))
    assert.equal("EINVAL", code)

    -- the file gets a restricted environment: no io
    path = conf_file('local f = io.open("/etc/passwd")\nreturn {}')
    ok, err, code = registry.load(path)
    assert.is_nil(ok)
    assert.matches(path:gsub("%p", "%%%0") .. ":1: attempt to index global 'io'",
      err)
    assert.equal("EINVAL", code)

    ok, err, code = registry.load(dir .. "/missing.lua")
    assert.is_nil(ok)
    assert.matches("missing.lua", err)
    assert.equal("EINVAL", code)
  end)

  it("opens a working registry from a file", function()
    local root = dir .. "/store"
    local path = conf_file(([[
      return {
        store = { root = %q, fsync = "none" },
        delete = true,
        plugins = { { name = "namespace-rules", config = { allow = { "team/**" } } } },
      }
    ]]):format(root))
    local reg = assert(registry.open(path))
    finally(function() reg:close() end)
    assert.is_true(reg.delete)
    assert.same({ "namespace-rules" }, reg.hooks:names())
    local body = support.image_in(reg.store, "team/app")
    assert(reg:put_manifest("team/app", "v1", body, support.OCI_MANIFEST))
    local ok, err, code = reg:start_upload("other/app")
    assert.is_nil(ok)
    assert.equal("repository other/app is outside the namespaces open to "
      .. "pushes", err)
    assert.equal("DENIED", code)
  end)

  -- The command line opens the registry from the whole file (berth import
  -- --config): the server's sections must not stop it.
  it("opens from a file with the server's auth and http sections",
    function()
    local path = conf_file(([[
      return {
        store = { root = %q },
        auth = { mode = "none" },
        http = { secret = "shared with Distribution" },
      }
    ]]):format(dir .. "/store"))
    local conf = assert(registry.load(path))
    assert.equal("shared with Distribution", conf.http.secret)
    local reg = assert(registry.open(path))
    reg:close()
  end)

  it("refuses an http.secret that is empty or not a string", function()
    for _, v in ipairs({ '""', "42", "{}" }) do
      local conf, err, code = registry.load(conf_file(
        "return { http = { secret = " .. v .. " } }"))
      assert.is_nil(conf)
      assert.matches("http.secret", err, 1, true)
      assert.equal("EINVAL", code)
    end
    local conf, err = registry.load(conf_file(
      "return { http = { secrets = 'x' } }"))
    assert.is_nil(conf)
    assert.matches("unknown field 'http.secrets'", err, 1, true)
  end)

  describe("plugin configuration against schema.lua", function()
    local function new(plugins)
      return registry.new({ driver = "mem", plugins = plugins })
    end

    it("refuses an unknown field, naming plugin and field", function()
      local r, err, code = new({ { name = "immutable-tags",
        config = { patern = { "v*" } } } })
      assert.is_nil(r)
      assert.equal("registry: plugin immutable-tags: unknown field 'patern'",
        err)
      assert.equal("EINVAL", code)
    end)

    it("refuses a wrong type, naming plugin and field", function()
      local r, err, code = new({ { name = "immutable-tags",
        config = { patterns = "v*" } } })
      assert.is_nil(r)
      assert.equal("registry: plugin immutable-tags: field 'patterns' must "
        .. "be an array of strings, got string", err)
      assert.equal("EINVAL", code)
      r, err = new({ { name = "size-limits", config = { max_layers = 1.5 } } })
      assert.is_nil(r)
      assert.equal("registry: plugin size-limits: field 'max_layers' must "
        .. "be an integer, got number", err)
      r, err = new({ { name = "namespace-rules",
        config = { deny = { "ok", 7 } } } })
      assert.is_nil(r)
      assert.equal("registry: plugin namespace-rules: field 'deny[2]' must "
        .. "be a string, got number", err)
    end)

    it("fills defaults", function()
      local reg = assert(new({ { name = "size-limits" },
        { name = "immutable-tags", config = { exclude = { "latest" } } } }))
      local confs = {}
      for _, p in ipairs(reg.hooks.plugins) do confs[p.name] = p.conf end
      assert.same({ manifest_bytes = 4 * 1024 * 1024 }, confs["size-limits"])
      assert.same({ patterns = { "*" }, exclude = { "latest" } },
        confs["immutable-tags"])
      reg:close()
    end)

    it("refuses unknown and malformed plugin names", function()
      local r, err, code = new({ { name = "no-such-plugin" } })
      assert.is_nil(r)
      assert.equal("registry: plugin no-such-plugin: not found "
        .. "(plugins/no-such-plugin/handler.lua)", err)
      assert.equal("EINVAL", code)
      r, err = new({ { name = "../../etc" } })
      assert.is_nil(r)
      assert.equal("registry: plugin ../../etc: invalid plugin name", err)
    end)

    it("refuses unknown options and a missing root", function()
      local r, err, code = registry.new({ driver = "mem", deletes = true })
      assert.is_nil(r)
      assert.equal("registry: unknown field 'deletes'", err)
      assert.equal("EINVAL", code)
      r, err, code = registry.new({ plugins = {} })
      assert.is_nil(r)
      assert.equal("registry: store root is required", err)
      assert.equal("EINVAL", code)
      assert.has_error(function() registry.new("root") end,
        "options must be a table")
    end)
  end)
end)

describe("registry operations (fake store)", function()
  local log, store, rec, reg

  local function setup(opts)
    log = {}
    store = support.fake_store(log)
    opts = opts or {}
    rec = support.recorder("rec", 10, log, opts.behaviour)
    reg = assert(registry.new({ store = store, delete = opts.delete ~= false,
      plugins = { { name = "rec", handler = rec } } }))
  end

  -- Forget what was logged so far (the fake store and the recorder hold
  -- these tables, so they are emptied in place).
  local function reset()
    for i = #log, 1, -1 do log[i] = nil end
    for i = #rec.seen, 1, -1 do rec.seen[i] = nil end
  end

  local IDENTITY = { user = "alice" }
  local CTX = { identity = IDENTITY, actions = { "push" }, remote = "10.0.0.1",
    op = "ignored" }

  local function fake_image()
    return support.image({
      config = { mediaType = support.OCI_CONFIG,
        digest = "sha256:" .. string.rep("a", 64), size = 2 },
      layers = { { mediaType = support.OCI_LAYER,
        digest = "sha256:" .. string.rep("b", 64), size = 3 } },
    })
  end

  it("put_manifest by tag: hooks, then the store, then after-hooks",
      function()
    setup()
    local body = fake_image()
    local dgst, info = reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST, CTX)
    assert.equal(helpers.sha256sum(body), dgst)
    assert.same({ digest = dgst, size = #body,
      media_type = support.OCI_MANIFEST }, info)
    assert.same({ "store:tag_get", "rec:before_manifest_put",
      "rec:before_tag_set", "store:manifest_put", "rec:after_manifest_put",
      "rec:after_tag_set" }, log)
    local ctx = support.ctx_of(rec, "before_manifest_put")
    assert.equal("put_manifest", ctx.op)
    assert.equal("r", ctx.repo)
    assert.equal("v1", ctx.reference)
    assert.equal("v1", ctx.tag)
    assert.equal(dgst, ctx.digest)
    assert.is_nil(ctx.old_digest)
    assert.equal(support.OCI_MANIFEST, ctx.media_type)
    assert.equal(2, ctx.manifest.schemaVersion)
    assert.equal(2, #ctx.descriptors)
    assert.equal("layer", ctx.descriptors[2].kind)
    assert.equal(#body, ctx.size)
    assert.equal(IDENTITY, ctx.identity)
    assert.same({ "push" }, ctx.actions)
    assert.equal("10.0.0.1", ctx.remote)
    -- the store got the tag, to be written only if it still does not
    -- exist (what the hooks saw), and no expected digest
    local call = store.calls[2]
    assert.equal("manifest_put", call.name)
    assert.same({ tag = "v1", tag_expected = false }, call.args[3])
    -- a second push sees where the tag pointed
    reg:put_manifest("r", "v1", body, support.OCI_MANIFEST)
    assert.equal(dgst, support.ctx_of(rec, "before_tag_set").old_digest)
  end)

  it("put_manifest by digest: no tag hooks, the digest is checked",
      function()
    setup()
    local body = fake_image()
    local want = helpers.sha256sum(body)
    assert.equal(want, reg:put_manifest("r", want, body, nil))
    assert.same({ "before_manifest_put", "after_manifest_put" },
      support.phases(rec))
    local ctx = support.ctx_of(rec, "before_manifest_put")
    assert.is_nil(ctx.tag)
    assert.equal(want, ctx.digest)
    assert.same({ digest = want }, store.calls[1].args[3])

    reset()
    local other = "sha256:" .. string.rep("1", 64)
    local ok, err, code = reg:put_manifest("r", other, body, nil)
    assert.is_nil(ok)
    assert.equal("digest mismatch: expected " .. other .. " got " .. want, err)
    assert.equal("DIGEST_INVALID", code)
    assert_fails("DIGEST_INVALID", reg:put_manifest("r", "sha256:zz", body))
    assert_fails("TAG_INVALID", reg:put_manifest("r", "-bad", body))
    assert_fails("TAG_INVALID", reg:put_manifest("r", string.rep("t", 129),
      body))
    assert_fails("MANIFEST_INVALID", reg:put_manifest("r", "v1", "{",
      support.OCI_MANIFEST))
    assert.same({}, log)
  end)

  it("accepts a sha512 reference that the body hashes to", function()
    setup()
    local body = fake_image()
    local digest = require "berth.digest"
    local want = assert(digest.compute(body, "sha512"))
    assert.equal(want, reg:put_manifest("r", want, body))
    assert.equal(want, support.ctx_of(rec, "before_manifest_put").digest)
  end)

  it("calls no store write when a before-hook refuses", function()
    setup({ behaviour = { before_tag_set = function()
      return nil, "not today", "DENIED"
    end } })
    local ok, err, code = reg:put_manifest("r", "v1", fake_image())
    assert.is_nil(ok)
    assert.equal("not today", err)
    assert.equal("DENIED", code)
    assert.same({ "tag_get" }, support.store_calls(log))
    assert.same({ "before_manifest_put", "before_tag_set" },
      support.phases(rec))
  end)

  it("decides again when the tag moved after the hooks read it", function()
    local OTHER = "sha256:" .. string.rep("e", 64)
    local seen = {}
    setup({ behaviour = { before_tag_set = function(_, ctx)
      seen[#seen + 1] = ctx.old_digest or "none"
      if #seen == 1 then
        store.tags["r:" .. ctx.tag] = OTHER -- another request tags it
        return true
      end
      return nil, "v1 is taken", "DENIED"
    end } })
    local ok, err, code = reg:put_manifest("r", "v1", fake_image())
    assert.is_nil(ok)
    assert.equal("v1 is taken", err)
    assert.equal("DENIED", code)
    assert.same({ "none", OTHER }, seen)
    assert.equal(OTHER, store.tags["r:v1"])
    -- set_tag goes the same way
    seen = {}
    store.tags["r:v2"] = nil
    ok, err, code = reg:set_tag("r", "v2", OTHER)
    assert.is_nil(ok)
    assert.equal("v1 is taken", err)
    assert.equal("DENIED", code)
    assert.same({ "none", OTHER }, seen)
  end)

  it("asks the delete hooks again when the tag moved first", function()
    local OTHER = "sha256:" .. string.rep("e", 64)
    local seen = {}
    setup({ behaviour = { before_tag_delete = function(_, ctx)
      seen[#seen + 1] = ctx.old_digest or "none"
      if #seen == 1 then
        store.tags["r:v1"] = OTHER -- another request tags it meanwhile
        return true
      end
      return nil, "v1 is kept", "DENIED"
    end } })
    local ok, _, code = reg:delete_manifest("r", "v1")
    assert.is_nil(ok)
    assert.equal("DENIED", code)
    assert.same({ "none", OTHER }, seen)
    assert.equal(OTHER, store.tags["r:v1"])
  end)

  it("asks the manifest delete hooks again when its tags changed",
    function()
    local seen = {}
    setup({ behaviour = { before_manifest_delete = function(_, ctx)
      seen[#seen + 1] = table.concat(ctx.tags, ",")
      if #seen == 1 then
        store.tags["r:keep"] = ctx.digest -- tagged meanwhile
        return true
      end
      return nil, "it is tagged keep", "DENIED"
    end } })
    local dgst = assert(reg:put_manifest("r", "v1", fake_image()))
    local ok, _, code = reg:delete_manifest("r", dgst)
    assert.is_nil(ok)
    assert.equal("DENIED", code)
    assert.same({ "v1", "keep,v1" }, seen)
    assert.equal(dgst, store.tags["r:keep"])
  end)

  it("writes the tag when the hooks approve it again", function()
    local OTHER = "sha256:" .. string.rep("e", 64)
    local calls = 0
    setup({ behaviour = { before_tag_set = function()
      calls = calls + 1
      if calls == 1 then store.tags["r:v1"] = OTHER end
      return true
    end } })
    local body = fake_image()
    local dgst = assert(reg:put_manifest("r", "v1", body))
    assert.equal(2, calls)
    assert.equal(dgst, store.tags["r:v1"])
  end)

  it("runs the handler's validate before the hooks", function()
    log = {}
    store = support.fake_store(log)
    rec = support.recorder("rec", 1, log)
    local base = require("berth.handlers").new():find(support.OCI_MANIFEST)
    local got
    reg = assert(registry.new({ store = store,
      plugins = { { name = "rec", handler = rec } },
      handlers = { { media_type = support.OCI_MANIFEST, override = true,
        parse = base.parse, references = base.references,
        validate = function(m, st)
          got = st
          return nil, "validate says no", "MANIFEST_INVALID"
        end } } }))
    local ok, err, code = reg:put_manifest("r", "v1", fake_image())
    assert.is_nil(ok)
    assert.equal("validate says no", err)
    assert.equal("MANIFEST_INVALID", code)
    assert.equal(store, got)
    assert.same({}, rec.seen)
  end)

  it("reads a manifest through before_read", function()
    setup()
    local body, info = reg:get_manifest("r", "v1", CTX)
    assert.equal("{}", body)
    assert.equal("v1", info.digest)
    local dgst = "sha256:" .. string.rep("c", 64)
    assert.is_table(reg:head_manifest("r", dgst))
    assert.same({ "rec:before_read", "store:manifest_get", "rec:before_read",
      "store:manifest_head" }, log)
    assert.equal("get_manifest", rec.seen[1].ctx.op)
    assert.equal("v1", rec.seen[1].ctx.tag)
    assert.equal(IDENTITY, rec.seen[1].ctx.identity)
    assert.equal("head_manifest", rec.seen[2].ctx.op)
    assert.equal(dgst, rec.seen[2].ctx.digest)
    assert.is_nil(rec.seen[2].ctx.tag)
  end)

  it("refused reads never reach the store", function()
    setup({ behaviour = { before_read = function(self, ctx)
      return nil, "no reading " .. ctx.op, "UNAUTHORIZED"
    end } })
    local dgst = "sha256:" .. string.rep("c", 64)
    local calls = {
      { "get_manifest", function() return reg:get_manifest("r", "v1") end },
      { "head_manifest", function() return reg:head_manifest("r", "v1") end },
      { "stat_blob", function() return reg:stat_blob("r", dgst) end },
      { "blob_path", function() return reg:blob_path("r", dgst) end },
      { "read_blob", function() return reg:blob_reader("r", dgst, 0) end },
      { "list_tags", function() return reg:list_tags("r", { n = 5 }) end },
      { "list_manifests", function() return reg:list_manifests("r") end },
      { "catalog", function() return reg:catalog({ n = 5 }) end },
      { "referrers", function() return reg:referrers("r", dgst) end },
      { "upload_status", function()
        return reg:open_upload("r", "u1", "r") end },
    }
    for _, c in ipairs(calls) do
      local ok, err, code = c[2]()
      assert.is_nil(ok)
      assert.equal("no reading " .. c[1], err)
      assert.equal("UNAUTHORIZED", code)
    end
    assert.same({}, support.store_calls(log))
  end)

  it("passes reads through with the right ctx", function()
    setup()
    local dgst = "sha256:" .. string.rep("c", 64)
    assert.equal(42, reg:stat_blob("r", dgst))
    assert.is_string(reg:blob_path("r", dgst))
    assert.is_table(reg:blob_reader("r", dgst, 10))
    assert.same({ "a", "b" }, reg:list_tags("r", { n = 5, last = "x" }))
    assert.same({}, reg:list_manifests("r"))
    assert.same({ "r" }, reg:catalog({ n = 5 }))
    assert.is_string(reg:referrers("r", dgst, "application/x"))
    local ops = {}
    for i, s in ipairs(rec.seen) do ops[i] = s.ctx.op end
    assert.same({ "stat_blob", "blob_path", "read_blob", "list_tags",
      "list_manifests", "catalog", "referrers" }, ops)
    assert.equal(dgst, rec.seen[1].ctx.digest)
    assert.is_nil(rec.seen[6].ctx.repo)
    assert.equal("application/x", rec.seen[7].ctx.artifact_type)
    assert.same({ "blob_stat", "blob_path", "blob_reader", "tag_list",
      "manifest_list", "catalog", "referrers" }, support.store_calls(log))
    assert.same({ "r", { n = 5, last = "x" } }, store.calls[4].args)
    assert.same({ "r", dgst, "application/x" }, store.calls[7].args)
  end)

  it("delete_manifest by digest: the manifest and its tags", function()
    setup()
    local body = fake_image()
    local dgst = assert(reg:put_manifest("r", "v1", body))
    assert(reg:put_manifest("r", "v2", body))
    reset()
    assert.is_true(reg:delete_manifest("r", dgst, CTX))
    assert.same({ "store:tag_lookup", "rec:before_manifest_delete",
      "store:manifest_delete", "rec:after_manifest_delete" }, log)
    local ctx = support.ctx_of(rec, "before_manifest_delete")
    assert.equal("delete_manifest", ctx.op)
    assert.equal(dgst, ctx.digest)
    assert.same({ "v1", "v2" }, ctx.tags)
    assert.equal(IDENTITY, ctx.identity)
  end)

  it("delete_manifest by tag: only the tag", function()
    setup()
    local dgst = assert(reg:put_manifest("r", "v1", fake_image()))
    reset()
    assert.is_true(reg:delete_manifest("r", "v1"))
    assert.same({ "store:tag_get", "rec:before_tag_delete",
      "store:tag_delete_if", "rec:after_tag_delete" }, log)
    local ctx = support.ctx_of(rec, "before_tag_delete")
    assert.equal("delete_tag", ctx.op)
    assert.equal("v1", ctx.tag)
    assert.equal(dgst, ctx.old_digest)
    assert_fails("TAG_INVALID", reg:delete_manifest("r", ".bad"))
    assert_fails("DIGEST_INVALID", reg:delete_manifest("r", "sha256:1"))
  end)

  it("answers UNSUPPORTED for deletes when they are off", function()
    setup({ delete = false })
    local dgst = "sha256:" .. string.rep("c", 64)
    local ok, err, code = reg:delete_manifest("r", dgst)
    assert.is_nil(ok)
    assert.equal("deletes are disabled in this registry", err)
    assert.equal("UNSUPPORTED", code)
    assert_fails("UNSUPPORTED", reg:delete_manifest("r", "v1"))
    assert_fails("UNSUPPORTED", reg:delete_blob("r", dgst))
    assert.same({}, log)
    -- the default is off
    local r2 = assert(registry.new({ store = store }))
    assert_fails("UNSUPPORTED", r2:delete_blob("r", dgst))
  end)

  it("delete_blob runs its hooks", function()
    setup()
    local dgst = "sha256:" .. string.rep("c", 64)
    assert.is_true(reg:delete_blob("r", dgst, CTX))
    assert.same({ "rec:before_blob_delete", "store:blob_delete",
      "rec:after_blob_delete" }, log)
    assert.equal(dgst, support.ctx_of(rec, "before_blob_delete").digest)
  end)

  it("set_tag runs the tag hooks", function()
    setup()
    local dgst = "sha256:" .. string.rep("c", 64)
    assert.is_true(reg:set_tag("r", "v1", dgst))
    assert.same({ "store:tag_get", "rec:before_tag_set", "store:tag_set_if",
      "rec:after_tag_set" }, log)
    local ctx = support.ctx_of(rec, "before_tag_set")
    assert.equal("set_tag", ctx.op)
    assert.equal(dgst, ctx.digest)
  end)

  it("uploads: start, continue and commit", function()
    setup()
    local up = assert(reg:start_upload("r", CTX))
    assert.equal("r", up.repo)
    assert(up:write("12345"))
    local dgst = helpers.sha256sum("12345")
    assert.is_true(reg:commit_upload(up, dgst, 5, CTX))
    local again = assert(reg:open_upload("r", "u7", "w"))
    assert.equal("r", again.repo)
    assert.same({ "rec:before_blob_upload", "store:blob_writer",
      "upload:write", "rec:before_blob_commit", "upload:commit",
      "rec:after_blob_commit", "rec:before_blob_upload",
      "store:upload_open" }, log)
    local ctx = support.ctx_of(rec, "before_blob_commit")
    assert.equal("commit_upload", ctx.op)
    assert.equal("r", ctx.repo)
    assert.equal(dgst, ctx.digest)
    assert.equal(5, ctx.size)
    assert.equal(5, ctx.declared_size)
    assert.equal("upload-1", ctx.upload_id)
    assert.equal(IDENTITY, ctx.identity)
    assert.equal("open_upload", support.ctx_of(rec, "before_blob_upload").op)
  end)

  it("a refused commit cancels the upload", function()
    setup({ behaviour = { before_blob_commit = function(self, ctx)
      return nil, "too big: " .. ctx.size
    end } })
    local up = assert(reg:open_upload("r", "u7", "w"))
    local ok, err, code = reg:commit_upload(up, support.MISSING)
    assert.is_nil(ok)
    assert.equal("too big: 7", err)
    assert.equal("DENIED", code)
    assert.is_true(up.cancelled)
    assert.is_nil(up.committed)
  end)

  it("refuses to commit an upload without a repository", function()
    setup()
    local up = support.fake_upload({}, nil, "x")
    assert.has_error(function() reg:commit_upload(up, support.MISSING) end,
      "upload has no repository (open it through the registry)")
    assert.is_true(reg:commit_upload(up, support.MISSING, nil,
      { repo = "r" }))
  end)

  it("mount_blob reads the source and commits into the target", function()
    setup()
    local dgst = "sha256:" .. string.rep("c", 64)
    assert.is_true(reg:mount_blob("to", "from", dgst, CTX))
    assert.same({ "rec:before_read", "store:blob_stat",
      "rec:before_blob_commit", "store:blob_mount", "rec:after_blob_commit" },
      log)
    assert.equal("from", rec.seen[1].ctx.repo)
    assert.equal("mount_blob", rec.seen[1].ctx.op)
    local ctx = support.ctx_of(rec, "before_blob_commit")
    assert.equal("to", ctx.repo)
    assert.equal("from", ctx.from)
    assert.equal(42, ctx.size)
  end)
end)

describe("registry operations (real store)", function()
  it("pushes, reads, lists and deletes through every hook", function()
    local store = support.new_store(finally)
    local log = {}
    local rec = support.recorder("rec", 1, log)
    local reg = assert(registry.new({ store = store, delete = true,
      plugins = { { name = "rec", handler = rec } } }))
    local up = assert(reg:start_upload("app"))
    assert(up:write("layer data"))
    local layer = helpers.sha256sum("layer data")
    assert(reg:commit_upload(up, layer))
    assert.equal(10, reg:stat_blob("app", layer))
    local cfg = support.push_blobs(store, "app", { "{}" },
      support.OCI_CONFIG)[1]
    local body = support.image({ config = cfg, layers = { {
      mediaType = support.OCI_LAYER, digest = layer, size = 10 } } })
    local dgst = assert(reg:put_manifest("app", "v1", body,
      support.OCI_MANIFEST))
    assert.equal(body, (reg:get_manifest("app", "v1")))
    assert.equal(dgst, reg:head_manifest("app", dgst).digest)
    assert.same({ "v1" }, reg:list_tags("app"))
    assert.same({ "app" }, reg:catalog())
    assert.is_true(reg:delete_manifest("app", "v1"))
    assert.same({}, reg:list_tags("app") or {})
    assert.is_true(reg:delete_manifest("app", dgst))
    assert_fails("MANIFEST_UNKNOWN", reg:head_manifest("app", dgst))
    assert.is_true(reg:delete_blob("app", layer))
    assert_fails("BLOB_UNKNOWN", reg:stat_blob("app", layer))
    assert.same({ "before_blob_upload", "before_blob_commit",
      "after_blob_commit", "before_read", "before_manifest_put",
      "before_tag_set", "after_manifest_put", "after_tag_set", "before_read",
      "before_read", "before_read", "before_read", "before_tag_delete",
      "after_tag_delete", "before_read", "before_manifest_delete",
      "after_manifest_delete", "before_read", "before_blob_delete",
      "after_blob_delete", "before_read" }, support.phases(rec))
    -- store failures come back unchanged
    assert_fails("MANIFEST_UNKNOWN", reg:delete_manifest("app", "v9"))
    assert_fails("MANIFEST_BLOB_UNKNOWN", reg:put_manifest("app", "v2",
      support.image({ config = cfg, layers = { { mediaType =
        support.OCI_LAYER, digest = support.MISSING, size = 1 } } })))
  end)

  it("closes a store it opened itself", function()
    local root = helpers.tmpdir()
    finally(function() helpers.rmrf(root) end)
    local reg = assert(registry.new({ root = root, fsync = "none" }))
    local store = reg.store
    assert.is_true(reg:close())
    assert.has_error(function() store:blob_stat(nil, support.MISSING) end,
      "store is closed")
  end)
end)

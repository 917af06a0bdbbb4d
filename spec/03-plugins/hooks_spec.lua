local helpers = require "helpers"
local support = require "03-plugins.support"
local hooks = require "berth.hooks"
local registry = require "berth.registry"
local one_line = require("berth.errors").one_line

local function plugin(priority, phases)
  phases.PRIORITY = priority
  phases.VERSION = "0.1.0"
  return phases
end

describe("hook chain", function()
  it("runs plugins by PRIORITY, highest first, ties by name", function()
    local order = {}
    local function phase(name)
      return spy.new(function(self, ctx, conf)
        order[#order + 1] = name
        return true
      end)
    end
    local a, b, c, d = phase("a"), phase("b"), phase("c"), phase("d")
    local chain = hooks.new({
      { name = "c", handler = plugin(10, { before_manifest_put = c }) },
      { name = "a", handler = plugin(10, { before_manifest_put = a }) },
      { name = "d", handler = plugin(-5, { before_manifest_put = d }) },
      { name = "b", handler = plugin(20, { before_manifest_put = b }) },
      { name = "e", handler = plugin(99, { after_manifest_put = phase("e") }) },
    })
    local ctx = { op = "put_manifest", repo = "r" }
    assert.is_true(chain:run("before_manifest_put", ctx))
    assert.same({ "b", "a", "c", "d" }, order)
    assert.spy(a).was.called(1)
    assert.spy(d).was.called_with(match._, ctx, match.is_table())
    assert.same({ "e", "b", "a", "c", "d" }, chain:names())
  end)

  it("passes self, ctx and the plugin's conf", function()
    local h
    local s = spy.new(function() return true end)
    h = plugin(1, { before_read = s })
    local conf = { x = 1 }
    local chain = hooks.new({ { name = "p", handler = h, conf = conf } })
    local ctx = { op = "get_manifest" }
    chain:run("before_read", ctx)
    assert.spy(s).was.called_with(h, ctx, conf)
  end)

  it("stops at the first refusal, with its message and code", function()
    local later = spy.new(function() return true end)
    local chain = hooks.new({
      { name = "first", handler = plugin(10, { before_tag_set = function()
        return nil, "tag is frozen", "TAG_INVALID"
      end }) },
      { name = "later", handler = plugin(5, { before_tag_set = later }) },
    })
    local ok, err, code, who = chain:run("before_tag_set", { tag = "v1" })
    assert.is_nil(ok)
    assert.equal("tag is frozen", err)
    assert.equal("TAG_INVALID", code)
    assert.equal("first", who)
    assert.spy(later).was_not.called()
  end)

  it("answers DENIED when a refusal gives no code or an unknown one",
      function()
    local chain = hooks.new({
      { name = "p", handler = plugin(1, {
        before_read = function() return nil, "no" end,
        before_blob_upload = function() return false end,
        before_blob_commit = function() return nil, "bad", "NOT_A_CODE" end,
      }) },
    })
    local ok, err, code = chain:run("before_read", {})
    assert.is_nil(ok)
    assert.equal("no", err)
    assert.equal("DENIED", code)
    ok, err, code = chain:run("before_blob_upload", {})
    assert.is_nil(ok)
    assert.equal("denied by policy p", err)
    assert.equal("DENIED", code)
    ok, err, code = chain:run("before_blob_commit", {})
    assert.is_nil(ok)
    assert.equal("bad", err)
    assert.equal("DENIED", code)
  end)

  it("lets a method that returns nothing pass", function()
    local chain = hooks.new({
      { name = "p", handler = plugin(1, { before_read = function() end }) },
    })
    assert.is_true(chain:run("before_read", {}))
  end)

  it("fails closed when a plugin raises", function()
    local later = spy.new(function() return true end)
    local chain = hooks.new({
      { name = "boom", handler = plugin(10, { before_manifest_put = function()
        error("attempt to index a nil value")
      end }) },
      { name = "later", handler = plugin(1, { before_manifest_put = later }) },
    })
    local ok, err, code, who, detail = chain:run("before_manifest_put", {})
    assert.is_nil(ok)
    assert.equal("policy boom failed", err)
    assert.equal("DENIED", code)
    assert.equal("boom", who)
    -- where it was raised is for the log only
    assert.matches("^policy boom failed: .*hooks_spec%.lua:%d+: attempt to "
      .. "index a nil value\nstack traceback:\n", detail)
    assert.spy(later).was_not.called()
  end)

  it("runs every after-hook and collects the failures", function()
    local last = spy.new(function() return true end)
    local chain = hooks.new({
      { name = "a", handler = plugin(3, { after_tag_set = function()
        error("disk full", 0)
      end }) },
      { name = "b", handler = plugin(2, { after_tag_set = function()
        return nil, "webhook unreachable"
      end }) },
      { name = "c", handler = plugin(1, { after_tag_set = last }) },
    })
    local ok, errs = chain:run("after_tag_set", {})
    assert.is_true(ok)
    assert.equal(2, #errs)
    assert.matches("^policy a failed: disk full\nstack traceback:\n", errs[1])
    assert.equal("b: webhook unreachable", errs[2])
    assert.spy(last).was.called(1)
    ok, errs = hooks.new({}):run("after_tag_set", {})
    assert.is_true(ok)
    assert.is_nil(errs)
  end)

  it("refuses misuse", function()
    local chain = hooks.new({})
    assert.has_error(function() chain:run("before_lunch", {}) end,
      "unknown hook phase: before_lunch")
    assert.has_error(function() chain:run("before_read") end,
      "ctx must be a table")
    assert.has_error(function()
      hooks.new({ { name = "p", handler = { PRIORITY = "high" } } })
    end, "plugin p: PRIORITY must be a number")
    assert.has_error(function()
      hooks.new({ { name = "p", handler = plugin(1, {
        before_lunch = function() end }) } })
    end, "plugin p: unknown phase before_lunch")
    assert.has_error(function()
      hooks.new({ { name = "p", handler = plugin(1, {}) },
                  { name = "p", handler = plugin(2, {}) } })
    end, "plugin p is configured twice")
  end)
end)

describe("hooks through the registry, real store", function()
  local reg, store

  local function with(plugins)
    store = support.new_store(finally)
    reg = assert(registry.new({ store = store, plugins = plugins,
      delete = true }))
    return reg
  end

  local function raising(phase)
    return { name = "boom", handler = plugin(1, { [phase] = function()
      error("boom in " .. phase, 0)
    end }) }
  end

  it("a raising before_manifest_put leaves no manifest and no tag", function()
    with({ raising("before_manifest_put") })
    local body = support.image_in(store, "r")
    local ok, err, code = reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("policy boom failed", err)
    assert.equal("DENIED", code)
    assert.same({}, store:manifest_list("r") or {})
    local d, _, c2 = store:tag_get("r", "v1")
    assert.is_nil(d)
    assert.equal("MANIFEST_UNKNOWN", c2)
    local _, _, c3 = store:manifest_head("r", helpers.sha256sum(body))
    assert.equal("MANIFEST_UNKNOWN", c3)
  end)

  it("a raising before_tag_set stores neither the tag nor the manifest",
      function()
    with({ raising("before_tag_set") })
    local body = support.image_in(store, "r")
    local ok, err, code = reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("policy boom failed", err)
    assert.equal("DENIED", code)
    local _, _, c3 = store:manifest_head("r", helpers.sha256sum(body))
    assert.equal("MANIFEST_UNKNOWN", c3)
    assert.is_nil((store:tag_get("r", "v1")))
  end)

  it("a raising before_blob_commit leaves no blob", function()
    with({ raising("before_blob_commit") })
    local up = assert(reg:start_upload("r"))
    assert(up:write("some bytes"))
    local dgst = helpers.sha256sum("some bytes")
    local ok, err, code = reg:commit_upload(up, dgst)
    assert.is_nil(ok)
    assert.equal("policy boom failed", err)
    assert.equal("DENIED", code)
    local size, _, c2 = store:blob_stat("r", dgst)
    assert.is_nil(size)
    assert.equal("BLOB_UNKNOWN", c2)
    assert.is_nil((store:blob_stat(nil, dgst)))
  end)

  it("a raising before_manifest_delete keeps the manifest and its tags",
      function()
    with({ raising("before_manifest_delete") })
    local body = support.image_in(store, "r")
    local dgst = assert(reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST))
    local ok, err, code = reg:delete_manifest("r", dgst)
    assert.is_nil(ok)
    assert.equal("policy boom failed", err)
    assert.equal("DENIED", code)
    assert.equal(dgst, store:tag_get("r", "v1"))
    assert.equal(body, (store:manifest_get("r", dgst)))
  end)

  it("a raising policy's error and trace go to the log, not to the caller",
      function()
    local dir = helpers.tmpdir()
    local path = support.write_tmp(dir, "evil.lua", [[
return { PRIORITY = 1, before_blob_upload = function(self, ctx)
  local t = nil
  return t.field
end }
]])
    local logged = {}
    for _, sandbox in ipairs({ false, true }) do
      store = support.new_store(finally)
      reg = assert(registry.new({ store = store,
        log = function(msg) logged[#logged + 1] = msg end,
        plugins = { { name = "evil", path = path, sandbox = sandbox } } }))
      local up, err, code = reg:start_upload("r")
      assert.is_nil(up)
      assert.equal("policy evil failed", err)
      assert.equal("DENIED", code)
      assert.equal(1, #logged)
      local head = "before_blob_upload: policy evil failed: " .. path
        .. ":3: attempt to index local 't' (a nil value)\\nstack traceback:"
      assert.equal(head, logged[1]:sub(1, #head))
      assert.is_nil(logged[1]:find("\n", 1, true))
      logged = {}
    end
    helpers.rmrf(dir)
  end)

  it("after-hook failures do not fail the operation", function()
    local logged = {}
    store = support.new_store(finally)
    reg = assert(registry.new({ store = store,
      log = function(msg) logged[#logged + 1] = msg end,
      plugins = {
        { name = "notify", handler = plugin(1, {
          after_manifest_put = function() error("webhook down", 0) end,
          after_tag_set = function() return nil, "audit log full" end,
        }) },
      } }))
    local body = support.image_in(store, "r")
    local dgst, info = reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST)
    assert.equal(helpers.sha256sum(body), dgst)
    assert.equal(2, #info.warnings)
    assert.matches("^policy notify failed: webhook down\nstack traceback:",
      info.warnings[1])
    assert.equal("notify: audit log full", info.warnings[2])
    -- the log takes one line (errors.h)
    assert.equal(one_line("after_manifest_put: " .. info.warnings[1]),
      logged[1])
    assert.equal("after_tag_set: notify: audit log full", logged[2])
    assert.equal(dgst, store:tag_get("r", "v1"))
  end)
end)

describe("sandbox", function()
  local dir

  before_each(function()
    dir = helpers.tmpdir()
  end)

  after_each(function()
    helpers.rmrf(dir)
  end)

  local function load(src, limit)
    return hooks.load_sandboxed(support.write_tmp(dir, "p.lua", src), limit)
  end

  it("gives only the allow-listed environment", function()
    local h = assert(load([[
      local env = {}
      env.string, env.table, env.math = string, table, math
      env.pairs, env.ipairs, env.type = pairs, ipairs, type
      env.tostring, env.tonumber, env.select = tostring, tonumber, select
      env.error, env.pcall, env.next, env.unpack = error, pcall, next, unpack
      env.os, env.io, env.require, env.debug = os, io, require, debug
      env.load, env.loadstring, env.dofile = load, loadstring, dofile
      env.setfenv, env.getfenv = setfenv, getfenv
      env.setmetatable, env.getmetatable = setmetatable, getmetatable
      env.rawset, env.rawget, env.collectgarbage = rawset, rawget,
        collectgarbage
      env.jit, env.package, env.coroutine = jit, package, coroutine
      env.xpcall, env.print, env._G = xpcall, print, _G
      local present = {}
      for k in pairs(env) do present[#present + 1] = k end
      table.sort(present)
      return { PRIORITY = 1, present = present, dump = string.dump }
    ]]))
    assert.same({ "error", "ipairs", "math", "next", "pairs", "pcall",
      "select", "string", "table", "tonumber", "tostring", "type", "unpack" },
      h.present)
    assert.is_nil(h.dump)
  end)

  it("gives the allow-listed string table to method calls too", function()
    -- a string's methods come from the one string metatable of the process
    local h = assert(load([[
      local at_load = ("").dump
      return { PRIORITY = 1, at_load = at_load,
        before_read = function(self, ctx)
          ctx.seen = ("").dump
          ctx.rep = ("ab"):rep(2)
          return ctx.seen == nil, "reached string.dump"
        end }
    ]]))
    assert.is_nil(h.at_load)
    local chain = hooks.new({ { name = "p", handler = h, sandbox = true } })
    local ctx = {}
    assert.is_true(chain:run("before_read", ctx))
    -- outside the sandbox strings have every method again
    assert.equal(string.dump, ("").dump)
    assert.equal("abab", ("ab"):rep(2))
  end)

  it("fails closed when a sandboxed method reaches for io", function()
    local h = assert(load([[
      return { PRIORITY = 1, before_read = function(self, ctx)
        return io.open("/etc/passwd")
      end }
    ]]))
    local chain = hooks.new({ { name = "nosy", handler = h, sandbox = true } })
    local ok, err, code, _, detail = chain:run("before_read", {})
    assert.is_nil(ok)
    assert.equal("policy nosy failed", err)
    assert.matches("^policy nosy failed: .*p%.lua:2: attempt to index global "
      .. "'io'", detail)
    assert.equal("DENIED", code)
  end)

  it("stops an endless loop with the instruction limit", function()
    local h = assert(load([[
      return { PRIORITY = 1, before_manifest_put = function()
        local i = 0
        while true do i = i + 1 end
      end }
    ]]))
    local chain = hooks.new({ { name = "loop", handler = h, sandbox = true,
      limit = 100000 } })
    local t0 = os.clock()
    local ok, err, code, _, detail = chain:run("before_manifest_put", {})
    assert.is_nil(ok)
    assert.equal("policy loop failed", err)
    assert.equal("policy loop failed: instruction limit exceeded", detail)
    assert.equal("DENIED", code)
    assert.is_true(os.clock() - t0 < 5)
  end)

  it("does not let pcall swallow the limit", function()
    local h = assert(load([[
      return { PRIORITY = 1, before_read = function()
        while true do
          pcall(function() while true do end end)
        end
      end }
    ]]))
    local chain = hooks.new({ { name = "sly", handler = h, sandbox = true,
      limit = 100000 } })
    local ok, err, code, _, detail = chain:run("before_read", {})
    assert.is_nil(ok)
    assert.equal("policy sly failed", err)
    assert.equal("policy sly failed: instruction limit exceeded", detail)
    assert.equal("DENIED", code)
  end)

  it("limits the file's own top level too, and restores the old hook",
      function()
    local before = { debug.gethook() }
    local h, err = load("while true do end", 100000)
    assert.is_nil(h)
    assert.matches("instruction limit exceeded", err)
    assert.same(before, { debug.gethook() })
  end)

  it("refuses bytecode", function()
    local path = dir .. "/p.luac"
    helpers.write_file(path, string.dump(function() return {} end))
    local h, err = hooks.load_sandboxed(path)
    assert.is_nil(h)
    assert.matches("binary chunks are not loaded", err)
  end)

  it("keeps a plugin's changes to its libraries and ctx to itself",
      function()
    local h = assert(load([[
      string.upper = nil
      return { PRIORITY = 10, before_tag_set = function(self, ctx)
        ctx.tag = "rewritten"
        return true
      end }
    ]]))
    local saw
    local chain = hooks.new({
      { name = "meddler", handler = h, sandbox = true },
      { name = "checker", handler = plugin(1, { before_tag_set =
        function(self, ctx) saw = ctx.tag; return true end }) },
    })
    assert.is_true(chain:run("before_tag_set", { tag = "v1" }))
    assert.equal("v1", saw)
    assert.is_function(string.upper)
  end)

  it("runs an allowed plugin normally", function()
    local h = assert(load([[
      return { PRIORITY = 1, before_tag_set = function(self, ctx, conf)
        if ctx.tag:find(conf.pattern) then
          return nil, "no " .. ctx.tag, "DENIED"
        end
        return true
      end }
    ]]))
    local chain = hooks.new({ { name = "p", handler = h, sandbox = true,
      conf = { pattern = "^tmp" } } })
    assert.is_true(chain:run("before_tag_set", { tag = "v1" }))
    local ok, err, code = chain:run("before_tag_set", { tag = "tmp-1" })
    assert.is_nil(ok)
    assert.equal("no tmp-1", err)
    assert.equal("DENIED", code)
  end)
end)

local config = require "berth.config"
local glob = require "berth.glob"

describe("config.validate", function()
  local schema = { name = "demo", fields = {
    names = { type = "array", of = "string", default = { "*" } },
    limit = { type = "integer", min = 1 },
    mode = { type = "string", one_of = { "a", "b" }, default = "a" },
    on = "boolean",
    nested = { type = "record", fields = { x = { type = "number",
      required = true } } },
  } }

  it("fills defaults without sharing them", function()
    local a = assert(config.validate(schema, nil))
    assert.same({ names = { "*" }, mode = "a" }, a)
    a.names[1] = "changed"
    assert.same({ "*" }, config.validate(schema, {}).names)
  end)

  it("keeps valid values", function()
    assert.same({ names = { "x", "y" }, limit = 3, mode = "b", on = false,
      nested = { x = 1.5 } }, config.validate(schema, { names = { "x", "y" },
      limit = 3, mode = "b", on = false, nested = { x = 1.5 } }))
  end)

  it("names the owner and the field in errors", function()
    local cases = {
      { { nmes = {} }, "unknown field 'nmes'" },
      { { names = "x" }, "field 'names' must be an array of strings, got string" },
      { { names = { a = "x" } }, "field 'names' must be an array of strings, got table" },
      { { names = { "x", false } }, "field 'names[2]' must be a string, got boolean" },
      { { limit = 0 }, "field 'limit' must be at least 1" },
      { { limit = 2.5 }, "field 'limit' must be an integer, got number" },
      { { mode = "c" }, "field 'mode' must be one of a, b, got c" },
      { { nested = {} }, "field 'nested.x' is required" },
      { { nested = { x = 1, y = 2 } }, "unknown field 'nested.y'" },
    }
    for _, c in ipairs(cases) do
      local ok, err = config.validate(schema, c[1], "plugin demo")
      assert.is_nil(ok)
      assert.equal("plugin demo: " .. c[2], err)
    end
    local ok, err = config.validate(schema, "x")
    assert.is_nil(ok)
    assert.equal("demo: configuration must be a table, got string", err)
  end)

  it("raises on a broken schema", function()
    assert.has_error(function()
      config.validate({ name = "bad", fields = { x = "strnig" } }, {})
    end, "schema bad: field 'x' has unknown type strnig")
  end)

  it("accepts every shipped plugin schema with an empty configuration",
      function()
    for _, name in ipairs({ "immutable-tags", "namespace-rules",
        "reject-unknown-mediatype", "size-limits" }) do
      local s = dofile("plugins/" .. name .. "/schema.lua")
      assert.equal(name, s.name)
      assert.is_table(config.validate(s, {}))
    end
  end)
end)

describe("glob", function()
  it("matches * within a segment, ** across, ? one character", function()
    assert.is_true(glob.match("v1.2", "v*"))
    assert.is_true(glob.match("release-7", "release-?"))
    assert.is_false(glob.match("release-77", "release-?"))
    assert.is_false(glob.match("team/a/b", "team/*"))
    assert.is_true(glob.match("team/a/b", "team/**"))
    assert.is_false(glob.match("xteam/a", "team/**"))
  end)

  it("treats everything else literally", function()
    assert.is_true(glob.match("a.b-c%d", "a.b-c%d"))
    assert.is_false(glob.match("axb", "a.b"))
    assert.is_false(glob.match("a", "a-"))
    assert.equal("^a%.b%-[^/]*$", glob.compile("a.b-*"))
  end)

  it("match_any answers the first glob that matches", function()
    assert.equal("b*", glob.match_any("beta", { "a*", "b*", "*" }))
    assert.is_nil(glob.match_any("zeta", { "a*" }))
    assert.is_nil(glob.match_any("zeta", nil))
  end)
end)

-- berth.json: the one JSON encoder of what berth writes, "/" as "/"
-- (Distribution's way; lua-cjson writes "\/").
local cjson = require "cjson.safe"
local json = require "berth.json"

describe("berth.json", function()
  it("writes / unescaped, in strings, arrays and documents", function()
    assert.equal('"dock/arm:v1"', json.string("dock/arm:v1"))
    assert.equal('"a/b \\"c\\""', json.string('a/b "c"'))
    assert.equal('["a/b","c/d"]', json.string_array({ "a/b", "c/d" }))
    assert.equal('["a/b","x\\ny"]', json.string_array({ "a/b", "x\ny" }))
    assert.equal("[]", json.string_array({}))
    assert.equal('{"errors":[{"message":"dock/arm:v1"}]}',
      json.encode({ errors = { { message = "dock/arm:v1" } } }))
  end)

  it("keeps a backslash before a slash", function()
    assert.equal('"\\\\/"', json.encode("\\/"))
    assert.equal('"\\\\\\\\/"', json.encode("\\\\/"))
  end)

  it("reads back as what it wrote, with no \\/ in it", function()
    local alphabet = { "/", "\\", '"', "a", "\n", "\0", "\127", "é" }
    for _ = 1, 500 do
      local parts = {}
      for i = 1, math.random(0, 12) do
        parts[i] = alphabet[math.random(#alphabet)]
      end
      local s = table.concat(parts)
      for _, out in ipairs({ json.encode(s), json.string(s),
        json.string_array({ s }):sub(2, -2) }) do
        assert.equal(s, cjson.decode(out))
        -- once the escaped backslashes are gone, no backslash is left
        -- before a slash
        assert.is_nil(out:gsub("\\\\", ""):find("\\/", 1, true), out)
      end
    end
  end)
end)

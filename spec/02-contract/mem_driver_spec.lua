-- The in-memory driver: the contract, and what only it does.
local driver = require "berth.driver"
local contract = require "02-contract.driver_contract"

local function new_mem()
  local d = assert(driver.mem())
  finally(function() d:close() end)
  return d
end

contract("mem", new_mem)

describe("mem driver", function()
  it("has no local paths", function()
    local d = new_mem()
    assert(d:put("/f", "x"))
    local ok, err, code = d:local_path("/f")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("UNSUPPORTED", code)
  end)

  it("forgets emptied directories", function()
    local d = new_mem()
    assert(d:put("/a/b/c", "x"))
    assert(d:remove("/a/b/c"))
    local ok, err, code = d:list("/a")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("ENOTFOUND", code)
    assert.same({}, d:list("/"))
  end)

  it("keeps drivers apart", function()
    local d1, d2 = new_mem(), new_mem()
    assert(d1:put("/f", "one"))
    local ok, _, code = d2:get("/f")
    assert.is_nil(ok)
    assert.equal("ENOTFOUND", code)
  end)

  it("gives a directory the newest mtime below it", function()
    local d = new_mem()
    assert(d:put("/d/a", "x"))
    assert(d:put("/d/b", "y"))
    local st = assert(d:stat("/d"))
    assert.equal(assert(d:stat("/d/b")).mtime_ns, st.mtime_ns)
  end)

  it("a writer outlives a remove of its file, like an open descriptor",
     function()
    local d = new_mem()
    local w = assert(d:writer("/w", true))
    assert(w:write("abc"))
    assert(d:remove("/w"))
    assert(w:write("def"))
    assert.equal(6, w:size())
    w:close()
    local ok, _, code = d:get("/w")
    assert.is_nil(ok)
    assert.equal("ENOTFOUND", code)
  end)

  it("a writer's lock moves with its file, like an flock", function()
    local d = new_mem()
    local w = assert(d:writer("/w1", true))
    assert(w:write("abc"))
    assert(d:move("/w1", "/w2"))
    local ok, _, code = d:writer("/w2", true)
    assert.is_nil(ok)
    assert.equal("EBUSY", code)
    assert(w:write("def"))
    assert(w:commit())
    w:close()
    assert.equal("abcdef", d:get("/w2"))
  end)

  it("is freed by the garbage collector with readers and writers open",
     function()
    for _ = 1, 50 do
      local d = assert(driver.mem())
      assert(d:put("/f", "x"))
      local _r = assert(d:reader("/f"))
      local _w = assert(d:writer("/g", true))
    end
    collectgarbage()
    collectgarbage()
  end)
end)

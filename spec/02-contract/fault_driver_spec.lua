-- The fault-injecting driver: unarmed it passes the contract; armed, the
-- Nth operation fails as chosen.
local driver = require "berth.driver"
local C = require("berth.ffi").C
local contract = require "02-contract.driver_contract"
local helpers = require "helpers"

local function new_fault(inner)
  local d = assert(driver.fault(inner or assert(driver.mem())))
  finally(function() d:close() end)
  return d
end

contract("fault(mem)", function() return new_fault() end)

contract("fault(fs)", function()
  local root = helpers.tmpdir()
  finally(function() helpers.rmrf(root) end)
  return new_fault(assert(driver.fs(root)))
end)

local function assert_injected(n, ok, err, code)
  assert.is_nil(ok)
  assert.equal("EIO", code)
  assert.matches("injected fault at operation " .. n, err, 1, true)
end

-- A fixed sequence of twelve operations, each independent of the others'
-- success. Returns each operation's { ok, err, code }.
local OPS = 12

local function setup(d)
  assert(d:put("/a", "hello"))
  assert(d:put("/gone", "x"))
  return {
    w = assert(d:writer("/w", true)),
    r = assert(d:reader("/a")),
  }
end

local function run_ops(d, h)
  local res = {}
  local function rec(i, ok, err, code)
    res[i] = { ok = ok, err = err, code = code }
  end
  rec(1, d:get("/a"))
  rec(2, d:put("/p", "data"))
  rec(3, d:stat("/a"))
  rec(4, d:list("/"))
  rec(5, h.w:write("abc"))
  rec(6, h.w:commit())
  rec(7, h.r:read(2))
  rec(8, d:move("/a", "/b"))
  rec(9, d:remove("/gone"))
  local r2, e10, c10 = d:reader("/w")
  rec(10, r2, e10, c10)
  if r2 then r2:close() end
  local w2, e11, c11 = d:writer("/x", true)
  rec(11, w2, e11, c11)
  if w2 then w2:close() end
  rec(12, h.w:cancel())
  h.w:close()
  h.r:close()
  return res
end

describe("fault driver", function()
  it("fail_one fails exactly the Nth operation, each N in turn", function()
    for n = 1, OPS do
      local d = new_fault()
      local h = setup(d)
      d:arm("fail_one", n)
      local res = run_ops(d, h)
      assert.equal(OPS, d:count())
      for i = 1, OPS do
        if i == n then
          assert_injected(n, res[i].ok, res[i].err, res[i].code)
        else
          assert.is_truthy(res[i].ok, "operation " .. i .. " with n=" .. n ..
                           ": " .. tostring(res[i].err))
        end
      end
      -- the failed operation had no effect
      d:arm("off")
      if n == 2 then
        assert.is_nil(d:get("/p"))
      elseif n == 8 then
        assert.equal("hello", d:get("/a"))
        assert.is_nil(d:get("/b"))
      elseif n == 9 then
        assert.equal("x", d:get("/gone"))
      elseif n == 12 then
        assert.equal("abc", d:get("/w"))
      end
    end
  end)

  it("crash fails the Nth operation and every later one", function()
    for n = 1, OPS do
      local d = new_fault()
      local h = setup(d)
      d:arm("crash", n)
      local res = run_ops(d, h)
      assert.equal(OPS, d:count())
      for i = 1, OPS do
        if i >= n then
          assert.is_nil(res[i].ok)
          assert.equal("EIO", res[i].code)
          assert.matches("injected fault at operation " .. i,
                         res[i].err, 1, true)
        else
          assert.is_truthy(res[i].ok)
        end
      end
      -- after the "crash", the store holds what was done before it
      d:arm("off")
      if n > 2 then
        assert.equal("data", d:get("/p"))
      else
        assert.is_nil(d:get("/p"))
      end
      if n > 9 then
        assert.is_nil(d:get("/gone"))
      else
        assert.equal("x", d:get("/gone"))
      end
    end
  end)

  it("short_write leaves half the bytes of a writer's write", function()
    local d = new_fault()
    local w = assert(d:writer("/s", true))
    assert(w:write("0123"))
    d:arm("short_write", 2)
    assert(w:write("abcd"))                       -- operation 1
    assert_injected(2, w:write("ABCDEFGH"))       -- operation 2: half
    assert.equal(12, w:size())
    assert(w:write("!"))                          -- later ones pass
    assert(w:commit())
    w:close()
    d:arm("off")
    assert.equal("0123abcdABCD!", d:get("/s"))
  end)

  it("short_write leaves nothing of a put", function()
    local d = new_fault()
    assert(d:put("/old", "old"))
    d:arm("short_write", 1)
    assert_injected(1, d:put("/new", "12345678"))
    d:arm("short_write", 1)
    assert_injected(1, d:put("/old", "replacement"))
    d:arm("off")
    assert.is_nil(d:get("/new"))
    assert.equal("old", d:get("/old"))
  end)

  it("short_write of another operation fails it whole", function()
    local d = new_fault()
    assert(d:put("/f", "x"))
    d:arm("short_write", 1)
    assert_injected(1, d:stat("/f"))
    assert(d:stat("/f"))
  end)

  it("counts reader and writer operations, not size or close", function()
    local d = new_fault()
    assert(d:put("/f", "content"))
    d:arm("off")
    assert.equal(0, d:count())
    local r = assert(d:reader("/f"))        -- 1
    local w = assert(d:writer("/g", true))  -- 2
    assert(r:read(3))                       -- 3
    assert(w:write("x"))                    -- 4
    assert.equal(1, w:size())
    assert(w:commit())                      -- 5
    assert(w:cancel())                      -- 6
    r:close()
    w:close()
    assert.equal(6, d:count())
    assert(d:stat("/f"))                    -- 7
    assert.equal(7, d:count())
    d:arm("off")
    assert.equal(0, d:count())
  end)

  it("counts failed operations too", function()
    local d = new_fault()
    d:arm("off")
    assert.is_nil(d:get("/missing"))
    assert.is_nil(d:get("bad path"))   -- refused before the driver: no count
    assert.equal(1, d:count())
  end)

  it("counts local_path only when the inner driver has it", function()
    local d = new_fault()
    d:arm("off")
    local _, _, code = d:local_path("/f")
    assert.equal("UNSUPPORTED", code)
    assert.equal(0, d:count())
    local root = helpers.tmpdir()
    finally(function() helpers.rmrf(root) end)
    local fd = new_fault(assert(driver.fs(root)))
    assert(fd:put("/f", "x"))
    fd:arm("fail_one", 1)
    assert_injected(1, fd:local_path("/f"))
    assert.equal(root .. "/f", fd:local_path("/f"))
    assert.equal(2, fd:count())
  end)

  it("nth = 0 never fires", function()
    local d = new_fault()
    d:arm("crash", 0)
    assert(d:put("/f", "x"))
    assert.equal("x", d:get("/f"))
    assert.equal(2, d:count())
  end)

  it("takes over the inner driver", function()
    local inner = assert(driver.mem())
    local d = new_fault(inner)
    assert.is_nil(inner._p)
    assert.is_true(inner:close())
    assert.has_error(function() inner:get("/x") end)
    assert(d:put("/f", "x"))
  end)

  it("arm and count are harmless on other drivers", function()
    local m = assert(driver.mem())
    finally(function() m:close() end)
    C.berth_driver_fault_arm(m._p, C.BERTH_FAULT_CRASH, 1)
    assert.equal(0, tonumber(C.berth_driver_fault_count(m._p)))
    assert(m:put("/f", "x"))
    assert.equal("x", m:get("/f"))
    C.berth_driver_fault_arm(nil, C.BERTH_FAULT_CRASH, 1)
    assert.equal(0, tonumber(C.berth_driver_fault_count(nil)))
    assert.has_error(function() m:arm("crash", 1) end)
    assert.has_error(function() m:count() end)
  end)

  -- One call of each driver slot (free aside), on a fresh driver.
  local SLOT_CALLS = {
    get = function(d) return d:get("/a") end,
    put = function(d) return d:put("/p", "x") end,
    reader = function(d) return d:reader("/a") end,
    writer = function(d) return d:writer("/w", true) end,
    stat = function(d) return d:stat("/a") end,
    list = function(d) return d:list("/") end,
    move = function(d) return d:move("/a", "/b") end,
    remove = function(d) return d:remove("/a") end,
    local_path = function(d) return d:local_path("/a") end,
    import = function(d)
      local dir = helpers.tmpdir()
      finally(function() helpers.rmrf(dir) end)
      helpers.write_file(dir .. "/f", "x")
      return d:import("/i", dir .. "/f")
    end,
    -- a missing path: a token may not be ready (fs: within a second)
    list_version = function(d) return d:list_version("/none") end,
    leftover = function(d) return d:leftover("/dir", 0) end,
    lock = function(d) return d:lock("/l") end,
    put_if = function(d) return d:put_if("/new", "x") end,
    list_page = function(d) return d:list_page("/") end,
    send = function(d) return d:send("/a") end,
  }

  it("mirrors every slot of its inner driver, each call one operation",
     function()
    for _, inner in ipairs({ "fs", "mem" }) do
      local function fresh()
        local d
        if inner == "fs" then
          local root = helpers.tmpdir()
          finally(function() helpers.rmrf(root) end)
          d = assert(driver.fs(root))
        else
          d = assert(driver.mem())
        end
        assert(d:put("/a", "x"))
        assert(d:put("/dir/f", "x"))
        return d
      end
      for slot, call in pairs(SLOT_CALLS) do
        local plain = fresh()
        finally(function() plain:close() end)
        local _, _, plain_code = call(plain)
        local d = new_fault(fresh())
        d:arm("off")
        local _, err, code = call(d)
        assert.equal(plain_code == "UNSUPPORTED", code == "UNSUPPORTED",
          ("fault(%s) %s: %s"):format(inner, slot, tostring(err)))
        -- what the inner driver cannot do is not an operation
        assert.equal(code == "UNSUPPORTED" and 0 or 1, d:count(),
          ("fault(%s) %s"):format(inner, slot))
      end
    end
  end)

  it("rejects unknown modes", function()
    local d = new_fault()
    assert.has_error(function() d:arm("explode", 1) end)
  end)

  it("is freed by the garbage collector with wrappers open", function()
    for _ = 1, 20 do
      local d = assert(driver.fault(assert(driver.mem())))
      assert(d:put("/f", "x"))
      local _r = assert(d:reader("/f"))
      local _w = assert(d:writer("/g", true))
    end
    collectgarbage()
    collectgarbage()
  end)
end)

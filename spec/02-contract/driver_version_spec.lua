-- The driver contract is versioned as SQLite's sqlite3_vfs: new slots are
-- appended and the version bumped; the checked entry points refuse a
-- driver of a version they do not know, and treat the slots a known older
-- version lacks as missing (sys/driver.h).
local ffi = require "ffi"
local berth_ffi = require "berth.ffi"
local driver = require "berth.driver"
local errors = require "berth.errors"

local C = berth_ffi.C

-- A driver table made in Lua: a version, a name and no slots at all.
ffi.cdef [[
typedef struct spec_bare_driver {
    unsigned version; const char *name; void *slots[32];
} spec_bare_driver;
]]

local function bare(version)
  local d = ffi.new("spec_bare_driver")
  d.version = version
  d.name = "bare"
  return d, ffi.cast("berth_driver *", d)
end

local function stat_of(p)
  local st = ffi.new("berth_stat_info[1]")
  local e = ffi.new("berth_error[1]")
  local rc = C.berth_driver_stat(p, st, "/x", e)
  return errors.BY_VALUE[rc].code, ffi.string(e[0].message)
end

describe("driver versions", function()
  it("refuse a driver of a version the library does not know", function()
    for _, v in ipairs({ 0, 1, 99, 0xffffffff }) do
      local keep, p = bare(v)
      local code, msg = stat_of(p)
      assert.equal("UNSUPPORTED", code)
      assert.matches("driver version " .. v .. " not supported", msg, 1, true)
      assert.is_not_nil(keep)
    end
  end)

  it("a known version's missing slot is unsupported, never called",
     function()
    for _, v in ipairs({ 2, C.BERTH_DRIVER_VERSION }) do
      local keep, p = bare(v)
      local code, msg = stat_of(p)
      assert.equal("UNSUPPORTED", code)
      assert.matches("does not support", msg, 1, true)
      assert.is_not_nil(keep)
    end
  end)

  it("the fault driver wraps no driver of an unknown version", function()
    local keep, p = bare(99)
    local out = ffi.new("berth_driver *[1]")
    local rc = C.berth_driver_fault_new(out, p, nil)
    assert.equal("UNSUPPORTED", errors.BY_VALUE[rc].code)
    assert.is_true(out[0] == nil)
    assert.is_not_nil(keep)
  end)

  it("the library's drivers are of the current version", function()
    local d = assert(driver.mem())
    finally(function() d:close() end)
    assert.equal(C.BERTH_DRIVER_VERSION,
      ffi.cast("spec_bare_driver *", d._p).version)
  end)
end)

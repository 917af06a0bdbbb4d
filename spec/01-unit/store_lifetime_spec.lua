-- What a store hands out (uploads, readers, iterators, its driver) keeps
-- the store alive: closing or dropping the store while one is open must not
-- free what it uses. The ASan pass of the specs (build-asan) turns any use
-- after free here into a failure.
local ffi = require "ffi"
local berth = require "berth"
local driver = require "berth.driver"
local errors = require "berth.errors"
local C = require("berth.ffi").C
local helpers = require "helpers"

local EITEROVER = errors.BY_NAME.EITEROVER.value

-- A store over the fault driver (unarmed), whose readers and writers use
-- the driver (its operation counter) on every call.
local function fault_store()
  local d = assert(driver.fault(assert(driver.mem())))
  return assert(berth.open{ driver = d }), d
end

describe("a store's children outlive store:close()", function()
  it("an upload commits after its store is closed", function()
    local root = helpers.tmpdir()
    local store = assert(berth.open{ root = root, fsync = "none" })
    local up = assert(store:blob_writer("r"))
    assert(up:write("hello "))
    store:close()
    assert(up:write("world"))
    assert(up:commit(helpers.sha256sum("hello world"), 11))
    local again = assert(berth.open{ root = root })
    finally(function() again:close() end)
    assert.equal(11, again:blob_stat("r", helpers.sha256sum("hello world")))
  end)

  it("an upload over the fault driver writes and commits", function()
    local store = fault_store()
    local up = assert(store:blob_writer("r"))
    store:close()
    assert(up:write("abc"))
    assert(up:commit(helpers.sha256sum("abc")))
  end)

  it("an upload opened again cancels after close", function()
    local store = fault_store()
    local up = assert(store:blob_writer("r"))
    local id = up.id
    assert(up:close())
    up = assert(store:upload_open("r", id))
    local status = assert(store:upload_open("r", id, "r"))
    store:close()
    assert.equal(0, status:size())
    assert(status:close())
    assert(up:cancel())
  end)

  it("a reader reads after close", function()
    local store = fault_store()
    local dgst = assert(store:blob_put("r", "some content"))
    local r = assert(store:blob_reader("r", dgst, 5))
    store:close()
    assert.equal("content", r:read(100))
    assert.equal("", r:read(100))
    assert(r:close())
  end)

  it("the store's methods say it is closed", function()
    local store = fault_store()
    store:close()
    assert.has_error(function() store:blob_writer("r") end,
      "store is closed")
    assert(store:close()) -- idempotent
  end)

  it("a handed-over driver says it is closed with its store", function()
    local store, d = fault_store()
    local up = assert(store:blob_writer("r"))
    store:close()
    assert.has_error(function() d:count() end, "driver is closed")
    assert(up:cancel())
  end)
end)

describe("a store's children outlive the store's collection", function()
  it("an upload and a reader work after the store is collected", function()
    local store = fault_store()
    local dgst = assert(store:blob_put("r", "data"))
    local up = assert(store:blob_writer("r"))
    local r = assert(store:blob_reader("r", dgst))
    store = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.equal("data", r:read(10))
    assert(up:write("x"))
    assert(up:commit(helpers.sha256sum("x")))
    r:close()
  end)

  it("a handed-over driver keeps its store", function()
    local store, d = fault_store()
    assert(store:blob_put("r", "data"))
    store = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    d:arm("fail_one", 1)
    assert.equal(0, d:count())
  end)
end)

-- The C iterators: the Lua methods use them within one call, other
-- callers of the C API may hold them across berth_store_free.
describe("C iterators outlive berth_store_free", function()
  local err = ffi.new("berth_error")

  -- A C store with one repository "r" that has a blob, a manifest link
  -- and an upload session; the Lua object is closed, the C pointer kept.
  local function c_store()
    local store = fault_store()
    local dgst = assert(store:blob_put("r", "blob"))
    local up = assert(store:blob_writer("r"))
    up:close()
    -- the Lua store's C pointer, taken over from its finalizer
    local st = store._p
    ffi.gc(st, nil)
    store._p = nil
    store._driver._p = nil
    return st, dgst
  end

  it("a blob iterator", function()
    local st, dgst = c_store()
    local out = ffi.new("berth_blob_iter *[1]")
    assert.equal(0, C.berth_blob_iter_new(out, st, "r", err))
    C.berth_store_free(st)
    local d = ffi.new("berth_digest")
    assert.equal(0, C.berth_blob_iter_next(d, out[0], err))
    assert.equal(dgst, ffi.string(d.str))
    assert.equal(EITEROVER, C.berth_blob_iter_next(d, out[0], err))
    C.berth_blob_iter_free(out[0])
  end)

  it("a link iterator", function()
    local st, dgst = c_store()
    local out = ffi.new("berth_gc_link_iter *[1]")
    assert.equal(0, C.berth_gc_link_iter_new(out, st, "r", 15, err))
    C.berth_store_free(st)
    local l = ffi.new("berth_gc_link")
    assert.equal(0, C.berth_gc_link_iter_next(l, out[0], err))
    assert.equal(dgst, ffi.string(l.digest.str))
    assert.equal(EITEROVER, C.berth_gc_link_iter_next(l, out[0], err))
    C.berth_gc_link_iter_free(out[0])
  end)

  it("an upload iterator", function()
    local st = c_store()
    local out = ffi.new("berth_gc_upload_iter *[1]")
    assert.equal(0, C.berth_gc_upload_iter_new(out, st, "r", err))
    C.berth_store_free(st)
    local u = ffi.new("berth_gc_upload")
    assert.equal(0, C.berth_gc_upload_iter_next(u, out[0], err))
    assert.equal(36, #ffi.string(u.id))
    assert.equal(EITEROVER, C.berth_gc_upload_iter_next(u, out[0], err))
    C.berth_gc_upload_iter_free(out[0])
  end)
end)

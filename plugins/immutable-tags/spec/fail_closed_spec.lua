-- A tag that cannot be read is not a tag that does not exist: when the
-- registry cannot read what an immutable tag points at (an i/o error, a
-- damaged link), every write that would move or remove it is refused with
-- that error, before any hook decides on a guess (before, the hooks ran
-- with no old digest, and a damaged link let the write through).
jit.off() -- the fault driver's watcher is a C callback
local helpers = require "helpers"
local registry = require "berth.registry"
local support = require "03-plugins.support"

local CURRENT = "/_manifests/tags/v1/current/link$"
local REVERSE = "/_tagsof/"

-- A registry with immutable v* tags on a fault driver, and a recorder of
-- the hooks; v1 pushed (a) and another image stored under dev (b).
local function setup()
  local stores = helpers.watched_stores(finally)
  local store, plain = stores.watched, stores.plain
  local d, root = stores.driver, stores.root
  local audit = support.recorder("audit", 1, {})
  local reg = assert(registry.new({ store = store, delete = true,
    plugins = { { name = "immutable-tags", config = {
      patterns = { "v*" } } }, { name = "audit", handler = audit } } }))
  local body_a = support.image_in(store, "r", { salt = "a" })
  local a = assert(reg:put_manifest("r", "v1", body_a, support.OCI_MANIFEST))
  local body_b = support.image_in(store, "r", { salt = "b" })
  local b = assert(reg:put_manifest("r", "dev", body_b,
    support.OCI_MANIFEST))
  for i = #audit.seen, 1, -1 do audit.seen[i] = nil end
  return { reg = reg, plain = plain, driver = d, root = root, a = a,
    b = b, body_b = body_b, audit = audit }
end

-- Each write that would move or remove v1.
local WRITES = {
  ["a manifest put"] = function(t)
    return t.reg:put_manifest("r", "v1", t.body_b, support.OCI_MANIFEST)
  end,
  ["a tag set"] = function(t)
    return t.reg:set_tag("r", "v1", t.b)
  end,
  ["a tag delete"] = function(t)
    return t.reg:delete_manifest("r", "v1")
  end,
  ["a manifest delete"] = function(t)
    return t.reg:delete_manifest("r", t.a)
  end,
}

local READS = { get = true, stat = true, list = true, reader = true }

-- Make the driver's reads of paths matching pattern fail (EIO): every one,
-- or only the first. -> function giving how many failed
local function fail_reads(d, pattern, first_only)
  local failed = 0
  d:watch(function(op, path)
    if READS[op] and path:find(pattern)
        and not (first_only and failed > 0) then
      failed = failed + 1
      d:arm("fail_one", 1) -- this very operation
    end
  end)
  return function() return failed end
end

-- Refused with the read's error, no hook asked, v1 and a untouched.
local function assert_refused(t, label, code_wanted, ok, err, code)
  t.driver:watch(nil)
  assert.is_nil(t.driver.watch_error)
  assert(ok == nil, label .. ": the write went through")
  assert.is_string(err, label)
  assert.equal(code_wanted, code, label .. ": " .. tostring(err))
  assert.same({}, support.phases(t.audit), label)
  assert.equal(t.a, t.plain:tag_get("r", "v1"), label)
  assert.equal(t.a, (t.plain:manifest_head("r", t.a) or {}).digest, label)
end

describe("immutable-tags fails closed", function()
  for name, write in pairs(WRITES) do
    local what = name == "a manifest delete" and REVERSE or CURRENT
    it(name .. " is refused while v1's link cannot be read", function()
      local t = setup()
      local failed = fail_reads(t.driver, what)
      local ok, err, code = write(t)
      assert(failed() > 0, "no read failed")
      assert_refused(t, name, "EIO", ok, err, code)
    end)

    it(name .. " is refused when v1's link fails to read once", function()
      local t = setup()
      local failed = fail_reads(t.driver, what, true)
      local ok, err, code = write(t)
      assert.equal(1, failed())
      assert_refused(t, name, "EIO", ok, err, code)
    end)
  end

  for name, write in pairs(WRITES) do
    it(name .. " is refused while v1's link is damaged", function()
      local t = setup()
      local link = t.root .. "/docker/registry/v2/repositories/r"
        .. "/_manifests/tags/v1/current/link"
      helpers.write_file(link, "damaged")
      local ok, err, code = write(t)
      assert(ok == nil, name .. ": the write went through")
      assert.matches("damaged", err, 1, true)
      assert.equal("EIO", code)
      assert.same({}, support.phases(t.audit))
      assert.equal("damaged", helpers.read_file(link))
    end)
  end
end)

-- A PATCH whose storage fails at any step (issue 11: a failed flush and
-- fsync was answered 202): 202 only when its bytes and their hash state
-- are on disk, and the next request finds the session at its last durable
-- offset, from where the client finishes with the right digest.
-- In-process only: the store is over the fault driver.
local helpers = require "helpers"
local client = require "05-http.client"
local berth = require "berth"
local driver = require "berth.driver"
local registry = require "berth.registry"
local http = require "berth.http"

local DATA = helpers.random_bytes(20000)
local DGST = helpers.sha256sum(DATA)
local OCTETS = "application/octet-stream"

local function app_over(store)
  return client.in_process(http.new({
    registry = assert(registry.new({ store = store })) }))
end

local function patch(c, loc, from, to)
  return c:request("PATCH", loc, { body = DATA:sub(from + 1, to),
    headers = { ["Content-Type"] = OCTETS,
      ["Content-Range"] = ("%d-%d"):format(from, to - 1) } })
end

describe("a PATCH whose storage fails", function()
  -- A session with its first 5000 bytes acknowledged, over a fault driver.
  -- -> root, fault driver, client, Location
  local function begin(finally)
    local root = helpers.tmpdir()
    local fault = assert(driver.fault(assert(driver.fs(root,
      { fsync = "full" }))))
    local store = assert(berth.open{ driver = fault })
    finally(function()
      store:close()
      helpers.rmrf(root)
    end)
    local c = app_over(store)
    local r = c:request("POST", "/v2/r/blobs/uploads/")
    assert.equal(202, r.status)
    r = patch(c, c.relative_location(r), 0, 5000)
    assert.equal(202, r.status)
    return root, fault, c, c.relative_location(r)
  end

  it("answers 202 only for durable bytes, at every failing step",
    function()
      local steps
      do
        local _, fault, c, loc = begin(finally)
        fault:arm("off", 0)
        assert.equal(202, patch(c, loc, 5000, 9000).status)
        steps = fault:count()
      end
      assert.is_true(steps > 5)
      for n = 1, steps do
        local root, fault, c, loc = begin(finally)
        local id = loc:match("/uploads/([%x-]+)")
        fault:arm("fail_one", n)
        local r = patch(c, loc, 5000, 9000)
        fault:arm("off", 0)
        local where = "failing step " .. n .. " of " .. steps
        local state = root .. "/docker/registry/v2/repositories/r/_uploads/"
          .. id .. "/hashstates/sha256/9000"
        if r.status == 202 then
          assert.is_truthy(helpers.read_file(state), where
            .. ": 202 without a hash state for the bytes")
        else
          assert.equal(500, r.status, where)
        end
        -- the next request, from another process's view of the store
        local plain = assert(berth.open{ root = root })
        local next = app_over(plain)
        r = next:request("GET", loc)
        assert.equal(204, r.status, where)
        local at = tonumber(client.header(r, "Range"):match("^0%-(%d+)$")) + 1
        assert.is_true(at == 9000 or at == 5000, where .. ": at " .. at)
        r = patch(next, client.relative_location(r), at, 15000)
        assert.equal(202, r.status, where)
        r = next:request("PUT", client.relative_location(r) .. "?digest="
          .. DGST, { body = DATA:sub(15001),
            headers = { ["Content-Type"] = OCTETS } })
        assert.equal(201, r.status, where)
        assert.equal(DATA, plain:blob_get("r", DGST, #DATA), where)
        plain:close()
      end
    end)
end)

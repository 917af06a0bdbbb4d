-- The S3 driver against a real Ceph RADOS Gateway (spec/rgw.lua): the
-- driver contract, each test in a bucket of its own, and what only an
-- object store does.
local driver = require "berth.driver"
local contract = require "02-contract.driver_contract"
local rgw = require "rgw"
local helpers = require "helpers"

local s3 = rgw.start()
local n = 0

local function new_s3(root)
  n = n + 1
  local bucket = ("contract-%d-%d"):format(os.time() % 100000, n)
  s3:bucket(bucket)
  local d = assert(driver.s3{ endpoint = s3.endpoint, bucket = bucket,
    region = s3.region, access_key = s3.access_key,
    secret_key = s3.secret_key, root = root })
  finally(function() d:close() end)
  return d, bucket
end

-- Not there yet (issue 15): readers that outlive a replace of their file,
-- and file/directory conflicts, which a bucket does not refuse by itself
-- (a check would cost a listing per put).
-- A reader is ranged GETs of the version it opened (If-Match): one
-- replaced or removed under it fails, where the contract wants it to
-- finish with what it opened (one streaming GET will).
local RANGED = "S3 driver: a reader does not yet outlive a replace"
local NESTED = "S3 driver: a bucket does not refuse a key under another"
contract("s3", function() return (new_s3()) end, {
  ["keeps reading what it opened after a put replaced it"] = RANGED,
  ["lets an open reader finish"] = RANGED,
  ["the last of many puts wins and readers see whole files"] = RANGED,
  ["file and directory conflicts"] = NESTED,
  ["does not replace a directory with a file, or the reverse"] = NESTED,
})

describe("s3 driver", function()
  it("keeps Distribution's keys under its root directory", function()
    local d, bucket = new_s3("/registry/")
    assert(d:put("/docker/registry/v2/blobs/x", "bytes"))
    local status, body = s3:request("GET", "/" .. bucket
      .. "/registry/docker/registry/v2/blobs/x")
    assert.equal(200, status)
    assert.equal("bytes", body)
  end)

  it("moves a file a writer made of parts as one object, whatever the"
    .. " parts' sizes", function()
    local d, bucket = new_s3()
    local MiB = 1024 * 1024
    local pieces = { helpers.random_bytes(6 * MiB), "small part",
      helpers.random_bytes(5 * MiB + 1), "x", helpers.random_bytes(100) }
    for _, piece in ipairs(pieces) do
      local w = assert(d:writer("/up/data", true))
      assert(w:write(piece))
      assert(w:commit())
      w:close()
    end
    local whole = table.concat(pieces)
    assert.equal(#whole, assert(d:stat("/up/data")).size)
    assert(d:move("/up/data", "/blobs/data"))
    assert.equal(whole, d:get("/blobs/data"))
    assert.equal(#whole, assert(d:stat("/blobs/data")).size)
    -- one object, and none of the parts left behind
    local status, body = s3:request("GET", "/" .. bucket .. "?list-type=2")
    assert.equal(200, status)
    local keys = {}
    for k in body:gmatch("<Key>(.-)</Key>") do keys[#keys + 1] = k end
    assert.same({ "blobs/data" }, keys)
  end)

  it("keeps parts past a gap (a truncation cut short) out of the file for"
    .. " good", function()
    local d, bucket = new_s3()
    for _, piece in ipairs({ "aaaa", "bbbb", "cc" }) do
      local w = assert(d:writer("/up/data", true))
      assert(w:write(piece))
      assert(w:commit())
      w:close()
    end
    -- what a truncation to 4 leaves when it is cut short after taking the
    -- part at 4 and before the one at 8
    local status, body = s3:request("GET", "/" .. bucket
      .. "?list-type=2")
    assert.equal(200, status)
    local at4 = body:match("<Key>([^<]-00000000000000000004)</Key>")
    assert.truthy(at4, body)
    assert.equal(204, (s3:request("DELETE", "/" .. bucket .. "/" .. at4)))
    assert.equal("aaaa", d:get("/up/data"))
    local w = assert(d:writer("/up/data", true))
    assert.equal(4, w:size())
    assert(w:write("dddd"))
    assert(w:commit())
    w:close()
    assert.equal("aaaadddd", d:get("/up/data"))
  end)

  it("hands a blob off as a presigned URL that answers its bytes",
     function()
    local d = new_s3()
    assert(d:put("/f", "the bytes"))
    local kind, url = assert(d:send("/f"))
    assert.equal("url", kind)
    local p = io.popen("env -u LD_PRELOAD curl -s '" .. url .. "'")
    local got = p:read("*a")
    p:close()
    assert.equal("the bytes", got)
  end)

  it("answers UNAVAILABLE, not a failure of its own, when the store is"
    .. " down", function()
    local d = assert(driver.s3{ endpoint = "http://127.0.0.1:1",
      bucket = "b", access_key = "k", secret_key = "s", attempts = 2 })
    finally(function() d:close() end)
    local ok, _, code = d:get("/f")
    assert.is_nil(ok)
    assert.equal("UNAVAILABLE", code)
  end)
end)

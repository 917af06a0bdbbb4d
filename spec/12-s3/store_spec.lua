-- A store on the S3 driver against RGW, through the Lua API: pushes, an
-- upload resumed by another store object (another node), gc and fsck.
local helpers = require "helpers"
local berth = require "berth"
local driver = require "berth.driver"
local gc = require "berth.gc"
local fsck = require "berth.fsck"
local rgw = require "rgw"
local S = require "07-gc.support"

local s3 = rgw.start()
local n = 0

-- A store on a fresh bucket, and a function opening another on it.
local function s3_store()
  n = n + 1
  local bucket = ("store-%d-%d"):format(os.time() % 100000, n)
  s3:bucket(bucket)
  local function open()
    local d = assert(driver.s3{ endpoint = s3.endpoint, bucket = bucket,
      region = s3.region, access_key = s3.access_key,
      secret_key = s3.secret_key, root = "/registry" })
    local st = assert(berth.open{ root = helpers.tmpdir(), driver = d })
    finally(function() st:close() end)
    return st
  end
  return open(), open
end

describe("a store on S3", function()
  it("takes an image and gives it back", function()
    local st = s3_store()
    local img = S.image(st, "team/app", { seed = "s3 image" })
    assert(st:tag_set("team/app", "v1", img.digest))
    local body, info = assert(st:manifest_get("team/app", "v1"))
    assert.equal(img.body, body)
    assert.equal(img.digest, info.digest)
    for d, size in pairs(img.blobs) do
      assert.equal(size, st:blob_stat("team/app", d))
      assert.equal(d, helpers.sha256sum(assert(st:blob_get("team/app", d))))
    end
    assert.same({ "team/app" }, st:catalog())
    assert.same({ "v1" }, st:tag_list("team/app"))
  end)

  it("resumes an upload another node began", function()
    local st, open = s3_store()
    local data = helpers.random_bytes(300000)
    local up = assert(st:blob_writer("team/app"))
    assert(up:write(data:sub(1, 100000)))
    assert(up:flush())
    local id = up.id
    up:close()
    local other = open()
    local again = assert(other:upload_open("team/app", id))
    assert.equal(100000, again:size())
    assert(again:write(data:sub(100001)))
    assert(again:commit(helpers.sha256sum(data), #data))
    assert.equal(data, st:blob_get("team/app", helpers.sha256sum(data)))
  end)

  it("collects garbage and keeps what a tag needs; fsck finds nothing",
     function()
    local st = s3_store()
    local img = S.image(st, "team/app", { seed = "kept" })
    assert(st:tag_set("team/app", "v1", img.digest))
    local orphan = S.push_blob(st, "team/app", "an orphan")
    -- the store's clock: objects just written are older than a later now
    local r = assert(gc.run(st, { grace = 0, settle = 0,
      now = function() return os.time() + 10 end }))
    assert.same({}, r.warnings)
    assert.same({ [orphan] = true }, (function()
      local set = {}
      for _, b in ipairs(r.removed.blobs) do set[b.digest] = true end
      return set
    end)())
    assert.is_nil(st:blob_stat("team/app", orphan))
    for d, size in pairs(img.blobs) do
      assert.equal(size, st:blob_stat("team/app", d))
    end
    assert.same({}, assert(fsck.run(st)).problems)
  end)
end)

-- The S3 test store itself: bin/rgw's throwaway Ceph RADOS Gateway
-- (spec/rgw.lua) answers what the S3 driver's specs will lean on, and
-- leaves no process behind. Requests are signed by curl --aws-sigv4
-- (simple requests only: it signs ?uploads wrongly, so no multipart here).
local rgw = require "rgw"

describe("bin/rgw's throwaway RADOS Gateway", function()
  local s3
  -- one bucket per run (the cluster is shared by the whole file)
  local bucket = ("berth-spec-%d-%d"):format(os.time(), math.random(1e6))

  setup(function()
    s3 = rgw.start()
    s3:bucket(bucket)
  end)

  it("describes itself: endpoint on 127.0.0.1, keys, region, directory", function()
    assert.matches("^http://127%.0%.0%.1:%d+$", s3.endpoint)
    assert.is_truthy(s3.access_key ~= "" and s3.secret_key ~= "")
    assert.equals("default", s3.region) -- RGW's default zonegroup
    assert.matches("^/tmp/berth%-spec%-", s3.dir)
    assert.equals(3, #s3.pids) -- mon, OSD, gateway
    assert.equals(s3, rgw.start()) -- one per process
  end)

  it("answers PUT, GET, HEAD, a ranged GET and DELETE of an object", function()
    local key = "/" .. bucket .. "/objects/one"
    local data = "0123456789abcdef"
    local status, body, h = s3:request("PUT", key, { body = data })
    assert.equals(200, status, body)
    local etag = h.etag
    assert.matches('^"%x+"$', etag)

    status, body = s3:request("GET", key)
    assert.equals(200, status)
    assert.equals(data, body)

    status, body, h = s3:request("HEAD", key)
    assert.equals(200, status)
    assert.equals("", body)
    assert.equals("16", h["content-length"])
    assert.equals(etag, h.etag)

    status, body, h = s3:request("GET", key, { headers = { Range = "bytes=4-9" } })
    assert.equals(206, status)
    assert.equals("456789", body)
    assert.equals("bytes 4-9/16", h["content-range"])

    status = s3:request("DELETE", key)
    assert.equals(204, status)
    status, body = s3:request("GET", key)
    assert.equals(404, status)
    assert.matches("<Code>NoSuchKey</Code>", body)
    status = s3:request("HEAD", key)
    assert.equals(404, status)
  end)

  it("refuses If-None-Match: * on an existing key with 412, object unchanged", function()
    local key = "/" .. bucket .. "/objects/create-only"
    local status, body = s3:request("PUT", key, { body = "first",
      headers = { ["If-None-Match"] = "*" } })
    assert.equals(200, status, body) -- a new key: created
    status, body = s3:request("PUT", key, { body = "second",
      headers = { ["If-None-Match"] = "*" } })
    assert.equals(412, status, body)
    assert.matches("<Code>PreconditionFailed</Code>", body)
    status, body = s3:request("GET", key)
    assert.equals(200, status)
    assert.equals("first", body)
  end)

  it("serves the same objects through a second gateway on the cluster", function()
    local key = "/" .. bucket .. "/objects/shared"
    local other = s3:gateway()
    assert.matches("^http://127%.0%.0%.1:%d+$", other)
    assert.is_not.equals(s3.endpoint, other)
    local status = s3:request("PUT", key, { body = "from one" })
    assert.equals(200, status)
    local body
    status, body = s3:request("GET", key, { endpoint = other })
    assert.equals(200, status)
    assert.equals("from one", body)
  end)
end)

-- Last: it stops the cluster the tests above share.
describe("bin/rgw stop", function()
  it("leaves no process of the cluster behind, its gateways included", function()
    local s3 = rgw.start()
    s3:gateway() -- one more, started after the cluster's env was written
    assert.is_true(#s3:processes() >= 4, table.concat(s3:processes(), "\n"))
    s3.stop()
    assert.same({}, s3:processes())
    -- nothing answers on the endpoint any more
    local _, ok = rgw.sh("curl -s -o /dev/null --max-time 5 " .. rgw.q(s3.endpoint .. "/"))
    assert.is_false(ok)
    -- the next start is a new cluster
    s3.stop() -- a second stop does nothing
  end)
end)

-- What error messages of the API say about untrusted input: one line
-- (errors.h), numbers written as integers, absurd Content-Ranges refused.
-- In-process (app:handle): the messages are made before any server.
local helpers = require "helpers"
local client = require "05-http.client"
local cjson = require "cjson.safe"
local registry = require "berth.registry"
local http = require "berth.http"

describe("API error messages", function()
  local store, root, c

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
    c = client.in_process(http.new({
      registry = assert(registry.new({ store = store })) }))
  end)

  after_each(function()
    store:close()
    helpers.rmrf(root)
  end)

  local function message(r)
    local doc = assert(cjson.decode(r.body), r.body)
    return doc.errors[1].message, doc.errors[1].code
  end

  it("escape a newline in a manifest's media type", function()
    local r = c:request("PUT", "/v2/a/b/manifests/t", { body =
      '{"schemaVersion":2,"mediaType":"x\\nFAKE LOG LINE"}' })
    assert.equal(400, r.status)
    local msg, code = message(r)
    assert.equal("MANIFEST_INVALID", code)
    assert.is_nil(msg:find("[%c]"), msg)
    assert.matches([[x\nFAKE LOG LINE]], msg, 1, true)
  end)

  it("escape a newline in a tag of the URL", function()
    local r = c:request("GET", "/v2/a/b/manifests/x%0AFAKE%20LOG%20LINE")
    local msg = message(r)
    assert.is_nil(msg:find("[%c]"), msg)
  end)

  local function upload()
    local r = c:request("POST", "/v2/a/b/blobs/uploads/")
    assert.equal(202, r.status)
    return client.relative_location(r)
  end

  local function patch(loc, range, body)
    return c:request("PATCH", loc, { body = body, headers = {
      ["Content-Type"] = "application/octet-stream",
      ["Content-Range"] = range } })
  end

  it("write a large range as an integer", function()
    local r = patch(upload(), "0-1000000000000000", "abc")
    assert.equal(416, r.status)
    assert.equal("Content-Range covers 1000000000000001 bytes, "
      .. "the body has 3", (message(r)))
    r = patch(upload(), "1000000000000000-1000000000000002", "abc")
    assert.equal(416, r.status)
    assert.equal("chunk out of order: upload has 0 bytes, chunk starts at "
      .. "1000000000000000", (message(r)))
  end)

  it("refuse a range beyond 2^53 bytes (416) without 1e+20", function()
    for _, range in ipairs({ "0-99999999999999999999",
        "99999999999999999999-99999999999999999999", "0-9007199254740993" }) do
      local r = patch(upload(), range, "abc")
      assert.equal(416, r.status)
      local msg, code = message(r)
      assert.equal("BLOB_UPLOAD_INVALID", code)
      assert.is_nil(msg:find("e+", 1, true), msg)
      assert.matches("Content-Range", msg, 1, true)
    end
  end)
end)

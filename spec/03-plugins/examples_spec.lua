-- The examples in examples/ are what the README shows: keep them true.
local helpers = require "helpers"
local support = require "03-plugins.support"
local registry = require "berth.registry"

local CHART = "application/vnd.example.chart.manifest.v1+json"
local CONTENT = "application/vnd.example.chart.content.v1.tar+gzip"

describe("examples/policy-no-latest.lua", function()
  local function new()
    local store = support.new_store(finally)
    local reg = assert(registry.new({ store = store, plugins = {
      { name = "no-latest", path = "examples/policy-no-latest.lua",
        sandbox = true },
    } }))
    return reg, store
  end

  it("is ten lines", function()
    local n = select(2, helpers.read_file("examples/policy-no-latest.lua")
      :gsub("\n", ""))
    assert.equal(10, n)
  end)

  it("refuses latest under prod/, sandboxed", function()
    local reg, store = new()
    local body = support.image_in(store, "prod/api")
    local ok, err, code = reg:put_manifest("prod/api", "latest", body,
      support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("prod/ images are pulled by version, not latest", err)
    assert.equal("DENIED", code)
    assert.is_nil((store:tag_get("prod/api", "latest")))
  end)

  it("allows other tags, and latest elsewhere", function()
    local reg, store = new()
    local body = support.image_in(store, "prod/api")
    local dgst = assert(reg:put_manifest("prod/api", "1.4.2", body,
      support.OCI_MANIFEST))
    body = support.image_in(store, "dev/api")
    assert(reg:put_manifest("dev/api", "latest", body, support.OCI_MANIFEST))
    local ok, err, code = reg:set_tag("prod/api", "latest", dgst)
    assert.is_nil(ok)
    assert.equal("prod/ images are pulled by version, not latest", err)
    assert.equal("DENIED", code)
  end)
end)

describe("examples/handler-helm-chart.lua", function()
  local function new()
    local store = support.new_store(finally)
    local reg = assert(registry.new({ store = store,
      handlers = { "examples/handler-helm-chart.lua" } }))
    return reg, store
  end

  local function chart(store, opts)
    local blobs = support.push_blobs(store, "charts/hello",
      { "chart tarball" }, CONTENT)
    for _, b in ipairs(opts.extra or {}) do blobs[#blobs + 1] = b end
    return support.encode({ mediaType = CHART, name = opts.name or "hello",
      version = opts.version or "1.2.3", blobs = blobs,
      subject = opts.subject }), blobs
  end

  it("stores a chart, whose blobs the store verifies", function()
    local reg, store = new()
    local body, blobs = chart(store, {})
    local dgst, info = assert(reg:put_manifest("charts/hello", "1.2.3", body,
      CHART))
    assert.equal(helpers.sha256sum(body), dgst)
    assert.equal(CHART, info.media_type)
    local got, ginfo = assert(reg:get_manifest("charts/hello", "1.2.3"))
    assert.equal(body, got)
    assert.equal(CHART, ginfo.media_type)
    assert.equal(13, store:blob_stat("charts/hello", blobs[1].digest))

    -- a blob the chart names but the repository lacks
    body = chart(store, { version = "1.2.4", extra = { { mediaType =
      "application/vnd.example.chart.provenance", digest = support.MISSING,
      size = 3 } } })
    local ok, err, code = reg:put_manifest("charts/hello", "1.2.4", body,
      CHART)
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("MANIFEST_BLOB_UNKNOWN", code)
  end)

  it("refuses what validate refuses", function()
    local reg, store = new()
    local cases = {
      { { name = "Hello" },
        "chart name must be lower case letters, digits and -" },
      { { version = "one" }, "chart version must be semantic (1.2.3)" },
      { { extra = support.push_blobs(store, "charts/hello", { "more" },
        CONTENT) }, "a chart has exactly one content blob, not 2" },
    }
    for _, c in ipairs(cases) do
      local ok, err, code = reg:put_manifest("charts/hello", "x",
        chart(store, c[1]), CHART)
      assert.is_nil(ok)
      assert.equal(c[2], err)
      assert.equal("MANIFEST_INVALID", code)
    end
    local ok, err, code = reg:put_manifest("charts/hello", "x",
      '{"mediaType":"' .. CHART .. '"}', CHART)
    assert.is_nil(ok)
    assert.equal("chart manifest needs a blobs array", err)
    assert.equal("MANIFEST_INVALID", code)
  end)

  it("reports the chart's subject and artifact type to referrers",
      function()
    local reg, store = new()
    local img = support.image_in(store, "charts/hello")
    local img_digest = assert(reg:put_manifest("charts/hello", "img", img,
      support.OCI_MANIFEST))
    local body = chart(store, { subject = { mediaType = support.OCI_MANIFEST,
      digest = img_digest, size = #img } })
    local dgst, info = assert(reg:put_manifest("charts/hello", "1.2.3", body,
      CHART))
    assert.equal(img_digest, info.subject)
    local json = assert(reg:referrers("charts/hello", img_digest))
    local index = require("cjson").decode(json)
    assert.equal(1, #index.manifests)
    assert.equal(dgst, index.manifests[1].digest)
    assert.equal("application/vnd.example.chart.v1",
      index.manifests[1].artifactType)
  end)
end)

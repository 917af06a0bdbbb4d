-- The built-in manifest schemas (core/src/schema.c) through manifest.parse
-- and manifest.new. Fixtures: spec/fixtures/manifests (see its README).
local helpers = require "helpers"
local cjson = require "cjson"
local manifest = require "berth.manifest"

local FX = "spec/fixtures/manifests/"

local function fixture(name)
  local content = helpers.read_file(FX .. name)
  assert(content, "fixture " .. name)
  return content
end

local AMD64 =
  "sha256:bd4c9dd55f9241ddade80bb378030c6042e4b10f377fbdb1ec1c32614d7c5f04"
local ARM64 =
  "sha256:6ca30a4d398a27f77953834a3f3229954b0bb064a1970801268060085894d6cd"
local CONFIG_AMD64 =
  "sha256:57bb8004b6d5fac37f4b8c95dfa3fcbda5557d0dac7445db5d859487f930339b"
local LAYER =
  "sha256:47aa746b63cb3ca5d1fc5c726df220e80cf394911539d1ad47dda30e4111b83d"
local EMPTY =
  "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

local OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
local OCI_INDEX = "application/vnd.oci.image.index.v1+json"
local DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
local DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

local function blob(dgst)
  return fixture("layout/blobs/sha256/" .. dgst:sub(8))
end

local function assert_fails(code, pattern, ok, err, got_code)
  assert.is_nil(ok)
  assert.is_string(err)
  assert.equal(code, got_code)
  if pattern then
    assert.matches(pattern, err, 1, true)
  end
end

describe("manifest.parse", function()
  it("reads umoci's OCI image manifest (no mediaType field)", function()
    local body = blob(AMD64)
    assert.is_nil(cjson.decode(body).mediaType)
    local m = assert(manifest.parse(body))
    assert.equal(OCI_MANIFEST, m:media_type())
    assert.equal(AMD64, m:digest())
    assert.equal(helpers.sha256sum(body), m:digest())
    assert.equal(body, m:body())
    assert.same({
      { kind = "config", digest = CONFIG_AMD64, size = 423,
        media_type = "application/vnd.oci.image.config.v1+json" },
      { kind = "layer", digest = LAYER, size = 175,
        media_type = "application/vnd.oci.image.layer.v1.tar+gzip" },
    }, m:refs())
    assert.is_nil(m:subject())
    -- OCI referrers rule: no artifactType -> the config's media type
    assert.equal("application/vnd.oci.image.config.v1+json",
      m:artifact_type())
    assert.is_nil(m:annotations())
  end)

  it("takes the Content-Type, with parameters, or detects", function()
    local body = blob(AMD64)
    for _, ct in ipairs({ OCI_MANIFEST, OCI_MANIFEST .. "; charset=utf-8",
      "application/json", "", " " .. OCI_MANIFEST .. " " }) do
      local m = assert(manifest.parse(body, ct))
      assert.equal(OCI_MANIFEST, m:media_type())
    end
  end)

  it("reads the layout's index.json as an OCI index without platforms",
    function()
    local body = fixture("layout/index.json")
    local m = assert(manifest.parse(body))
    assert.equal(OCI_INDEX, m:media_type())
    local refs = m:refs()
    assert.equal(2, #refs)
    assert.same({ kind = "manifest", digest = AMD64, size = 345,
      media_type = OCI_MANIFEST }, refs[1])
    assert.equal(ARM64, refs[2].digest)
    assert.is_nil(refs[2].platform)
    assert.is_nil(m:artifact_type())
    assert(manifest.parse(body, OCI_INDEX))
  end)

  it("reads a multi-platform OCI index", function()
    local m = assert(manifest.parse(fixture("oci-index-multiplatform.json")))
    assert.equal(OCI_INDEX, m:media_type())
    local refs = m:refs()
    assert.same({ os = "linux", architecture = "amd64" }, refs[1].platform)
    assert.same({ os = "linux", architecture = "arm64" }, refs[2].platform)
    assert.same({ ["org.opencontainers.image.created"] =
      "2024-05-01T12:00:00Z" }, cjson.decode(m:annotations()))
  end)

  it("reads Docker schema2 manifests and manifest lists", function()
    local body = fixture("docker-manifest-amd64.json")
    local m = assert(manifest.parse(body, DOCKER_MANIFEST))
    assert.equal(DOCKER_MANIFEST, m:media_type())
    assert.equal(helpers.sha256sum(body), m:digest())
    local refs = m:refs()
    assert.equal("config", refs[1].kind)
    assert.equal("application/vnd.docker.container.image.v1+json",
      refs[1].media_type)
    assert.equal(CONFIG_AMD64, refs[1].digest)
    assert.same({ kind = "layer", digest = LAYER, size = 175,
      media_type = "application/vnd.docker.image.rootfs.diff.tar.gzip" },
      refs[2])
    assert.equal("application/vnd.docker.container.image.v1+json",
      m:artifact_type())

    local list = assert(manifest.parse(fixture("docker-list.json")))
    assert.equal(DOCKER_LIST, list:media_type())
    refs = list:refs()
    assert.equal(2, #refs)
    assert.equal(m:digest(), refs[1].digest)
    assert.equal(#body, refs[1].size)
    assert.equal("manifest", refs[1].kind)
    assert.same({ os = "linux", architecture = "arm64" }, refs[2].platform)
  end)

  it("marks foreign layers with urls", function()
    local m = assert(manifest.parse(fixture("docker-manifest-foreign.json")))
    local refs = m:refs()
    assert.equal(3, #refs)
    assert.is_true(refs[2].urls)
    assert.equal(1718332879, refs[2].size)
    assert.is_nil(refs[1].urls)
    assert.is_nil(refs[3].urls)
  end)

  it("reads OCI 1.1 artifacts: artifactType, subject, annotations",
    function()
    local m = assert(manifest.parse(fixture("oci-artifact-sbom.json")))
    assert.equal(OCI_MANIFEST, m:media_type())
    assert.equal("application/spdx+json", m:artifact_type())
    assert.same({ kind = "manifest", digest = AMD64, size = 345,
      media_type = OCI_MANIFEST }, m:subject())
    local refs = m:refs()
    assert.same({ kind = "config", digest = EMPTY, size = 2,
      media_type = "application/vnd.oci.empty.v1+json" }, refs[1])
    assert.same({
      ["org.opencontainers.image.created"] = "2024-05-01T12:00:00Z",
      ["org.example.sbom.format"] = "spdx",
    }, cjson.decode(m:annotations()))
    local sig = assert(manifest.parse(fixture("oci-artifact-signature.json")))
    assert.equal("application/vnd.example.signature.v1", sig:artifact_type())
    assert.is_nil(sig:annotations())
  end)

  it("refuses a body whose mediaType contradicts the Content-Type",
    function()
    assert_fails("MANIFEST_INVALID",
      "manifest invalid: mediaType: " .. DOCKER_MANIFEST
        .. " does not match the content type",
      manifest.parse(fixture("docker-manifest-amd64.json"), OCI_MANIFEST))
    assert_fails("MANIFEST_INVALID", "does not match the content type",
      manifest.parse(fixture("oci-index-multiplatform.json"), OCI_MANIFEST))
  end)

  it("refuses an empty mediaType", function()
    local doc = cjson.decode(blob(AMD64))
    doc.mediaType = ""
    for _, ct in ipairs({ "", OCI_MANIFEST }) do
      assert_fails("MANIFEST_INVALID",
        "manifest invalid: mediaType: must not be empty",
        manifest.parse(cjson.encode(doc), ct))
    end
  end)

  it("leaves unknown media types to Lua handlers (UNSUPPORTED)", function()
    assert_fails("UNSUPPORTED",
      "unsupported manifest media type: application/vnd.example+json",
      manifest.parse("not even json", "application/vnd.example+json"))
    assert_fails("UNSUPPORTED",
      "unsupported manifest media type: application/vnd.example+json",
      manifest.parse('{"schemaVersion":2,"mediaType":'
        .. '"application/vnd.example+json"}'))
  end)

  it("refuses Docker schema1", function()
    local msg = "manifest invalid: schema1 manifests are not supported"
    local body = fixture("bad/schema1.json")
    assert_fails("MANIFEST_INVALID", msg, manifest.parse(body))
    for _, ct in ipairs({
      "application/vnd.docker.distribution.manifest.v1+json",
      "application/vnd.docker.distribution.manifest.v1+prettyjws" }) do
      assert_fails("MANIFEST_INVALID", msg, manifest.parse(body, ct))
      assert_fails("MANIFEST_INVALID", msg, manifest.parse(blob(AMD64), ct))
    end
  end)

  -- file, Content-Type, expected message
  local HOSTILE = {
    { "truncated.json", nil, "manifest invalid: not valid JSON" },
    { "schema-version-string.json", nil,
      "manifest invalid: schemaVersion: must be the number 2" },
    { "layers-object.json", nil, "manifest invalid: layers: must be an array" },
    { "size-negative.json", nil,
      "manifest invalid: layers[0].size: must be an integer >= 0" },
    { "size-string.json", nil,
      "manifest invalid: config.size: must be a number" },
    { "size-fraction.json", nil,
      "manifest invalid: layers[0].size: must be an integer >= 0" },
    { "missing-config.json", nil, "manifest invalid: config: required" },
    { "missing-layers.json", nil, "manifest invalid: layers: required" },
    { "digest-unparsable.json", nil,
      "manifest invalid: layers[0].digest: invalid digest" },
    { "digest-unknown-algorithm.json", nil,
      "manifest invalid: config.digest: invalid digest" },
    { "layer-not-object.json", nil,
      "manifest invalid: layers[1]: must be an object" },
    { "media-type-number.json", nil,
      "manifest invalid: mediaType: must be a string" },
    { "annotation-not-string.json", nil,
      "manifest invalid: annotations: value of \"a\" must be a string" },
    { "array.json", nil, "manifest invalid: not a JSON object" },
    { "trailing-garbage.json", nil,
      "manifest invalid: not valid JSON: trailing data at byte 346" },
    { "duplicate-key.json", nil,
      "manifest invalid: duplicate key \"schemaVersion\"" },
    { "docker-missing-media-type.json", DOCKER_MANIFEST,
      "manifest invalid: mediaType: required" },
    { "docker-list-no-platform.json", nil,
      "manifest invalid: manifests[1].platform: required" },
    { "not-json.txt", nil, "manifest invalid: not valid JSON" },
    { "empty-object.json", nil, "manifest invalid: schemaVersion: required" },
    { "empty-object.json", OCI_INDEX,
      "manifest invalid: schemaVersion: required" },
  }

  for _, case in ipairs(HOSTILE) do
    it("refuses bad/" .. case[1] .. (case[2] and " as " .. case[2] or ""),
      function()
      local body = fixture("bad/" .. case[1])
      assert_fails("MANIFEST_INVALID", case[3], manifest.parse(body, case[2]))
    end)
  end

  -- Go's encoding/json takes a key for a field whatever its case (and
  -- U+017F for s, U+212A for k), the last one winning: Distribution and Go
  -- clients would read "Layers" as the layers berth did not check.
  describe("refuses a key that differs from a known one only by case",
      function()
    local MISSING = "sha256:" .. string.rep("0", 64)
    local CFG = '{"mediaType":"application/vnd.oci.image.config.v1+json",'
      .. '"digest":"' .. EMPTY .. '","size":2}'
    local LAYER_D = '{"mediaType":"application/vnd.oci.image.layer.v1.tar",'
      .. '"digest":"' .. MISSING .. '","size":1}'
    local function image(extra, config, layers)
      return '{"schemaVersion":2,"mediaType":"' .. OCI_MANIFEST .. '",'
        .. '"config":' .. (config or CFG) .. ',"layers":['
        .. (layers or "") .. ']' .. (extra or "") .. '}'
    end
    local function index(entry, extra)
      return '{"schemaVersion":2,"mediaType":"' .. OCI_INDEX .. '",'
        .. '"manifests":[' .. entry .. ']' .. (extra or "") .. '}'
    end
    local CHILD = '"mediaType":"' .. OCI_MANIFEST .. '","digest":"' .. AMD64
      .. '","size":345'
    -- body, Content-Type, the key named in the message
    local CASES = {
      { image(',"Layers":[' .. LAYER_D .. ']'), nil, "Layers" },
      { image(',"LAYERS":[]'), OCI_MANIFEST, "LAYERS" },
      { image(',"layer\\u017f":[' .. LAYER_D .. ']'), nil, "layer\197\191" },
      { image(',"Config":' .. CFG), nil, "Config" },
      { image(',"SchemaVersion":1'), nil, "SchemaVersion" },
      { image(',"MediaType":"' .. OCI_INDEX .. '"'), nil, "MediaType" },
      { image(',"Subject":{' .. CHILD .. '}'), nil, "Subject" },
      { image(',"artifacttype":"x/y"'), nil, "artifacttype" },
      { image(nil, CFG:sub(1, -2) .. ',"Digest":"' .. MISSING .. '"}'), nil,
        "Digest" },
      { image(nil, nil, LAYER_D:sub(1, -2) .. ',"SIZE":7}'), nil, "SIZE" },
      { image(nil, nil, LAYER_D:sub(1, -2) .. ',"URLs":["http://x/"]}'), nil,
        "URLs" },
      { index('{' .. CHILD .. ',"Platform":{"os":"linux",'
        .. '"architecture":"amd64"}}'), nil, "Platform" },
      { index('{' .. CHILD .. ',"platform":{"os":"linux","OS":"windows",'
        .. '"architecture":"amd64"}}'), nil, "OS" },
      { index('{' .. CHILD .. '}', ',"Manifests":[]'), nil, "Manifests" },
      { index('{' .. CHILD .. '}', ',"ANNOTATIONS":{}'), OCI_INDEX,
        "ANNOTATIONS" },
    }
    for i, case in ipairs(CASES) do
      it("#" .. i .. ": " .. case[3], function()
        local ok, err, code = manifest.parse(case[1], case[2])
        assert_fails("MANIFEST_INVALID", 'manifest invalid: ', ok, err, code)
        assert.matches('"' .. case[3] .. '"', err, 1, true)
        assert.matches("only by case", err, 1, true)
        local got, derr, dcode = manifest.detect(case[2], case[1])
        if got == nil then -- a variant of mediaType: the detector's key
          assert.equal("MANIFEST_INVALID", dcode)
          assert.matches("only by case", derr, 1, true)
        end
      end)
    end

    it("but not keys of maps, nor unknown keys", function()
      local m = assert(manifest.parse(image(',"annotations":{"a":"1","A":"2"}'
        .. ',"Layerz":[],"x-Layers":1')))
      assert.same({ a = "1", A = "2" }, cjson.decode(m:annotations()))
      assert.equal(1, #m:refs())
    end)
  end)

  it("names the digest problem in the message", function()
    local _, err = manifest.parse(fixture("bad/digest-unparsable.json"))
    assert.equal('manifest invalid: layers[0].digest: invalid digest '
      .. '"sha256:XYZ": wrong hex length', err)
  end)

  it("refuses a missing platform only where Docker requires it", function()
    -- OCI index entries without platform are fine (layout/index.json above)
    local doc = cjson.decode(fixture("oci-index-multiplatform.json"))
    doc.manifests[1].platform = nil
    assert(manifest.parse(cjson.encode(doc)))
    doc.manifests[2].platform = { os = "linux" }
    assert_fails("MANIFEST_INVALID",
      "manifest invalid: manifests[1].platform.architecture: required",
      manifest.parse(cjson.encode(doc)))
    doc.manifests[2].platform = "linux/amd64"
    assert_fails("MANIFEST_INVALID",
      "manifest invalid: manifests[1].platform: must be an object",
      manifest.parse(cjson.encode(doc)))
  end)

  it("checks the types of optional fields", function()
    local doc = cjson.decode(fixture("oci-artifact-sbom.json"))
    doc.artifactType = 7
    assert_fails("MANIFEST_INVALID", "artifactType: must be a string",
      manifest.parse(cjson.encode(doc)))
    doc.artifactType = nil
    doc.subject = { mediaType = OCI_MANIFEST, digest = AMD64 }
    assert_fails("MANIFEST_INVALID", "manifest invalid: subject.size: required",
      manifest.parse(cjson.encode(doc)))
    doc.subject = "sha256:" .. string.rep("a", 64)
    assert_fails("MANIFEST_INVALID",
      "manifest invalid: subject: must be an object",
      manifest.parse(cjson.encode(doc)))
    doc = cjson.decode(fixture("docker-manifest-foreign.json"))
    doc.layers[1].urls = { 1 }
    assert_fails("MANIFEST_INVALID", "layers[0].urls: [0] must be a string",
      manifest.parse(cjson.encode(doc)))
  end)

  it("accepts 4 MiB and refuses 4 MiB + 1 byte (ETOOLARGE)", function()
    local body = blob(AMD64)
    local padded = body .. string.rep(" ", manifest.MAX - #body)
    assert.equal(manifest.MAX, #padded)
    local m = assert(manifest.parse(padded))
    assert.equal(helpers.sha256sum(padded), m:digest())
    assert_fails("ETOOLARGE", "manifest too large: 4194305 bytes",
      manifest.parse(padded .. " "))
  end)

  it("never crashes on truncations of valid documents", function()
    for _, name in ipairs({ "layout/index.json", "oci-index-multiplatform.json",
      "docker-list.json", "docker-manifest-foreign.json",
      "oci-artifact-sbom.json", "oci-artifact-signature.json" }) do
      local body = fixture(name)
      local whole = body:gsub("%s+$", "")
      for n = 0, #whole - 1 do
        local ok, err, code = manifest.parse(body:sub(1, n))
        assert.is_nil(ok, name .. " cut at " .. n)
        assert.is_string(err)
        assert.equal("MANIFEST_INVALID", code)
      end
    end
  end)

  it("never crashes on random bytes or mutated documents", function()
    math.randomseed(20240501)
    for _ = 1, 300 do
      local ok, err, code = manifest.parse(
        helpers.random_bytes(math.random(0, 600)))
      assert.is_nil(ok)
      assert.is_string(err)
      assert.equal("MANIFEST_INVALID", code)
    end
    local docs = { blob(AMD64), fixture("docker-list.json"),
      fixture("oci-artifact-sbom.json"),
      fixture("oci-index-multiplatform.json") }
    local alphabet = '{}[]":,0123456789-.eE tnfalsuxyz\\\0\255'
    for i = 1, 3000 do
      local body = docs[i % #docs + 1]
      local pos = math.random(1, #body)
      local ch = math.random(1, #alphabet)
      local mutated = body:sub(1, pos - 1) .. alphabet:sub(ch, ch)
        .. body:sub(pos + 1)
      local m, err, code = manifest.parse(mutated)
      if m then
        assert.equal(mutated, m:body())
        m:refs()
        m:subject()
        m:close()
      else
        assert.is_string(err)
        assert.is_true(code == "MANIFEST_INVALID" or code == "UNSUPPORTED",
          tostring(code))
      end
    end
    -- Leave the generator unpredictable again: helpers.tmpdir names come
    -- from it, and a fixed state would repeat another process's names.
    math.randomseed(os.time() + os.clock() * 1e6
      + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1e6)
  end)

  it("raises for arguments of the wrong type", function()
    assert.has_error(function() manifest.parse(nil) end,
      "body must be a string")
    assert.has_error(function() manifest.parse("{}", 7) end,
      "content type must be a string")
  end)
end)

describe("manifest.new", function()
  local BODY = '{"kind":"example"}'

  it("builds a manifest of any media type for a Lua handler", function()
    local m = assert(manifest.new({
      media_type = "application/vnd.example+json",
      body = BODY,
      refs = {
        { kind = "config", digest = EMPTY, size = 2,
          media_type = "application/vnd.oci.empty.v1+json" },
        { digest = LAYER, size = 175, urls = true },
        { kind = "manifest", digest = AMD64, size = 345,
          platform = { os = "linux", architecture = "amd64" } },
      },
      subject = { digest = ARM64, size = 345, media_type = OCI_MANIFEST },
      artifact_type = "application/vnd.example.thing",
      annotations = { ["org.example.a"] = "b" },
    }))
    assert.equal("application/vnd.example+json", m:media_type())
    assert.equal(helpers.sha256sum(BODY), m:digest())
    assert.equal(BODY, m:body())
    assert.same({
      { kind = "config", digest = EMPTY, size = 2,
        media_type = "application/vnd.oci.empty.v1+json" },
      { kind = "blob", digest = LAYER, size = 175, urls = true },
      { kind = "manifest", digest = AMD64, size = 345,
        platform = { os = "linux", architecture = "amd64" } },
    }, m:refs())
    assert.same({ kind = "manifest", digest = ARM64, size = 345,
      media_type = OCI_MANIFEST }, m:subject())
    assert.equal("application/vnd.example.thing", m:artifact_type())
    assert.equal('{"org.example.a":"b"}', m:annotations())
    assert.is_true(m:close())
    assert.is_true(m:close())
    assert.has_error(function() m:digest() end, "manifest is closed")
  end)

  it("reports the config's media type as artifact type by default",
    function()
    local m = assert(manifest.new({ media_type = "application/x", body = "",
      refs = { { kind = "config", digest = EMPTY, size = 2,
        media_type = "application/vnd.example.config" } } }))
    assert.equal("application/vnd.example.config", m:artifact_type())
    assert.is_nil(m:subject())
    assert.is_nil(m:annotations())
    m = assert(manifest.new({ media_type = "application/x", body = "" }))
    assert.is_nil(m:artifact_type())
    assert.same({}, m:refs())
  end)

  it("answers MANIFEST_INVALID for what a handler got wrong", function()
    assert_fails("MANIFEST_INVALID",
      'manifest invalid: refs[1].digest: invalid digest "sha256:nope"',
      manifest.new({ media_type = "application/x", body = BODY,
        refs = { { digest = "sha256:nope", size = 1 } } }))
    assert_fails("MANIFEST_INVALID",
      'manifest invalid: annotations: value of "n" must be a string',
      manifest.new({ media_type = "application/x", body = BODY,
        annotations = { n = 1 } }))
    assert_fails("MANIFEST_INVALID", "manifest invalid: annotations",
      manifest.new({ media_type = "application/x", body = BODY,
        annotations = { 1, 2 } }))
  end)

  it("limits size and media type like parse", function()
    assert_fails("ETOOLARGE", "manifest too large",
      manifest.new({ media_type = "application/x",
        body = string.rep(" ", manifest.MAX + 1) }))
    assert_fails("EINVAL", "manifest media type empty",
      manifest.new({ media_type = "", body = BODY }))
    assert_fails("EINVAL", "longer than 255",
      manifest.new({ media_type = string.rep("a", 256), body = BODY }))
  end)

  it("raises for arguments of the wrong type", function()
    assert.has_error(function() manifest.new("x") end,
      "manifest spec must be a table")
    assert.has_error(function() manifest.new({ body = BODY }) end,
      "media_type must be a string")
    assert.has_error(function()
      manifest.new({ media_type = "application/x", body = BODY,
        refs = { { kind = "layr", digest = EMPTY } } })
    end, "refs[1]: unknown kind layr")
    assert.has_error(function()
      manifest.new({ media_type = "application/x", body = BODY,
        refs = { { digest = EMPTY, size = "2" } } })
    end, "refs[1]: size must be an integer")
  end)
end)

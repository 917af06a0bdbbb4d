-- The manifest store (core/src/manifest.c, referrers.c) through the Lua
-- binding: put with reference verification, get/head, delete, list, the
-- referrers index, and the on-disk layout of revision links.
local helpers = require "helpers"
local cjson = require "cjson"
local manifest = require "berth.manifest"

local FX = "spec/fixtures/manifests/"
local V2 = "/docker/registry/v2"

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
local CONFIG_ARM64 =
  "sha256:dad006fd59c9ecf95d2d1c5cd7416617a8962b5e5b3b6683bd995488760d5981"
local LAYER =
  "sha256:47aa746b63cb3ca5d1fc5c726df220e80cf394911539d1ad47dda30e4111b83d"
local MISSING = "sha256:" .. string.rep("0", 64)

local OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
local OCI_INDEX = "application/vnd.oci.image.index.v1+json"
local DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
local DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

local function blob(dgst)
  return fixture("layout/blobs/sha256/" .. dgst:sub(8))
end

local function hex(dgst)
  return dgst:sub(8)
end

local function assert_fails(code, pattern, ok, err, got_code)
  assert.is_nil(ok)
  assert.is_string(err)
  assert.equal(code, got_code)
  if pattern then
    assert.matches(pattern, err, 1, true)
  end
end

local function parse(name, ct)
  local body = name:match("^sha256:") and blob(name) or fixture(name)
  return assert(manifest.parse(body, ct))
end

-- What a failed call must leave untouched.
local function snapshot(store, repo)
  return {
    blobs = { store:blob_list() },
    layers = { store:blob_list(repo) },
    manifests = { store:manifest_list(repo) },
    tags = { store:tag_list(repo) },
  }
end

for _, driver in ipairs({ "fs", "mem" }) do
  describe("manifest store (" .. driver .. " driver)", function()
    local store, root

    before_each(function()
      store, root = helpers.new_store({ driver = driver, fsync = "none" })
    end)

    -- Specs that read or write the layout by hand.
    local fs_it = driver == "fs" and it or function() end

    -- The blobs of the umoci images, linked into repo.
    local function push_image_blobs(repo, which)
      for _, d in ipairs(which or { CONFIG_AMD64, CONFIG_ARM64, LAYER }) do
        assert.equal(d, store:blob_put(repo, blob(d)))
      end
    end

    local function push_images(repo)
      push_image_blobs(repo)
      assert.equal(AMD64, store:manifest_put(repo, parse(AMD64)))
      assert.equal(ARM64, store:manifest_put(repo, parse(ARM64)))
    end

    local function push_artifact(repo, name)
      assert(store:blob_put(repo, "{}"))
      assert(store:blob_put(repo, fixture("artifact-sbom.spdx.json")))
      local m = parse(name)
      return assert(store:manifest_put(repo, m)), m
    end

    describe("put", function()
      it("tags only from what tag_expected says the tag was", function()
        push_image_blobs("r")
        assert(store:manifest_put("r", parse(AMD64),
          { tag = "x", tag_expected = false }))
        assert_fails("ETAG_CHANGED", nil, store:manifest_put("r",
          parse(ARM64), { tag = "x", tag_expected = false }))
        -- the manifest is stored, the tag stays
        assert(store:manifest_head("r", ARM64))
        assert.equal(AMD64, store:tag_get("r", "x"))
        assert(store:manifest_put("r", parse(ARM64),
          { tag = "x", tag_expected = AMD64 }))
        assert.equal(ARM64, store:tag_get("r", "x"))
      end)

      it("needs the config and layers linked in the repository", function()
        local before = snapshot(store, "r")
        local m = parse(AMD64)
        assert_fails("MANIFEST_BLOB_UNKNOWN",
          "manifest blob unknown: blob " .. CONFIG_AMD64 .. " is not in r",
          store:manifest_put("r", m, { tag = "latest" }))
        assert.same(before, snapshot(store, "r"))

        push_image_blobs("r", { CONFIG_AMD64 })
        before = snapshot(store, "r")
        assert_fails("MANIFEST_BLOB_UNKNOWN",
          "manifest blob unknown: blob " .. LAYER .. " is not in r",
          store:manifest_put("r", m, { tag = "latest" }))
        assert.same(before, snapshot(store, "r"))

        -- linked in another repository is not enough
        push_image_blobs("other", { LAYER })
        assert_fails("MANIFEST_BLOB_UNKNOWN", LAYER,
          store:manifest_put("r", m))

        push_image_blobs("r", { LAYER })
        assert.equal(AMD64, store:manifest_put("r", m, { tag = "latest" }))
        assert.same({ AMD64 }, store:manifest_list("r"))
        assert.same({ "latest" }, store:tag_list("r"))
      end)

      it("checks descriptor sizes against the blobs", function()
        push_image_blobs("r")
        local doc = cjson.decode(blob(AMD64))
        doc.layers[1].size = 174
        local m = assert(manifest.parse(cjson.encode(doc)))
        local before = snapshot(store, "r")
        assert_fails("MANIFEST_INVALID", "manifest invalid: size mismatch: "
          .. LAYER .. " is 175 bytes, the descriptor says 174",
          store:manifest_put("r", m))
        assert.same(before, snapshot(store, "r"))
      end)

      it("needs the children of an index as manifests of the repository",
        function()
        local index = parse("oci-index-multiplatform.json")
        push_image_blobs("r")
        assert_fails("MANIFEST_BLOB_UNKNOWN",
          "manifest blob unknown: manifest " .. AMD64 .. " is not in r",
          store:manifest_put("r", index))
        assert(store:manifest_put("r", parse(AMD64)))
        assert_fails("MANIFEST_BLOB_UNKNOWN", ARM64,
          store:manifest_put("r", index))
        -- a manifest elsewhere, or the bare blob, does not count
        push_image_blobs("other")
        assert(store:manifest_put("other", parse(ARM64)))
        assert(store:blob_put(nil, blob(ARM64)))
        assert_fails("MANIFEST_BLOB_UNKNOWN", ARM64,
          store:manifest_put("r", index))
        assert(store:manifest_put("r", parse(ARM64)))
        local d = assert(store:manifest_put("r", index, { tag = "multi" }))
        assert.equal(index:digest(), d)
        local body, info = assert(store:manifest_get("r", "multi"))
        assert.equal(fixture("oci-index-multiplatform.json"), body)
        assert.equal(OCI_INDEX, info.media_type)
        -- the layout's index.json: no mediaType, no platforms
        assert(store:manifest_put("r", parse("layout/index.json")))
      end)

      it("stores Docker schema2 manifests and manifest lists", function()
        push_image_blobs("r")
        local list = parse("docker-list.json")
        assert_fails("MANIFEST_BLOB_UNKNOWN", nil,
          store:manifest_put("r", list))
        local amd = parse("docker-manifest-amd64.json", DOCKER_MANIFEST)
        local arm = parse("docker-manifest-arm64.json")
        assert(store:manifest_put("r", amd))
        assert(store:manifest_put("r", arm))
        assert(store:manifest_put("r", list, { tag = "v1" }))
        local body, info = assert(store:manifest_get("r", "v1"))
        assert.equal(fixture("docker-list.json"), body)
        assert.same({ digest = list:digest(), size = #body,
          media_type = DOCKER_LIST }, info)
        info = assert(store:manifest_head("r", amd:digest()))
        assert.equal(DOCKER_MANIFEST, info.media_type)
      end)

      it("lets foreign layers be absent unless told otherwise", function()
        push_image_blobs("r")
        local m = parse("docker-manifest-foreign.json")
        local before = snapshot(store, "r")
        assert_fails("MANIFEST_BLOB_UNKNOWN", m:refs()[2].digest,
          store:manifest_put("r", m, { allow_foreign_layers = false }))
        assert.same(before, snapshot(store, "r"))
        assert.equal(m:digest(), store:manifest_put("r", m))
      end)

      it("stores without verification when asked (pull-through)", function()
        local m = parse("oci-index-multiplatform.json")
        assert.equal(m:digest(), store:manifest_put("r", m,
          { skip_verify = true }))
        assert.equal(fixture("oci-index-multiplatform.json"),
          store:manifest_get("r", m:digest()))
      end)

      it("checks the digest of a PUT by digest", function()
        push_image_blobs("r")
        local m = parse(AMD64)
        local before = snapshot(store, "r")
        assert_fails("DIGEST_INVALID",
          "digest mismatch: expected " .. MISSING .. " got " .. AMD64,
          store:manifest_put("r", m, { digest = MISSING, tag = "t" }))
        assert.same(before, snapshot(store, "r"))
        assert_fails("DIGEST_INVALID", "invalid digest",
          store:manifest_put("r", m, { digest = "sha256:abc" }))
        assert.same(before, snapshot(store, "r"))
        assert.equal(AMD64, store:manifest_put("r", m, { digest = AMD64 }))
      end)

      it("stores a manifest pushed by sha512 under that digest", function()
        push_image_blobs("r")
        local body = blob(AMD64)
        local d512 = store:blob_put(nil, body, "sha512")
        assert(store:blob_purge(d512))
        local m = parse(AMD64)
        assert.equal(d512, store:manifest_put("r", m, { digest = d512 }))
        assert.same({ d512 }, store:manifest_list("r"))
        local got, info = assert(store:manifest_get("r", d512))
        assert.equal(body, got)
        assert.equal(d512, info.digest)
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", AMD64))
      end)

      it("is idempotent, and moves a tag", function()
        push_images("r")
        assert.equal(AMD64, store:manifest_put("r", parse(AMD64),
          { tag = "latest" }))
        assert.equal(AMD64, store:manifest_put("r", parse(AMD64),
          { tag = "latest" }))
        assert.equal(ARM64, store:manifest_put("r", parse(ARM64),
          { tag = "latest" }))
        local _, info = assert(store:manifest_get("r", "latest"))
        assert.equal(ARM64, info.digest)
        assert.same({ ARM64, AMD64 }, store:manifest_list("r")) -- sorted
      end)

      it("checks names and tags first", function()
        local m = parse(AMD64)
        local before = snapshot(store, "r")
        assert_fails("NAME_INVALID", nil, store:manifest_put("R", m))
        assert_fails("NAME_INVALID", nil,
          store:manifest_put(string.rep("a", 256), m))
        assert_fails("TAG_INVALID", nil, store:manifest_put("r", m,
          { tag = "-bad" }))
        assert_fails("TAG_INVALID", nil, store:manifest_put("r", m,
          { tag = string.rep("t", 129) }))
        assert_fails("NAME_INVALID", nil, store:manifest_put("r\0x", m))
        assert.same(before, snapshot(store, "r"))
        assert.has_error(function() store:manifest_put("r", "{}") end,
          "manifest must be a manifest object")
      end)

      it("keeps hostile documents out of the store", function()
        push_images("r")
        local before = snapshot(store, "r")
        local bodies = {}
        for _, name in ipairs({ "truncated.json", "schema-version-string.json",
          "layers-object.json", "size-negative.json", "size-string.json",
          "missing-config.json", "missing-layers.json",
          "docker-missing-media-type.json", "digest-unparsable.json",
          "schema1.json", "array.json" }) do
          bodies[#bodies + 1] = { fixture("bad/" .. name) }
        end
        -- without a Content-Type it would be an OCI manifest: a valid one
        bodies[8][2] = DOCKER_MANIFEST
        bodies[#bodies + 1] = { blob(AMD64) .. string.rep(" ", manifest.MAX) }
        bodies[#bodies + 1] = { blob(LAYER) }
        bodies[#bodies + 1] = { blob(LAYER), OCI_MANIFEST }
        for _, case in ipairs(bodies) do
          local m, err, code = manifest.parse(case[1], case[2])
          assert.is_nil(m)
          assert.is_string(err)
          assert.is_true(code == "MANIFEST_INVALID" or code == "ETOOLARGE",
            code)
        end
        local _, _, code = manifest.parse(blob(AMD64) .. string.rep(" ",
          manifest.MAX))
        assert.equal("ETOOLARGE", code)
        assert.same(before, snapshot(store, "r"))
      end)
    end)

    describe("get", function()
      it("returns the exact bytes and media type by digest and by tag",
        function()
        push_image_blobs("r")
        local body = fixture("docker-manifest-amd64.json")
        local m = parse("docker-manifest-amd64.json")
        local d = assert(store:manifest_put("r", m, { tag = "1.0" }))
        assert.equal(helpers.sha256sum(body), d)
        for _, ref in ipairs({ d, "1.0" }) do
          local got, info = assert(store:manifest_get("r", ref))
          assert.equal(body, got)
          assert.same({ digest = d, size = #body,
            media_type = DOCKER_MANIFEST }, info)
          assert.same(info, store:manifest_head("r", ref))
        end
      end)

      it("detects the media type of documents without mediaType", function()
        push_images("r")
        local _, info = assert(store:manifest_get("r", AMD64))
        assert.equal(OCI_MANIFEST, info.media_type)
        assert(store:manifest_put("r", parse("layout/index.json"),
          { tag = "idx" }))
        info = assert(store:manifest_head("r", "idx"))
        assert.equal(OCI_INDEX, info.media_type)
      end)

      it("answers MANIFEST_UNKNOWN for what is not there", function()
        push_images("r")
        assert_fails("MANIFEST_UNKNOWN", "manifest unknown: r@" .. MISSING,
          store:manifest_get("r", MISSING))
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_head("r", MISSING))
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", "nosuch"))
        assert_fails("MANIFEST_UNKNOWN", nil,
          store:manifest_get("other", AMD64))
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_head("new", "x"))
      end)

      it("answers DIGEST_INVALID, TAG_INVALID, NAME_INVALID for bad input",
        function()
        assert_fails("DIGEST_INVALID", "invalid digest",
          store:manifest_get("r", "sha256:abc"))
        assert_fails("DIGEST_INVALID", nil,
          store:manifest_get("r", "md5:" .. string.rep("0", 32)))
        assert_fails("DIGEST_INVALID", nil, store:manifest_head("r", ":"))
        assert_fails("TAG_INVALID", nil, store:manifest_get("r", "-x"))
        assert_fails("TAG_INVALID", nil, store:manifest_get("r", "a/b"))
        assert_fails("TAG_INVALID", nil, store:manifest_get("r", ""))
        assert_fails("TAG_INVALID", nil, store:manifest_get("r", "latest\0x"))
        assert_fails("NAME_INVALID", nil,
          store:manifest_get(string.rep("a", 256), "latest"))
        assert_fails("NAME_INVALID", nil, store:manifest_get("../r", "latest"))
        assert.has_error(function() store:manifest_get("r", nil) end,
          "reference must be a string")
      end)

      it("keeps layers and manifests apart", function()
        push_images("r")
        -- a layer is no manifest of the repository
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", LAYER))
        assert_fails("MANIFEST_UNKNOWN", nil,
          store:manifest_get("r", CONFIG_AMD64))
        -- and a manifest is no layer blob of the repository
        assert_fails("BLOB_UNKNOWN", nil, store:blob_stat("r", AMD64))
        assert_fails("BLOB_UNKNOWN", nil, store:blob_get("r", AMD64))
        local want = { CONFIG_AMD64, CONFIG_ARM64, LAYER }
        table.sort(want)
        assert.same(want, store:blob_list("r"))
        -- though its data is a global blob
        assert.equal(345, store:blob_stat(nil, AMD64))
      end)

      -- Distribution's manifestStore.Get type-asserted the result before
      -- checking the error: a revision link to a blob that is no manifest
      -- (empty media type) panicked the handler.
      fs_it("answers MANIFEST_INVALID, not a crash, for a linked non-manifest",
        function()
        local bodies = {
          helpers.random_bytes(4096),       -- a layer
          blob(CONFIG_AMD64),               -- JSON, but a config
          '{"mediaType":"","schemaVersion":2}',
          '["not", "an", "object"]',
          fixture("bad/schema1.json"),
          "",
        }
        for _, body in ipairs(bodies) do
          local d = assert(store:blob_put(nil, body))
          local dir = root .. V2
            .. "/repositories/r/_manifests/revisions/sha256/" .. hex(d)
          assert(os.execute("mkdir -p '" .. dir .. "'") == 0)
          helpers.write_file(dir .. "/link", d)
          assert_fails("MANIFEST_INVALID", "manifest invalid",
            store:manifest_get("r", d))
          assert_fails("MANIFEST_INVALID", nil, store:manifest_head("r", d))
        end
        -- and the other helpers cope with it too
        assert.equal(#bodies, #store:manifest_list("r"))
        assert(store:referrers_rebuild("r"))
      end)

      it("answers MANIFEST_UNKNOWN when the data is gone", function()
        push_images("r")
        assert(store:blob_purge(AMD64))
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", AMD64))
      end)
    end)

    describe("delete", function()
      it("deletes only with the tags it was told (compare-and-set)",
        function()
        push_images("r")
        assert(store:manifest_put("r", parse(AMD64), { tag = "a" }))
        assert(store:manifest_put("r", parse(AMD64), { tag = "b" }))
        assert_fails("ETAG_CHANGED", nil,
          store:manifest_delete("r", AMD64, { "a" }))
        assert_fails("ETAG_CHANGED", nil,
          store:manifest_delete("r", AMD64, {}))
        assert.same({ "a", "b" }, store:tag_lookup("r", AMD64))
        assert(store:manifest_head("r", AMD64))
        assert.is_true(store:manifest_delete("r", AMD64, { "b", "a" }))
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", "a"))
        assert.is_true(store:manifest_delete("r", ARM64, {}))
      end)

      it("removes the revision and every tag pointing at it", function()
        push_images("r")
        assert(store:manifest_put("r", parse(AMD64), { tag = "a" }))
        assert(store:manifest_put("r", parse(AMD64), { tag = "b" }))
        assert(store:manifest_put("r", parse(ARM64), { tag = "c" }))
        assert.is_true(store:manifest_delete("r", AMD64))
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", AMD64))
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", "a"))
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", "b"))
        assert.same({ "c" }, store:tag_list("r"))
        assert.same({ ARM64 }, store:manifest_list("r"))
        if driver == "fs" then
          local dir = root .. V2
            .. "/repositories/r/_manifests/revisions/sha256/" .. hex(AMD64)
          assert.is_nil(helpers.read_file(dir .. "/link"))
          assert.is_nil(io.open(dir))
        end
        -- the data stays for garbage collection
        assert.equal(345, store:blob_stat(nil, AMD64))
        assert_fails("MANIFEST_UNKNOWN", "manifest unknown: r@" .. AMD64,
          store:manifest_delete("r", AMD64))
        -- and it can be pushed again
        assert(store:manifest_put("r", parse(AMD64), { tag = "a" }))
        assert.equal(blob(AMD64), store:manifest_get("r", "a"))
      end)

      it("checks its arguments", function()
        assert_fails("MANIFEST_UNKNOWN", nil,
          store:manifest_delete("r", MISSING))
        assert_fails("DIGEST_INVALID", nil,
          store:manifest_delete("r", "latest"))
        assert_fails("NAME_INVALID", nil, store:manifest_delete("R", MISSING))
      end)
    end)

    it("lists a repository's manifests sorted", function()
      assert.same({}, store:manifest_list("r"))
      push_images("r")
      assert(store:manifest_put("r", parse("layout/index.json")))
      local idx = parse("layout/index.json"):digest()
      local want = { AMD64, ARM64, idx }
      table.sort(want)
      assert.same(want, store:manifest_list("r"))
      assert.same({}, store:manifest_list("other"))
      assert_fails("NAME_INVALID", nil, store:manifest_list("R"))
      if driver == "fs" then
        -- a revision directory without its link (a put that died) is skipped
        local dir = root .. V2
          .. "/repositories/r/_manifests/revisions/sha256/" .. hex(MISSING)
        assert(os.execute("mkdir -p '" .. dir .. "'") == 0)
        assert.same(want, store:manifest_list("r"))
      end
    end)

    fs_it("keeps Distribution's layout: blob data and revision link", function()
      push_images("r")
      assert(store:manifest_put("r", parse(AMD64), { tag = "latest" }))
      local h = hex(AMD64)
      assert.equal(blob(AMD64), helpers.read_file(root .. V2 .. "/blobs/sha256/"
        .. h:sub(1, 2) .. "/" .. h .. "/data"))
      local repo = root .. V2 .. "/repositories/r/_manifests"
      assert.equal("sha256:" .. h,
        helpers.read_file(repo .. "/revisions/sha256/" .. h .. "/link"))
      assert.equal("sha256:" .. h,
        helpers.read_file(repo .. "/tags/latest/current/link"))
      assert.equal("sha256:" .. h,
        helpers.read_file(repo .. "/tags/latest/index/sha256/" .. h .. "/link"))
      -- not linked as a layer
      assert.is_nil(helpers.read_file(root .. V2 .. "/repositories/r/_layers/"
        .. "sha256/" .. h .. "/link"))
    end)

    fs_it("serves a manifest that Distribution stored", function()
      local body = blob(AMD64)
      local h = hex(AMD64)
      local data = root .. V2 .. "/blobs/sha256/" .. h:sub(1, 2) .. "/" .. h
      local rev = root .. V2 .. "/repositories/library/hello/_manifests/"
        .. "revisions/sha256/" .. h
      assert(os.execute("mkdir -p '" .. data .. "' '" .. rev .. "'") == 0)
      helpers.write_file(data .. "/data", body)
      helpers.write_file(rev .. "/link", AMD64)
      local got, info = assert(store:manifest_get("library/hello", AMD64))
      assert.equal(body, got)
      assert.equal(OCI_MANIFEST, info.media_type)
      assert.same({ AMD64 }, store:manifest_list("library/hello"))
    end)

    describe("referrers", function()
      local function decode(json)
        local idx = cjson.decode(json)
        assert.equal(2, idx.schemaVersion)
        assert.equal(OCI_INDEX, idx.mediaType)
        return idx.manifests
      end

      it("lists the referrers of a subject as an OCI index", function()
        push_images("r")
        local sbom_d, sbom = push_artifact("r", "oci-artifact-sbom.json")
        local sig_d, sig = push_artifact("r", "oci-artifact-signature.json")
        local want = {
          { mediaType = OCI_MANIFEST, digest = sbom_d, size = #sbom:body(),
            artifactType = "application/spdx+json",
            annotations = {
              ["org.opencontainers.image.created"] = "2024-05-01T12:00:00Z",
              ["org.example.sbom.format"] = "spdx",
            } },
          { mediaType = OCI_MANIFEST, digest = sig_d, size = #sig:body(),
            artifactType = "application/vnd.example.signature.v1" },
        }
        table.sort(want, function(a, b) return a.digest < b.digest end)
        local json = assert(store:referrers("r", AMD64))
        assert.same(want, decode(json))
        -- sizes are integer literals
        assert.matches('"size":' .. #sig:body() .. '[,}]', json)

        local only = decode(assert(store:referrers("r", AMD64,
          "application/spdx+json")))
        assert.equal(1, #only)
        assert.equal(sbom_d, only[1].digest)
        assert.same({}, decode(assert(store:referrers("r", AMD64,
          "application/none"))))
        assert.same({}, decode(assert(store:referrers("r", ARM64))))
        assert.same({}, decode(assert(store:referrers("other", AMD64))))
        assert.equal('{"schemaVersion":2,"mediaType":"' .. OCI_INDEX
          .. '","manifests":[]}', store:referrers("r", MISSING))
      end)

      it("accepts referrers before their subject", function()
        local d = push_artifact("r", "oci-artifact-signature.json")
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", AMD64))
        local list = decode(assert(store:referrers("r", AMD64)))
        assert.equal(d, list[1].digest)
      end)

      it("reports the config media type of an image without artifactType",
        function()
        push_images("r")
        local doc = cjson.decode(blob(ARM64))
        doc.subject = { mediaType = OCI_MANIFEST, digest = AMD64, size = 345 }
        local m = assert(manifest.parse(cjson.encode(doc)))
        local d = assert(store:manifest_put("r", m))
        local list = decode(assert(store:referrers("r", AMD64)))
        assert.same({ { mediaType = OCI_MANIFEST, digest = d,
          size = #m:body(),
          artifactType = "application/vnd.oci.image.config.v1+json" } }, list)
      end)

      it("drops the entry when the referrer is deleted", function()
        push_images("r")
        local sbom_d = push_artifact("r", "oci-artifact-sbom.json")
        local sig_d = push_artifact("r", "oci-artifact-signature.json")
        assert(store:manifest_delete("r", sbom_d))
        local list = decode(assert(store:referrers("r", AMD64)))
        assert.equal(1, #list)
        assert.equal(sig_d, list[1].digest)
        -- deleting the subject leaves its referrers listed
        assert(store:manifest_delete("r", AMD64))
        assert.equal(1, #decode(assert(store:referrers("r", AMD64))))
      end)

      fs_it("rebuilds the same listing after the cache is lost", function()
        push_images("r")
        push_artifact("r", "oci-artifact-sbom.json")
        push_artifact("r", "oci-artifact-signature.json")
        -- a manifest of a type with no built-in schema, with a subject
        local body = cjson.encode({ mediaType = "application/vnd.example+json",
          subject = { mediaType = OCI_MANIFEST, digest = AMD64, size = 345 },
          artifactType = "application/vnd.example" })
        local m = assert(manifest.new({
          media_type = "application/vnd.example+json",
          body = body,
          subject = { digest = AMD64, size = 345, media_type = OCI_MANIFEST },
          artifact_type = "application/vnd.example",
        }))
        assert(store:manifest_put("r", m))
        local before = assert(store:referrers("r", AMD64))
        assert.equal(3, #decode(before))
        local cache = root .. "/berth/v1/repositories/r/_referrers"
        assert(io.open(cache)):close()
        helpers.rmrf(cache)
        -- the marker went with it: the next listing completes the index
        assert.equal(before, store:referrers("r", AMD64))
        helpers.rmrf(cache)
        assert.is_true(store:referrers_rebuild("r"))
        assert.equal(before, store:referrers("r", AMD64))
        -- rebuilding again, with the cache present, changes nothing
        assert.is_true(store:referrers_rebuild("r"))
        assert.equal(before, store:referrers("r", AMD64))
      end)

      fs_it("keeps the cache outside Distribution's tree", function()
        push_images("r")
        local d = push_artifact("r", "oci-artifact-signature.json")
        local path = root .. "/berth/v1/repositories/r/_referrers/sha256/"
          .. hex(AMD64) .. "/sha256/" .. hex(d)
        local entry = cjson.decode((assert(helpers.read_file(path))))
        assert.equal(d, entry.digest)
      end)

      it("checks its arguments", function()
        assert_fails("DIGEST_INVALID", nil, store:referrers("r", "sha256:x"))
        assert_fails("NAME_INVALID", nil, store:referrers("R", AMD64))
        assert_fails("NAME_INVALID", nil, store:referrers_rebuild("R"))
        assert.has_error(function() store:referrers("r", AMD64, 1) end,
          "artifact type must be a string")
      end)
    end)
  end)
end

-- Crash safety: the fault driver stops the Nth storage operation of a put
-- (or delete) for every N. A fresh process must then find no tag pointing
-- at a missing manifest, no revision without its data, and what was
-- acknowledged intact; and the client's retry must succeed.
describe("crash safety of manifests", function()
  local berth = require "berth"
  local drivers = require "berth.driver"

  local function faulty_store(root)
    local fault = drivers.fault(assert(drivers.fs(root, { fsync = "none" })))
    return assert(berth.open{ driver = fault }), fault
  end

  -- A repository with both images, the amd64 one tagged "latest".
  local function seed(root)
    local store = assert(berth.open{ root = root, fsync = "none" })
    for _, d in ipairs({ CONFIG_AMD64, CONFIG_ARM64, LAYER }) do
      assert(store:blob_put("r", blob(d)))
    end
    assert(store:blob_put("r", "{}"))
    assert(store:manifest_put("r", parse(AMD64), { tag = "latest" }))
    assert(store:manifest_put("r", parse(ARM64)))
    store:close()
  end

  local ART = "oci-artifact-signature.json"

  -- Every invariant a crashed put or delete can touch.
  local function check_store(root)
    local store = assert(berth.open{ root = root, fsync = "none" })
    -- (a crash between a tag's index and current links leaves a tag that
    -- points nowhere: that is allowed, pointing at nothing is not)
    for _, tag in ipairs(store:tag_list("r") or {}) do
      local d = store:tag_get("r", tag)
      if d then
        local body, info = store:manifest_get("r", tag)
        assert.is_string(body, "tag " .. tag .. " points at nothing: "
          .. tostring(info))
        assert.equal(d, info.digest)
        assert.equal(d, helpers.sha256sum(body))
      end
    end
    for _, d in ipairs(assert(store:manifest_list("r"))) do
      local body = assert(store:manifest_get("r", d))
      assert.equal(d, helpers.sha256sum(body))
    end
    local idx = cjson.decode((assert(store:referrers("r", AMD64))))
    for _, desc in ipairs(idx.manifests) do
      assert(store:manifest_head("r", desc.digest))
    end
    return store
  end

  local function put(store)
    return store:manifest_put("r", parse(ART), { tag = "sig" })
  end

  local function count_ops(action)
    local root = helpers.tmpdir()
    seed(root)
    local store, fault = faulty_store(root)
    fault:arm("off", 0)
    assert(action(store))
    local n = fault:count()
    store:close()
    helpers.rmrf(root)
    return n
  end

  it("put: tags follow their manifest, at every operation", function()
    local total = count_ops(put)
    assert.is_true(total > 5)
    for n = 1, total + 1 do
      local root = helpers.tmpdir()
      seed(root)
      local store, fault = faulty_store(root)
      fault:arm("crash", n)
      local ok = put(store)
      store:close()
      store = check_store(root)
      if ok then
        assert(store:manifest_get("r", "sig"))
      end
      -- the client retries
      assert(put(store))
      local idx = cjson.decode((assert(store:referrers("r", AMD64))))
      assert.equal(1, #idx.manifests)
      store:close()
      helpers.rmrf(root)
    end
  end)

  it("delete: no tag outlives its manifest, at every operation", function()
    local function delete(store)
      return store:manifest_delete("r", AMD64)
    end
    local total = count_ops(function(store)
      assert(put(store))
      return delete(store)
    end)
    for n = 1, total + 1 do
      local root = helpers.tmpdir()
      seed(root)
      local store, fault = faulty_store(root)
      assert(put(store))
      fault:arm("crash", n)
      local ok = delete(store)
      store:close()
      store = check_store(root)
      if ok then
        assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", AMD64))
      else
        local again, _, code = delete(store)
        assert.is_true(again or code == "MANIFEST_UNKNOWN")
      end
      assert_fails("MANIFEST_UNKNOWN", nil, store:manifest_get("r", "latest"))
      store:close()
      helpers.rmrf(root)
    end
  end)
end)

-- Manifests with a subject that berth did not index (another registry
-- wrote them, or the index was lost) are listed all the same: the first
-- listing of an epoch completes the index, or reads every manifest when
-- it cannot write.
describe("referrers of manifests berth did not index", function()
  local berth = require "berth"
  local drivers = require "berth.driver"
  local SIG = "oci-artifact-signature.json"
  local SBOM = "oci-artifact-sbom.json"

  local function digests(store)
    local idx = cjson.decode((assert(store:referrers("r", AMD64))))
    local out = {}
    for _, d in ipairs(idx.manifests) do out[#out + 1] = d.digest end
    return out
  end

  -- The images and the signature, through berth; -> root, signature digest
  local function seed()
    local root = helpers.tmpdir()
    local store = assert(berth.open{ root = root, fsync = "none" })
    for _, d in ipairs({ CONFIG_AMD64, CONFIG_ARM64, LAYER }) do
      assert(store:blob_put("r", blob(d)))
    end
    assert(store:blob_put("r", "{}"))
    assert(store:blob_put("r", fixture("artifact-sbom.spdx.json")))
    assert(store:manifest_put("r", parse(AMD64)))
    local sig = assert(store:manifest_put("r", parse(SIG)))
    store:close()
    return root, sig
  end

  -- Store a manifest as Distribution does: its blob and revision link,
  -- nothing under /berth. -> digest
  local function distribution_put(root, name)
    local d = assert(drivers.fs(root, { fsync = "none" }))
    local body = fixture(name)
    local dgst = helpers.sha256sum(body)
    local data = V2 .. "/blobs/sha256/" .. hex(dgst):sub(1, 2) .. "/"
      .. hex(dgst) .. "/data"
    assert(d:put(data, body))
    assert(d:put(V2 .. "/repositories/r/_manifests/revisions/sha256/"
      .. hex(dgst) .. "/link", dgst))
    d:close()
    return dgst
  end

  it("in a store without berth's indexes", function()
    local root, sig = seed()
    helpers.rmrf(root .. "/berth")
    local store = assert(berth.open{ root = root, fsync = "none" })
    assert.same({ sig }, digests(store))
    -- completed once: the marker of this epoch is there
    assert(io.open(root .. "/berth/v1/repositories/r/_referrers/_complete"))
      :close()
    store:close()
  end)

  it("written by another registry, from the next epoch on", function()
    local root, sig = seed()
    local store = assert(berth.open{ root = root, fsync = "none" })
    assert.same({ sig }, digests(store))
    local sbom = distribution_put(root, SBOM)
    assert(store:new_epoch()) -- what berth serve does at each start
    local want = { sig, sbom }
    table.sort(want)
    assert.same(want, digests(store))
    store:close()
  end)

  it("right whichever storage operation fails on the way", function()
    local root, sig = seed()
    helpers.rmrf(root .. "/berth")
    local sbom = distribution_put(root, SBOM)
    local want = { sig, sbom }
    table.sort(want)
    local function faulty()
      local fault = drivers.fault(assert(drivers.fs(root,
        { fsync = "none" })))
      return assert(berth.open{ driver = fault }), fault
    end
    local store, fault = faulty()
    fault:arm("off", 0)
    assert.same(want, digests(store))
    local total = fault:count()
    store:close()
    assert.is_true(total > 5)
    for n = 1, total do
      helpers.rmrf(root .. "/berth")
      store, fault = faulty()
      fault:arm("fail_one", n)
      local json, err, code = store:referrers("r", AMD64)
      if json then
        local got = {}
        for _, d in ipairs(cjson.decode(json).manifests) do
          got[#got + 1] = d.digest
        end
        assert.same(want, got)
      else
        -- only a failure of the marker read itself can end it
        assert.is_string(err)
        assert.equal("EIO", code)
      end
      store:close()
    end
  end)
end)

-- A tag set and a delete of its manifest from two processes: the tag's
-- check that the manifest exists and the delete's removal of it are
-- ordered by the repository's tag lock, so no tag is left pointing at a
-- manifest that is gone.
describe("tags and manifest deletes across processes", function()
  local berth = require "berth"

  local function run(root, code)
    local script = os.tmpname()
    helpers.write_file(script, ([[
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
local berth = require "berth"
local manifest = require "berth.manifest"
local store = assert(berth.open{ root = %q, fsync = "none" })
local f = assert(io.open(%q, "rb"))
local body = f:read("*a")
f:close()
local m = assert(manifest.parse(body))
while not io.open(%q .. "/go", "rb") do end
]]):format(root, FX .. "layout/blobs/sha256/" .. hex(AMD64), root) .. code)
    return io.popen("luajit " .. script .. " 2>&1; rm -f " .. script)
  end

  it("never leaves a tag on a deleted manifest", function()
    local root = helpers.tmpdir()
    local store = assert(berth.open{ root = root, fsync = "none" })
    for _, d in ipairs({ CONFIG_AMD64, LAYER }) do
      assert(store:blob_put("r", blob(d)))
    end
    local tagger = run(root, [[
for i = 1, 300 do
  store:manifest_put("r", m)
  store:tag_set("r", "t" .. i % 7, m:digest())
end
io.open("]] .. root .. [[/stop", "wb"):close()
print("done")
]])
    local deleter = run(root, [[
while not io.open("]] .. root .. [[/stop", "rb") do
  store:manifest_delete("r", m:digest())
end
print("done")
]])
    helpers.write_file(root .. "/go", "")
    assert.matches("done", tagger:read("*a"))
    assert.matches("done", deleter:read("*a"))
    tagger:close()
    deleter:close()
    for _, tag in ipairs(store:tag_list("r") or {}) do
      local d = store:tag_get("r", tag)
      if d then
        assert(store:manifest_head("r", d), "tag " .. tag .. " dangles")
      end
    end
    store:close()
  end)
end)

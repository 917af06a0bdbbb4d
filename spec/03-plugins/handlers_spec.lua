local helpers = require "helpers"
local support = require "03-plugins.support"
local cjson = require "cjson.safe"
local handlers = require "berth.handlers"
local registry = require "berth.registry"

local NOTE = "application/vnd.example.note.v1+json"

-- A Lua handler for a made-up artifact type: { "mediaType": NOTE,
-- "text": ..., "files": [ descriptor, ... ], "about": descriptor? }
local function note_handler(extra)
  local h = {
    media_type = NOTE,
    parse = function(body, doc)
      if type(doc) ~= "table" or type(doc.files) ~= "table" then
        return nil, "a note needs files"
      end
      return doc
    end,
    references = function(note)
      local refs = {}
      for i, f in ipairs(note.files) do
        refs[i] = { digest = f.digest, size = f.size,
          media_type = f.mediaType }
      end
      return refs
    end,
    subject = function(note)
      local a = note.about
      if type(a) == "table" then
        return { digest = a.digest, size = a.size, media_type = a.mediaType }
      end
    end,
    artifact_type = function() return "application/vnd.example.note" end,
  }
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

local function note_body(files, about)
  return support.encode({ mediaType = NOTE, text = "hello",
    files = #files > 0 and files or support.EMPTY, about = about })
end

describe("handler registry", function()
  it("has the four standard types built in", function()
    local reg = handlers.new()
    assert.same({
      "application/vnd.docker.distribution.manifest.list.v2+json",
      "application/vnd.docker.distribution.manifest.v2+json",
      "application/vnd.oci.image.index.v1+json",
      "application/vnd.oci.image.manifest.v1+json",
    }, reg:media_types())
    assert.is_true(reg:find(support.OCI_MANIFEST).builtin)
    assert.is_nil(reg:find(NOTE))
  end)

  it("keeps registries apart", function()
    local a, b = handlers.new(), handlers.new()
    a:register(note_handler())
    assert.is_table(a:find(NOTE))
    assert.is_nil(b:find(NOTE))
  end)

  it("raises when a media type is registered twice", function()
    local reg = handlers.new()
    assert.is_true(reg:register(note_handler()))
    assert.has_error(function() reg:register(note_handler()) end,
      "manifest media type registration would overwrite existing: " .. NOTE)
    assert.has_error(function()
      reg:register(note_handler({ media_type = support.OCI_MANIFEST }))
    end, "manifest media type registration would overwrite existing: "
      .. support.OCI_MANIFEST)
  end)

  it("checks the handler's shape", function()
    local reg = handlers.new()
    assert.has_error(function() reg:register({ media_type = "x/y" }) end,
      "handler x/y: parse must be a function")
    assert.has_error(function()
      reg:register(note_handler({ validate = "yes" }))
    end, "handler " .. NOTE .. ": validate must be a function")
    assert.has_error(function() reg:register("x") end,
      "handler must be a table")
  end)

  it("overrides a built-in explicitly and returns the old handler",
      function()
    local reg = handlers.new()
    local old = reg:find(support.OCI_MANIFEST)
    local mine = note_handler({ media_type = support.OCI_MANIFEST })
    assert.equal(old, reg:override(mine))
    assert.equal(mine, reg:find(support.OCI_MANIFEST))
    assert.has_error(function() reg:override(note_handler()) end,
      "no handler to override for " .. NOTE .. " (use register)")
  end)

  describe("parse", function()
    local reg
    before_each(function() reg = handlers.new() end)

    it("gives a uniform object for a built-in type", function()
      local body = support.image({
        config = { mediaType = support.OCI_CONFIG,
          digest = "sha256:" .. string.rep("a", 64), size = 2 },
        layers = { { mediaType = support.OCI_LAYER,
          digest = "sha256:" .. string.rep("b", 64), size = 3 } },
      })
      local p = assert(reg:parse(nil, body))
      assert.equal(support.OCI_MANIFEST, p.media_type)
      assert.is_true(p.handler.builtin)
      assert.equal(2, p.doc.schemaVersion)
      assert.equal(helpers.sha256sum(body), p.digest)
      assert.equal(#body, p.size)
      assert.equal(2, #p.descriptors)
      assert.equal("config", p.descriptors[1].kind)
      assert.equal("layer", p.descriptors[2].kind)
      assert.equal(3, p.descriptors[2].size)
      assert.is_nil(p.subject)
      assert.equal(p.digest, p.c:digest())
      p.c:close()
    end)

    it("detects an index from a generic Content-Type", function()
      local body = support.encode({ schemaVersion = 2,
        manifests = support.EMPTY })
      local p = assert(reg:parse("application/json", body))
      assert.equal(support.OCI_INDEX, p.media_type)
      p.c:close()
    end)

    it("refuses a body whose mediaType contradicts the Content-Type",
        function()
      local body = support.image({ config = { mediaType = support.OCI_CONFIG,
        digest = support.MISSING, size = 1 } })
      local p, err, code = reg:parse(support.DOCKER_MANIFEST, body)
      assert.is_nil(p)
      assert.matches("does not match the content type", err)
      assert.equal("MANIFEST_INVALID", code)
    end)

    it("refuses a media type without handler as MANIFEST_INVALID",
        function()
      local p, err, code = reg:parse(NOTE, note_body({}))
      assert.is_nil(p)
      assert.equal("unsupported manifest media type: " .. NOTE, err)
      assert.equal("MANIFEST_INVALID", code)
      p, err, code = reg:parse(
        "application/vnd.docker.distribution.manifest.v1+prettyjws", "{}")
      assert.is_nil(p)
      assert.equal("manifest invalid: schema1 manifests are not supported",
        err)
      assert.equal("MANIFEST_INVALID", code)
    end)

    it("refuses a body over 4 MiB", function()
      local p, err, code = reg:parse(nil, string.rep(" ", 4 * 1024 * 1024 + 1))
      assert.is_nil(p)
      assert.matches("manifest too large", err)
      assert.equal("ETOOLARGE", code)
    end)

    it("passes a built-in parser's refusal on", function()
      local p, err, code = reg:parse(support.OCI_MANIFEST, "not json")
      assert.is_nil(p)
      assert.is_string(err)
      assert.equal("MANIFEST_INVALID", code)
    end)

    it("builds the C manifest from what a Lua handler reports", function()
      reg:register(note_handler())
      local f = { mediaType = "text/plain",
        digest = "sha256:" .. string.rep("c", 64), size = 5 }
      local about = { mediaType = support.OCI_MANIFEST,
        digest = "sha256:" .. string.rep("d", 64), size = 100 }
      local body = note_body({ f }, about)
      local p = assert(reg:parse(NOTE, body))
      assert.equal(NOTE, p.media_type)
      assert.equal("hello", p.obj.text)
      assert.same({ { kind = "blob", digest = f.digest, size = 5,
        media_type = "text/plain" } }, p.descriptors)
      assert.equal(about.digest, p.subject.digest)
      assert.equal("application/vnd.example.note", p.artifact_type)
      -- the C manifest holds the same
      assert.equal(NOTE, p.c:media_type())
      assert.equal(body, p.c:body())
      local refs = p.c:refs()
      assert.equal(1, #refs)
      assert.equal(f.digest, refs[1].digest)
      assert.equal("blob", refs[1].kind)
      assert.equal(about.digest, p.c:subject().digest)
      assert.equal("application/vnd.example.note", p.c:artifact_type())
      p.c:close()
    end)

    it("reports a Lua handler's refusal and failures as MANIFEST_INVALID",
        function()
      reg:register(note_handler({
        references = function(note)
          if note.text == "raise" then error("no references today", 0) end
          if note.text == "bad" then return { { digest = 7 } } end
          return {}
        end,
      }))
      local p, err, code = reg:parse(NOTE, '{"mediaType":"' .. NOTE .. '"}')
      assert.is_nil(p)
      assert.equal("a note needs files", err)
      assert.equal("MANIFEST_INVALID", code)
      p, err, code = reg:parse(NOTE, cjson.encode({ mediaType = NOTE,
        text = "raise", files = {} }))
      assert.is_nil(p)
      assert.equal("handler " .. NOTE
        .. ": references failed: no references today", err)
      assert.equal("MANIFEST_INVALID", code)
      p, err, code = reg:parse(NOTE, cjson.encode({ mediaType = NOTE,
        text = "bad", files = {} }))
      assert.is_nil(p)
      assert.equal("reference #1 has no digest", err)
      assert.equal("MANIFEST_INVALID", code)
    end)

    it("refuses a reference whose digest does not parse", function()
      reg:register(note_handler())
      local p, err, code = reg:parse(NOTE, note_body({ { digest = "sha256:xyz",
        size = 1 } }))
      assert.is_nil(p)
      assert.is_string(err)
      assert.equal("MANIFEST_INVALID", code)
    end)

    it("runs validate, with the store", function()
      local got_store
      reg:register(note_handler({ validate = function(note, store)
        got_store = store
        if note.text ~= "ok" then
          return nil, "a note must say ok"
        end
      end }))
      local p = assert(reg:parse(NOTE, note_body({})))
      local fake = {}
      local ok, err, code = reg:validate(p, fake)
      assert.is_nil(ok)
      assert.equal("a note must say ok", err)
      assert.equal("MANIFEST_INVALID", code)
      assert.equal(fake, got_store)
      p.c:close()
    end)
  end)
end)

describe("a Lua handler with the real store", function()
  local store, reg

  local function setup(extra_handlers)
    store = support.new_store(finally)
    reg = assert(registry.new({ store = store,
      handlers = extra_handlers or { note_handler() } }))
  end

  it("stores what the handler reports once the blobs it names exist",
      function()
    setup()
    local content = "note file"
    local f = { mediaType = "text/plain", digest = helpers.sha256sum(content),
      size = #content }
    local body = note_body({ f })
    -- the store verifies the blob the handler named
    local ok, err, code = reg:put_manifest("notes", "n1", body, NOTE)
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("MANIFEST_BLOB_UNKNOWN", code)
    assert.is_nil((store:tag_get("notes", "n1")))

    assert(store:blob_put("notes", content))
    local dgst, info = assert(reg:put_manifest("notes", "n1", body, NOTE))
    assert.equal(helpers.sha256sum(body), dgst)
    assert.equal(NOTE, info.media_type)
    local got, ginfo = assert(reg:get_manifest("notes", "n1"))
    assert.equal(body, got)
    assert.equal(NOTE, ginfo.media_type)
    assert.equal(dgst, ginfo.digest)
  end)

  it("records the subject the handler reports for the referrers API",
      function()
    setup()
    local img = support.image_in(store, "notes")
    local img_digest = assert(reg:put_manifest("notes", "v1", img,
      support.OCI_MANIFEST))
    local body = note_body({}, { mediaType = support.OCI_MANIFEST,
      digest = img_digest, size = #img })
    local dgst, info = assert(reg:put_manifest("notes", helpers.sha256sum(body),
      body, NOTE))
    assert.equal(img_digest, info.subject)
    local json = assert(reg:referrers("notes", img_digest))
    local index = cjson.decode(json)
    assert.equal(1, #index.manifests)
    assert.equal(dgst, index.manifests[1].digest)
    assert.equal(NOTE, index.manifests[1].mediaType)
    assert.equal("application/vnd.example.note",
      index.manifests[1].artifactType)
  end)

  it("lets an override wrap the built-in it replaces", function()
    local base = handlers.new():find(support.OCI_MANIFEST)
    setup({ {
      media_type = support.OCI_MANIFEST,
      override = true,
      parse = base.parse,
      references = base.references,
      subject = base.subject,
      validate = function(m)
        local doc = cjson.decode(m:body())
        if type(doc.annotations) ~= "table"
            or not doc.annotations["org.opencontainers.image.source"] then
          return nil, "images must name their source"
        end
      end,
    } })
    local body = support.image_in(store, "r")
    local ok, err, code = reg:put_manifest("r", "v1", body,
      support.OCI_MANIFEST)
    assert.is_nil(ok)
    assert.equal("images must name their source", err)
    assert.equal("MANIFEST_INVALID", code)
    body = support.image_in(store, "r", { annotations = {
      ["org.opencontainers.image.source"] = "https://example.com/r" } })
    assert(reg:put_manifest("r", "v1", body, support.OCI_MANIFEST))
  end)

  it("refuses a second handler for a type at registry creation", function()
    local r, err, code = registry.new({ driver = "mem",
      handlers = { note_handler(), note_handler() } })
    assert.is_nil(r)
    assert.matches("would overwrite existing: " .. NOTE:gsub("%p", "%%%0"),
      err)
    assert.equal("EINVAL", code)
  end)
end)

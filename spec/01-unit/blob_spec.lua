local helpers = require "helpers"

local MISSING = "sha256:" .. string.rep("0", 64)

local function assert_fails(code, ok, err, got_code)
  assert.is_nil(ok)
  assert.is_string(err)
  assert.equal(code, got_code)
end

for _, driver in ipairs({ "fs", "mem" }) do
  describe("blobs (" .. driver .. " driver)", function()
    local store

    before_each(function()
      store = helpers.new_store({ driver = driver, fsync = "none" })
    end)

    it("puts, stats and gets a blob", function()
      local data = helpers.random_bytes(10000)
      local dgst = assert(store:blob_put("r", data))
      assert.equal(helpers.sha256sum(data), dgst)
      assert.equal(10000, store:blob_stat("r", dgst))
      assert.equal(10000, store:blob_stat(nil, dgst))
      assert.equal(data, store:blob_get("r", dgst))
    end)

    it("putting the same content twice is a success", function()
      local d1 = assert(store:blob_put("r", "same"))
      local d2 = assert(store:blob_put("s", "same"))
      assert.equal(d1, d2)
      assert.equal(4, store:blob_stat("s", d1))
    end)

    it("stores sha512 blobs", function()
      local dgst = assert(store:blob_put("r", "abc", "sha512"))
      assert.matches("^sha512:" .. string.rep("%x", 128) .. "$", dgst)
      assert.equal("abc", store:blob_get("r", dgst))
    end)

    it("answers BLOB_UNKNOWN for a missing blob", function()
      assert_fails("BLOB_UNKNOWN", store:blob_stat("r", MISSING))
      assert_fails("BLOB_UNKNOWN", store:blob_get("r", MISSING))
      assert_fails("BLOB_UNKNOWN", store:blob_reader("r", MISSING))
      assert_fails("BLOB_UNKNOWN", store:blob_stat(nil, MISSING))
      assert_fails("BLOB_UNKNOWN", store:blob_delete("r", MISSING))
      assert_fails("BLOB_UNKNOWN", store:blob_purge(MISSING))
    end)

    it("keeps repositories apart", function()
      local dgst = assert(store:blob_put("a", "only in a"))
      assert_fails("BLOB_UNKNOWN", store:blob_stat("b", dgst))
      assert_fails("BLOB_UNKNOWN", store:blob_get("b", dgst))
      assert_fails("BLOB_UNKNOWN", store:blob_reader("b", dgst))
    end)

    it("answers DIGEST_INVALID for digests that do not parse", function()
      for _, bad in ipairs({ "", "sha256:abc", "md5:" .. string.rep("0", 32),
        "sha256:" .. string.rep("G", 64), "../../etc/passwd" }) do
        assert_fails("DIGEST_INVALID", store:blob_stat("r", bad))
        assert_fails("DIGEST_INVALID", store:blob_get("r", bad))
      end
    end)

    it("raises for arguments of the wrong type", function()
      assert.has_error(function() store:blob_stat("r", 42) end,
        "digest must be a string")
      assert.has_error(function() store:blob_put("r", nil) end,
        "data must be a string")
    end)

    it("reads a blob from an offset", function()
      local data = helpers.random_bytes(3000)
      local dgst = assert(store:blob_put("r", data))
      local r = assert(store:blob_reader("r", dgst, 1000))
      local got = {}
      while true do
        local chunk = assert(r:read(700))
        if chunk == "" then break end
        got[#got + 1] = chunk
      end
      assert(r:close())
      assert(r:close())
      assert.equal(data:sub(1001), table.concat(got))
      assert_fails("ERANGE", store:blob_reader("r", dgst, 3001))
    end)

    it("mounts a blob from another repository", function()
      local dgst = assert(store:blob_put("from", "shared"))
      assert(store:blob_mount("to", "from", dgst))
      assert.equal(6, store:blob_stat("to", dgst))
      assert_fails("BLOB_UNKNOWN", store:blob_mount("x", "elsewhere", dgst))
      assert_fails("BLOB_UNKNOWN", store:blob_mount("x", "from", MISSING))
      -- without from: any blob the store has
      assert(store:blob_mount("y", nil, dgst))
      assert_fails("NAME_INVALID", store:blob_mount("x", "../from", dgst))
    end)

    it("unlinks a blob from one repository only", function()
      local dgst = assert(store:blob_put("a", "data"))
      assert(store:blob_mount("b", "a", dgst))
      assert(store:blob_delete("a", dgst))
      assert_fails("BLOB_UNKNOWN", store:blob_stat("a", dgst))
      assert.equal(4, store:blob_stat("b", dgst))
      assert.same({}, store:blob_list("a"))
    end)

    it("purges blob data", function()
      local dgst = assert(store:blob_put(nil, "gone soon"))
      assert(store:blob_purge(dgst))
      assert_fails("BLOB_UNKNOWN", store:blob_stat(nil, dgst))
    end)

    it("lists blobs of the store and of a repository, sorted", function()
      local all = {}
      for i = 1, 20 do
        all[i] = assert(store:blob_put(i % 2 == 0 and "even" or "odd",
          "blob " .. i))
      end
      local s512 = assert(store:blob_put("odd", "x", "sha512"))
      table.sort(all)
      local listed = assert(store:blob_list())
      assert.equal(21, #listed)
      local sha256s = {}
      for _, d in ipairs(listed) do
        if d:match("^sha256:") then sha256s[#sha256s + 1] = d end
      end
      assert.same(all, sha256s)
      assert.equal(s512, listed[21])
      assert.equal(10, #assert(store:blob_list("even")))
      assert.equal(11, #assert(store:blob_list("odd")))
      assert.same({}, store:blob_list("nothing/here"))
    end)
  end)
end

describe("blobs on disk", function()
  it("reports damage instead of serving a corrupt small blob", function()
    local store, root = helpers.new_store({ fsync = "none" })
    local dgst = assert(store:blob_put("r", "original"))
    local hex = dgst:sub(8)
    helpers.write_file(root .. "/docker/registry/v2/blobs/sha256/" ..
      hex:sub(1, 2) .. "/" .. hex .. "/data", "tampered")
    local ok, err, code = store:blob_get("r", dgst)
    assert.is_nil(ok)
    assert.matches("corrupt", err)
    assert.equal("EIO", code)
  end)

  it("gives the local path of a blob for sendfile", function()
    local store, root = helpers.new_store({ fsync = "none" })
    local dgst = assert(store:blob_put("r", "x"))
    local path = assert(store:blob_path("r", dgst))
    assert.equal(root .. "/docker/registry/v2/blobs/sha256/" ..
      dgst:sub(8, 9) .. "/" .. dgst:sub(8) .. "/data", path)
    local mem = helpers.new_store({ driver = "mem" })
    assert(mem:blob_put("r", "x"))
    local ok, err, code = mem:blob_path("r", dgst)
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("UNSUPPORTED", code)
  end)

  it("tells a server how to send a blob: the driver's hand-off", function()
    local store, root = helpers.new_store({ fsync = "none" })
    local dgst = assert(store:blob_put("r", "x"))
    local rel = "sha256/" .. dgst:sub(8, 9) .. "/" .. dgst:sub(8) .. "/data"
    assert.same({ kind = "file", rel = rel,
      path = root .. "/docker/registry/v2/blobs/" .. rel },
      store:blob_send("r", dgst))
    local _, _, code = store:blob_send("other", dgst)
    assert.equal("BLOB_UNKNOWN", code)
    local mem = helpers.new_store({ driver = "mem" })
    assert(mem:blob_put("r", "x"))
    _, _, code = mem:blob_send("r", dgst)
    assert.equal("UNSUPPORTED", code)
  end)
end)

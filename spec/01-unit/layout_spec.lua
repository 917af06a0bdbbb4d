-- Pins berth's on-disk layout to CNCF Distribution's, byte for byte.
local helpers = require "helpers"

local V2 = "/docker/registry/v2"
local HELLO = "hello"
local HELLO_HEX =
  "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

describe("on-disk layout", function()
  local store, root

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
  end)

  it("stores blob data under blobs/<alg>/<hh>/<hex>/data", function()
    assert.equal("sha256:" .. HELLO_HEX, store:blob_put("library/alpine", HELLO))
    local data = root .. V2 .. "/blobs/sha256/2c/" .. HELLO_HEX .. "/data"
    assert.equal(HELLO, helpers.read_file(data))
  end)

  it("links a blob into a repository with 'sha256:<hex>' and no newline", function()
    store:blob_put("library/alpine", HELLO)
    local link = root .. V2 .. "/repositories/library/alpine/_layers/sha256/"
      .. HELLO_HEX .. "/link"
    assert.equal("sha256:" .. HELLO_HEX, helpers.read_file(link))
  end)

  it("keeps upload sessions under _uploads/<uuid>", function()
    local up = assert(store:blob_writer("a/b"))
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", up.id)
    assert.equal(36, #up.id)
    local dir = root .. V2 .. "/repositories/a/b/_uploads/" .. up.id
    local started = helpers.read_file(dir .. "/startedat")
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", started)
    assert(up:write("abc"))
    assert(up:flush())
    assert.equal("abc", helpers.read_file(dir .. "/data"))
    local state = helpers.read_file(dir .. "/hashstates/sha256/3")
    assert.equal(108, #state)
    assert.equal("sha\3", state:sub(1, 4))
    assert(up:commit(helpers.sha256sum("abc")))
    assert.is_nil(helpers.read_file(dir .. "/startedat"))
  end)

  it("serves a store written by hand in Distribution's layout", function()
    local hex = HELLO_HEX
    local blob_dir = root .. V2 .. "/blobs/sha256/2c/" .. hex
    local link_dir = root .. V2 .. "/repositories/other/_layers/sha256/" .. hex
    os.execute("mkdir -p " .. blob_dir .. " " .. link_dir)
    helpers.write_file(blob_dir .. "/data", HELLO)
    helpers.write_file(link_dir .. "/link", "sha256:" .. hex)
    assert.equal(5, store:blob_stat("other", "sha256:" .. hex))
    assert.equal(HELLO, store:blob_get("other", "sha256:" .. hex))
    assert.same({ "sha256:" .. hex }, store:blob_list("other"))
  end)

  it("continues an upload whose hash state Go wrote", function()
    -- Go's crypto/sha256 MarshalBinary after writing "abc": magic, the
    -- initial state words, the pending block, the length.
    local h0 = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
    local parts = { "sha\3" }
    for _, w in ipairs(h0) do
      parts[#parts + 1] = string.char(bit.band(bit.rshift(w, 24), 255),
        bit.band(bit.rshift(w, 16), 255), bit.band(bit.rshift(w, 8), 255),
        bit.band(w, 255))
    end
    parts[#parts + 1] = "abc" .. string.rep("\0", 61)
    parts[#parts + 1] = string.rep("\0", 7) .. "\3"
    local go_state = table.concat(parts)
    assert.equal(108, #go_state)

    local id = "0b8e3a52-2f7c-4a49-9d55-0c6a3f4e2b11"
    local dir = root .. V2 .. "/repositories/r/_uploads/" .. id
    os.execute("mkdir -p " .. dir .. "/hashstates/sha256")
    helpers.write_file(dir .. "/startedat", "2024-05-06T07:08:09Z")
    helpers.write_file(dir .. "/data", "abc")
    helpers.write_file(dir .. "/hashstates/sha256/3", go_state)

    local up = assert(store:upload_open("r", id))
    assert.equal(3, up:size())
    assert.equal(1714979289, up:started())
    assert(up:write("def"))
    assert(up:commit(helpers.sha256sum("abcdef"), 6))
    assert.equal("abcdef", store:blob_get("r", helpers.sha256sum("abcdef")))
  end)
end)

describe("repository names", function()
  local store

  before_each(function()
    store = helpers.new_store({ fsync = "none" })
  end)

  local valid = { "a", "library/alpine", "a0/b-c/d.e/f_g/h__i", "a--b",
    "x/" .. string.rep("y", 253) }
  local invalid = { "", "A", "Library/alpine", "../x", "a/../b", "a/./b",
    "a//b", "a/", "/a", "%2e%2e", "a..b", "a___b", "a._b", "-a", "a-",
    "a b", "a\nb", "a\0b", "_uploads", "a/_layers", string.rep("a", 256),
    "a/" .. string.rep("b", 254) }

  for _, name in ipairs(valid) do
    it("accepts " .. name:sub(1, 40), function()
      assert.equal("sha256:" .. HELLO_HEX, store:blob_put(name, HELLO))
    end)
  end

  for _, name in ipairs(invalid) do
    it("refuses " .. string.format("%q", name:sub(1, 40)), function()
      local ok, err, code = store:blob_put(name, HELLO)
      assert.is_nil(ok)
      assert.is_string(err)
      assert.equal("NAME_INVALID", code)
    end)
  end
end)

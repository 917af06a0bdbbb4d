local helpers = require "helpers"

local function assert_fails(code, ok, err, got_code)
  assert.is_nil(ok)
  assert.is_string(err)
  assert.equal(code, got_code)
end

-- Run a Lua snippet in a separate luajit process against the same store.
local function in_other_process(root, code)
  local script = os.tmpname()
  helpers.write_file(script, [[
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
local berth = require "berth"
local store = assert(berth.open{ root = ]] .. string.format("%q", root)
    .. [[, fsync = "none" })
]] .. code)
  local p = io.popen("luajit " .. script .. " 2>&1")
  local out = p:read("*a")
  local ok = p:close()
  os.remove(script)
  return out, ok
end

describe("uploads", function()
  local store, root

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
  end)

  it("takes a blob in chunks and commits it", function()
    local data = helpers.random_bytes(200000)
    local up = assert(store:blob_writer("r"))
    for i = 1, #data, 7777 do
      assert(up:write(data:sub(i, i + 7776)))
    end
    assert.equal(#data, up:size())
    local dgst = helpers.sha256sum(data)
    assert(up:commit(dgst, #data))
    assert.equal(#data, store:blob_stat("r", dgst))
    assert.equal(data, store:blob_get("r", dgst))
    assert(up:cancel()) -- safe after commit
    assert_fails("BLOB_UPLOAD_UNKNOWN", store:upload_open("r", up.id))
  end)

  it("resumes in a new session at its hash state, at 0 without one",
    function()
      for _, flush in ipairs({ true, false }) do
        local up = assert(store:blob_writer("r"))
        local id = up.id
        assert(up:write("first part, "))
        if flush then
          assert(up:close())
        else
          up:close()
          -- drop the saved state: nothing is known to be on disk
          os.execute("rm -rf " .. root .. "/docker/registry/v2/repositories/r/_uploads/"
            .. id .. "/hashstates")
        end
        local again = assert(store:upload_open("r", id))
        if flush then
          assert.equal(12, again:size())
        else
          assert.equal(0, again:size())
          assert(again:write("first part, "))
        end
        assert(again:write("second part"))
        local dgst = helpers.sha256sum("first part, second part")
        assert(again:commit(dgst, 23))
        assert.equal("first part, second part", store:blob_get("r", dgst))
      end
    end)

  it("continues in another process", function()
    local up = assert(store:blob_writer("r"))
    assert(up:write("from parent; "))
    assert(up:close())
    local dgst = helpers.sha256sum("from parent; from child")
    local out = in_other_process(root, string.format([[
local up = assert(store:upload_open("r", %q))
assert(up:write("from child"))
assert(up:commit(%q))
print("committed")
]], up.id, dgst))
    assert.matches("committed", out)
    assert.equal("from parent; from child", store:blob_get("r", dgst))
  end)

  it("resumes where a killed process's last saved chunk ended", function()
    local up = assert(store:blob_writer("r"))
    local id = up.id
    assert(up:write("saved "))
    assert(up:close())
    -- The child appends and exits without closing: no state for its bytes,
    -- which were never acknowledged: the session goes on before them.
    in_other_process(root, string.format([[
local up = assert(store:upload_open("r", %q))
assert(up:write("unsaved"))
os.exit(0)
]], id))
    local again = assert(store:upload_open("r", id))
    assert.equal(6, again:size())
    assert(again:write("unsaved"))
    assert(again:commit(helpers.sha256sum("saved unsaved"), 13))
  end)

  it("excludes a second writer, in this process and another", function()
    local up = assert(store:blob_writer("r"))
    assert_fails("EBUSY", store:upload_open("r", up.id))
    local out = in_other_process(root, string.format([[
print(select(3, store:upload_open("r", %q)))
]], up.id))
    assert.matches("EBUSY", out)
    -- status reads are not blocked
    local status = assert(store:upload_open("r", up.id, "r"))
    assert.equal(0, status:size())
    assert_fails("EINVAL", status:write("no"))
    assert(status:close())
    assert(up:close())
    assert(store:upload_open("r", up.id)):close()
  end)

  it("refuses a wrong digest and leaves nothing behind", function()
    local up = assert(store:blob_writer("r"))
    assert(up:write("content"))
    local wrong = helpers.sha256sum("other content")
    assert_fails("DIGEST_INVALID", up:commit(wrong))
    assert_fails("BLOB_UNKNOWN", store:blob_stat(nil, wrong))
    assert_fails("BLOB_UNKNOWN", store:blob_stat(nil,
      helpers.sha256sum("content")))
    assert_fails("BLOB_UPLOAD_UNKNOWN", store:upload_open("r", up.id))
    assert.same({}, store:blob_list())
  end)

  it("refuses a wrong size", function()
    local up = assert(store:blob_writer("r"))
    assert(up:write("12345"))
    assert_fails("SIZE_INVALID", up:commit(helpers.sha256sum("12345"), 4))
    assert_fails("BLOB_UPLOAD_UNKNOWN", store:upload_open("r", up.id))
  end)

  it("refuses a commit digest that does not parse", function()
    local up = assert(store:blob_writer("r"))
    assert(up:write("x"))
    assert_fails("DIGEST_INVALID", up:commit("sha256:nothex"))
  end)

  it("commits with sha512", function()
    local up = assert(store:blob_writer("r"))
    assert(up:write("abc"))
    local dgst = "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
      .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
    assert(up:commit(dgst, 3))
    assert.equal("abc", store:blob_get("r", dgst))
  end)

  it("commits an empty blob", function()
    local up = assert(store:blob_writer("r"))
    local empty = helpers.sha256sum("")
    assert(up:commit(empty, 0))
    assert.equal(0, store:blob_stat("r", empty))
  end)

  it("commits content the store already has cheaply", function()
    local dgst = assert(store:blob_put("a", "known"))
    local up = assert(store:blob_writer("b"))
    assert(up:write("known"))
    assert(up:commit(dgst))
    assert.equal(5, store:blob_stat("b", dgst))
  end)

  it("cancels an upload", function()
    local up = assert(store:blob_writer("r"))
    local id = up.id
    assert(up:write("doomed"))
    assert(up:cancel())
    assert_fails("BLOB_UPLOAD_UNKNOWN", store:upload_open("r", id))
    assert.is_nil(helpers.read_file(root ..
      "/docker/registry/v2/repositories/r/_uploads/" .. id .. "/data"))
  end)

  it("answers BLOB_UPLOAD_UNKNOWN for unknown and hostile ids", function()
    for _, id in ipairs({ "0b8e3a52-2f7c-4a49-9d55-0c6a3f4e2b11", "",
      "../../../etc", "0b8e3a52-2f7c-4a49-9d55-0c6a3f4e2b1/",
      "0b8e3a52/2f7c/4a49/9d55/0c6a3f4e2b11" }) do
      assert_fails("BLOB_UPLOAD_UNKNOWN", store:upload_open("r", id))
    end
    local up = assert(store:blob_writer("r"))
    assert_fails("BLOB_UPLOAD_UNKNOWN", store:upload_open("other", up.id))
  end)

  it("records when the upload started", function()
    local before = os.time()
    local up = assert(store:blob_writer("r"))
    assert.is_true(up:started() >= before - 1 and up:started() <= os.time())
  end)

  it("adopts a whole local file without copying it", function()
    local body = helpers.random_bytes(300000)
    local file = root .. "/spooled-body"
    helpers.write_file(file, body)
    local up = assert(store:blob_writer("r"))
    assert(up:adopt(file))
    assert.is_nil(helpers.read_file(file)) -- moved, not copied
    assert.equal(#body, up:size())
    assert_fails("EINVAL", up:adopt(file)) -- not empty any more
    local dgst = helpers.sha256sum(body)
    assert(up:commit(dgst, #body))
    assert.equal(body, store:blob_get("r", dgst, #body))
  end)

  it("answers ENOTFOUND and UNSUPPORTED where it cannot adopt", function()
    local up = assert(store:blob_writer("r"))
    assert_fails("ENOTFOUND", up:adopt(root .. "/no-such-file"))
    assert.equal(0, up:size())
    assert(up:write("still usable"))
    local mem = helpers.new_store({ driver = "mem" })
    local mup = assert(mem:blob_writer("r"))
    local file = root .. "/f"
    helpers.write_file(file, "x")
    assert_fails("UNSUPPORTED", mup:adopt(file))
  end)

  it("answers NAME_INVALID for a hostile repository", function()
    assert_fails("NAME_INVALID", store:blob_writer("../r"))
    assert_fails("NAME_INVALID", store:upload_open("R",
      "0b8e3a52-2f7c-4a49-9d55-0c6a3f4e2b11"))
  end)
end)

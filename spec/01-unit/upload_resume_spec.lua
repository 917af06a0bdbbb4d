-- Where an upload resumes after a crash: at its newest hash state whose
-- bytes are on disk, never at the data file's size. The on-disk states a
-- power cut leaves are made here by hand (issue 11: the file's size reached
-- the disk, its last page of data did not; or the data did and its hash
-- state did not).
local helpers = require "helpers"

jit.off() -- a spec below uses the fault driver's watcher, a C callback

local function session_dir(root, id)
  return root .. "/docker/registry/v2/repositories/r/_uploads/" .. id
end

local function state_path(root, id, offset)
  return session_dir(root, id) .. "/hashstates/sha256/" .. offset
end

local function file_size(path)
  local f = assert(io.open(path, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end

local function append(path, bytes)
  local f = assert(io.open(path, "ab"))
  f:write(bytes)
  f:close()
end

-- The upload's size as a status read and as a writer see it; the writer
-- is returned open.
local function resumed_at(store, id)
  local status = assert(store:upload_open("r", id, "r"))
  local seen = status:size()
  status:close()
  local up = assert(store:upload_open("r", id))
  return up, seen
end

describe("where an upload resumes after a crash", function()
  local store, root
  local DATA = helpers.random_bytes(20000)
  local DGST = helpers.sha256sum(DATA)

  before_each(function()
    store, root = helpers.new_store()
  end)

  -- A session with DATA[1..n] acknowledged (written and closed).
  local function acknowledged(n)
    local up = assert(store:blob_writer("r"))
    assert(up:write(DATA:sub(1, n)))
    assert(up:close())
    return up.id
  end

  local function finish(up, from)
    assert(up:write(DATA:sub(from + 1)))
    assert(up:commit(DGST, #DATA))
    assert.equal(DATA, store:blob_get("r", DGST, #DATA))
  end

  it("resumes at its last hash state when zeros follow it", function()
    local id = acknowledged(5000)
    -- the next chunk's size reached the disk, its data did not
    append(session_dir(root, id) .. "/data", ("\0"):rep(8192 - 5000))
    local up, seen = resumed_at(store, id)
    assert.equal(5000, seen)
    assert.equal(5000, up:size())
    assert.equal(5000, file_size(session_dir(root, id) .. "/data"))
    finish(up, 5000)
  end)

  it("resumes at its last hash state when real data follows it", function()
    local id = acknowledged(5000)
    append(session_dir(root, id) .. "/data", DATA:sub(5001, 9000))
    local up, seen = resumed_at(store, id)
    assert.equal(5000, seen)
    finish(up, 5000)
  end)

  for _, damage in ipairs({ "missing", "empty", "zeros", "garbage" }) do
    it("falls back to an older hash state when the newest is " .. damage,
      function()
        local id = acknowledged(4000)
        -- Distribution keeps every state: put the older one back
        local older = assert(helpers.read_file(state_path(root, id, 4000)))
        local up = assert(store:upload_open("r", id))
        assert(up:write(DATA:sub(4001, 7000)))
        assert(up:close())
        helpers.write_file(state_path(root, id, 4000), older)
        local newest = state_path(root, id, 7000)
        if damage == "missing" then
          os.remove(newest)
        elseif damage == "empty" then
          helpers.write_file(newest, "")
        elseif damage == "zeros" then
          helpers.write_file(newest, ("\0"):rep(#older))
        else
          helpers.write_file(newest, "sha\3" .. ("x"):rep(#older - 4))
        end
        append(session_dir(root, id) .. "/data", ("\0"):rep(8192 - 7000))
        local again, seen = resumed_at(store, id)
        assert.equal(4000, seen)
        assert.equal(4000, again:size())
        finish(again, 4000)
        assert.is_nil(helpers.read_file(newest))
      end)
  end

  it("starts again from 0 when no hash state is left", function()
    local id = acknowledged(5000)
    os.execute("rm -rf '" .. session_dir(root, id) .. "/hashstates'")
    local up, seen = resumed_at(store, id)
    assert.equal(0, seen)
    assert.equal(0, up:size())
    finish(up, 0)
  end)

  it("ignores a hash state past the end of the data", function()
    local id = acknowledged(5000)
    -- the data lost its tail (fsync none), its state did not
    os.execute("truncate -s 3000 '" .. session_dir(root, id) .. "/data'")
    local up, seen = resumed_at(store, id)
    assert.equal(0, seen)
    assert.equal(0, file_size(session_dir(root, id) .. "/data"))
    finish(up, 0)
  end)

  it("lets a status read race a PATCH of content the store has", function()
    local t = helpers.watched_stores(finally)
    assert(t.plain:blob_put("elsewhere", DATA))
    local up = assert(t.plain:blob_writer("r"))
    local id = up.id
    assert(up:write(DATA:sub(1, 5000)))
    assert(up:close())
    -- The status read has the data's size when the PATCH ends: the state
    -- it lists is past that size, and names a stored blob, without being
    -- a commit's record.
    local ran = false
    t.driver:watch(function(op, path)
      if not ran and op == "list" and path:find("/hashstates/sha256$") then
        ran = true
        local w = assert(t.plain:upload_open("r", id))
        assert(w:write(DATA:sub(5001)))
        assert(w:close())
      end
    end)
    local status = assert(t.watched:upload_open("r", id, "r"))
    t.driver:watch(nil)
    assert.is_nil(t.driver.watch_error)
    assert.is_true(ran)
    assert.equal(#DATA, status:size())
    status:close()
    local _, _, code = t.plain:blob_stat("r", DGST)
    assert.equal("BLOB_UNKNOWN", code)
    local again = assert(t.plain:upload_open("r", id))
    assert.equal(#DATA, again:size())
    assert(again:commit(DGST, #DATA))
  end)
end)

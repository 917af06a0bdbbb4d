-- Crash safety of uploads: the fault driver stops (or fails) the Nth storage
-- operation of an upload, for every N in turn. Afterwards a fresh process's
-- view of the store must hold the blob intact or not at all, never a corrupt
-- or half-linked one; and what was acknowledged must be there.
local helpers = require "helpers"
local berth = require "berth"
local driver = require "berth.driver"

local V2 = "/docker/registry/v2"

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Every invariant of DESIGN.md that a crashed upload can touch.
local function check_store(root, dgst, data, acknowledged)
  local store = assert(berth.open{ root = root, fsync = "none" })
  local hex = dgst:sub(8)
  local data_path = root .. V2 .. "/blobs/sha256/" .. hex:sub(1, 2) .. "/"
    .. hex .. "/data"
  local link_path = root .. V2 .. "/repositories/r/_layers/sha256/" .. hex
    .. "/link"

  -- Data at its final path always hashes to its digest.
  if file_exists(data_path) then
    assert.equal(dgst, helpers.sha256sum(helpers.read_file(data_path)))
  end
  -- A link never points at missing data.
  if file_exists(link_path) then
    assert.is_true(file_exists(data_path), "link without data")
    assert.equal(dgst, helpers.read_file(link_path))
  end
  local size, _, code = store:blob_stat("r", dgst)
  if size then
    assert.equal(data, store:blob_get("r", dgst, #data))
  else
    assert.equal("BLOB_UNKNOWN", code)
    assert.is_false(acknowledged, "acknowledged commit lost")
  end
  store:close()
  return size ~= nil
end

-- Open a store whose driver is fs wrapped by the fault driver.
local function faulty_store(root)
  local fault = driver.fault(assert(driver.fs(root, { fsync = "full" })))
  local store = assert(berth.open{ driver = fault })
  return store, fault
end

local DATA = helpers.random_bytes(70000)
local DGST = helpers.sha256sum(DATA)

-- The whole upload: create, two requests of chunks, commit.
local function upload(store)
  local up, err, code = store:blob_writer("r")
  if not up then return nil, err, code end
  local id = up.id
  for i = 1, 40000, 10000 do
    local ok, e, c = up:write(DATA:sub(i, i + 9999))
    if not ok then up:close(); return nil, e, c end
  end
  local ok, e, c = up:close()
  if not ok then return nil, e, c end
  up, err, code = store:upload_open("r", id)
  if not up then return nil, err, code end
  for i = 40001, #DATA, 10000 do
    ok, e, c = up:write(DATA:sub(i, i + 9999))
    if not ok then up:close(); return nil, e, c end
  end
  return up:commit(DGST, #DATA)
end

-- Count the operations of a clean run, then fail each one in turn.
local function ops_of_clean_run()
  local root = helpers.tmpdir()
  local store, fault = faulty_store(root)
  fault:arm("off", 0)
  assert(upload(store))
  local n = fault:count()
  store:close()
  helpers.rmrf(root)
  return n
end

describe("crash safety of an upload", function()
  local total = ops_of_clean_run()

  it("takes more than a handful of storage operations", function()
    assert.is_true(total > 10)
  end)

  for _, mode in ipairs({ "crash", "fail_one", "short_write" }) do
    it("holds the blob intact or not at all, " .. mode .. " at every operation",
      function()
        for n = 1, total + 1 do
          local root = helpers.tmpdir()
          local store, fault = faulty_store(root)
          fault:arm(mode, n)
          local ok = upload(store) == true
          store:close()
          check_store(root, DGST, DATA, ok)
          helpers.rmrf(root)
        end
      end)
  end

  -- Issue 11: a commit cut after its data moved into the blob store and
  -- before its link left a session of 0 bytes. Whatever step the commit
  -- stops at, the next touch of the session (a status read, a PATCH, a
  -- PUT) finds the blob linked and whole, or the session with every
  -- acknowledged byte.
  local ACKED = 40000
  local SHA512 = require("berth.digest").compute(DATA, "sha512")
  for _, case in ipairs({ { "with", DGST }, { "without", DGST },
      { "with", SHA512 } }) do
    local final, dgst = case[1], case[2]
    for _, touch in ipairs({ "status", "patch", "put" }) do
      it(("completes a %s commit (PUT %s a final chunk) cut at each step, "
          .. "on the next %s"):format(dgst:match("^%w+"), final, touch),
          function()
        local last = final == "with" and ACKED or #DATA
        local function begin(store)
          local up = assert(store:blob_writer("r"))
          assert(up:write(DATA:sub(1, last)))
          assert(up:close())
          up = assert(store:upload_open("r", up.id))
          assert(up:write(DATA:sub(last + 1)))
          return up
        end
        local root = helpers.tmpdir()
        local store, fault = faulty_store(root)
        local up = begin(store)
        fault:arm("off", 0)
        assert(up:commit(dgst, #DATA))
        local steps = fault:count()
        store:close()
        helpers.rmrf(root)
        for n = 1, steps do
          root = helpers.tmpdir()
          store, fault = faulty_store(root)
          up = begin(store)
          local id = up.id
          fault:arm("crash", n)
          local committed = up:commit(dgst, #DATA) == true
          store:close()
          local again = assert(berth.open{ root = root })
          local resumed, _, code = again:upload_open("r", id,
            touch == "status" and "r" or "w")
          local where = ("cut at step %d of %d"):format(n, steps)
          if resumed then
            assert.is_false(committed, where)
            local size = resumed:size()
            assert.is_true(size >= last and size <= #DATA,
              where .. ": resumed at " .. size .. ", " .. last
              .. " acknowledged")
            resumed:close()
            resumed = assert(again:upload_open("r", id))
            assert(resumed:write(DATA:sub(size + 1)))
            assert(resumed:commit(dgst, #DATA))
          else
            assert.equal("BLOB_UPLOAD_UNKNOWN", code, where)
          end
          assert.equal(#DATA, again:blob_stat("r", dgst), where)
          assert.equal(DATA, again:blob_get("r", dgst, #DATA), where)
          again:close()
          if dgst == DGST then
            check_store(root, DGST, DATA, true)
          end
          helpers.rmrf(root)
        end
      end)
    end
  end

  it("lets the client finish an upload whose commit crashed", function()
    for n = 1, total do
      local root = helpers.tmpdir()
      local store, fault = faulty_store(root)
      local up = assert(store:blob_writer("r"))
      local id = up.id
      assert(up:write(DATA))
      assert(up:close())
      local count_before = fault:count()
      fault:arm("crash", n)
      up = store:upload_open("r", id)
      local ok = up and up:commit(DGST, #DATA)
      store:close()
      if not ok then
        -- A new process retries the commit, or the push starts over.
        local again = assert(berth.open{ root = root, fsync = "none" })
        local resumed = again:upload_open("r", id)
        if resumed then
          ok = resumed:commit(DGST, #DATA)
        end
        if not ok then
          local fresh = assert(again:blob_writer("r"))
          assert(fresh:write(DATA))
          ok = fresh:commit(DGST, #DATA)
        end
        again:close()
      end
      assert.is_true(ok, "commit after crash at operation " .. n)
      assert.is_true(check_store(root, DGST, DATA, true))
      helpers.rmrf(root)
      assert.is_true(count_before > 0)
    end
  end)
end)

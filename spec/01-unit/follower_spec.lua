local helpers = require "helpers"
local ffi = require "ffi"

pcall(ffi.cdef, "int usleep(unsigned int usec);")

-- Poll follower:hashed() until it answers want (or fails): -> last answer
local function wait_for(follower, want)
  local hashed, err, code
  for _ = 1, 2000 do
    hashed, err, code = follower:hashed()
    if hashed == nil or hashed >= want then
      break
    end
    ffi.C.usleep(1000)
  end
  return hashed, err, code
end

describe("followers", function()
  local store, root

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
  end)

  it("hash a file while it grows, and adopt takes that hash", function()
    local file = root .. "/spooling"
    local f = assert(io.open(file, "wb"))
    local parts = {}
    local follower
    for i = 1, 40 do
      local chunk = helpers.random_bytes(50000 + i)
      parts[#parts + 1] = chunk
      assert(f:write(chunk))
      assert(f:flush())
      if i == 1 then
        follower = assert(store:follow(file))
      end
    end
    f:close()
    local body = table.concat(parts)
    assert.equal(#body, wait_for(follower, #body))
    -- Overwrite the start in place: adopt must not read the file again,
    -- so the digest that commits is the one of what was followed.
    local g = assert(io.open(file, "r+b"))
    assert(g:write(("\0"):rep(64)))
    g:close()
    local up = assert(store:blob_writer("r"))
    assert(up:adopt(file, follower))
    assert.equal(#body, up:size())
    assert(up:commit(helpers.sha256sum(body), #body))
    follower:close()
  end)

  it("leave adopt to hash the file when they followed another one",
    function()
    local a, b = root .. "/a", root .. "/b"
    local body_a, body_b = helpers.random_bytes(70000),
      helpers.random_bytes(70000)
    helpers.write_file(a, body_a)
    helpers.write_file(b, body_b)
    local follower = assert(store:follow(a))
    assert.equal(#body_a, wait_for(follower, #body_a))
    local up = assert(store:blob_writer("r"))
    assert(up:adopt(b, follower))
    assert(up:commit(helpers.sha256sum(body_b), #body_b))
    follower:close()
  end)

  -- berth.nginx waits (ngx.sleep) until the thread caught up; adopt
  -- never waits for it: a follower still behind is stopped where it is.
  it("are not waited for by adopt when behind", function()
    local file = root .. "/big"
    local size = 256 * 1024 * 1024 -- seconds of hashing: far behind
    assert(os.execute("truncate -s " .. size .. " '" .. file .. "'") == 0)
    local follower = assert(store:follow(file))
    local up = assert(store:blob_writer("r"))
    assert(up:adopt(file, follower))
    local hashed = assert(follower:hashed())
    assert.is_true(hashed < size, "adopt waited for the thread")
    follower:close()
    up:cancel()
  end)

  it("leave adopt to hash a file that shrank while followed", function()
    local file = root .. "/shrinks"
    local body = helpers.random_bytes(300000)
    helpers.write_file(file, body)
    local follower = assert(store:follow(file))
    assert.equal(#body, wait_for(follower, #body))
    local short = body:sub(1, 1000)
    helpers.write_file(file, short) -- truncates the same file
    local up = assert(store:blob_writer("r"))
    assert(up:adopt(file, follower))
    assert.equal(#short, up:size())
    assert(up:commit(helpers.sha256sum(short), #short))
    follower:close()
  end)

  it("fail when their file is removed (a dropped request body)", function()
    local file = root .. "/dropped"
    helpers.write_file(file, helpers.random_bytes(1000))
    local follower = assert(store:follow(file))
    assert(os.remove(file))
    local hashed, err, code = wait_for(follower, math.huge)
    assert.is_nil(hashed)
    assert.matches("thread", err)
    assert.equal("EIO", code)
    assert.is_true(follower:close())
    assert.is_true(follower:close())
    local _, _, closed_code = follower:hashed()
    assert.equal("EINVAL", closed_code)
  end)

  it("answer ENOTFOUND for a file that is not there", function()
    local ok, err, code = store:follow(root .. "/no-such-file")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("ENOTFOUND", code)
  end)

  it("work for a store that fsyncs (writing back as they hash)", function()
    local full = helpers.new_store({ fsync = "full" })
    local file = full.root .. "/body"
    local body = helpers.random_bytes(9 * 1024 * 1024 + 3)
    helpers.write_file(file, body)
    local follower = assert(full:follow(file))
    assert.equal(#body, wait_for(follower, #body))
    local up = assert(full:blob_writer("r"))
    assert(up:adopt(file, follower))
    follower:close()
    local dgst = helpers.sha256sum(body)
    assert(up:commit(dgst, #body))
    assert.equal(body, full:blob_get("r", dgst, #body))
  end)
end)

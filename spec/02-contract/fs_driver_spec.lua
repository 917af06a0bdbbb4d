-- The filesystem driver: the contract under each fsync policy, and what
-- only it does: real files under the root, no temp files left behind,
-- writers excluded across processes.
local driver = require "berth.driver"
local berth_ffi = require "berth.ffi"
local contract = require "02-contract.driver_contract"
local helpers = require "helpers"

local function new_fs(opts)
  local root = helpers.tmpdir()
  local d = assert(driver.fs(root, opts))
  finally(function()
    d:close()
    helpers.rmrf(root)
  end)
  return d, root
end

for _, policy in ipairs({ "none", "data", "full" }) do
  contract("fs (fsync=" .. policy .. ")", function()
    return (new_fs({ fsync = policy }))
  end)
end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- Files under root whose name starts with ".tmp-".
local function temp_files(root)
  return sh("find '" .. root .. "' -name '.tmp-*'")
end

local lua_dir = sh("pwd"):gsub("%s+$", "") .. "/lua"

-- Run a Lua script in other luajit processes, one per argument list, all at
-- once; returns their outputs, in order.
local function children(script, arg_lists)
  local dir = helpers.tmpdir()
  finally(function() helpers.rmrf(dir) end)
  local file = dir .. "/child.lua"
  helpers.write_file(file, "package.path = '" .. lua_dir ..
                     "/?.lua;' .. package.path\n" .. script)
  local cmd = {}
  for i, args in ipairs(arg_lists) do
    local quoted = {}
    for j, a in ipairs(args) do
      quoted[j] = "'" .. tostring(a) .. "'"
    end
    cmd[#cmd + 1] = string.format(
      "BERTH_LIB='%s' luajit '%s' %s > '%s/%d' 2>&1 &",
      berth_ffi.path, file, table.concat(quoted, " "), dir, i)
  end
  cmd[#cmd + 1] = "wait"
  sh(table.concat(cmd, "\n"))
  local outs = {}
  for i = 1, #arg_lists do
    outs[i] = helpers.read_file(dir .. "/" .. i)
  end
  return outs
end

local TRY_WRITER = [[
local driver = require "berth.driver"
local root, path, append = ...
local d = assert(driver.fs(root))
local w, err, code = d:writer(path, append == "1")
if not w then
  io.write(code)
  return
end
assert(w:write("child"))
assert(w:commit())
w:close()
io.write("ok")
]]

describe("fs driver", function()
  it("keeps files at root .. path", function()
    local d, root = new_fs()
    assert(d:put("/a/b/c", "content"))
    assert.equal("content", helpers.read_file(root .. "/a/b/c"))
    helpers.write_file(root .. "/a/outside", "written directly")
    assert.equal("written directly", d:get("/a/outside"))
    assert.same({ "b", "outside" }, d:list("/a"))
    assert.equal(root .. "/a/b/c", d:local_path("/a/b/c"))
  end)

  local root_only = sh("id -u"):match("^0") and it or pending
  root_only("run by root on a store nobody owns, gives nobody what it makes",
    function()
    local root = helpers.tmpdir()
    finally(function() helpers.rmrf(root) end)
    os.execute("chown nobody:nogroup '" .. root .. "'")
    local d = assert(driver.fs(root))
    finally(function() d:close() end)
    assert(d:put("/a/b/put", "x"))
    local w = assert(d:writer("/c/d/writer"))
    assert(w:write("y"))
    assert(w:commit())
    w:close()
    assert(d:move("/a/b/put", "/e/moved"))
    assert.equal("", sh("find '" .. root .. "' ! -user nobody"))
    assert.equal("", sh("find '" .. root .. "' ! -group nogroup"))
    -- a store root owns stays root's
    local own = helpers.tmpdir()
    finally(function() helpers.rmrf(own) end)
    local d2 = assert(driver.fs(own))
    finally(function() d2:close() end)
    assert(d2:put("/a/put", "x"))
    assert.equal("", sh("find '" .. own .. "' ! -user root"))
  end)

  it("takes a root with a trailing slash, and creates it", function()
    local base = helpers.tmpdir()
    finally(function() helpers.rmrf(base) end)
    local d = assert(driver.fs(base .. "/new/deeper/"))
    finally(function() d:close() end)
    assert(d:put("/f", "x"))
    assert.equal(base .. "/new/deeper/f", d:local_path("/f"))
    assert.equal("x", helpers.read_file(base .. "/new/deeper/f"))
  end)

  it("fails on a root that cannot be a directory", function()
    local base = helpers.tmpdir()
    finally(function() helpers.rmrf(base) end)
    helpers.write_file(base .. "/file", "x")
    local ok, err, code = driver.fs(base .. "/file")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("EIO", code)
    ok, err, code = driver.fs(base .. "/file/below")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("EIO", code)
    assert.has_error(function() driver.fs(base, { fsync = "always" }) end)
  end)

  it("leaves no temp files behind", function()
    local d, root = new_fs({ fsync = "full" })
    for i = 1, 50 do
      assert(d:put("/t/f" .. (i % 7), string.rep("x", i)))
    end
    assert(d:put("/t/g", "y"))
    assert.is_nil(d:put("/t/f1/under", "conflict"))
    assert.is_nil(d:put("/t", "over a directory"))
    assert.equal("", temp_files(root))
  end)

  it("lists neither temp files nor names no path can have", function()
    local d, root = new_fs()
    assert(d:put("/dir/real", "x"))
    helpers.write_file(root .. "/dir/.tmp-0123456789abcdef~", "partial")
    helpers.write_file(root .. "/dir/with space", "x")
    helpers.write_file(root .. "/dir/.tmp-valid", "x")
    assert.same({ ".tmp-valid", "real" }, d:list("/dir"))
  end)

  it("a writer's lock excludes writers in other processes", function()
    local d, root = new_fs()
    local w = assert(d:writer("/locked", true))
    assert(w:write("parent"))
    local outs = children(TRY_WRITER, {
      { root, "/locked", "1" },
      { root, "/locked", "0" },
      { root, "/free", "1" },
    })
    assert.same({ "EBUSY", "EBUSY", "ok" }, outs)
    -- the refused truncating writer did not truncate
    assert(w:commit())
    assert.equal("parent", d:get("/locked"))
    w:close()
    outs = children(TRY_WRITER, { { root, "/locked", "1" } })
    assert.same({ "ok" }, outs)
    assert.equal("parentchild", d:get("/locked"))
  end)

  local TRY_LOCK = [[
local driver = require "berth.driver"
local root, path, how = ...
local d = assert(driver.fs(root))
local h, err, code
if how == "writer" then
  h, err, code = d:writer(path, true)
else
  h, err, code = d:lock(path)
end
io.write(h and "ok" or code)
]]

  -- The tag lock's file: a lock excludes a berth that still locks it by
  -- opening a writer on it, and the reverse.
  it("a lock excludes locks and writers in other processes", function()
    local d, root = new_fs()
    local l = assert(d:lock("/repo/_lock"))
    local outs = children(TRY_LOCK, {
      { root, "/repo/_lock", "lock" },
      { root, "/repo/_lock", "writer" },
      { root, "/repo/other", "lock" },
    })
    assert.same({ "EBUSY", "EBUSY", "ok" }, outs)
    l:release()
    local w = assert(d:writer("/repo/_lock", true))
    assert.same({ "EBUSY" }, children(TRY_LOCK,
      { { root, "/repo/_lock", "lock" } }))
    w:close()
    assert.same({ "ok" }, children(TRY_LOCK,
      { { root, "/repo/_lock", "lock" } }))
  end)

  -- A counter that processes increment by compare-and-set: a lost update
  -- would leave it short.
  it("put_if loses no update among processes", function()
    local d, root = new_fs()
    assert(d:put("/n/count", "0"))
    local outs = children([[
local driver = require "berth.driver"
local root, times = ...
local d = assert(driver.fs(root))
for _ = 1, tonumber(times) do
  while true do
    local st = assert(d:stat("/n/count"))
    local n = tonumber(assert(d:get("/n/count")))
    local ok, err, code = d:put_if("/n/count", tostring(n + 1), st.version)
    if ok then break end
    assert(code == "ECHANGED" or code == "EBUSY", err)
  end
end
io.write("ok")
]], { { root, 50 }, { root, 50 }, { root, 50 }, { root, 50 } })
    assert.same({ "ok", "ok", "ok", "ok" }, outs)
    assert.equal("200", d:get("/n/count"))
  end)

  it("serialises appends from many processes", function()
    local d, root = new_fs()
    local script = [[
local driver = require "berth.driver"
local root, id = ...
local d = assert(driver.fs(root))
local line = string.format("%-15s\n", "writer-" .. id)
local done, busy = 0, 0
while done < 30 do
  local w, err, code = d:writer("/log/shared", true)
  if w then
    -- two writes per line: an interleaving would split lines
    assert(w:write(line:sub(1, 7)))
    assert(w:write(line:sub(8)))
    assert(w:commit())
    w:close()
    done = done + 1
  elseif code == "EBUSY" then
    busy = busy + 1
  else
    error(err)
  end
end
io.write("ok")
]]
    local args = {}
    for i = 1, 4 do
      args[i] = { root, i }
    end
    local outs = children(script, args)
    assert.same({ "ok", "ok", "ok", "ok" }, outs)
    local content = assert(d:get("/log/shared"))
    assert.equal(4 * 30 * 16, #content)
    local counts = {}
    for l in content:gmatch("([^\n]*)\n") do
      local id = l:match("^writer%-(%d) +$")
      assert.is_not_nil(id, "torn line: " .. l)
      counts[id] = (counts[id] or 0) + 1
    end
    assert.same({ ["1"] = 30, ["2"] = 30, ["3"] = 30, ["4"] = 30 }, counts)
  end)

  it("is safe with puts and removes racing from many processes", function()
    local d, root = new_fs()
    local script = [[
local driver = require "berth.driver"
local root, role, id = ...
local d = assert(driver.fs(root))
for i = 1, 150 do
  if role == "put" then
    local ok, err = d:put("/shared", string.rep(id, 1000 + tonumber(id)))
    if not ok then error(err) end
    ok, err = d:put("/r/x/y/" .. id, "v")
    if not ok then error(err) end
  elseif role == "remove" then
    local ok, err, code = d:remove("/r")
    if not ok and code ~= "ENOTFOUND" then error(err) end
  else
    local ok, err, code = d:get("/shared")
    if ok and #ok ~= 1000 + tonumber(ok:sub(1, 1)) then
      error("torn read")
    end
    if not ok and code ~= "ENOTFOUND" then error(err) end
    ok, err, code = d:list("/r/x/y")
    if not ok and code ~= "ENOTFOUND" then error(err) end
  end
end
io.write("ok")
]]
    local outs = children(script, {
      { root, "put", 1 }, { root, "put", 2 }, { root, "put", 3 },
      { root, "remove", 0 }, { root, "remove", 0 }, { root, "read", 0 },
    })
    assert.same({ "ok", "ok", "ok", "ok", "ok", "ok" }, outs)
    local shared = assert(d:get("/shared"))
    local id = tonumber(shared:sub(1, 1))
    assert.equal(string.rep(tostring(id), 1000 + id), shared)
    assert.equal("", temp_files(root))
  end)

  for _, policy in ipairs({ "none", "data", "full" }) do
    it("works with fsync=" .. policy, function()
      local d, root = new_fs({ fsync = policy })
      assert(d:put("/a/b/c/d", "1"))
      local w = assert(d:writer("/u/p/data", true))
      assert(w:write("chunk"))
      assert(w:commit())
      w:close()
      assert(d:move("/u/p", "/v/q"))
      assert.equal("chunk", d:get("/v/q/data"))
      assert(d:move("/a/b/c/d", "/a/e"))
      assert(d:remove("/v"))
      assert(d:remove("/a/e"))
      assert.same({ "a", "u" }, d:list("/"))
      assert.equal("", temp_files(root))
    end)
  end

  it("keeps an emptied directory (not part of the contract)", function()
    local d = new_fs()
    assert(d:put("/e/f", "x"))
    assert(d:remove("/e/f"))
    assert.same({}, d:list("/e"))
  end)

  -- berth_driver_leftover: what a put or a move cut short leaves
  it("knows a directory a write cut short left, and removes it", function()
    local C = berth_ffi.C
    local d, root = new_fs()
    local function leftover(path, cutoff, remove)
      return C.berth_driver_leftover(d._p, path, cutoff, remove and 1 or 0,
        nil)
    end
    local E = require("berth.errors").BY_NAME
    local now = os.time() * 1e9
    local later = now + 7200e9
    assert(d:put("/a/link", "x"))
    sh("mkdir -p '" .. root .. "/t' '" .. root .. "/e'")
    helpers.write_file(root .. "/t/.tmp-0123456789abcdef~", "x")
    assert.equal(E.EEXISTS.value, leftover("/a", later))
    assert.equal(E.ENOTFOUND.value, leftover("/none", later))
    assert.equal(E.EEXISTS.value, leftover("/a/link", later)) -- a file
    -- changed since the cutoff: not yet
    assert.equal(E.EEXISTS.value, leftover("/t", now - 3600e9, true))
    assert.equal(0, leftover("/t", later))
    assert.equal("", sh("test -e '" .. root .. "/t' || echo gone"))
    assert.equal(0, leftover("/t", later, true))
    assert.equal(0, leftover("/e", later, true))
    assert.equal("gone\ngone\n", sh("for p in t e; do test -e '" .. root
      .. "/'$p || echo gone; done"))
    local m = assert(driver.mem())
    assert.equal(E.EUNSUPPORTED.value,
      C.berth_driver_leftover(m._p, "/a", later, 0, nil))
    m:close()
  end)

  it("removes a tree without following symlinks", function()
    local d, root = new_fs()
    local outside = helpers.tmpdir()
    finally(function() helpers.rmrf(outside) end)
    helpers.write_file(outside .. "/precious", "keep")
    assert(d:put("/tree/f", "x"))
    assert(os.execute("ln -s '" .. outside .. "' '" .. root ..
                      "/tree/link'") == 0)
    assert(d:remove("/tree"))
    assert.equal("keep", helpers.read_file(outside .. "/precious"))
    local ok, _, code = d:stat("/tree")
    assert.is_nil(ok)
    assert.equal("ENOTFOUND", code)
  end)

  it("a writer's lock moves with its file, like an flock", function()
    local d = new_fs()
    local w = assert(d:writer("/w1", true))
    assert(w:write("abc"))
    assert(d:move("/w1", "/w2"))
    local ok, _, code = d:writer("/w2", true)
    assert.is_nil(ok)
    assert.equal("EBUSY", code)
    assert(w:write("def"))
    assert(w:commit())
    w:close()
    assert.equal("abcdef", d:get("/w2"))
  end)

  it("removing a file under a writer leaves the writer working", function()
    local d = new_fs()
    local w = assert(d:writer("/w", true))
    assert(w:write("abc"))
    assert(d:remove("/w"))
    assert(w:write("def"))
    assert.equal(6, w:size())
    w:close()
    assert.is_nil(d:get("/w"))
    -- a new writer does not see the old lock
    w = assert(d:writer("/w", true))
    assert.equal(0, w:size())
    w:close()
  end)
end)

-- The driver contract: one suite that every storage driver must pass
-- (CNCF distribution's registry/storage/driver/testsuites). A driver's spec
-- calls it with its own constructor:
--
--   require("02-contract.driver_contract")("mem", function()
--     local d = assert(driver.mem())
--     finally(function() d:close() end)
--     return d
--   end)
--
-- new_driver() is called inside each test and returns a fresh, empty driver.
--
-- Not part of the contract, because object storage cannot promise it:
-- whether an emptied directory still exists, whether a writer's bytes are
-- visible before commit, and what a move or remove does to an open writer.
local helpers = require "helpers"

local random_bytes = helpers.random_bytes

local function all_bytes()
  local t = {}
  for i = 0, 255 do
    t[#t + 1] = string.char(i)
  end
  return table.concat(t)
end

-- All three values of a failure.
local function assert_fail(code, ok, err, got_code)
  assert.is_nil(ok)
  assert.is_string(err)
  assert.is_true(#err > 0)
  assert.equal(code, got_code)
end

-- Read a reader to its end, in chunks of at most n bytes.
local function read_all(r, n)
  local parts = {}
  while true do
    local s, err, code = r:read(n)
    assert(s, err, code)
    assert.is_true(#s <= n)
    if s == "" then
      break
    end
    parts[#parts + 1] = s
  end
  return table.concat(parts)
end

-- Paths no method accepts.
local INVALID = {
  "", "relative", "a/b", "/a/../b", "/..", "/.", "/a/.", "/a//b",
  "/a/./b", "/a/", "//", "/a b", "/%2e%2e", "/a\\b", "/a:b", "/é",
  "/" .. string.rep("a", 4096),
}

-- limits: what a driver does not do yet, { [group or test name] = why }:
-- those tests are reported pending with the reason, never passed.
return function(name, new_driver, limits)
  -- busted's describe, it and assert live in the calling spec's
  -- environment, not in _G: run this suite and its helpers there
  local outer = getfenv(2)
  local env = setmetatable({}, { __index = outer })
  local group
  env.describe = function(what, fn)
    outer.describe(what, function()
      local was = group
      group = what
      fn()
      group = was
    end)
  end
  env.it = function(what, fn)
    local why = limits and (limits[what] or limits[group])
    if why then
      outer.pending(what .. " (" .. why .. ")")
    else
      outer.it(what, fn)
    end
  end
  setfenv(1, env)
  setfenv(assert_fail, env)
  setfenv(read_all, env)

  describe(name .. " driver contract", function()

    describe("put and get", function()
      it("round-trips text, empty, binary and 1 MiB content", function()
        local d = new_driver()
        local big = random_bytes(1024 * 1024)
        local cases = {
          ["/text"] = "hello, world",
          ["/empty"] = "",
          ["/binary"] = all_bytes(),
          ["/nul"] = "\0\0a\0",
          ["/big"] = big,
        }
        for path, content in pairs(cases) do
          assert.is_true(d:put(path, content))
        end
        for path, content in pairs(cases) do
          local got, err = d:get(path)
          assert(got, err)
          assert.equal(#content, #got)
          assert.is_true(content == got, "content differs at " .. path)
        end
      end)

      it("replaces a file, longer or shorter", function()
        local d = new_driver()
        assert(d:put("/f", "first version"))
        assert(d:put("/f", "second, longer version"))
        assert.equal("second, longer version", d:get("/f"))
        assert(d:put("/f", "3"))
        assert.equal("3", d:get("/f"))
        assert(d:put("/f", ""))
        assert.equal("", d:get("/f"))
      end)

      it("creates the parents of a file", function()
        local d = new_driver()
        assert(d:put("/a/b/c/d", "deep"))
        assert.equal("deep", d:get("/a/b/c/d"))
        for _, dir in ipairs({ "/a", "/a/b", "/a/b/c" }) do
          local st = assert(d:stat(dir))
          assert.is_true(st.is_dir)
        end
      end)

      it("answers ETOOLARGE above max", function()
        local d = new_driver()
        assert(d:put("/f", "12345"))
        assert.equal("12345", d:get("/f", 5))
        assert.equal("12345", d:get("/f", 1e6))
        assert_fail("ETOOLARGE", d:get("/f", 4))
        assert_fail("ETOOLARGE", d:get("/f", 0))
        assert(d:put("/empty", ""))
        assert.equal("", d:get("/empty", 0))
      end)

      it("treats names that look special as ordinary", function()
        local d = new_driver()
        local names = { ".tmp-abc", ".hidden", "...", "..a", "a..", "_x",
                        "-", "A.B-c_d" }
        for _, n in ipairs(names) do
          assert(d:put("/s/" .. n, n))
        end
        for _, n in ipairs(names) do
          assert.equal(n, d:get("/s/" .. n))
        end
        local expect = {}
        for i, n in ipairs(names) do
          expect[i] = n
        end
        table.sort(expect)
        assert.same(expect, d:list("/s"))
      end)
    end)

    describe("missing paths", function()
      it("are ENOTFOUND for every method", function()
        local d = new_driver()
        assert(d:put("/present/file", "x"))
        for _, path in ipairs({ "/missing", "/present/missing",
                                "/missing/deeper/still",
                                "/present/file/below" }) do
          assert_fail("ENOTFOUND", d:get(path))
          assert_fail("ENOTFOUND", d:stat(path))
          assert_fail("ENOTFOUND", d:reader(path))
          assert_fail("ENOTFOUND", d:reader(path, 10))
          assert_fail("ENOTFOUND", d:list(path))
          assert_fail("ENOTFOUND", d:remove(path))
          assert_fail("ENOTFOUND", d:move(path, "/elsewhere"))
          local ok, err, code = d:local_path(path)
          assert.is_nil(ok)
          assert.is_string(err)
          assert.is_true(code == "ENOTFOUND" or code == "UNSUPPORTED")
        end
        -- nothing was created on the way
        assert_fail("ENOTFOUND", d:stat("/elsewhere"))
        assert.same({ "present" }, d:list("/"))
      end)

      it("a directory is not a file", function()
        local d = new_driver()
        assert(d:put("/dir/file", "x"))
        assert_fail("ENOTFOUND", d:get("/dir"))
        assert_fail("ENOTFOUND", d:reader("/dir"))
      end)

      it("a file has no children", function()
        local d = new_driver()
        assert(d:put("/file", "x"))
        assert_fail("ENOTFOUND", d:list("/file"))
      end)
    end)

    describe("invalid paths", function()
      it("are EINVAL for every method", function()
        local d = new_driver()
        assert(d:put("/ok", "x"))
        for _, path in ipairs(INVALID) do
          assert_fail("EINVAL", d:get(path))
          assert_fail("EINVAL", d:put(path, "x"))
          assert_fail("EINVAL", d:stat(path))
          assert_fail("EINVAL", d:list(path))
          assert_fail("EINVAL", d:reader(path))
          assert_fail("EINVAL", d:writer(path))
          assert_fail("EINVAL", d:writer(path, true))
          assert_fail("EINVAL", d:move(path, "/to"))
          assert_fail("EINVAL", d:move("/ok", path))
          assert_fail("EINVAL", d:remove(path))
          assert_fail("EINVAL", d:local_path(path))
        end
        -- nothing moved or was created
        assert.same({ "ok" }, d:list("/"))
        assert.equal("x", d:get("/ok"))
      end)

      it("the root can be listed and stat'ed, nothing else", function()
        local d = new_driver()
        assert(d:put("/ok", "x"))
        local st = assert(d:stat("/"))
        assert.is_true(st.is_dir)
        assert.same({ "ok" }, d:list("/"))
        assert_fail("EINVAL", d:get("/"))
        assert_fail("EINVAL", d:put("/", "x"))
        assert_fail("EINVAL", d:reader("/"))
        assert_fail("EINVAL", d:writer("/", true))
        assert_fail("EINVAL", d:move("/", "/x"))
        assert_fail("EINVAL", d:move("/ok", "/"))
        assert_fail("EINVAL", d:remove("/"))
        assert_fail("EINVAL", d:local_path("/"))
        assert.equal("x", d:get("/ok"))
      end)

      it("accepts a path of 4096 bytes, not 4097", function()
        local d = new_driver()
        -- 4097: EINVAL before the driver sees it
        local long = string.rep("/" .. string.rep("a", 15), 256) .. "a"
        assert.equal(4097, #long)
        assert_fail("EINVAL", d:stat(long))
        -- 4096 passes the check; the driver does not have it, or (fs) the
        -- operating system finds it too long
        local ok, err, code = d:stat(long:sub(1, 4096))
        assert.is_nil(ok)
        assert.is_string(err)
        assert.is_true(code == "ENOTFOUND" or code == "EIO")
      end)
    end)

    describe("stat", function()
      it("describes files and directories", function()
        local d = new_driver()
        local now = os.time() * 1e9
        assert(d:put("/dir/file", "12345"))
        local st = assert(d:stat("/dir/file"))
        assert.same(false, st.is_dir)
        assert.equal(5, st.size)
        assert.is_number(st.mtime_ns)
        assert.is_true(math.abs(st.mtime_ns - now) < 120e9)
        st = assert(d:stat("/dir"))
        assert.same(true, st.is_dir)
        assert.equal(0, st.size)
        assert(d:put("/dir/empty", ""))
        assert.equal(0, assert(d:stat("/dir/empty")).size)
        assert.same(false, assert(d:stat("/dir/empty")).is_dir)
      end)

      it("sees a file grow under a writer after commit", function()
        local d = new_driver()
        local w = assert(d:writer("/grow", true))
        assert(w:write("abc"))
        assert(w:commit())
        assert.equal(3, assert(d:stat("/grow")).size)
        w:close()
      end)
    end)

    describe("list", function()
      it("gives only direct children, sorted bytewise", function()
        local d = new_driver()
        for _, p in ipairs({ "/l/b", "/l/a", "/l/c/d", "/l/c/e/f", "/l/B",
                             "/l/b-x", "/l/b.x/y", "/l/_", "/l/0",
                             "/l-sibling/z", "/l.sibling" }) do
          assert(d:put(p, p))
        end
        assert.same({ "0", "B", "_", "a", "b", "b-x", "b.x", "c" },
                    d:list("/l"))
        assert.same({ "d", "e" }, d:list("/l/c"))
        assert.same({ "f" }, d:list("/l/c/e"))
        assert.same({ "l", "l-sibling", "l.sibling" }, d:list("/"))
      end)

      it("lists an empty root", function()
        local d = new_driver()
        assert.same({}, d:list("/"))
        assert.is_true(assert(d:stat("/")).is_dir)
      end)

      it("lists many children", function()
        local d = new_driver()
        local expect = {}
        for i = 1, 300 do
          local n = string.format("f%04d", i)
          expect[i] = n
          assert(d:put("/many/" .. n, ""))
        end
        assert.same(expect, d:list("/many"))
      end)
    end)

    describe("list_page", function()
      it("pages through many children, each page sorted after the last",
         function()
        local d = new_driver()
        local expect = {}
        for i = 1, 350 do
          local n = ("f%04d"):format(i)
          expect[#expect + 1] = n
          assert(d:put("/many/" .. n, "x"))
        end
        local got, cursor, pages = {}, nil, 0
        repeat
          local names, next_cursor = d:list_page("/many", cursor)
          assert(names, next_cursor)
          pages = pages + 1
          assert.is_true(#names > 0 or next_cursor == nil)
          for _, n in ipairs(names) do
            assert.is_true(#got == 0 or n > got[#got], n)
            got[#got + 1] = n
          end
          cursor = next_cursor
        until cursor == nil or pages > 400
        assert.same(expect, got)
        assert.same(expect, d:list("/many"))
      end)

      it("answers as list does for a missing directory or a file",
         function()
        local d = new_driver()
        assert(d:put("/file", "x"))
        local names, cursor = d:list_page("/")
        assert.same({ "file" }, names)
        assert.is_nil(cursor)
        assert_fail("ENOTFOUND", d:list_page("/none"))
        assert_fail("ENOTFOUND", d:list_page("/file"))
        assert_fail("EINVAL", d:list_page("/none/"))
      end)
    end)

    describe("reader", function()
      it("reads from offsets 0, middle and end; past the end is ERANGE",
         function()
        local d = new_driver()
        assert(d:put("/r", "0123456789"))
        assert.equal("0123456789", read_all(assert(d:reader("/r")), 100))
        assert.equal("0123456789", read_all(assert(d:reader("/r", 0)), 3))
        assert.equal("56789", read_all(assert(d:reader("/r", 5)), 2))
        assert.equal("9", read_all(assert(d:reader("/r", 9)), 1))
        local r = assert(d:reader("/r", 10))
        assert.equal("", r:read(10))
        assert.equal("", r:read(10))
        r:close()
        assert_fail("ERANGE", d:reader("/r", 11))
        assert_fail("ERANGE", d:reader("/r", 2 ^ 40))
      end)

      it("reads an empty file", function()
        local d = new_driver()
        assert(d:put("/e", ""))
        assert.equal("", assert(d:reader("/e")):read(10))
        assert_fail("ERANGE", d:reader("/e", 1))
      end)

      it("streams 1 MiB of binary in chunks", function()
        local d = new_driver()
        local big = random_bytes(1024 * 1024 + 17)
        assert(d:put("/big", big))
        assert.is_true(big == read_all(assert(d:reader("/big")), 65536))
        assert.is_true(big:sub(1000001) ==
                       read_all(assert(d:reader("/big", 1000000)), 4096))
      end)

      it("keeps reading what it opened after a put replaced it", function()
        local d = new_driver()
        assert(d:put("/v", "old content"))
        local r = assert(d:reader("/v"))
        assert(d:put("/v", "new"))
        assert.equal("old content", read_all(r, 4))
        r:close()
        assert.equal("new", d:get("/v"))
      end)

      it("close is idempotent", function()
        local d = new_driver()
        assert(d:put("/v", "x"))
        local r = assert(d:reader("/v"))
        assert.is_true(r:close())
        assert.is_true(r:close())
        assert.has_error(function() r:read(1) end)
      end)
    end)

    describe("writer", function()
      it("appends across writers, counting size", function()
        local d = new_driver()
        local w = assert(d:writer("/up/data", true))
        assert.equal(0, w:size())
        assert(w:write("ab"))
        assert(w:write(""))
        assert(w:write("cd"))
        assert.equal(4, w:size())
        w:close() -- no commit: what was written stays
        w = assert(d:writer("/up/data", true))
        assert.equal(4, w:size())
        assert(w:write("ef"))
        assert.equal(6, w:size())
        assert(w:commit())
        w:close()
        assert.equal("abcdef", d:get("/up/data"))
        assert.equal(6, assert(d:stat("/up/data")).size)
      end)

      it("truncates back to a size and appends from there", function()
        local d = new_driver()
        local w = assert(d:writer("/up/data", true))
        assert(w:write("abcdef"))
        assert(w:truncate(6))
        assert(w:truncate(2))
        assert.equal(2, w:size())
        assert(w:write("XY"))
        local _, _, code = w:truncate(5)
        assert.equal("EINVAL", code)
        w:close()
        assert.equal("abXY", d:get("/up/data"))
        w = assert(d:writer("/up/data", true))
        assert.equal(4, w:size())
        assert(w:truncate(0))
        w:close()
        assert.equal("", d:get("/up/data"))
      end)

      it("appends to a file made by put", function()
        local d = new_driver()
        assert(d:put("/p", "head-"))
        local w = assert(d:writer("/p", true))
        assert.equal(5, w:size())
        assert(w:write("tail"))
        assert.equal(9, w:size())
        assert(w:commit())
        w:close()
        assert.equal("head-tail", d:get("/p"))
      end)

      it("writes many chunks of binary", function()
        local d = new_driver()
        local w = assert(d:writer("/bin", true))
        local parts = {}
        for i = 1, 64 do
          local chunk = random_bytes(i * 97)
          parts[i] = chunk
          assert(w:write(chunk))
        end
        assert(w:write(all_bytes()))
        parts[#parts + 1] = all_bytes()
        local all = table.concat(parts)
        assert.equal(#all, w:size())
        assert(w:commit())
        w:close()
        assert.is_true(all == d:get("/bin"))
      end)

      it("starts a new file empty and creates its parents", function()
        local d = new_driver()
        local w = assert(d:writer("/n/e/w", true))
        assert.equal(0, w:size())
        assert(w:commit())
        w:close()
        assert.equal("", d:get("/n/e/w"))
        assert.is_true(assert(d:stat("/n/e")).is_dir)
      end)

      it("truncates without append", function()
        local d = new_driver()
        assert(d:put("/t", "old and long content"))
        local w = assert(d:writer("/t"))
        assert.equal(0, w:size())
        assert(w:write("new"))
        assert.equal(3, w:size())
        assert(w:commit())
        w:close()
        assert.equal("new", d:get("/t"))
        w = assert(d:writer("/t", false))
        assert(w:commit())
        w:close()
        assert.equal("", d:get("/t"))
      end)

      it("allows one writer per path: EBUSY until the first closes",
         function()
        local d = new_driver()
        local w1 = assert(d:writer("/lock", true))
        assert(w1:write("first"))
        assert_fail("EBUSY", d:writer("/lock", true))
        -- a truncating writer is refused before it truncates
        assert_fail("EBUSY", d:writer("/lock", false))
        assert.equal(5, w1:size())
        -- another path is independent
        local other = assert(d:writer("/lock2", true))
        assert(w1:commit())
        w1:close()
        local w2 = assert(d:writer("/lock", true))
        assert.equal(5, w2:size())
        assert(w2:write("+second"))
        assert(w2:commit())
        w2:close()
        other:close()
        assert.equal("first+second", d:get("/lock"))
      end)

      it("interleaves writers on different paths", function()
        local d = new_driver()
        local a = assert(d:writer("/i/a", true))
        local b = assert(d:writer("/i/b", true))
        for i = 1, 20 do
          assert(a:write("a" .. i))
          assert(b:write("b" .. i))
        end
        assert(a:commit())
        assert(b:commit())
        a:close()
        b:close()
        local ea, eb = {}, {}
        for i = 1, 20 do
          ea[i] = "a" .. i
          eb[i] = "b" .. i
        end
        assert.equal(table.concat(ea), d:get("/i/a"))
        assert.equal(table.concat(eb), d:get("/i/b"))
      end)

      it("cancel removes the file", function()
        local d = new_driver()
        local w = assert(d:writer("/c/new", true))
        assert(w:write("data"))
        assert.is_true(w:cancel())
        assert.is_true(w:cancel()) -- twice is fine
        w:close()
        assert_fail("ENOTFOUND", d:stat("/c/new"))
        assert_fail("ENOTFOUND", d:get("/c/new"))
        -- an existing file too, and the path is free again
        assert(d:put("/c/old", "old"))
        w = assert(d:writer("/c/old", true))
        assert(w:cancel())
        w:close()
        assert_fail("ENOTFOUND", d:get("/c/old"))
        w = assert(d:writer("/c/old", true))
        assert.equal(0, w:size())
        w:close()
      end)

      it("close is idempotent and releases the lock", function()
        local d = new_driver()
        local w = assert(d:writer("/x", true))
        assert.is_true(w:close())
        assert.is_true(w:close())
        assert.has_error(function() w:write("x") end)
        w = assert(d:writer("/x", true))
        w:close()
      end)

      it("cannot replace a directory", function()
        local d = new_driver()
        assert(d:put("/dir/file", "x"))
        assert_fail("EEXISTS", d:writer("/dir", true))
        assert_fail("EEXISTS", d:writer("/dir", false))
        assert.equal("x", d:get("/dir/file"))
      end)
    end)

    describe("file and directory conflicts", function()
      it("put over a directory or under a file is EEXISTS", function()
        local d = new_driver()
        assert(d:put("/d/x", "x"))
        assert(d:put("/f", "f"))
        assert_fail("EEXISTS", d:put("/d", "y"))
        assert_fail("EEXISTS", d:put("/f/x", "y"))
        assert_fail("EEXISTS", d:put("/f/x/y", "y"))
        assert_fail("EEXISTS", d:writer("/f/x", true))
        assert.equal("x", d:get("/d/x"))
        assert.equal("f", d:get("/f"))
        assert.same({ "d", "f" }, d:list("/"))
      end)
    end)

    describe("move", function()
      it("moves a file, creating the destination's parents", function()
        local d = new_driver()
        assert(d:put("/m/a", "content"))
        assert(d:put("/m/keep", "keep"))
        assert.is_true(d:move("/m/a", "/n/deep/er/b"))
        assert.equal("content", d:get("/n/deep/er/b"))
        assert_fail("ENOTFOUND", d:get("/m/a"))
        assert.equal("keep", d:get("/m/keep"))
      end)

      it("replaces a destination file", function()
        local d = new_driver()
        assert(d:put("/a", "new"))
        assert(d:put("/b", "old"))
        assert(d:move("/a", "/b"))
        assert.equal("new", d:get("/b"))
        assert_fail("ENOTFOUND", d:get("/a"))
        assert.same({ "b" }, d:list("/"))
      end)

      it("moves a directory tree", function()
        local d = new_driver()
        assert(d:put("/src/a", "a"))
        assert(d:put("/src/sub/b", "b"))
        assert(d:put("/src-sibling", "s"))
        assert(d:move("/src", "/dst/moved"))
        assert.same({ "a", "sub" }, d:list("/dst/moved"))
        assert.equal("a", d:get("/dst/moved/a"))
        assert.equal("b", d:get("/dst/moved/sub/b"))
        assert_fail("ENOTFOUND", d:stat("/src"))
        assert_fail("ENOTFOUND", d:get("/src/a"))
        assert.equal("s", d:get("/src-sibling"))
      end)

      it("does not merge into an existing directory", function()
        local d = new_driver()
        assert(d:put("/one/a", "1"))
        assert(d:put("/two/b", "2"))
        assert_fail("EEXISTS", d:move("/one", "/two"))
        assert.same({ "a" }, d:list("/one"))
        assert.same({ "b" }, d:list("/two"))
      end)

      it("does not replace a directory with a file, or the reverse",
         function()
        local d = new_driver()
        assert(d:put("/file", "f"))
        assert(d:put("/dir/x", "x"))
        assert_fail("EEXISTS", d:move("/file", "/dir"))
        assert_fail("EEXISTS", d:move("/dir", "/file"))
        assert_fail("EEXISTS", d:move("/file", "/dir/x/under"))
        assert.equal("f", d:get("/file"))
        assert.equal("x", d:get("/dir/x"))
      end)

      it("refuses to move a directory into itself", function()
        local d = new_driver()
        assert(d:put("/a/b", "x"))
        assert_fail("EINVAL", d:move("/a", "/a/c"))
        assert_fail("EINVAL", d:move("/a", "/a/b/c"))
        assert.equal("x", d:get("/a/b"))
      end)

      it("moving onto itself changes nothing", function()
        local d = new_driver()
        assert(d:put("/a/b", "x"))
        assert.is_true(d:move("/a/b", "/a/b"))
        assert.is_true(d:move("/a", "/a"))
        assert.equal("x", d:get("/a/b"))
      end)
    end)

    describe("remove", function()
      it("removes a file and leaves its siblings", function()
        local d = new_driver()
        assert(d:put("/r/a", "a"))
        assert(d:put("/r/b", "b"))
        assert.is_true(d:remove("/r/a"))
        assert_fail("ENOTFOUND", d:get("/r/a"))
        assert.same({ "b" }, d:list("/r"))
        assert_fail("ENOTFOUND", d:remove("/r/a"))
      end)

      it("removes a whole tree and nothing beside it", function()
        local d = new_driver()
        for _, p in ipairs({ "/t/a", "/t/b/c", "/t/b/d/e", "/t/f/g/h/i",
                             "/t-x", "/t.y/z", "/u" }) do
          assert(d:put(p, p))
        end
        assert.is_true(d:remove("/t"))
        assert_fail("ENOTFOUND", d:stat("/t"))
        assert_fail("ENOTFOUND", d:get("/t/b/d/e"))
        assert_fail("ENOTFOUND", d:list("/t"))
        assert.same({ "t-x", "t.y", "u" }, d:list("/"))
        assert.equal("/t-x", d:get("/t-x"))
        assert.equal("/t.y/z", d:get("/t.y/z"))
      end)

      it("lets an open reader finish", function()
        local d = new_driver()
        assert(d:put("/gone/f", "still here"))
        local r = assert(d:reader("/gone/f"))
        assert(d:remove("/gone"))
        assert.equal("still here", read_all(r, 3))
        r:close()
      end)
    end)

    describe("versions and conditional puts", function()
      it("stat gives a file a version that changes with its content",
         function()
        local d = new_driver()
        assert(d:put("/v/f", "one"))
        local v1 = assert(d:stat("/v/f")).version
        assert.is_string(v1)
        assert.is_true(#v1 > 0 and #v1 < 64)
        assert.equal(v1, assert(d:stat("/v/f")).version)
        assert.equal("", assert(d:stat("/v")).version)
        assert(d:put("/v/f", "two"))
        local v2 = assert(d:stat("/v/f")).version
        assert.not_equal(v1, v2)
        local w = assert(d:writer("/v/f", true))
        assert(w:write("!"))
        assert(w:commit())
        w:close()
        assert.not_equal(v2, assert(d:stat("/v/f")).version)
      end)

      it("create-only puts where nothing is, else answers ECHANGED",
         function()
        local d = new_driver()
        assert.is_true(d:put_if("/c/f", "first"))
        assert.equal("first", d:get("/c/f"))
        assert_fail("ECHANGED", d:put_if("/c/f", "second"))
        assert.equal("first", d:get("/c/f"))
      end)

      it("replaces only the version the caller saw", function()
        local d = new_driver()
        assert(d:put("/r/f", "seen"))
        local seen = assert(d:stat("/r/f")).version
        assert(d:put("/r/f", "meanwhile"))
        assert_fail("ECHANGED", d:put_if("/r/f", "lost update", seen))
        assert.equal("meanwhile", d:get("/r/f"))
        local now = assert(d:stat("/r/f")).version
        assert.is_true(d:put_if("/r/f", "next", now))
        assert.equal("next", d:get("/r/f"))
        assert_fail("ECHANGED", d:put_if("/r/f", "again", now))
        assert_fail("ECHANGED", d:put_if("/r/missing", "x", now))
        assert_fail("ENOTFOUND", d:stat("/r/missing"))
        assert_fail("EINVAL", d:put_if("/", "x"))
      end)
    end)

    describe("lock", function()
      it("is held by one holder at a time, EBUSY for the others",
         function()
        local d = new_driver()
        local a = assert(d:lock("/locks/a"))
        assert_fail("EBUSY", d:lock("/locks/a"))
        local b = assert(d:lock("/locks/b"))
        a:release()
        a:release()
        local again = assert(d:lock("/locks/a"))
        assert_fail("EBUSY", d:lock("/locks/a"))
        again:release()
        b:release()
        assert_fail("EINVAL", d:lock("/"))
        assert_fail("EINVAL", d:lock("/locks/"))
      end)

      it("is released when its holder is collected", function()
        local d = new_driver()
        do
          local _l = assert(d:lock("/gc"))
        end
        collectgarbage()
        collectgarbage()
        assert(d:lock("/gc")):release()
      end)
    end)

    -- Optional slots: each either answers UNSUPPORTED or keeps its promise.
    describe("import", function()
      it("moves a local file in, replacing a file, or is unsupported",
         function()
        local d = new_driver()
        local dir = helpers.tmpdir()
        finally(function() helpers.rmrf(dir) end)
        helpers.write_file(dir .. "/one", "first")
        local ok, err, code = d:import("/im/deep/f", dir .. "/one")
        if not ok then
          assert.is_string(err)
          assert.equal("UNSUPPORTED", code)
          assert.equal("first", helpers.read_file(dir .. "/one"))
          return
        end
        assert.equal("first", d:get("/im/deep/f"))
        assert.is_nil(helpers.read_file(dir .. "/one"))
        helpers.write_file(dir .. "/two", "second")
        assert(d:import("/im/deep/f", dir .. "/two"))
        assert.equal("second", d:get("/im/deep/f"))
        assert_fail("ENOTFOUND", d:import("/im/g", dir .. "/missing"))
        assert_fail("ENOTFOUND", d:stat("/im/g"))
        assert_fail("EINVAL", d:import("/", dir .. "/two"))
      end)
    end)

    describe("list_version", function()
      it("changes with a directory's names, or is unsupported", function()
        local d = new_driver()
        assert(d:put("/lv/a", "x"))
        assert_fail("EINVAL", d:list_version("/lv/"))
        local _, _, missing = d:list_version("/none")
        if missing == "UNSUPPORTED" then
          return
        end
        assert.equal("ENOTFOUND", missing)
        assert_fail("ENOTFOUND", d:list_version("/lv/a")) -- a file
        -- a driver may have no token yet (fs: changed within a second)
        local v1, err, code = d:list_version("/lv")
        if not v1 then
          assert.is_string(err)
          assert.equal("UNSUPPORTED", code)
        else
          assert.is_true(#v1 > 0 and #v1 < 96)
        end
        assert(d:put("/lv/b", "y"))
        local v2 = d:list_version("/lv")
        assert.is_true(v1 == nil or v2 ~= v1)
      end)
    end)

    describe("leftover", function()
      it("never takes a directory holding a file, or is unsupported",
         function()
        local d = new_driver()
        assert(d:put("/lo/f", "x"))
        local later = (os.time() + 7200) * 1e9
        local ok, err, code = d:leftover("/lo", later, true)
        assert.is_nil(ok)
        assert.is_string(err)
        if code == "UNSUPPORTED" then
          return
        end
        assert.equal("EEXISTS", code)
        assert.equal("x", d:get("/lo/f"))
        assert_fail("EEXISTS", d:leftover("/lo/f", later))
        assert_fail("ENOTFOUND", d:leftover("/none", later))
        assert_fail("EINVAL", d:leftover("/", later))
      end)
    end)

    describe("send", function()
      it("hands off a file's bytes: a local file, a URL, or unsupported",
         function()
        local d = new_driver()
        assert(d:put("/sd/file", "bytes"))
        local kind, where, code = d:send("/sd/file")
        if kind == nil then
          assert.is_string(where)
          assert.equal("UNSUPPORTED", code)
          assert_fail("EINVAL", d:send("/"))
          return
        end
        assert.is_string(where)
        if kind == "file" then
          assert.equal("bytes", helpers.read_file(where))
        else
          assert.equal("url", kind)
          assert.matches("^https?://", where)
        end
        assert_fail("ENOTFOUND", d:send("/sd/missing"))
        assert_fail("ENOTFOUND", d:send("/sd"))
        assert_fail("EINVAL", d:send("/"))
      end)
    end)

    describe("local_path", function()
      it("names a file, or is unsupported", function()
        local d = new_driver()
        assert(d:put("/lp/file", "x"))
        local lp, err, code = d:local_path("/lp/file")
        if lp == nil then
          assert.is_string(err)
          assert.equal("UNSUPPORTED", code)
          return
        end
        assert.is_string(lp)
        assert.equal("/lp/file", lp:sub(-#"/lp/file"))
        assert.equal("x", helpers.read_file(lp))
        assert_fail("ENOTFOUND", d:local_path("/lp"))
        assert_fail("ENOTFOUND", d:local_path("/lp/missing"))
      end)
    end)

    describe("interleaved use", function()
      it("the last of many puts wins and readers see whole files",
         function()
        local d = new_driver()
        local a = string.rep("a", 10000)
        local b = string.rep("b", 20000)
        for i = 1, 50 do
          assert(d:put("/race", i % 2 == 0 and a or b))
          local r = assert(d:reader("/race"))
          assert(d:put("/race", i % 2 == 0 and b or a))
          local got = read_all(r, 4096)
          r:close()
          assert.is_true(got == (i % 2 == 0 and a or b))
        end
        assert.is_true(d:get("/race") == b) -- i = 50 put b last
      end)

      it("a reader follows a writer's appends on another path", function()
        local d = new_driver()
        assert(d:put("/stable", "stable"))
        local w = assert(d:writer("/log", true))
        local r = assert(d:reader("/stable"))
        for i = 1, 10 do
          assert(w:write(tostring(i)))
          assert.equal("stable", d:get("/stable"))
        end
        assert.equal("stable", read_all(r, 2))
        assert(w:commit())
        w:close()
        r:close()
        assert.equal("12345678910", d:get("/log"))
      end)

      it("keeps a tree consistent under many operations", function()
        local d = new_driver()
        local model = {}
        math.randomseed(42)
        for i = 1, 300 do
          local k = "/tree/d" .. math.random(1, 4) .. "/f" .. math.random(1, 8)
          local op = math.random(1, 4)
          if op <= 2 then
            local v = tostring(i)
            assert(d:put(k, v))
            model[k] = v
          elseif op == 3 then
            local ok, _, code = d:remove(k)
            if model[k] then
              assert.is_true(ok)
            else
              assert.equal("ENOTFOUND", code)
            end
            model[k] = nil
          else
            local k2 = "/tree/d" .. math.random(1, 4) .. "/f" ..
                       math.random(1, 8)
            local ok, _, code = d:move(k, k2)
            if model[k] then
              assert.is_true(ok)
              local v = model[k]
              model[k] = nil
              model[k2] = v
            else
              assert.equal("ENOTFOUND", code)
            end
          end
        end
        for k, v in pairs(model) do
          assert.equal(v, d:get(k))
        end
        for dn = 1, 4 do
          local dir = "/tree/d" .. dn
          local expect = {}
          for k in pairs(model) do
            local f = k:match("^" .. dir .. "/(f%d+)$")
            if f then
              expect[#expect + 1] = f
            end
          end
          table.sort(expect)
          local names = d:list(dir)
          if names then
            -- an emptied directory may or may not remain
            assert.same(expect, names)
          else
            assert.same({}, expect)
          end
        end
      end)
    end)

    describe("the Lua object", function()
      it("close is idempotent and later calls raise", function()
        local d = new_driver()
        assert.is_true(d:close())
        assert.is_true(d:close())
        assert.has_error(function() d:get("/x") end)
        assert.has_error(function() d:put("/x", "") end)
      end)

      it("readers and writers refuse to work once their driver closed",
         function()
        local d = new_driver()
        assert(d:put("/f", "x"))
        local r = assert(d:reader("/f"))
        local w = assert(d:writer("/g", true))
        d:close()
        assert.has_error(function() r:read(1) end)
        assert.has_error(function() w:write("x") end)
        r:close()
        w:close()
      end)

      it("raises on arguments of the wrong type", function()
        local d = new_driver()
        assert.has_error(function() d:get(nil) end)
        assert.has_error(function() d:put("/x", 42) end)
        assert.has_error(function() d:reader("/x", -1) end)
      end)
    end)
  end)
end

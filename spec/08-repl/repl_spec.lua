-- The REPL core (lua/berth/repl.lua) fed line by line: expression printing,
-- multi-line chunks, errors, the pretty-printers and completion; and the
-- `berth repl` command (lua/berth/cmd/repl.lua) reading from a file.
local helpers = require "helpers"
local support = require "08-repl.support"
local repl = require "berth.repl"

local ELLIPSIS = "\226\128\166"

-- A REPL on a populated store whose output is collected.
local function new_repl(opts)
  local store, root = helpers.new_store({ fsync = "none" })
  local image = support.populate(store)
  local buf = {}
  opts = opts or {}
  local r = repl.new({ store = store, color = opts.color,
    write = function(s) buf[#buf + 1] = s end })
  -- feed(...) -> what the lines printed
  local function feed(...)
    for i = 1, select("#", ...) do
      r:feed((select(i, ...)))
    end
    local s = table.concat(buf)
    buf = {}
    return s
  end
  return r, feed, image, store, root
end

describe("berth.repl", function()
  describe("evaluation", function()
    it("prints the values of an expression, `=expr` too", function()
      local _, feed = new_repl()
      assert.equal("2\n", feed("1 + 1"))
      assert.equal("1\thello\n", feed("=1, 'hello'"))
      assert.equal("nil\n", feed("=nil"))
      assert.equal("", feed("return"))
    end)

    it("runs statements, and globals persist between lines", function()
      local r, feed = new_repl()
      assert.equal("", feed("x = 41"))
      assert.equal("42\n", feed("x + 1"))
      assert.equal("", feed("local y = 1"))
      assert.equal("nil\n", feed("y"))
      -- the REPL's globals are its own
      assert.is_nil(rawget(_G, "x"))
      assert.equal(41, r.env.x)
    end)

    it("continues an unfinished chunk on the next line", function()
      local r, feed = new_repl()
      assert.equal("berth> ", r:prompt())
      assert.equal("more", r:feed("for i = 1, 3 do"))
      assert.equal("berth>> ", r:prompt())
      assert.equal("more", r:feed("  print(i * 10)"))
      assert.equal("done", r:feed("end"))
      assert.equal("berth> ", r:prompt())
      assert.equal("10\n20\n30\n", feed())
      -- an expression across lines
      assert.equal("{ a = 1, b = 2 }\n", feed("{", "a = 1,", "b = 2", "}"))
      assert.equal("3\n", feed("1 +", "2"))
      -- functions defined over several lines
      assert.equal("", feed("function sq(n)", "return n * n", "end"))
      assert.equal("49\n", feed("sq(7)"))
      -- a long string
      assert.equal("a\nb\n", feed("=[[a", "b]]"))
    end)

    it("prints errors and keeps going", function()
      local r, feed = new_repl()
      assert.matches("^error: .*boom\n$", feed("error('boom')"))
      assert.matches("^error: stdin:1: attempt to perform arithmetic",
        feed("local t = nil; return t + 1"))
      assert.matches("^error: stdin:1: .*near '='", feed("x = = 1"))
      -- a short string does not continue on the next line
      assert.matches("^error: stdin:1: unfinished string", feed("x = 'abc"))
      assert.equal("3\n", feed("1 + 2"))
      assert.is_nil(r.buffer)
      assert.equal(4, r.errors)
      -- error values that are not strings
      assert.equal("error: { code = 7 }\n", feed("error({ code = 7 })"))
    end)

    it("drops an unfinished chunk on cancel, reports it at the end",
      function()
        local r, feed = new_repl()
        assert.equal("more", r:feed("if true then"))
        r:cancel()
        assert.equal("5\n", feed("5"))
        assert.equal("more", r:feed("while false do"))
        r:finish()
        assert.matches("^error: stdin:1: 'end' expected near '<eof>'",
          feed())
      end)

    it("prints the failure triple as an error, red on a terminal",
      function()
        local r, feed = new_repl()
        local out = feed(("store:blob_stat('library/app', '%s')")
          :format(support.MISSING))
        assert.equal("error BLOB_UNKNOWN: blob unknown to repository "
          .. "library/app: " .. support.MISSING .. "\n", out)
        assert.equal(1, r.errors)
        assert.equal("error NAME_UNKNOWN: repository name not known to "
          .. "registry: nope/nope\n", feed("tags('nope/nope')"))
        local _, cfeed = new_repl({ color = true })
        assert.equal("\27[31merror MANIFEST_UNKNOWN: manifest unknown: "
          .. "library/app:nope\27[0m\n",
          cfeed("store:manifest_get('library/app', 'nope')"))
      end)

    it("prints a manifest body as indented JSON and its info on one line",
      function()
        local _, feed, image = new_repl()
        local out = feed("store:manifest_get('library/app', 'latest')")
        local size = #image.body
        local expect = table.concat({
          '{',
          '  "schemaVersion": 2,',
          '  "mediaType": "application/vnd.oci.image.manifest.v1+json",',
          '  "config": {',
          '    "mediaType": "application/vnd.oci.image.config.v1+json",',
          '    "digest": "' .. image.config .. '",',
          '    "size": ' .. #support.CONFIG .. '  // '
            .. #support.CONFIG .. ' B',
          '  },',
          '  "layers": [',
          '    {',
          '      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",',
          '      "digest": "' .. image.layer .. '",',
          '      "size": 1572864  // 1.5 MiB',
          '    }',
          '  ],',
          '  "annotations": {',
          '    "org.opencontainers.image.title": "app"',
          '  }',
          '}',
          image.digest:sub(1, 19) .. ELLIPSIS .. "     " .. size .. " B  "
            .. "application/vnd.oci.image.manifest.v1+json",
        }, "\n") .. "\n"
        assert.equal(expect, out)
      end)
  end)

  describe("helpers", function()
    it("ls, tags, show, pp and help", function()
      local r, feed, image = new_repl()
      assert.equal('{ "library/app", "team/tool" }\n', feed("ls()"))
      assert.equal('{ "latest", "v1.0", "v1.1" }\n',
        feed("tags('library/app')"))
      local out = feed("show('library/app', 'v1.0')")
      assert.equal("-- library/app:v1.0  " .. image.digest .. "  "
        .. #image.body .. " B  application/vnd.oci.image.manifest.v1+json",
        out:match("^[^\n]*"))
      assert.matches('\n  "schemaVersion": 2,\n', out, 1, true)
      assert.matches('"size": 1572864  // 1.5 MiB\n', out, 1, true)
      out = feed("show('library/app', '" .. image.digest .. "')")
      assert.matches("^%-%- library/app@sha256:", out)
      assert.matches("^error MANIFEST_UNKNOWN: ",
        feed("show('library/app', 'v9')"))
      assert.equal('{ 1, "a" }\n', feed("pp({ 1, 'a' })"))
      assert.matches("ls%(%)", feed("help()"))
      assert.equal("<store " .. r.store.root .. ">\n", feed("store"))
      assert.matches("^<registry ", feed("reg"))
      assert.equal("true\n", feed("reg.store == store"))
      assert.equal("", feed("quit()"))
      assert.is_true(r.quit)
    end)
  end)

  describe("formatting", function()
    local format = repl.format

    it("humanizes sizes", function()
      assert.equal("0 B", repl.humanize(0))
      assert.equal("1023 B", repl.humanize(1023))
      assert.equal("1.0 KiB", repl.humanize(1024))
      assert.equal("12.3 MiB", repl.humanize(12.3 * 1024 * 1024))
      assert.equal("2.0 GiB", repl.humanize(2 * 1024 ^ 3))
    end)

    it("prints tables as sorted, indented trees", function()
      assert.equal("{}", format({}))
      assert.equal('{ 1, 2, "three" }', format({ 1, 2, "three" }))
      assert.equal('{ 1, 2, b = true, c = "x", ["key with space"] = 1 }',
        format({ 1, 2, c = "x", b = true, ["key with space"] = 1 }))
      local t = { name = "library/app", tags = {}, nested = {} }
      for i = 1, 12 do
        t.tags[i] = "tag-number-" .. i
      end
      t.nested.deeper = { x = 1 }
      local s = format(t)
      assert.equal(table.concat({
        "{",
        "  name = \"library/app\",",
        "  nested = { deeper = { x = 1 } },",
        "  tags = {",
        '    "tag-number-1",',
      }, "\n"), s:sub(1, #table.concat({
        "{",
        "  name = \"library/app\",",
        "  nested = { deeper = { x = 1 } },",
        "  tags = {",
        '    "tag-number-1",',
      }, "\n")))
      assert.matches('    "tag%-number%-12",\n  },\n}$', s)
      -- numeric keys before string keys, sorted
      assert.equal("{ [5] = 5, [10] = 10, a = 1 }",
        format({ [10] = 10, [5] = 5, a = 1 }))
    end)

    it("handles cycles, depth and long strings", function()
      local t = { name = "loop" }
      t.self = t
      assert.equal('{ name = "loop", self = <cycle> }', format(t))
      local deep = { a = { b = { c = { d = { e = { f = 1 } } } } } }
      assert.equal("{ a = { b = { c = { d = { e = {" .. ELLIPSIS
        .. "} } } } } }", format(deep))
      local long = format({ string.rep("x", 500) })
      assert.truthy(long:find('"' .. string.rep("x", 120) .. ELLIPSIS
        .. '" (500 bytes)', 1, true))
      assert.equal([["a\nb\"\001"]], repl.quote("a\nb\"\1"))
      -- a top-level string prints as is, binary data quoted
      assert.equal("plain\ntext", format("plain\ntext"))
      assert.equal([["\000\001bin"]], format("\0\1bin"))
    end)

    it("prints descriptors on one line", function()
      local d = { digest = "sha256:" .. string.rep("ab", 32),
        size = 12.3 * 1024 * 1024,
        media_type = "application/vnd.oci.image.layer.v1.tar+gzip" }
      assert.equal("sha256:abababababab" .. ELLIPSIS
        .. "  12.3 MiB  application/vnd.oci.image.layer.v1.tar+gzip",
        format(d))
      d.kind = "layer"
      d.platform = { os = "linux", architecture = "arm64" }
      assert.equal("sha256:abababababab" .. ELLIPSIS
        .. "  12.3 MiB  application/vnd.oci.image.layer.v1.tar+gzip"
        .. "  (layer, linux/arm64)", format(d))
      -- in a list, one per line
      local s = format({ d, d })
      assert.equal(3, select(2, s:gsub("\n", "")))
      -- a table with other keys is not a descriptor
      assert.matches("^{", format({ digest = d.digest, size = 1,
        media_type = "x", other = 1 }))
    end)

    it("pretty-prints JSON objects in their own key order", function()
      local s = format('{"b":1,"a":{"size":2048,"empty":{},"list":[]},'
        .. '"s":"x,\\"y\\"{"}')
      assert.equal(table.concat({
        "{",
        '  "b": 1,',
        '  "a": {',
        '    "size": 2048,  // 2.0 KiB',
        '    "empty": {},',
        '    "list": []',
        "  },",
        '  "s": "x,\\"y\\"{"',
        "}",
      }, "\n"), s)
      assert.is_true(repl.is_manifest_json('{"schemaVersion":2}'))
      assert.is_false(repl.is_manifest_json('{"a":1}'))
      assert.is_false(repl.is_manifest_json("{not json"))
      assert.equal("{not json", format("{not json"))
    end)

    it("prints manifest objects and closed stores as one line", function()
      local _, feed, image = new_repl()
      local out = feed("berth.manifest.parse((store:manifest_get("
        .. "'library/app', 'latest')))")
      assert.equal("<manifest " .. image.digest:sub(1, 19) .. ELLIPSIS
        .. "  " .. #image.body .. " B  "
        .. "application/vnd.oci.image.manifest.v1+json, 2 refs>\n", out)
      out = feed("berth.manifest.parse((store:manifest_get("
        .. "'library/app', 'latest'))):refs()")
      local lines = {}
      for l in out:gmatch("[^\n]+") do
        lines[#lines + 1] = l
      end
      assert.equal(4, #lines)
      assert.matches("^  sha256:%x+" .. ELLIPSIS .. " +%d+ B  "
        .. "application/vnd%.oci%.image%.config%.v1%+json  %(config%),$",
        lines[2])
      assert.matches("1.5 MiB  application/vnd.oci.image.layer.v1.tar"
        .. "+gzip  (layer),", lines[3], 1, true)
    end)
  end)

  describe("completion", function()
    local function complete(r, line)
      return r:complete(line)
    end

    it("finds the word the way readline breaks words", function()
      assert.equal(1, repl.word_start("store:ta"))
      assert.equal(7, repl.word_start("print(store:ta"))
      assert.equal(17, repl.word_start('store:tag_list("lib'))
      assert.equal(5, repl.word_start("x = "))
    end)

    it("completes the methods of the store", function()
      local r = new_repl()
      assert.same({ "store:tag_delete", "store:tag_delete_if",
        "store:tag_get", "store:tag_list",
        "store:tag_lookup", "store:tag_reindex", "store:tag_set",
        "store:tag_set_if" },
        complete(r, "store:ta"))
      -- one match: the call's parenthesis comes with it
      assert.same({ "store:catalog(" }, complete(r, "store:cat"))
      assert.same({ "print(store:catalog(" },
        (function()
          local line = "print(store:cat"
          local from = repl.word_start(line)
          local c = r:complete(line, from)
          return { line:sub(1, from - 1) .. c[1] }
        end)())
      local all = complete(r, "store:")
      assert.is_true(#all > 20)
      for _, m in ipairs(all) do
        assert.matches("^store:[%a]", m) -- no private names (_p)
      end
      assert.same({}, complete(r, "store:nothing_like_this"))
    end)

    it("completes repository names in a first string argument",
      function()
        local r = new_repl()
        assert.same({ "library/app", "team/tool" },
          complete(r, 'store:tag_list("'))
        assert.same({ "library/app" }, complete(r, "store:tag_list('lib"))
        assert.same({ "team/tool" }, complete(r, 'tags("t'))
        assert.same({ "library/app", "team/tool" },
          complete(r, 'reg:list_tags( "'))
        -- not for calls that take no repository
        assert.same({}, complete(r, 'print("'))
      end)

    it("completes tags and digests in a second string argument",
      function()
        local r, _, image = new_repl()
        assert.same({ "latest", "v1.0", "v1.1" },
          complete(r, 'store:manifest_get("library/app", "'))
        assert.same({ "v1.0", "v1.1" },
          complete(r, "show('library/app', 'v"))
        assert.same({ "stable" }, complete(r, 'store:tag_get("team/tool", "'))
        assert.same({ image.digest },
          complete(r, 'show("library/app", "sha'))
        assert.same({ image.digest },
          complete(r, 'store:manifest_delete("library/app", "'))
        assert.same({ image.config, image.layer },
          complete(r, 'store:blob_stat("team/tool", "'))
        assert.same({}, complete(r, 'store:tag_list("nope/nope", "'))
      end)

    it("completes globals, fields and keywords", function()
      local r = new_repl()
      assert.same({ "berth.digest", "berth.errors", "berth.manifest",
        "berth.open" }, complete(r, "berth."))
      assert.same({ "berth.digest." }, complete(r, "berth.dig"))
      assert.same({ "berth.digest.compute(" },
        complete(r, "berth.digest.comp"))
      assert.same({ "show(" }, complete(r, "sho"))
      assert.same({ "tonumber", "tostring" }, complete(r, "to"))
      assert.same({ "tags(" }, complete(r, "tag"))
      assert.same({ "local" }, complete(r, "loc"))
      assert.same({ "string.format(" }, complete(r, "string.form"))
      r:feed("my_table = { alpha = 1, beta = 2 }")
      assert.same({ "my_table.alpha", "my_table.beta" },
        complete(r, "my_table."))
      -- string methods through the string metatable
      r:feed("s = 'abc'")
      assert.same({ "s:upper(" }, complete(r, "s:upp"))
      -- never raises
      assert.same({}, complete(r, "nothing.here."))
      assert.same({}, complete(r, "1 + ("))
    end)
  end)
end)

describe("berth repl (cmd)", function()
  local cmd = require "berth.cmd.repl"

  local function sink()
    local buf = {}
    return { write = function(_, ...)
      for i = 1, select("#", ...) do
        buf[#buf + 1] = tostring((select(i, ...)))
      end
    end, flush = function() end, text = function() return table.concat(buf) end }
  end

  local function run(argv, input)
    local path = os.tmpname()
    helpers.write_file(path, input or "")
    local stdin = assert(io.open(path, "rb"))
    local out, err = sink(), sink()
    local env = { stdout = out, stderr = err, isatty = false,
      home = ".", getenv = function(k)
        if k == "BERTH_HISTORY" then return "" end
        return os.getenv(k)
      end, stdin = stdin }
    local rc = cmd.run(argv, env)
    stdin:close()
    os.remove(path)
    return rc, out.text(), err.text()
  end

  it("has the command contract", function()
    assert.is_string(cmd.summary)
    assert.matches("usage: berth repl", cmd.usage)
    assert.is_function(cmd.run)
    local rc, out = run({ "--help" })
    assert.equal(0, rc)
    assert.equal(cmd.usage, out)
  end)

  it("reads lines from stdin when it is not a terminal", function()
    local store, root = helpers.new_store({ fsync = "none" })
    support.populate(store)
    local rc, out, err = run({ "--root", root },
      "ls()\ntags('team/tool')\nfor i = 1, 2 do\nprint(i)\nend\n")
    assert.equal("", err)
    assert.equal(0, rc)
    assert.equal('{ "library/app", "team/tool" }\n{ "stable" }\n1\n2\n', out)
    -- a positional root; a failure makes the exit status 1
    rc, out = run({ root }, "store:tag_get('team/tool', 'nope')\n")
    assert.equal(1, rc)
    assert.matches("^error MANIFEST_UNKNOWN: ", out)
    rc, out = run({ root }, "if true then\n")
    assert.equal(1, rc)
    assert.matches("^error: stdin:%d+: 'end' expected", out)
  end)

  it("refuses a missing root and bad arguments", function()
    local rc, _, err = run({ "--root", "/nonexistent/berth-store" })
    assert.equal(1, rc)
    assert.matches("no store at /nonexistent/berth%-store", err)
    local root = helpers.tmpdir()
    rc, _, err = run({ root, "--root", root .. "/other" })
    assert.equal(2, rc)
    assert.matches("not both", err)
    rc, _, err = run({ "--bogus" })
    assert.equal(2, rc)
    assert.matches("unknown option %-%-bogus", err)
  end)
end)

-- The `berth` CLI framework: dispatch, help, exit codes, the shared option
-- parser (berth.cmd.args) and the output helpers (berth.cmd.out).
local helpers = require "helpers"
local support = require "06-cli.support"

local berth = support.berth

-- An env whose stdout and stderr are strings.
local function capture_env(isatty)
  local o, e = {}, {}
  local function sink(t)
    return {
      write = function(self, ...)
        for i = 1, select("#", ...) do
          t[#t + 1] = tostring((select(i, ...)))
        end
        return self
      end,
      flush = function() end,
    }
  end
  local env = { stdout = sink(o), stderr = sink(e), isatty = isatty or false,
    home = ".", getenv = os.getenv }
  env.out = function() return table.concat(o) end
  env.err = function() return table.concat(e) end
  return env
end

local MINE = { "ls", "tags", "inspect", "cat", "du", "import", "export" }
local OTHERS = { "gc", "fsck", "repl" }

describe("berth CLI", function()
  describe("dispatch", function()
    it("`help` lists every command, serve included", function()
      local r = berth({ "help" }, { script = true })
      assert.equal(0, r.code)
      for _, name in ipairs(MINE) do
        assert.matches("\n  " .. name .. " +%S", r.stdout)
      end
      for _, name in ipairs(OTHERS) do
        assert.matches("\n  " .. name .. " ", r.stdout)
      end
      assert.matches("\n  serve +serve the OCI Distribution API", r.stdout)
      assert.equal("", r.stderr)
    end)

    it("`help CMD` prints the command's usage", function()
      local r = berth({ "help", "tags" }, { script = true })
      assert.equal(0, r.code)
      assert.matches("^usage: berth tags REPO", r.stdout)
      r = berth({ "help", "nope" }, { script = true })
      assert.equal(2, r.code)
      assert.matches("unknown command 'nope'", r.stderr)
    end)

    it("an unknown command is a usage error: exit 2, usage on stderr",
      function()
        local r = berth({ "frobnicate" })
        assert.equal(2, r.code)
        assert.equal("", r.stdout)
        assert.matches("^berth: unknown command 'frobnicate'\n", r.stderr)
        assert.matches("usage: berth <command>", r.stderr)
      end)

    for _, name in ipairs(MINE) do
      it("`berth " .. name .. " --help` prints its usage, exit 0",
        function()
          local r = berth({ name, "--help" })
          assert.equal(0, r.code)
          assert.matches("^usage: berth " .. name, r.stdout)
          assert.matches("%-%-root DIR", r.stdout)
          assert.equal("", r.stderr)
          -- -h too, anywhere before `--`, whatever else is there
          r = berth({ name, "a", "--bogus", "-h" })
          assert.equal(0, r.code)
          assert.matches("^usage: berth " .. name, r.stdout)
        end)
    end

    for _, name in ipairs(OTHERS) do
      it("`berth " .. name .. " --help` exits 0 (once written)", function()
        if not helpers.read_file("lua/berth/cmd/" .. name .. ".lua") then
          pending("lua/berth/cmd/" .. name .. ".lua is not written yet")
          return
        end
        local r = berth({ name, "--help" })
        assert.equal(0, r.code, r.stderr)
        assert.is_true(#r.stdout > 0)
      end)
    end

    it("a usage error in a command exits 2 with the message and usage",
      function()
        local r = berth({ "ls", "--nope" })
        assert.equal(2, r.code)
        assert.matches("^berth ls: unknown option %-%-nope\nusage: berth ls",
          r.stderr)
        r = berth({ "tags" })
        assert.equal(2, r.code)
        assert.matches("^berth tags: missing argument REPO\n", r.stderr)
        r = berth({ "ls", "extra" })
        assert.equal(2, r.code)
        assert.matches("unexpected argument 'extra'", r.stderr)
      end)

    it("a store that does not exist is a failure (1), not created",
      function()
        local dir = helpers.tmpdir() .. "/none"
        local r = berth({ "ls" }, { root = dir })
        assert.equal(1, r.code)
        assert.matches("^berth ls: no store at " .. dir:gsub("%p", "%%%0"),
          r.stderr)
        assert.is_nil(helpers.read_file(dir))
      end)

    it("a directory that is not a store is refused by every command that"
      .. " reads one", function()
      -- a mistyped root in a cron fsck must not report all is well
      local dir = helpers.tmpdir()
      helpers.write_file(dir .. "/notes.txt", "not a registry\n")
      assert(os.execute("mkdir -p " .. support.q(dir .. "/docker/other")))
      for _, argv in ipairs({ { "ls" }, { "tags", "a" }, { "fsck" },
          { "du" }, { "gc", "--dry-run" }, { "inspect", "a", "v1" },
          { "cat", "a", "v1" }, { "export", "a:v1", dir .. "/out" } }) do
        local r = berth(argv, { root = dir })
        assert.equal(1, r.code, argv[1] .. ": " .. r.stdout)
        assert.matches("^berth " .. argv[1] .. ": " .. dir:gsub("%p", "%%%0")
          .. " is not a store", r.stderr)
      end
      -- an empty directory is an empty store (berth serve's run files
      -- aside), Distribution's tree a store
      local empty = helpers.tmpdir()
      assert(os.execute("mkdir " .. support.q(empty .. "/.berth-run")))
      assert.equal(0, berth({ "ls" }, { root = empty }).code)
      assert(os.execute("mkdir -p " .. support.q(dir .. "/docker/registry/v2")))
      assert.equal(0, berth({ "ls" }, { root = dir }).code)
    end)

    it("the store's root comes from --config, and --root wins", function()
      local _, root = support.filled_store()
      local dir = helpers.tmpdir()
      local conf = dir .. "/berth.lua"
      helpers.write_file(conf, "return { store = { root = "
        .. string.format("%q", root) .. ", fsync = \"none\" } }\n")
      local r = berth({ "tags", "app", "--config", conf })
      assert.equal(0, r.code, r.stderr)
      assert.matches("amd64", r.stdout)
      r = berth({ "tags", "app", "--config=" .. conf, "--root", dir })
      assert.equal(1, r.code)
      r = berth({ "ls", "--config", dir .. "/missing.lua" })
      assert.equal(1, r.code)
      assert.matches("^berth ls: config ", r.stderr)
    end)

    it("the default root is not something git would commit", function()
      local r = support.sh("git rev-parse --is-inside-work-tree")
      if r.code ~= 0 then
        pending("not a git checkout")
        return
      end
      assert.equal(0, support.sh("git check-ignore -q berth-data/x").code)
    end)

    it("runs with the default root ./berth-data", function()
      local dir = helpers.tmpdir()
      local r = support.sh("cd " .. support.q(dir) .. " && " .. support.BIN
        .. " ls")
      assert.equal(1, r.code)
      assert.matches("no store at %./berth%-data", r.stderr)
      assert(os.execute("mkdir " .. support.q(dir .. "/berth-data")))
      r = support.sh("cd " .. support.q(dir) .. " && " .. support.BIN
        .. " ls --json")
      assert.equal(0, r.code, r.stderr)
      assert.equal('{"repositories":[]}\n', r.stdout)
    end)
  end)

  insulate("main (in process)", function()
    local cli = require "berth.cli"

    local function fake(name, mod)
      package.preload["berth.cmd.fake_" .. name] = function() return mod end
      return "berth.cmd.fake_" .. name
    end

    local commands = {
      boom = fake("boom", { summary = "raises", usage = "usage: boom\n",
        run = function() error("kaboom") end }),
      three = fake("three", { summary = "exits 3", usage = "usage: three\n",
        run = function(args, env)
          env.stdout:write(table.concat(args, ","))
          return 3
        end }),
      shapeless = fake("shapeless", 42),
      weird = fake("weird", { summary = "", usage = "",
        run = function() return "nope" end }),
      broken = fake("broken", nil),
      absent = "berth.cmd.does_not_exist",
    }
    package.preload["berth.cmd.fake_broken"] = function()
      error("syntax error near 'end'\nsecond line")
    end

    it("passes the arguments after the command and returns run's code",
      function()
        local env = capture_env()
        assert.equal(3, cli.main({ "three", "a", "--b", "c" }, env, commands))
        assert.equal("a,--b,c", env.out())
      end)

    it("an uncaught error in run: exit 70 and one line", function()
      local env = capture_env()
      assert.equal(70, cli.main({ "boom" }, env, commands))
      assert.matches("^berth boom: internal error: .*kaboom\n$", env.err())
    end)

    it("BERTH_DEBUG adds the traceback", function()
      local env = capture_env()
      env.getenv = function(k) return k == "BERTH_DEBUG" and "1" or nil end
      assert.equal(70, cli.main({ "boom" }, env, commands))
      assert.matches("stack traceback", env.err())
    end)

    it("a module that cannot load is a clear error, not a traceback",
      function()
        for name, pattern in pairs({
          absent = "module berth.cmd.does_not_exist is not installed",
          broken = "cannot load berth.cmd.fake_broken: .*syntax error near",
          shapeless = ".* is not a command module",
        }) do
          local env = capture_env()
          assert.equal(70, cli.main({ name }, env, commands))
          assert.matches("^berth " .. name .. ": command not available: "
            .. pattern, env.err())
          assert.not_matches("traceback", env.err())
          assert.not_matches("second line", env.err())
        end
      end)

    it("help lists the modules that load and says which do not", function()
      local env = capture_env()
      assert.equal(0, cli.main({ "help" }, env, commands))
      assert.matches("\n  three +exits 3\n", env.out())
      assert.matches("\n  absent +%(command not available", env.out())
    end)

    it("--help is answered before run", function()
      local env = capture_env()
      assert.equal(0, cli.main({ "boom", "x", "--help" }, env, commands))
      assert.equal("usage: boom\n", env.out())
      -- after `--` it is an argument
      env = capture_env()
      assert.equal(3, cli.main({ "three", "--", "--help" }, env, commands))
      assert.equal("--,--help", env.out())
    end)

    it("a run that returns no exit code is an internal error", function()
      local env = capture_env()
      assert.equal(70, cli.main({ "weird" }, env, commands))
      assert.matches("bad exit code", env.err())
    end)

    it("serve is a command like the others (its usage, its errors)",
      function()
      local env = capture_env()
      assert.equal(0, cli.main({ "help", "serve" }, env))
      assert.matches("^usage: berth serve %[%-%-listen", env.out())
      env = capture_env()
      assert.equal(2, cli.main({ "serve", "--workers", "0" }, env))
      assert.matches("^berth serve: %-%-workers takes a whole number",
        env.err())
      env = capture_env()
      assert.equal(2, cli.main({ "serve", "--tls-cert", "x" }, env))
      assert.matches("go together", env.err())
      env = capture_env()
      assert.equal(2, cli.main({ "serve", "--bogus" }, env))
      assert.matches("unknown option %-%-bogus", env.err())
    end)
  end)

  describe("args.parse", function()
    local args = require "berth.cmd.args"
    local SPEC = { name = "t", usage = "usage: t\n",
      flags = { "json", "dry-run" }, options = { depth = "N",
        repo = { metavar = "REPO", multi = true } },
      short = { n = "dry-run", d = "depth" }, args = { "A", "B?" } }

    it("takes --opt VALUE, --opt=VALUE, flags and positionals in any order",
      function()
        local o = assert(args.parse({ "x", "--root", "/r", "--json",
          "--config=/c.lua", "y", "--dry-run", "--depth=3" }, SPEC))
        assert.same({ "x", "y" }, o.args)
        assert.equal("x", o[1])
        assert.equal("y", o[2])
        assert.equal("/r", o.root)
        assert.equal("/c.lua", o.config)
        assert.is_true(o.json)
        assert.is_true(o.dry_run)
        assert.equal("3", o.depth)
      end)

    it("short names, multi options, `--` and -", function()
      local o = assert(args.parse({ "-n", "-d", "2", "--repo", "a",
        "--repo=b", "--", "--json" }, SPEC))
      assert.is_true(o.dry_run)
      assert.equal("2", o.depth)
      assert.same({ "a", "b" }, o.repo)
      assert.same({ "--json" }, o.args)
      assert.is_nil(o.json)
      o = assert(args.parse({ "-" }, SPEC))
      assert.same({ "-" }, o.args)
      -- an empty value is a value
      o = assert(args.parse({ "a", "--root=" }, SPEC))
      assert.equal("", o.root)
    end)

    it("fails with nil, message, 2", function()
      for _, case in ipairs({
        { { "a", "--nope" }, "unknown option %-%-nope" },
        { { "a", "-z" }, "unknown option %-z" },
        { { "a", "--json=yes" }, "option %-%-json takes no value" },
        { { "a", "--root" }, "option %-%-root needs a value %(DIR%)" },
        { {}, "missing argument A" },
        { { "a", "b", "c" }, "unexpected argument 'c'" },
      }) do
        local o, err, code = args.parse(case[1], SPEC)
        assert.is_nil(o)
        assert.matches(case[2], err)
        assert.equal(2, code)
      end
    end)

    it("with env, writes the usage error", function()
      local env = capture_env()
      local o, err, code = args.parse({ "--nope" }, SPEC, env)
      assert.is_nil(o)
      assert.equal(2, code)
      assert.equal("unknown option --nope", err)
      assert.equal("berth t: unknown option --nope\nusage: t\n", env.err())
    end)

    it("rest arguments: X... needs one, X...? none", function()
      assert.is_nil(args.parse({}, { args = { "PATH..." } }))
      local o = assert(args.parse({ "a", "b", "c" }, { args = { "PATH..." } }))
      assert.same({ "a", "b", "c" }, o.args)
      assert(args.parse({}, { args = { "PATH...?" } }))
      -- no spec.args: anything goes
      assert(args.parse({ "a", "b" }, {}))
    end)

    it("open_store: missing root fails unless create", function()
      local dir = helpers.tmpdir() .. "/new"
      local st, err = args.open_store({ root = dir })
      assert.is_nil(st)
      assert.matches("no store at", err)
      st = assert(args.open_store({ root = dir }, { create = true }))
      assert.same({}, st:catalog())
      st:close()
    end)

    it("open_registry: the configuration's plugins, on --root", function()
      local _, root = support.filled_store()
      local dir = helpers.tmpdir()
      local conf = dir .. "/c.lua"
      helpers.write_file(conf, [[
        store = { root = "/nonexistent" }
        plugins = { { name = "no-latest",
          path = "]] .. require("helpers").cwd() .. [[/examples/policy-no-latest.lua" } }
      ]])
      local reg = assert(args.open_registry({ config = conf, root = root }))
      assert.equal(root, reg.store.root)
      local ok, err, code = reg:set_tag("prod/x", "latest", support.AMD64)
      assert.is_nil(ok)
      assert.equal("DENIED", code)
      assert.matches("not latest", err)
      reg:close()
    end)
  end)

  describe("out", function()
    local out = require "berth.cmd.out"

    it("size: bytes, then KiB, MiB, GiB", function()
      assert.equal("0 B", out.size(0))
      assert.equal("1023 B", out.size(1023))
      assert.equal("1.0 KiB", out.size(1024))
      assert.equal("1.5 KiB", out.size(1536))
      assert.equal("2.0 MiB", out.size(2 * 1024 * 1024))
      assert.equal("3.0 GiB", out.size(3 * 1024 ^ 3))
      assert.equal("-", out.size(nil))
    end)

    it("tables: aligned columns, right-aligned numbers, no trailing blanks",
      function()
        local text = out.format_table({ "NAME", "N", "NOTE" },
          { { "a", 1, "x" }, { "long-name", 100, "" } }, { "l", "r", "l" })
        assert.equal(
          "NAME         N  NOTE\n" ..
          "a            1  x\n" ..
          "long-name  100\n", text)
        -- widths count UTF-8 characters, not bytes
        text = out.format_table(nil, { { "├─ a", "x" }, { "bb", "y" } })
        assert.equal("├─ a  x\nbb    y\n", text)
        assert.equal("", out.format_table(nil, {}))
      end)

    it("json: [] for empty arrays, {} for empty objects, sorted keys",
      function()
        assert.equal('{"a":[],"b":{},"c":[1,"x/y",true],"d":1.5}',
          out.encode({ a = out.array(), b = {}, c = { 1, "x/y", true },
            d = 1.5 }))
        assert.equal('"q\\"\\\\\\n\\u0001"', out.encode("q\"\\\n\1"))
        assert.equal("5000000000", out.encode(5e9))
        local s, err = out.encode({ [true] = 1 })
        assert.is_nil(s)
        assert.matches("object key", err)
        assert.is_nil(out.encode(0 / 0))
      end)

    it("progress draws nothing when stdout is not a terminal", function()
      local env = capture_env(false)
      local p = out.progress(env, "x", 1e9, "bytes")
      p.update(5e8)
      p:update(5e8)
      p.done()
      assert.equal("", env.err())
    end)

    it("progress on a terminal: a bar on stderr for long work, then cleared",
      function()
        local env = capture_env(true)
        local p = out.progress(env, "copy", 128 * 1024 * 1024, "bytes")
        p.update(64 * 1024 * 1024)
        p:update(64 * 1024 * 1024) -- method style works too
        p.done()
        local e = env.err()
        assert.matches("copy %[#+%-+%]  50%% 64%.0 MiB/128%.0 MiB", e)
        assert.matches("copy %[#+%] 100%%", e)
        assert.matches("\r\27%[K$", e)
        assert.equal("", env.out())
        -- short work (few items, quickly done) draws nothing
        env = capture_env(true)
        p = out.progress(env, "items", 3)
        p.update()
        p.update(2)
        p.done()
        assert.equal("", env.err())
      end)

    it("fail writes `berth <cmd>: msg` and returns the code", function()
      local env = capture_env()
      assert.equal(1, out.fail(env, "x", "broken"))
      assert.equal(7, out.fail(env, "x", "again", 7))
      assert.equal("berth x: broken\nberth x: again\n", env.err())
    end)
  end)
end)

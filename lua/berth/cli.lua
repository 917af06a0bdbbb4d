-- The `berth` command line, which bin/berth runs:
--   luajit lua/berth/cli.lua <command> [args]
--
-- A command is a module "berth.cmd.<name>" returning
--   { summary = "one line", usage = "usage text",
--     run = function(args, env) -> exit code }
-- where args are the arguments after the command and env is
--   { stdout =, stderr = (have :write), isatty = stdout is a terminal,
--     columns = its width | nil, home = the checkout (or install) root,
--     getenv = os.getenv }.
-- Exit codes: 0 success, 1 the operation failed or found a problem,
-- 2 usage error, 70 internal error (an uncaught Lua error in run).
--
-- `berth <command> --help` prints the module's usage (here, before run).
-- Required as a module ("berth.cli"), main(argv, env, commands) runs a
-- command line and returns the exit code.
local type = type
local pcall = pcall
local xpcall = xpcall
local pairs = pairs
local ipairs = ipairs
local require = require
local tostring = tostring
local tonumber = tonumber
local floor = math.floor
local concat = table.concat
local sort = table.sort

local _M = { _VERSION = "0.1.0" }

-- Exit codes.
_M.EXIT_OK = 0
_M.EXIT_FAIL = 1
_M.EXIT_USAGE = 2
_M.EXIT_INTERNAL = 70

-- The commands run here, in the order `berth help` lists them.
_M.ORDER = { "serve", "ls", "tags", "inspect", "cat", "du", "import", "export",
  "gc", "fsck", "repl" }

-- name -> module
_M.COMMANDS = {}
for _, name in ipairs(_M.ORDER) do
  _M.COMMANDS[name] = "berth.cmd." .. name
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- The root of the tree this file is in: lua/berth/cli.lua -> ../..
local function find_home(getenv)
  local src = debug.getinfo(1, "S").source
  local home = "."
  if src:sub(1, 1) == "@" then
    home = dirname(dirname(dirname(src:sub(2))))
  end
  if home:sub(1, 1) ~= "/" then
    local pwd = getenv("PWD")
    if pwd and pwd:sub(1, 1) == "/" then
      home = home == "." and pwd or pwd .. "/" .. home
    end
  end
  return home
end

-- The terminal's width in columns, nil when it cannot be told.
local function terminal_columns()
  local p = io.popen("stty size 2>/dev/null </dev/tty")
  local size = p and p:read("*a") or ""
  if p then p:close() end
  local cols = tonumber(size:match("^%d+ (%d+)"))
  return cols and cols > 0 and cols or nil
end

-- default_env() -> env for the process: io.stdout, io.stderr, a tty test,
-- and on a terminal its width (columns)
function _M.default_env()
  local r = os.execute("test -t 1")
  local isatty = r == true or r == 0
  return {
    stdout = io.stdout,
    stderr = io.stderr,
    isatty = isatty,
    columns = isatty and terminal_columns() or nil,
    home = find_home(os.getenv),
    getenv = os.getenv,
  }
end

local function first_line(s)
  s = tostring(s)
  return s:match("^([^\n]*)") or s
end

-- load_command(name, commands?) -> module | nil, err
function _M.load_command(name, commands)
  local modname = (commands or _M.COMMANDS)[name]
  if not modname then
    return nil, "unknown command '" .. tostring(name) .. "'"
  end
  local ok, mod = pcall(require, modname)
  if not ok then
    local msg = tostring(mod)
    if msg:find("module '" .. modname .. "' not found", 1, true) then
      return nil, "command not available: module " .. modname
        .. " is not installed"
    end
    return nil, "command not available: cannot load " .. modname .. ": "
      .. first_line(msg)
  end
  if type(mod) ~= "table" or type(mod.run) ~= "function" then
    return nil, "command not available: " .. modname
      .. " is not a command module (no run function)"
  end
  return mod
end

-- usage_text(commands?, order?) -> the text of `berth help`
function _M.usage_text(commands, order)
  commands = commands or _M.COMMANDS
  order = order or _M.ORDER
  local rows = {}
  for _, name in ipairs(order) do
    local mod, err = _M.load_command(name, commands)
    local summary
    if mod then
      summary = type(mod.summary) == "string" and mod.summary or ""
    else
      summary = "(" .. err .. ")"
    end
    rows[#rows + 1] = { name, summary }
  end
  local w = 0
  for _, r in ipairs(rows) do
    if #r[1] > w then w = #r[1] end
  end
  local lines = {
    "usage: berth <command> [options] [arguments]",
    "       berth <command> --help",
    "",
    "commands:",
  }
  for _, r in ipairs(rows) do
    lines[#lines + 1] = "  " .. r[1] .. (" "):rep(w - #r[1] + 2) .. r[2]
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Every command takes --root DIR (the store, default"
    .. " ./berth-data) and"
  lines[#lines + 1] = "--config FILE (the registry configuration)."
  return concat(lines, "\n") .. "\n"
end

-- Does argv ask for help (before any `--`)?
local function wants_help(argv)
  for _, a in ipairs(argv) do
    if a == "--" then
      return false
    end
    if a == "--help" or a == "-h" then
      return true
    end
  end
  return false
end

local function write_usage(fh, mod)
  local u = type(mod.usage) == "string" and mod.usage or ""
  fh:write(u)
  if u:sub(-1) ~= "\n" then
    fh:write("\n")
  end
end

local function exit_code(rc)
  if rc == nil or rc == true then
    return 0
  end
  if rc == false then
    return 1
  end
  rc = tonumber(rc)
  if not rc or rc < 0 or rc > 255 or rc ~= floor(rc) then
    return nil
  end
  return rc
end

-- help(argv, env, commands, order) -> exit code
local function help(rest, env, commands, order)
  local name = rest[1]
  if not name then
    env.stdout:write(_M.usage_text(commands, order))
    return 0
  end
  local mod, err = _M.load_command(name, commands)
  if not mod then
    env.stderr:write("berth help: ", err, "\n")
    return (commands or _M.COMMANDS)[name] and 70 or 2
  end
  write_usage(env.stdout, mod)
  return 0
end

-- main(argv, env?, commands?) -> exit code
-- argv = { "<command>", args... }; commands maps names to modules (for
-- specs; default _M.COMMANDS, listed by help in _M.ORDER, then the rest
-- sorted).
function _M.main(argv, env, commands)
  env = env or _M.default_env()
  local order = _M.ORDER
  if commands then
    order = {}
    for k in pairs(commands) do
      order[#order + 1] = k
    end
    sort(order)
  end
  local name = argv[1]
  local rest = {}
  for i = 2, #argv do
    rest[#rest + 1] = argv[i]
  end
  if name == nil or name == "help" or name == "--help" or name == "-h" then
    return help(name == "help" and rest or {}, env, commands, order)
  end
  if not (commands or _M.COMMANDS)[name] then
    env.stderr:write("berth: unknown command '", tostring(name), "'\n")
    env.stderr:write(_M.usage_text(commands, order))
    return 2
  end
  local mod, err = _M.load_command(name, commands)
  if not mod then
    env.stderr:write("berth ", name, ": ", err, "\n")
    return 70
  end
  if wants_help(rest) then
    write_usage(env.stdout, mod)
    return 0
  end
  local trace
  local ok, rc = xpcall(mod.run, function(e)
    trace = debug.traceback(tostring(e), 2)
    return e
  end, rest, env)
  if not ok then
    env.stderr:write("berth ", name, ": internal error: ", first_line(rc),
      "\n")
    local getenv = env.getenv or os.getenv
    if getenv("BERTH_DEBUG") and trace then
      env.stderr:write(trace, "\n")
    end
    return 70
  end
  local code = exit_code(rc)
  if not code then
    env.stderr:write("berth ", name, ": internal error: bad exit code ",
      tostring(rc), "\n")
    return 70
  end
  return code
end

-- Run as a script (not required as "berth.cli"): find the Lua modules
-- beside this file, run the command line, exit with its code.
if (...) ~= "berth.cli" then
  local env = _M.default_env()
  local lua = env.home .. "/lua/"
  package.path = lua .. "?.lua;" .. lua .. "?/init.lua;" .. package.path
  local rc = _M.main(arg or {}, env)
  io.stdout:flush()
  os.exit(rc)
end

return _M

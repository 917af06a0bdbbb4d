-- berth repl: LuaJIT with a store open, for operators (berth.repl).
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"

local type = type
local tostring = tostring
local tonumber = tonumber

local _M = { _VERSION = "0.1.0" }

_M.summary = "interactive Lua shell on a store (completion, pretty-printing)"

_M.usage = [[
usage: berth repl [ROOT] [--root DIR] [--config FILE]
Open the store (ROOT or --root, default ./berth-data) in an interactive
LuaJIT shell: `store`, `berth`, `reg` (the registry, with --config's
plugins), ls(), tags(repo), show(repo, ref), pp(v), help(). Expressions
print their values: tables as trees, manifests as indented JSON, failures
as `error CODE: message`.
On a terminal, lines are edited with GNU readline (Debian's lua-readline):
history in $BERTH_HISTORY (default ~/.berth_history, "" for none), TAB
completes methods, fields, repository names and tags. Otherwise lines are
read from stdin, and the exit status is 1 if any of them failed.
]] .. args.COMMON_USAGE

local SPEC = { name = "repl", usage = _M.usage, args = { "ROOT?" } }

local function stdin_is_tty()
  local r = os.execute("test -t 0")
  return r == true or r == 0
end

local function writer(fh)
  if type(fh) == "function" then
    return fh
  end
  return function(s)
    fh:write(s)
    fh:flush()
  end
end

-- history_file(getenv) -> path | nil (BERTH_HISTORY="" turns it off)
local function history_file(getenv)
  local h = getenv("BERTH_HISTORY")
  if h then
    return h ~= "" and h or nil
  end
  local home = getenv("HOME")
  if home and home ~= "" then
    return home .. "/.berth_history"
  end
  return nil
end

-- run(argv, env) -> exit code. Besides the usual env, specs may pass
-- env.stdin (a file to read lines from) and env.stdin_tty.
function _M.run(argv, env)
  local o, _, code = args.parse(argv, SPEC, env)
  if not o then
    return code
  end
  if o.help then
    env.stdout:write(_M.usage)
    return 0
  end
  if o[1] then
    if o.root and o.root ~= o[1] then
      return args.usage_error(env, "repl", _M.usage,
        "give the store as ROOT or --root, not both")
    end
    o.root = o[1]
  end
  local reg, err = args.open_registry(o)
  if not reg then
    return out.fail(env, "repl", err)
  end
  local getenv = env.getenv or os.getenv
  local repl = require "berth.repl"
  local berth = require "berth"

  local interactive
  if env.stdin then
    interactive = env.stdin_tty and true or false
  else
    interactive = stdin_is_tty()
  end
  local write = writer(env.stdout)
  local color = env.isatty == true and not getenv("NO_COLOR")
    and getenv("TERM") ~= "dumb"
  local r = repl.new({ store = reg.store, reg = reg, write = write,
    color = color, width = tonumber(getenv("COLUMNS")) or 80 })

  local reader
  if interactive then
    reader, err = repl.readline_reader({
      histfile = history_file(getenv),
      complete = function(line, from) return r:complete(line, from) end,
    })
    if not reader then
      out.warn(env, "repl", tostring(err)
        .. ": no line editing (apt-get install lua-readline)")
    end
    write(("berth %s on %s: help() lists the helpers, Ctrl-D leaves\n")
      :format(berth._VERSION, tostring(reg.store.root)))
  end
  reader = reader or repl.plain_reader({ input = env.stdin, write = write,
    prompt = interactive })
  r:run(reader)
  reg:close()
  if not interactive and r.errors > 0 then
    return 1
  end
  return 0
end

return _M

-- berth serve: check everything (berth.serve.prepare), clean the spool a
-- dead run left, then become nginx in the foreground, so that signals and
-- Ctrl-C reach it.
local ffi = require "ffi"
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"
local serve = require "berth.serve"

local _M = { _VERSION = "0.1.0" }

_M.summary = "serve the OCI Distribution API from nginx"

_M.usage = [[
usage: berth serve [--listen ADDR:PORT] [--root DIR] [--config FILE]
                   [--delete] [--workers N] [--run DIR] [--user USER]
                   [--auth-config FILE] [--tls-cert FILE --tls-key FILE]
Serve the OCI Distribution API from nginx, in the foreground, logging to the
terminal. Defaults: --listen 127.0.0.1:5000, --root ./berth-data,
--run <root>/.berth-run, 2 workers, deletes off. Ctrl-C or SIGTERM stops it.
  --auth-config FILE   access control (a Lua file; else the config's auth
                       section)
  --tls-cert/--tls-key HTTPS with HTTP/2 on the same address
  --user USER          started by root, the workers run as the store's
                       owner, or as the user berth (bin/setup creates it)
                       for a new store; --user names another, and
                       --user root runs them as root
]] .. args.COMMON_USAGE

local SPEC = { name = "serve", usage = _M.usage, flags = { "delete" },
  options = { listen = "ADDR:PORT", workers = "N", run = "DIR",
    user = "USER", ["auth-config"] = "FILE", ["tls-cert"] = "FILE",
    ["tls-key"] = "FILE" },
  args = {} }

ffi.cdef [[
int flock(int fd, int operation);
]]
local LOCK_SH, LOCK_EX, LOCK_NB = 1, 2, 4

-- The request bodies a killed run left in the spool: every server holds a
-- shared flock on SPOOL/.serving for as long as its nginx runs (the
-- descriptor stays open across exec and fork), so when no one does, the
-- files there are no one's. A filesystem without locks: no clean-up.
local function hold_spool(root)
  local fcntl = require "posix.fcntl"
  local dir = root .. "/" .. serve.SPOOL
  local fd = fcntl.open(dir .. "/.serving",
    fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_APPEND, 420)
  if not fd then
    return
  end
  if ffi.C.flock(fd, LOCK_EX + LOCK_NB) == 0 then
    for _, name in ipairs(require("posix.dirent").dir(dir) or {}) do
      if name:match("^%d+$") then
        os.remove(dir .. "/" .. name)
      end
    end
  end
  ffi.C.flock(fd, LOCK_SH)
end

-- A path given on the command line, absolute: nginx and the workers do
-- not run where the command did.
local function absolute(path)
  if not path or path:sub(1, 1) == "/" then
    return path
  end
  local cwd = require("posix.unistd").getcwd()
  return cwd .. "/" .. path
end

function _M.run(argv, env)
  local o = args.parse(argv, SPEC, env)
  if not o then
    return 2
  end
  if (o.tls_cert == nil) ~= (o.tls_key == nil) then
    return args.usage_error(env, "serve", _M.usage,
      "--tls-cert and --tls-key go together")
  end
  local workers = tonumber(o.workers or 2)
  if not workers or workers < 1 or workers % 1 ~= 0 then
    return args.usage_error(env, "serve", _M.usage,
      "--workers takes a whole number of processes, at least 1")
  end
  local r, err = serve.prepare{ home = env.home, run = absolute(o.run),
    root = o.root, listen = o.listen or "127.0.0.1:5000",
    workers = workers, delete = o.delete, config = absolute(o.config),
    auth_config = absolute(o.auth_config),
    tls_cert = absolute(o.tls_cert), tls_key = absolute(o.tls_key),
    user = o.user ~= "" and o.user or nil }
  if not r then
    return out.fail(env, "serve", err, 1)
  end
  hold_spool(r.root)
  if r.created then
    env.stderr:write("berth: a new store at ", r.root, "\n")
  end
  env.stderr:write("berth: serving ", r.root, " on ",
    o.tls_cert and "https" or "http", "://", o.listen or "127.0.0.1:5000",
    " (config ", r.run, "/nginx.conf)\n")
  io.stdout:flush()
  io.stderr:flush()
  local _, why = require("posix.unistd").execp("nginx", { "-p", r.run,
    "-c", r.run .. "/nginx.conf", "-g", "daemon off;" })
  return out.fail(env, "serve", "cannot run nginx: " .. tostring(why), 1)
end

return _M

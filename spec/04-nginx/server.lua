-- Start and stop a real `bin/berth serve` (nginx) for a spec.
--   local server = require "04-nginx.server"
--   local srv = server.start{ delete = true }     -- srv.url, srv.root
--   ... ; srv:stop()
local helpers = require "helpers"

local _M = {}

-- curl runs without the sanitizer runtime the ASan pass preloads into
-- luajit: under LD_PRELOAD=libasan.so it deadlocks in setlocale at start.
-- nginx keeps it, with BERTH_LIB (`env BERTH_LIB;` in its configuration).
local NO_SANITIZER = "unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS; "

local function sh(cmd)
  local p = io.popen(NO_SANITIZER .. cmd .. " 2>&1")
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok == true or ok == 0, code
end
_M.sh = sh

-- A port below the kernel's ephemeral range (ip_local_port_range, 32768 up
-- by default), where the client side of connections lands, and that no
-- socket uses in any state: nginx's bind() fails while a client socket
-- holds the port, even with SO_REUSEADDR.
local function free_port()
  local low = 32768
  local range = helpers.read_file("/proc/sys/net/ipv4/ip_local_port_range")
  if range then
    low = tonumber(range:match("^%s*(%d+)")) or low
  end
  for _ = 1, 50 do
    local port = math.random(10000, math.max(low - 1, 10001))
    local out = sh("ss -Htan 'sport = :" .. port .. "'")
    if not out:find("%S") then
      return port
    end
  end
  error("no free port")
end
_M.free_port = free_port

local Server = {}
Server.__index = Server

-- The certificate of 127.0.0.1 the TLS servers present (spec/fixtures/auth).
_M.TLS_CERT = "spec/fixtures/auth/tls.crt"

-- start{ delete = bool, config = path, workers = n, root = dir,
--   serve_as = "--user NAME" | "" (default helpers.SERVE_AS),
--   env = "NAME=value ..." (the server's environment),
--   config_root = dir (no --root: the root the config file names),
--   tls = bool (HTTPS, with HTTP/2), bin = command (bin/berth) } -> server
function _M.start(opts)
  opts = opts or {}
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16))
  -- config_root: the root the --config file names, no --root given
  local root = opts.config_root or opts.root or helpers.tmpdir()
  local port = free_port()
  local log = root .. ".log"
  local args = { opts.env and "env " .. opts.env or "",
    opts.bin or "bin/berth", "serve",
    "--listen", "127.0.0.1:" .. port,
    "--workers", tostring(opts.workers or 2),
    opts.serve_as or helpers.SERVE_AS }
  if not opts.config_root then
    args[#args + 1] = "--root " .. require("04-nginx.tools").q(root)
  end
  if opts.delete then args[#args + 1] = "--delete" end
  if opts.config then
    args[#args + 1] = "--config"
    args[#args + 1] = require("04-nginx.tools").q(opts.config)
  end
  local scheme = "http"
  if opts.tls then
    scheme = "https"
    args[#args + 1] = "--tls-cert " .. _M.TLS_CERT
    args[#args + 1] = "--tls-key spec/fixtures/auth/tls.key"
  end
  os.execute("setsid " .. table.concat(args, " ") .. " > " .. require("04-nginx.tools").q(log)
    .. " 2>&1 < /dev/null &")
  local srv = setmetatable({ url = scheme .. "://127.0.0.1:" .. port, port = port,
    root = root, log = log,
    own_root = opts.root == nil and opts.config_root == nil }, Server)
  if opts.root or opts.config_root then
    -- beside a root the caller owns: still ours to remove
    helpers.at_exit(function() os.remove(log) end)
  end
  for _ = 1, 100 do
    local code = sh("curl -s --max-time 2 --cacert " .. _M.TLS_CERT
      .. " -o /dev/null -w '%{http_code}' " .. srv.url .. "/v2/")
    -- 401: up, with access control
    if code == "200" or code == "401" then
      return srv
    end
    os.execute("sleep 0.1")
  end
  local text = helpers.read_file(log) or ""
  srv:stop()
  error("berth serve did not start:\n" .. text)
end

-- configured(finally, text, opts?) -> server started with a --config file
-- holding text (paths in it relative to the file's directory), stopped
-- and its directory removed when the test ends
function _M.configured(finally, text, opts)
  local dir = helpers.tmpdir()
  helpers.write_file(dir .. "/berth.lua", text)
  opts = opts or {}
  opts.config = dir .. "/berth.lua"
  local srv = _M.start(opts)
  finally(function()
    srv:stop()
    helpers.rmrf(dir)
  end)
  return srv
end

function Server:pid()
  local s = helpers.read_file(self.root .. "/.berth-run/nginx.pid")
  return s and tonumber(s:match("%d+"))
end

-- The users nginx's worker processes run as, sorted: { "berth", ... }
function Server:worker_users()
  local users = {}
  for u in sh("ps -o user= --ppid " .. self:pid()):gmatch("%S+") do
    users[#users + 1] = u
  end
  table.sort(users)
  return users
end

function Server:stop(signal)
  local pid = self:pid()
  if pid then
    os.execute("kill -" .. (signal or "TERM") .. " " .. pid
      .. " 2>/dev/null")
    for _ = 1, 100 do
      if not sh("kill -0 " .. pid .. " 2>/dev/null && echo alive")
          :find("alive") then
        break
      end
      os.execute("sleep 0.05")
    end
  end
  if self.own_root and not self.keep then
    helpers.rmrf(self.root)
    os.remove(self.log)
  end
end

-- Errors nginx logged at [error] or worse, for `no_error_log` checks.
function Server:error_lines()
  local text = helpers.read_file(self.log) or ""
  local lines = {}
  for line in text:gmatch("[^\n]+") do
    if line:find("%[error%]") or line:find("%[crit%]")
        or line:find("%[alert%]") or line:find("%[emerg%]") then
      lines[#lines + 1] = line
    end
  end
  return lines
end

return _M

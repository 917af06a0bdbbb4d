-- `berth serve`: write an nginx configuration for a store into a run
-- directory. bin/berth then execs nginx on it, so signals reach nginx.
local ffi = require "ffi"
local C = require("berth.ffi").C

local _M = { _VERSION = "0.1.0" }

-- Where nginx spools request bodies, under the store's root (a move into
-- the store is a rename): files named with digits, each removed by nginx
-- when its request ends. A server holds a shared flock on SPOOL/.serving
-- while it runs (bin/berth), so that a start finding it free knows the
-- files there are a dead run's; gc takes those older than its spool grace.
_M.SPOOL = ".berth-spool"

local MODULES = {
  "/usr/lib/nginx/modules/ndk_http_module.so",
  "/usr/lib/nginx/modules/ngx_http_lua_module.so",
}

local function quote(s)
  return '"' .. tostring(s):gsub('[\\"]', "\\%0") .. '"'
end

local function lua_literal(v)
  if type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end

-- The part an operator adds to an existing nginx http{} block (README):
-- Lua paths and initialisation.
function _M.http_snippet(o)
  local lua = o.home .. "/lua"
  local init = {}
  for _, k in ipairs({ "root", "config", "delete", "fsync",
    "automatic_crossmount", "auth_config" }) do
    if o[k] ~= nil then
      init[#init + 1] = k .. " = " .. lua_literal(o[k])
    end
  end
  return table.concat({
    "lua_package_path " .. quote(lua .. "/?.lua;" .. lua .. "/?/init.lua;"
      .. o.home .. "/?.lua;;") .. ";",
    "lua_package_cpath " .. quote(o.home .. "/build/?.so;;") .. ";",
    -- failed logins per client address, shared by the workers (berth.auth)
    "lua_shared_dict berth_auth 10m;",
    -- open upload sessions per repository and client (berth.sessions)
    "lua_shared_dict berth_uploads 10m;",
    "init_by_lua_block { require(\"berth.nginx\").init{ "
      .. table.concat(init, ", ") .. " } }",
    "init_worker_by_lua_block { require(\"berth.nginx\").init_worker() }",
  }, "\n")
end

-- The locations an operator adds to a server{} block.
function _M.server_snippet(o)
  return table.concat({
    "client_max_body_size 0;",
    "client_body_buffer_size 1m;",
    -- tokens with many scopes are large (docker-registry takes 20 KiB and
    -- more); a header field over one buffer gets berth's JSON answer
    "large_client_header_buffers 8 64k;",
    "error_page 494 =431 /_berth_headers_too_large;",
    -- the request socket reads uploads in large pieces, not 4 KiB ones
    "lua_socket_buffer_size 256k;",
    -- spooled bodies beside the store: an upload takes the file by rename
    "client_body_temp_path " .. quote(o.root .. "/" .. _M.SPOOL) .. ";",
    "location /v2/ {",
    "  content_by_lua_block { require(\"berth.nginx\").handle() }",
    "}",
    "location @berth_spool {",
    "  client_body_in_file_only clean;",
    "  content_by_lua_block { require(\"berth.nginx\").handle_spooled() }",
    "}",
    -- answers that must close the connection (berth.nginx: send)
    "location = /_berth_close {",
    "  internal;",
    "  keepalive_timeout 0;",
    -- read out what the client still sends before closing, or the
    -- kernel's reset can destroy the answer
    "  lingering_close always;",
    "  content_by_lua_block { require(\"berth.nginx\").close() }",
    "}",
    "location = /_berth_headers_too_large {",
    "  internal;",
    "  content_by_lua_block { require(\"berth.nginx\").headers_too_large() }",
    "}",
    -- berth.nginx asks for a blob by its path under the blobs directory
    "location /_berth_blobs/ {",
    "  internal;",
    "  alias " .. quote(o.root .. "/" .. ffi.string(C.berth_blob_dir()) .. "/")
      .. ";",
    "  types { }",
    "  default_type application/octet-stream;",
    "  etag off;",
    "  header_filter_by_lua_block { require(\"berth.nginx\").blob_headers() }",
    "}",
  }, "\n")
end

-- config(o) -> text of a whole nginx.conf
-- o = { home, run, root, listen, workers, config, delete, workers_as,
--       auth_config, tls_cert, tls_key }
function _M.config(o)
  local lines = {}
  local function add(s) lines[#lines + 1] = s end
  for _, m in ipairs(MODULES) do
    add("load_module " .. m .. ";")
  end
  if o.workers_as then
    add("user " .. o.workers_as .. ";")
  end
  add("worker_processes " .. (o.workers or 2) .. ";")
  add("pid " .. quote(o.run .. "/nginx.pid") .. ";")
  -- the library bin/berth was pointed at, not only build/ (lua/berth/ffi.lua)
  add("env BERTH_LIB;")
  add("error_log stderr " .. (o.log_level or "notice") .. ";")
  add("events { worker_connections 1024; }")
  add("http {")
  add("  access_log " .. quote(o.access_log or "/dev/stdout") .. ";")
  add("  sendfile on;")
  add("  tcp_nopush on;")
  add("  keepalive_requests 10000;")
  -- Temp paths under the run dir (request bodies: see server_snippet).
  for _, t in ipairs({ "proxy", "fastcgi", "uwsgi", "scgi" }) do
    add("  " .. t .. "_temp_path " .. quote(o.run .. "/" .. t) .. ";")
  end
  for line in _M.http_snippet(o):gmatch("[^\n]+") do
    add("  " .. line)
  end
  add("  server {")
  if o.tls_cert then
    -- nginx 1.22 syntax; HTTP/2 bodies are spooled (berth.nginx)
    add("    listen " .. o.listen .. " ssl http2;")
    add("    ssl_certificate " .. quote(o.tls_cert) .. ";")
    add("    ssl_certificate_key " .. quote(o.tls_key) .. ";")
    add("    ssl_protocols TLSv1.2 TLSv1.3;")
    add("    ssl_session_cache shared:berth_tls:10m;")
  else
    add("    listen " .. o.listen .. ";")
  end
  -- Everything else too, so a path nginx normalised away from /v2/
  -- (/v2/../x) still gets berth's JSON error, not nginx's HTML page.
  add("    location / {")
  add("      content_by_lua_block { require(\"berth.nginx\").handle() }")
  add("    }")
  for line in _M.server_snippet(o):gmatch("[^\n]+") do
    add("    " .. line)
  end
  add("  }")
  add("}")
  return table.concat(lines, "\n") .. "\n"
end

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function execute(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The pid in file when it is a live nginx, else nil: a pid file a killed
-- nginx left names a zombie, or by now another process.
local function live_pid(file)
  local pid = tonumber((read_file(file) or ""):match("%d+"))
  local stat = pid and read_file("/proc/" .. pid .. "/stat")
  if not stat or stat:match("^%d+ %b() Z") then
    return nil
  end
  local cmdline = read_file("/proc/" .. pid .. "/cmdline") or ""
  return cmdline:find("nginx", 1, true) and pid or nil
end

local function absolute(path)
  local p = io.popen("readlink -m " .. sh_quote(path))
  local abs = p and p:read("*l")
  if p then p:close() end
  return abs ~= "" and abs or path
end

-- The account an unprivileged server's workers run as when no store owner
-- says otherwise: bin/setup creates it (a system user, no shell, no home).
_M.USER = "berth"

local function account(name_or_uid)
  local pwd = require "posix.pwd"
  local pw = type(name_or_uid) == "number" and pwd.getpwuid(name_or_uid)
    or pwd.getpwnam(name_or_uid)
  if not pw then
    return nil
  end
  local gr = require("posix.grp").getgrgid(pw.pw_gid)
  return { name = pw.pw_name, uid = pw.pw_uid, gid = pw.pw_gid,
    group = gr and gr.gr_name or tostring(pw.pw_gid) }
end

local function runs_as(user, test)
  return execute("runuser -u " .. sh_quote(user) .. " -- test " .. test
    .. " 2>/dev/null")
end

-- The first of paths that user cannot read, and the directory on its way
-- that stops them (nil when it is the file itself); nil when all are
-- fine. An entry { way = path } needs only the way to it (the store's
-- root, which may not exist yet and is given to user). runuser asks the
-- kernel, so ACLs and mount options count as they will for the workers.
local function unreachable(user, paths)
  for _, p in ipairs(paths) do
    local path = p.way or p
    if p.way or not runs_as(user, "-r " .. sh_quote(path)) then
      local dir = ""
      for part in path:gmatch("[^/]+") do
        if dir ~= "" and not runs_as(user, "-x " .. sh_quote(dir)) then
          return path, dir
        end
        dir = dir .. "/" .. part
      end
      if not p.way then
        return path
      end
    end
  end
  return nil
end

-- Who nginx's workers run as, for a server started by root: --user, else
-- the store's owner, else USER; root only when --user root says so. A new
-- store (none yet, or an empty directory) is given to that account; an
-- existing one must already be its: the workers write into it.
-- -> { name, group, uid, gid } (none: no user directive) | nil, err
local function workers_account(o, root, exists, new_store)
  local unistd = require "posix.unistd"
  local stat = require("posix.sys.stat").stat
  local euid = unistd.geteuid()
  if euid ~= 0 then
    local me = account(euid)
    if o.user and o.user ~= (me and me.name) then
      return nil, "--user " .. o.user .. ": only root starts workers as"
        .. " another user (they run as you)"
    end
    return {}
  end
  local owner = exists and stat(root).st_uid
  local acct
  if o.user then
    acct = account(o.user)
    if not acct then
      return nil, "--user " .. o.user .. ": no such user"
    end
  elseif owner and owner ~= 0 then
    acct = account(owner)
    if not acct then
      return nil, root .. " belongs to uid " .. owner .. ", which has no"
        .. " name: give --user"
    end
  else
    acct = account(_M.USER)
    if not acct then
      return nil, "no user " .. _M.USER .. " to run the workers as: bin/setup"
        .. " creates it, or give --user USER (--user root runs them as"
        .. " root)"
    end
  end
  if acct.uid == 0 then
    return { name = "root", group = acct.group }
  end
  if owner and owner ~= acct.uid and not new_store then
    local who = account(owner)
    return nil, root .. " belongs to " .. (who and who.name or owner)
      .. ", and the workers would run as " .. acct.name .. ": give it to "
      .. acct.name .. " (chown -R " .. acct.name .. ": " .. root .. "), or"
      .. " give --user " .. (who and who.name or "OWNER")
      .. (owner == 0 and "" or " (--user root: workers as root)")
  end
  return acct
end

-- berth.nginx.check(opts) run as user, who will open the store, the
-- plugins and the auth files in the workers: what it cannot open fails
-- now, with its own message.
local function check_as(user, opts)
  local fields = {}
  for k, v in pairs(opts) do
    fields[#fields + 1] = k .. " = " .. lua_literal(v)
  end
  local code = "local ok, err = require('berth.nginx').check{ "
    .. table.concat(fields, ", ") .. " } if not ok then"
    .. " io.stderr:write(tostring(err)) os.exit(1) end"
  local tmp = os.tmpname()
  local ok = execute("runuser -u " .. sh_quote(user) .. " -- luajit -e "
    .. sh_quote(code) .. " 2>" .. sh_quote(tmp))
  local err = read_file(tmp)
  os.remove(tmp)
  return ok or nil, err ~= "" and err or "the check failed as " .. user
end

-- prepare(o) -> { root =, run =, created = bool } | nil, err
-- o as for config, with root and run possibly nil (not given). The one
-- place that decides what `berth serve` serves: the command line over the
-- configuration file over the defaults (berth.cmd.args, as every other
-- command), and that refuses before writing anything: a run directory a
-- live nginx uses, a directory that is neither a store nor empty, a
-- configuration whose plugins, handlers, access control or store do not
-- open. Then it makes the store's directory and writes nginx.conf.
function _M.prepare(o)
  local args = require "berth.cmd.args"
  local so, conf = args.store_options({ root = o.root, config = o.config })
  if not so then
    return nil, conf
  end
  local root = so.root
  local exists = args.is_dir(root)
  if exists and not args.is_store(root) then
    return nil, root .. " is not a store and not empty: give a store's"
      .. " --root, or a new or empty directory for a new store"
  end
  local run = o.run or root .. "/.berth-run"
  local pid = live_pid(run .. "/nginx.pid")
  if pid then
    return nil, "already serving from " .. absolute(run) .. " (nginx pid "
      .. pid .. "): stop it, or give another --run"
  end
  local created = not exists or not args.has_store_tree(root)
  local acct, why = workers_account(o, root, exists, created)
  if not acct then
    return nil, why
  end
  if acct.uid then
    local paths = { { way = absolute(root) }, o.home .. "/lua/berth/nginx.lua",
      os.getenv("BERTH_LIB") or o.home .. "/build/libberth.so" }
    paths[#paths + 1] = o.config
    paths[#paths + 1] = o.auth_config
    local path, stop = unreachable(acct.name, paths)
    if path then
      return nil, "the workers run as " .. acct.name .. ", who cannot reach "
        .. path .. (stop and " (" .. stop .. " does not let them through)"
        or "") .. ": let " .. acct.name .. " through (bin/setup does for"
        .. " its checkout), serve a store it can reach, or give --user"
    end
  end
  if not execute("mkdir -p " .. sh_quote(root) .. " " .. sh_quote(run)) then
    return nil, "cannot create " .. root .. " or " .. run
  end
  root, run = absolute(root), absolute(run)
  -- made now, so that berth.cmd.serve holds its lock from the first run
  local spool = root .. "/" .. _M.SPOOL
  execute("mkdir -p " .. sh_quote(spool))
  if acct.uid then
    local chown = require("posix.unistd").chown
    if created then
      chown(root, acct.uid, acct.gid)
    end
    chown(spool, acct.uid, acct.gid)
  end
  local check = { root = root, config = o.config, delete = o.delete,
    auth_config = o.auth_config }
  local ok, err
  if acct.uid and acct.uid ~= 0 then
    ok, err = check_as(acct.name, check)
  else
    ok, err = require("berth.nginx").check(check)
  end
  if not ok then
    return nil, err
  end
  o.root, o.run = root, run
  o.workers_as = acct.name and acct.name .. " " .. acct.group
  local f
  f, err = io.open(run .. "/nginx.conf", "wb")
  if not f then
    return nil, err
  end
  f:write(_M.config(o))
  f:close()
  return { root = root, run = run, created = created }
end

return _M

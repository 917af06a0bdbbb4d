-- nginx adapter: turns an ngx request into a berth.http request, streams
-- the body, and hands blob content to nginx (sendfile, Range) through an
-- internal location.
--
--   init_by_lua_block        { require("berth.nginx").init{ config = "/etc/berth.lua" } }
--   init_worker_by_lua_block { require("berth.nginx").init_worker() }
--   location /v2/            { content_by_lua_block { require("berth.nginx").handle() } }
--   location /_berth_blobs/  { internal; alias <root>/<berth_blob_dir()>/; ... }
--   location = /_berth_close { internal; keepalive_timeout 0; ... }
--   location @berth_spool    { client_body_in_file_only clean; ...handle_spooled() }
--   (the whole set: berth.serve's http_snippet and server_snippet)
local ngx = ngx
local http = require "berth.http"
local registry_mod = require "berth.registry"
local store_mod = require "berth.store"
local auth_mod = require "berth.auth"
local sessions_mod = require "berth.sessions"

local tonumber = tonumber
local ipairs = ipairs
local io_open = io.open
local min = math.min

local _M = { _VERSION = "0.1.0" }

-- Settings from init, and the configuration they resolve to: read once,
-- in the master (init), which the workers inherit; the registry itself is
-- opened in each worker.
local settings
local effective
local app
local store

-- Where blob GETs are handed over; must match the internal location.
local BLOB_LOCATION = "/_berth_blobs/"
-- Where an answer goes that must close the connection (send).
local CLOSE_LOCATION = "/_berth_close"

local dirname = require("berth.config").dirname

-- resolve(opts) -> { registry = conf, auth = conf | nil, auth_dir = dir }
-- | nil, err: the registry's configuration (berth.registry.resolve: the
-- file under init's options) and the access control's: auth_config (a
-- file of its own, which wins) or the file's auth section, with paths
-- relative to its file.
local function resolve(opts)
  settings = opts or {}
  local conf, err = registry_mod.resolve(settings)
  if not conf then
    return nil, "configuration: " .. tostring(err)
  end
  local auth, auth_dir = conf.auth, settings.config and dirname(settings.config)
  conf.auth = nil -- the server's, not the registry's
  if settings.auth_config then
    auth, err = auth_mod.load(settings.auth_config)
    if not auth then
      return nil, "access control: " .. tostring(err)
    end
    auth_dir = dirname(settings.auth_config)
  end
  return { registry = conf, auth = auth, auth_dir = auth_dir }
end

-- The access control of eff, opened with opts' extras. -> auth | nil (none)
-- | nil, err
local function open_auth(eff, opts)
  if not eff.auth then
    return nil
  end
  opts.base_dir = eff.auth_dir
  local a, err = auth_mod.new(eff.auth, opts)
  if not a then
    return nil, "access control: " .. tostring(err)
  end
  return a
end

local function close_auth(a)
  if a.keys then a.keys:close() end
  if a.users then a.users:close() end
end

-- A new epoch for berth's caches at every start: while nginx was down,
-- another registry (CNCF Distribution) may have written the store.
local function new_epoch(conf)
  local s = conf.store or {}
  if (s.driver or "fs") ~= "fs" or not s.root then
    return
  end
  local st, ok, err
  st, err = store_mod.open{ root = s.root, fsync = s.fsync }
  if st then
    ok, err = st:new_epoch()
    st:close()
  end
  if not ok then
    ngx.log(ngx.WARN, "berth: cannot renew the cache epoch: ", err)
  end
end

-- init{ config = path | nil, root = dir, delete = bool, auth_config =
-- path | nil, ... }
-- Runs in the master (init_by_lua): resolves the configuration, renews
-- the epoch; a configuration or access control that does not load stops
-- nginx here.
function _M.init(opts)
  local eff, err = resolve(opts)
  if not eff then
    error("berth: " .. err, 0)
  end
  new_epoch(eff.registry)
  local a
  a, err = open_auth(eff, {})
  if err then
    error("berth: " .. err, 0)
  end
  if a then close_auth(a) end
  effective = eff
end

-- check(opts) -> true | nil, err: open, once and before nginx starts, what
-- init and every worker will (the registry with its plugins, handlers and
-- store; access control), with the options init will get, so that a
-- broken configuration stops `berth serve` instead of every request
-- answering 503.
function _M.check(opts)
  local eff, err = resolve(opts)
  if not eff then
    return nil, err
  end
  local reg
  reg, err = registry_mod.new(eff.registry)
  if not reg then
    return nil, "cannot open the registry: " .. tostring(err)
  end
  reg:close()
  local a
  a, err = open_auth(eff, {})
  if err then
    return nil, err
  end
  if a then close_auth(a) end
  return true
end

-- Caps on open upload sessions, counted by every worker in the
-- berth_uploads dict, and in one worker a timer that purges abandoned ones
-- (as often as a quarter of their age, at least every 15 minutes).
local function start_sessions(st, conf)
  local dict = ngx.shared.berth_uploads
  if not dict then
    ngx.log(ngx.WARN, "berth: no lua_shared_dict berth_uploads: upload"
      .. " sessions are neither capped nor purged while serving")
    return nil
  end
  local s = sessions_mod.new{ dict = dict,
    max_per_repository = conf.max_per_repository,
    max_per_client = conf.max_per_client, purge_after = conf.purge_after }
  if ngx.worker.id() == 0 then
    local every = math.max(1, math.min(s.age / 4, 900))
    local ok, err = ngx.timer.every(every, function(premature)
      if premature then return end
      local n, warnings = s:purge(st)
      if n > 0 then
        ngx.log(ngx.NOTICE, "berth: purged ", n, " upload sessions started"
          .. " more than ", s.age, " s ago (", s:purged_total(),
          " since the start)")
      end
      for _, w in ipairs(warnings) do
        ngx.log(ngx.WARN, "berth: upload purge: ", w)
      end
    end)
    if not ok then
      ngx.log(ngx.ERR, "berth: cannot start the upload purge: ", err)
    end
  end
  return s
end

function _M.init_worker()
  local conf = effective.registry
  -- what the hooks report (a policy that raised, failed after-hooks)
  conf.log = function(msg) ngx.log(ngx.ERR, "berth: ", msg) end
  local reg, err = registry_mod.new(conf)
  if not reg then
    ngx.log(ngx.ERR, "berth: cannot open the registry: ", err)
    return
  end
  -- Access control fails closed: no app (503) when it does not load.
  local auth
  auth, err = open_auth(effective, { dict = ngx.shared.berth_auth,
    log = function(msg) ngx.log(ngx.WARN, "berth: ", msg) end })
  if err then
    ngx.log(ngx.ERR, "berth: ", err)
    return
  end
  local sessions = start_sessions(reg.store, conf.uploads or {})
  app = http.new{
    registry = reg,
    automatic_crossmount = settings.automatic_crossmount ~= false,
    auth = auth and auth:enabled() and auth or nil,
    secret = conf.http and conf.http.secret,
    sessions = sessions,
  }
  store = reg.store
end

-- A body reader over the request socket: constant memory, chunk by chunk.
-- -> reader, unread (a function: bytes of the body not read yet; nil once
-- a read failed, as the connection is then unusable)
local function socket_reader(length)
  local sock, err = ngx.req.socket()
  if not sock then
    return nil, err
  end
  local remaining, failed = length or 0, nil
  return function(n)
    if failed then
      return nil, failed
    elseif remaining <= 0 then
      return ""
    end
    -- receiveany: what has arrived, up to n, without waiting for all n
    local data, rerr = sock:receiveany(min(n, remaining))
    if not data then
      failed = rerr
      return nil, rerr
    end
    remaining = remaining - #data
    return data
  end, function() return not failed and remaining or nil end
end

-- A reader over a body nginx has read itself (chunked encoding, HTTP/2):
-- in memory when small, else the temp file it spooled.
local function spooled_reader()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then
    local done = false
    return function()
      if done then return "" end
      done = true
      return data
    end, nil, nil, #data
  end
  local path = ngx.req.get_body_file()
  if not path then
    return function() return "" end, nil, nil, 0
  end
  local f, err = io_open(path, "rb")
  if not f then
    return nil, err
  end
  -- the body's real length: a chunked one said none, or may lie
  local size = f:seek("end")
  f:seek("set")
  local function close()
    if f then
      f:close()
      f = nil
    end
  end
  return function(n)
    local chunk = f and f:read(n)
    if not chunk then
      close()
      return ""
    end
    return chunk
  end, path, close, size
end

local BODY_METHODS = { PUT = true, PATCH = true, POST = true }

-- Bodies the request socket cannot stream (chunked, HTTP/2) are spooled to
-- a file by nginx in this location (client_body_in_file_only), beside the
-- store, so an upload can take the file whole. A named location: no
-- request from outside can reach it.
local SPOOL_LOCATION = "@berth_spool"
-- Bodies from this size on are spooled when whole blobs, and followed.
local SPOOL_MIN = 1024 * 1024

-- An upload body nginx spools is hashed while it arrives, by a follower
-- thread in libberth started on nginx's temp file as soon as it exists.
-- follow_spool() before ngx.req.read_body(); -> a function to call after
-- it with the file's path and size, which answers the follower, caught up
-- with the whole file, or nil.
local function follow_spool()
  local follower
  local finder = ngx.thread.spawn(function()
    local wait = 0.001
    while true do
      local path = ngx.req.get_body_file()
      if path then
        follower = store:follow(path)
        return
      end
      ngx.sleep(wait)
      wait = min(wait * 2, 0.05)
    end
  end)
  -- path and size: the spooled file's, as spooled_reader found them
  return function(path, size)
    ngx.thread.kill(finder)
    if not follower then
      return nil
    end
    size = path and size
    -- Wait without blocking the worker: the thread is normally at most a
    -- few MiB behind. nil (a failed thread) leaves the hashing to adopt.
    while size do
      local hashed = follower:hashed()
      if not hashed or hashed >= size then
        break
      end
      ngx.sleep(0.001)
    end
    return follower
  end
end

-- Is this an upload body worth following (large or of unknown length)?
local function followable(method)
  if not (method == "PATCH" or method == "PUT" or method == "POST") or
      not ngx.var.uri:find("/blobs/uploads/", 1, true) then
    return false
  end
  local length = tonumber(ngx.var.http_content_length)
  return length == nil or length >= SPOOL_MIN
end

local function none() return 0 end

-- -> { read = reader, file = spooled file path | nil, length = n | nil,
-- follower = follower | nil, unread = function (bytes of the body still on
-- the connection), close = function (lets go of the spooled file) }
-- | nil (a method whose body berth does not read)
local function request_body(method, spooled)
  if not BODY_METHODS[method] then
    return nil
  end
  local length = tonumber(ngx.var.http_content_length)
  local chunked = ngx.var.http_transfer_encoding
  if length and not chunked and ngx.req.http_version() < 2
      and not spooled then
    if length == 0 then
      return { read = function() return "" end, length = 0, unread = none,
        close = none }
    end
    local reader, unread = socket_reader(length)
    if reader then
      return { read = reader, length = length, unread = unread,
        close = none }
    end
    ngx.log(ngx.INFO, "berth: request socket unavailable (", unread,
      "), reading the body through nginx")
  end
  local followed = followable(method) and follow_spool() or nil
  local reader, path, close, size = spooled_reader()
  if not reader then
    local err = "body unavailable: " .. tostring(path)
    reader, path = function() return nil, err end, nil
  end
  return { read = reader, file = path, length = size, unread = none,
    close = close or none, follower = followed and followed(path, size) or nil }
end

-- Up to this much of a body berth did not read is read and dropped to
-- keep the connection; more is not worth taking in for nothing.
local DISCARD_MAX = 64 * 1024

-- A body left unread on a keep-alive HTTP/1 connection would be parsed
-- as the next request (HTTP/2 ends the stream by itself). body: what
-- request_body gave, nil when berth read nothing. -> true when nothing is
-- left on the connection, false when it must close after the answer.
local function drop_unread(body)
  if ngx.req.http_version() >= 2 then
    return true
  end
  local left
  if body then
    left = body.unread()
  elseif not ngx.var.http_transfer_encoding then -- chunked: unknown
    left = tonumber(ngx.var.http_content_length) or 0
  end
  if left == 0 then
    return true
  elseif not left or left > DISCARD_MAX then
    return false
  elseif not body then
    ngx.req.discard_body() -- nginx reads it, after the answer if need be
    return true
  end
  while true do
    local chunk = body.read(DISCARD_MAX)
    if chunk == "" then return true end
    if not chunk then return false end
  end
end

local function respond(resp)
  ngx.status = resp.status
  for k, v in pairs(resp.headers) do
    ngx.header[k] = v
  end
  if resp.body and ngx.req.get_method() ~= "HEAD" then
    ngx.print(resp.body)
  end
  return ngx.exit(resp.status)
end

-- Answers on their way to CLOSE_LOCATION, by the number in its query
-- (ngx.ctx does not survive the redirect; the worker is the same).
local closing, closed_n = {}, 0

-- send(resp, body): body as for drop_unread.
local function send(resp, body)
  if resp.file then
    -- Content, Range and headers are the internal location's (headers set
    -- here would survive the redirect and come twice; nginx discards a
    -- body there itself). The digest goes as a raw query string: a table
    -- would encode its ':'.
    return ngx.exec(BLOB_LOCATION .. resp.file_rel,
      "d=" .. resp.headers["Docker-Content-Digest"])
  end
  if not drop_unread(body) then
    closed_n = closed_n + 1
    closing[closed_n] = resp
    return ngx.exec(CLOSE_LOCATION, "r=" .. closed_n)
  end
  return respond(resp)
end

-- The internal location that answers, then closes the connection (its
-- keepalive_timeout is 0: nginx says Connection: close).
function _M.close()
  local n = tonumber(ngx.var.arg_r)
  local resp = n and closing[n]
  if not resp then
    return ngx.exit(404)
  end
  closing[n] = nil
  return respond(resp)
end

-- nginx's answer to a header field longer than one of its header buffers
-- (server_snippet), in the API's JSON; nginx closes the connection after.
function _M.headers_too_large()
  return respond(http.error_response("UNSUPPORTED",
    "request header field too large", 431))
end

-- Headers of a blob nginx serves from the internal location. Set, not
-- added: for a 416 nginx runs the header filter twice.
function _M.blob_headers()
  local d = ngx.var.arg_d
  local h = ngx.header
  if d then
    h["Docker-Content-Digest"] = d
    h["ETag"] = '"' .. d .. '"'
  end
  h["Docker-Distribution-API-Version"] = "registry/2.0"
  h["Cache-Control"] = "max-age=31536000"
end

-- Does this request need nginx to read (spool) its body?
-- Large whole-blob bodies (single-request POST ?digest=, the PUT that
-- closes an upload) also go through the spool: nginx reads them into a
-- file with its own buffers, far cheaper than Lua chunks, and the upload
-- then takes the file by rename.

local function needs_spool(method)
  if not BODY_METHODS[method] then
    return false
  end
  local length = tonumber(ngx.var.http_content_length)
  if ngx.var.http_transfer_encoding ~= nil or ngx.req.http_version() >= 2
      or length == nil then
    return true
  end
  if length < SPOOL_MIN then
    return false
  end
  return (method == "POST" and ngx.var.arg_digest ~= nil)
    or (method == "PUT" and ngx.var.uri:find("/blobs/uploads/", 1, true)
      ~= nil)
end

local function serve(spooled)
  if not app then
    return send(http.error_response("UNAVAILABLE", "registry not open"))
  end
  local method = ngx.req.get_method()
  local uri = ngx.var.request_uri
  local path, query = uri:match("^([^?]*)%??(.*)$")
  local headers = ngx.req.get_headers(100)
  local client = ngx.var.remote_addr
  if needs_spool(method) and not spooled then
    -- refuse before nginx reads a body berth will not take: no route, a
    -- method it does not serve, a caller who may not send it
    local refused = app:refuse_early({ method = method, path = path,
      query = query, headers = headers, client = client })
    if refused then
      return send(refused)
    end
    return ngx.exec(SPOOL_LOCATION)
  end
  local body = request_body(method, spooled)
  local req = {
    method = method,
    path = path,
    query = query,
    headers = headers,
    client = client,
    body = body and body.read or function() return "" end,
    body_length = body and body.length,
    body_file = body and body.file,
    body_follower = body and body.follower,
  }
  local resp = app:handle(req)
  if req.body_follower then
    req.body_follower:close()
  end
  if body then
    -- now, not when the collector finds it: a deleted spool file keeps
    -- its disk space while it is open
    body.close()
  end
  if resp.internal_error then
    ngx.log(ngx.ERR, "berth: ", resp.internal_error)
  end
  return send(resp, body)
end

-- The content handlers: the API's location, and the spool location it
-- sends bodies nginx must read first to.
function _M.handle()
  return serve(false)
end

function _M.handle_spooled()
  return serve(true)
end

return _M

-- Access control for the OCI Distribution API: who is calling (a bearer
-- token of Docker's token protocol, or HTTP Basic against an htpasswd file
-- of bcrypt hashes) and what they may do (the actions a request needs,
-- against what a token grants). Finer policy is for plugins, which see
-- ctx.identity and ctx.actions (plugins/repo-permissions).
--
--   local auth = require "berth.auth"
--   local a = assert(auth.new{
--     mode = "token",                           -- or "htpasswd", "none"
--     realm = "https://auth.example.com/token", -- token endpoint (htpasswd:
--                                               -- the Basic realm)
--     service = "registry.example.com",         -- the tokens' audience
--     issuer = "auth.example.com",              -- the tokens' iss
--     keys = { "/etc/berth/issuer.pem" },       -- PEM keys or certificates,
--                                               -- or a JWKS file
--     leeway = 60,                              -- clock skew, seconds
--   })
--   local identity, actions, status, challenge, code =
--     a:check(headers, { type = "repository", name = "library/app",
--       actions = { "pull", "push" } }, client_address)
--
-- identity = { name = "alice" | nil (anonymous token), via = "token" |
--   "basic", access = { {type, name, actions}, ... } (token mode) }
-- actions  = the actions granted on the scope's resource, as a set:
--   { pull = true, push = true }. A Basic login is granted pull and push
--   everywhere, delete only when its user is one of auth.admins: further
--   limits are the plugins'.
-- Failures: nil, status (401, 403, 429), the WWW-Authenticate header,
--   code (UNAUTHORIZED, DENIED, TOOMANYREQUESTS), message.
--
-- Failed logins (bad password, unknown user, a token that does not verify)
-- are counted per client address; max_failures within window seconds block
-- the address (429) until the window ends. In nginx the counts live in a
-- lua_shared_dict (shared by the workers), elsewhere in a Lua table.
local ffi = require "ffi"
local berth_ffi = require "berth.ffi"
local C = berth_ffi.C
local A = berth_ffi.load_auth() -- libberth-auth
local errors = require "berth.errors"
local config = require "berth.config"
local digest = require "berth.digest"
local cjson = require "cjson.safe"

local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_string = ffi.string
local fail = errors.fail
local scratch_err = errors.scratch
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local error = error
local setmetatable = setmetatable
local concat = table.concat
local max = math.max
local ceil = math.ceil
local io_open = io.open

local _M = { _VERSION = "0.1.0" }
local Auth = {}
local auth_mt = { __index = Auth }

-- Scratch values reused across calls; FFI calls are synchronous.
local keys_out = ffi_new("berth_auth_keys *[1]")
local htpasswd_out = ffi_new("berth_htpasswd *[1]")
local sub_buf = ffi_new("berth_buf")
local access_buf = ffi_new("berth_buf")
local b64_buf = ffi_new("berth_buf")
local expires_out = ffi_new("int64_t[1]")
local jwt_opts = ffi_new("berth_jwt_options")
local str_out = ffi_new("const char *[4]")

-- What a Basic login is granted (the plugins limit it); "*" is what the
-- catalog needs (registry:catalog:*).
local ALL_ACTIONS = { pull = true, push = true, delete = true, ["*"] = true }

---------------------------------------------------------------------------
-- base64

-- base64_decode(s, url) -> bytes | nil: standard alphabet with optional
-- padding, or base64url without (url = true)
function _M.base64_decode(s, url)
  if type(s) ~= "string" then
    error("input must be a string", 2)
  end
  local rc = C.berth_base64_decode(b64_buf, s, #s, url and 1 or 0, nil)
  local out
  if rc == 0 then
    out = ffi_string(b64_buf.ptr, b64_buf.len)
  end
  C.berth_buf_dispose(b64_buf)
  return out
end

---------------------------------------------------------------------------
-- keys and tokens

local Keys = {}
local keys_mt = { __index = Keys }

local function sniff_json(path)
  local f = io_open(path, "rb")
  if not f then
    return false
  end
  local head = f:read(64) or ""
  f:close()
  return head:find("^%s*{") ~= nil
end

-- load_keys(paths) -> keys | nil, err, code
-- paths: one path or a list; a file that holds a JSON object is a JWKS,
-- anything else PEM (public keys, certificates).
function _M.load_keys(paths)
  if type(paths) == "string" then
    paths = { paths }
  end
  if type(paths) ~= "table" then
    error("paths must be a string or a list of strings", 2)
  end
  local rc = A.berth_auth_keys_new(keys_out, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  local p = ffi_gc(keys_out[0], A.berth_auth_keys_free)
  for _, path in ipairs(paths) do
    if type(path) ~= "string" then
      error("key paths must be strings", 2)
    end
    if sniff_json(path) then
      rc = A.berth_auth_keys_add_jwks(p, path, scratch_err)
    else
      rc = A.berth_auth_keys_add_pem(p, path, scratch_err)
    end
    if rc < 0 then
      return fail(rc)
    end
  end
  return setmetatable({ _p = p }, keys_mt)
end

-- count() -> number of keys
function Keys:count()
  return tonumber(A.berth_auth_keys_count(self._p))
end

-- info(i) -> { alg, kid, libtrust, thumbprint } of the i-th key (1-based)
function Keys:info(i)
  if i < 1 or i > self:count() then
    return nil
  end
  A.berth_auth_keys_info(self._p, i - 1, str_out, str_out + 1, str_out + 2,
    str_out + 3)
  return {
    alg = ffi_string(str_out[0]),
    kid = ffi_string(str_out[1]),
    libtrust = ffi_string(str_out[2]),
    thumbprint = ffi_string(str_out[3]),
  }
end

-- verify(token, { issuer =, audience =, now =, leeway = })
--   -> { subject = s, access = { ... }, expires = n } | nil, err, code
function Keys:verify(token, opts)
  if type(token) ~= "string" then
    error("token must be a string", 2)
  end
  opts = opts or {}
  jwt_opts.version = 1
  jwt_opts.issuer = opts.issuer
  jwt_opts.audience = opts.audience
  jwt_opts.now = opts.now or 0
  jwt_opts.leeway = opts.leeway or 60
  local rc = A.berth_jwt_verify(sub_buf, access_buf, expires_out, self._p,
    token, #token, jwt_opts, scratch_err)
  -- the options point at Lua strings: drop them with the call
  jwt_opts.issuer = nil
  jwt_opts.audience = nil
  if rc < 0 then
    C.berth_buf_dispose(sub_buf)
    C.berth_buf_dispose(access_buf)
    return fail(rc)
  end
  local subject = ffi_string(sub_buf.ptr, sub_buf.len)
  local access_json = ffi_string(access_buf.ptr, access_buf.len)
  C.berth_buf_dispose(sub_buf)
  C.berth_buf_dispose(access_buf)
  local access = cjson.decode(access_json)
  if type(access) ~= "table" then
    return nil, "token malformed: access claim", "UNAUTHORIZED"
  end
  return { subject = subject, access = access,
    expires = tonumber(expires_out[0]) }
end

-- close() -> true; idempotent
function Keys:close()
  local p = self._p
  if not p then
    return true
  end
  self._p = nil
  A.berth_auth_keys_free(ffi_gc(p, nil))
  return true
end

---------------------------------------------------------------------------
-- htpasswd

local Htpasswd = {}
local htpasswd_mt = { __index = Htpasswd }

-- load_htpasswd(path) -> htpasswd | nil, err, code
function _M.load_htpasswd(path)
  if type(path) ~= "string" then
    error("path must be a string", 2)
  end
  local rc = A.berth_htpasswd_load(htpasswd_out, path, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return setmetatable({ _p = ffi_gc(htpasswd_out[0], A.berth_htpasswd_free) },
    htpasswd_mt)
end

-- count() -> number of users
function Htpasswd:count()
  return tonumber(A.berth_htpasswd_count(self._p))
end

-- verify(user, password) -> true | nil, err, code (UNAUTHORIZED)
function Htpasswd:verify(user, password)
  if type(user) ~= "string" or type(password) ~= "string" then
    error("user and password must be strings", 2)
  end
  local rc = A.berth_htpasswd_verify(self._p, user, #user, password,
    #password, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

function Htpasswd:close()
  local p = self._p
  if not p then
    return true
  end
  self._p = nil
  A.berth_htpasswd_free(ffi_gc(p, nil))
  return true
end

---------------------------------------------------------------------------
-- failed-login counting

-- A fixed window per address, from its first failure.
local MemoryCounter = {}
local memory_mt = { __index = MemoryCounter }

local MEMORY_MAX = 10000

local function memory_counter()
  return setmetatable({ t = {}, n = 0 }, memory_mt)
end

-- count(key, now) -> failures in the current window, seconds left
function MemoryCounter:count(key, now)
  local e = self.t[key]
  if not e or e.reset <= now then
    return 0, 0
  end
  return e.count, e.reset - now
end

function MemoryCounter:add(key, now, window)
  local e = self.t[key]
  if not e or e.reset <= now then
    if self.n >= MEMORY_MAX then
      -- drop what has run out; if nothing has, start again
      local n = 0
      for k, v in pairs(self.t) do
        if v.reset <= now then
          self.t[k] = nil
        else
          n = n + 1
        end
      end
      if n >= MEMORY_MAX then
        self.t, n = {}, 0
      end
      self.n = n
    end
    if not e then
      self.n = self.n + 1
    end
    e = { count = 0, reset = now + window }
    self.t[key] = e
  end
  e.count = e.count + 1
end

-- The same over an ngx.shared dict: incr with an initial TTL.
local DictCounter = {}
local dict_mt = { __index = DictCounter }

function DictCounter:count(key)
  local n = self.dict:get(key)
  if not n then
    return 0, 0
  end
  local ttl = self.dict:ttl(key)
  return n, ttl and ttl > 0 and ceil(ttl) or 1
end

function DictCounter:add(key, _, window)
  local _, err = self.dict:incr(key, 1, 0, window)
  if err and self.log then
    self.log("auth: failure count not kept: " .. tostring(err))
  end
end

---------------------------------------------------------------------------
-- configuration

local function string_or_list(v)
  if type(v) == "string" then
    return true
  end
  if type(v) ~= "table" or #v == 0 then
    return nil, "must be a path or a non-empty list of paths"
  end
  for k, x in pairs(v) do
    if type(k) ~= "number" or type(x) ~= "string" then
      return nil, "must be a path or a list of paths"
    end
  end
  return true
end

local SCHEMA = {
  name = "auth",
  fields = {
    mode = { type = "string", one_of = { "none", "token", "htpasswd" },
      default = "none" },
    realm = "string",
    service = "string",
    issuer = "string",
    keys = { type = "any", check = string_or_list },
    htpasswd = "string",
    -- htpasswd users who may delete (every login pulls and pushes)
    admins = { type = "array", of = "string", default = {} },
    leeway = { type = "integer", min = 0, default = 60 },
    max_failures = { type = "integer", min = 1, default = 10 },
    window = { type = "integer", min = 1, default = 60 },
    cache_ttl = { type = "integer", min = 0, default = 60 },
  },
}
_M.SCHEMA = SCHEMA

local dirname = config.dirname
local resolve = config.resolve

-- resolve_paths(conf, dir) -> conf: keys and htpasswd relative to dir
function _M.resolve_paths(conf, dir)
  if type(conf) ~= "table" then
    return conf
  end
  local out = config.deep_copy(conf)
  if type(out.keys) == "table" then
    for i, p in ipairs(out.keys) do
      out.keys[i] = resolve(p, dir)
    end
  else
    out.keys = resolve(out.keys, dir)
  end
  out.htpasswd = resolve(out.htpasswd, dir)
  return out
end

-- load(path) -> auth configuration | nil, err, code
-- The file returns the table (or sets its fields as globals); paths in it
-- are relative to the file.
function _M.load(path)
  local conf, err, code = config.load_file(path, SCHEMA)
  if not conf then
    return nil, err, code
  end
  return _M.resolve_paths(conf, dirname(path))
end

local function random_bytes(n)
  local f = io_open("/dev/urandom", "rb")
  local s = f and f:read(n)
  if f then
    f:close()
  end
  if not s or #s ~= n then
    error("cannot read /dev/urandom")
  end
  return s
end

local function default_clock()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.time then
    return ngx.time()
  end
  return os.time()
end

-- new(conf, opts) -> auth | nil, err, code
-- conf: as SCHEMA (paths absolute, or relative to opts.base_dir)
-- opts: { dict = ngx.shared.DICT (failure counts shared by workers),
--         clock = function() -> seconds (specs), log = function(msg) }
function _M.new(conf, opts)
  opts = opts or {}
  local c, err = config.validate(SCHEMA, conf, "auth")
  if not c then
    return nil, err, "EINVAL"
  end
  c = _M.resolve_paths(c, opts.base_dir)
  local self = setmetatable({
    mode = c.mode,
    realm = c.realm,
    service = c.service,
    issuer = c.issuer,
    leeway = c.leeway,
    max_failures = c.max_failures,
    window = c.window,
    cache_ttl = c.cache_ttl,
    clock = opts.clock or default_clock,
    log = opts.log,
  }, auth_mt)
  if opts.dict then
    self.counter = setmetatable({ dict = opts.dict, log = opts.log }, dict_mt)
  else
    self.counter = memory_counter()
  end
  local code
  if c.mode == "token" then
    for _, k in ipairs({ "realm", "service", "issuer", "keys" }) do
      if c[k] == nil then
        return nil, "auth: mode token needs '" .. k .. "'", "EINVAL"
      end
    end
    self.keys, err, code = _M.load_keys(c.keys)
    if not self.keys then
      return nil, "auth: " .. err, code
    end
  elseif c.mode == "htpasswd" then
    if not c.htpasswd then
      return nil, "auth: mode htpasswd needs 'htpasswd'", "EINVAL"
    end
    self.realm = self.realm or "berth"
    self.users, err, code = _M.load_htpasswd(c.htpasswd)
    if not self.users then
      return nil, "auth: " .. err, code
    end
    self.admins = {}
    for _, name in ipairs(c.admins) do self.admins[name] = true end
    -- Verified logins, by a salted digest of user and password, so a
    -- client's every request does not pay for a bcrypt.
    self.salt = random_bytes(16)
    self.logins, self.nlogins = {}, 0
  end
  return self
end

-- enabled() -> false in mode "none"
function Auth:enabled()
  return self.mode ~= "none"
end

---------------------------------------------------------------------------
-- challenges

-- Only names that cannot break the header go into scope="...".
local function header_safe(s)
  return type(s) == "string" and s:find("^[%w._/:*%-]+$") ~= nil
end

local function scope_string(scope)
  if not scope or not header_safe(scope.name) then
    return nil
  end
  return scope.type .. ":" .. scope.name .. ":" .. concat(scope.actions, ",")
end
_M.scope_string = scope_string

local function quoted(s)
  return '"' .. tostring(s):gsub('[%c"\\]', "") .. '"'
end

function Auth:challenge(scope, error_kind)
  if self.mode == "htpasswd" then
    return "Basic realm=" .. quoted(self.realm) .. ',charset="UTF-8"'
  end
  local parts = { "Bearer realm=" .. quoted(self.realm),
    "service=" .. quoted(self.service) }
  local s = scope_string(scope)
  if s then
    parts[#parts + 1] = "scope=" .. quoted(s)
  end
  if error_kind then
    parts[#parts + 1] = "error=" .. quoted(error_kind)
  end
  return concat(parts, ",")
end

---------------------------------------------------------------------------
-- checking a request

-- The token's grants as { [type] = { [name] = { action = true } } }.
local function grants_of(access)
  local g = {}
  for _, e in ipairs(access) do
    if type(e) == "table" and type(e.type) == "string"
        and type(e.name) == "string" and type(e.actions) == "table" then
      local by_name = g[e.type] or {}
      g[e.type] = by_name
      local set = by_name[e.name] or {}
      by_name[e.name] = set
      for _, a in ipairs(e.actions) do
        if type(a) == "string" then
          set[a] = true
        end
      end
    end
  end
  return g
end

-- granted(identity, type, name) -> set of actions on that resource
function _M.granted(identity, rtype, name)
  if not identity then
    return {}
  end
  if identity.via ~= "token" then
    -- a Basic login pulls and pushes everywhere (policies narrow it);
    -- deletes are the admins' (auth.admins)
    local all = {}
    for k in pairs(ALL_ACTIONS) do all[k] = true end
    if identity.via == "basic" and not identity.admin then
      all.delete = nil
    end
    return all
  end
  local by_name = identity.grants[rtype]
  local set = by_name and by_name[name]
  if not set then
    return {}
  end
  if set["*"] then
    local all = {}
    for k in pairs(ALL_ACTIONS) do all[k] = true end
    return all
  end
  return set
end

local function header_value(headers, name)
  local v = headers and headers[name]
  if type(v) == "table" then
    return nil, "repeated"
  end
  return v
end

-- Basic credentials of an Authorization value -> user, password | nil
local function basic_credentials(value)
  local b64 = value:match("^[Bb][Aa][Ss][Ii][Cc]%s+(%S+)%s*$")
  local raw = b64 and _M.base64_decode(b64)
  if raw then
    return raw:match("^([^:]*):(.*)$")
  end
  return nil
end

-- An empty user and password ("Basic Og==") is what a client without
-- credentials sends (skopeo): no credentials.
local function no_credentials(value)
  if not value or value == "" then
    return true
  end
  local user, password = basic_credentials(value)
  return user == "" and password == ""
end

function Auth:basic_login(value)
  local user, password = basic_credentials(value)
  if not user or user == "" then
    return nil, "malformed Basic credentials"
  end
  local now = self.clock()
  local key
  if self.cache_ttl > 0 then
    key = digest.compute(self.salt .. user .. "\0" .. password)
    local e = self.logins[key]
    if e and e.expires > now then
      return user
    end
  end
  local ok, err = self.users:verify(user, password)
  if not ok then
    return nil, err
  end
  if key then
    if self.nlogins >= 1024 then
      self.logins, self.nlogins = {}, 0
    end
    if not self.logins[key] then
      self.nlogins = self.nlogins + 1
    end
    self.logins[key] = { expires = now + self.cache_ttl }
  end
  return user
end

function Auth:token_login(value)
  local token = value:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
  if not token then
    return nil, "malformed Bearer credentials"
  end
  local claims, err = self.keys:verify(token, { issuer = self.issuer,
    audience = self.service, now = self.clock(), leeway = self.leeway })
  if not claims then
    return nil, err
  end
  return claims
end

local function refuse(status, challenge, code, message, retry_after)
  return nil, status, challenge, code, message, retry_after
end

-- check(headers, scope, client) -> identity, actions
--   | nil, status, www_authenticate, code, message, retry_after
-- scope = nil (any authenticated caller) or { type =, name =, actions =
-- { ... } }; headers have lowercase names; client is the address that
-- failures are counted against.
function Auth:check(headers, scope, client)
  if self.mode == "none" then
    return { via = "none" }, _M.granted({ via = "none" })
  end
  local key = "berth-auth:" .. tostring(client or "unknown")
  local now = self.clock()
  local failures, left = self.counter:count(key, now)
  if failures >= self.max_failures then
    return refuse(429, nil, "TOOMANYREQUESTS", "too many failed logins from "
      .. "this address; retry in " .. left .. " s", left)
  end
  local value, rep = header_value(headers, "authorization")
  if no_credentials(value) then
    if rep then
      self.counter:add(key, now, self.window)
      return refuse(401, self:challenge(scope, "invalid_request"),
        "UNAUTHORIZED", "more than one Authorization header")
    end
    return refuse(401, self:challenge(scope), "UNAUTHORIZED",
      "authentication required")
  end
  local identity, err
  if self.mode == "htpasswd" then
    local user
    user, err = self:basic_login(value)
    if user then
      identity = { name = user, via = "basic", admin = self.admins[user] }
    end
  else
    local claims
    claims, err = self:token_login(value)
    if claims then
      identity = { name = claims.subject ~= "" and claims.subject or nil,
        via = "token", access = claims.access,
        grants = grants_of(claims.access), expires = claims.expires }
    end
  end
  if not identity then
    self.counter:add(key, now, self.window)
    return refuse(401, self:challenge(scope, self.mode == "token"
      and "invalid_token" or nil), "UNAUTHORIZED", err)
  end
  if not scope then
    return identity, {}
  end
  local granted = _M.granted(identity, scope.type, scope.name)
  for _, a in ipairs(scope.actions) do
    if not granted[a] then
      return refuse(403, self:challenge(scope, "insufficient_scope"),
        "DENIED", "access to " .. (scope_string(scope) or scope.type)
          .. " not granted")
    end
  end
  return identity, granted
end

---------------------------------------------------------------------------
-- the HTTP API's side (lua/berth/http.lua)

-- The actions each route needs, by method: Distribution's rule (reads
-- pull; writes pull and push; deletes delete), except that every request
-- on an upload session is part of a push.
local function needed(route, method)
  if route == "base" then
    return nil
  elseif route == "catalog" then
    return "registry", { "*" }
  elseif route == "uploads" or route == "upload" then
    return "repository", { "pull", "push" }
  elseif method == "GET" or method == "HEAD" then
    return "repository", { "pull" }
  elseif method == "DELETE" then
    return "repository", { "delete" }
  end
  return "repository", { "pull", "push" }
end

-- action(route, method) -> what a request does to its repository, the
-- strongest action it needs ("pull", "push", "delete") | nil (none)
function _M.action(route, method)
  local rtype, actions = needed(route, method)
  return rtype == "repository" and actions[#actions] or nil
end

-- scope(route, method, name) -> scope table | nil (authentication only)
function _M.scope(route, method, name)
  local rtype, actions = needed(route, method)
  if not rtype then
    return nil
  end
  if rtype == "registry" then
    return { type = "registry", name = "catalog", actions = actions }
  end
  return { type = "repository", name = name, actions = actions }
end

-- authorize(req, route, name, args) -> nil, with req.ctx.identity and
-- req.ctx.actions set | refusal { status, code, message, headers }
-- A cross-repository mount from a repository the caller may not pull is
-- dropped (args.mount), so the request becomes an ordinary upload; so is
-- a mount without `from` (it would link a blob of any repository).
function Auth:authorize(req, route, name, args)
  if self.mode == "none" then
    return nil
  end
  local scope = _M.scope(route, req.method, name)
  local identity, actions, challenge, code, message, retry =
    self:check(req.headers, scope, req.client)
  if not identity then
    local status = actions
    local headers = {}
    if challenge then
      headers["WWW-Authenticate"] = challenge
    end
    if retry then
      headers["Retry-After"] = tostring(retry)
    end
    return { status = status, code = code, message = message,
      headers = headers }
  end
  if route == "uploads" and args and args.mount and args.mount ~= "" then
    local from = args.from
    if not from or from == ""
        or not _M.granted(identity, "repository", from).pull then
      args.mount, args.from = nil, nil
    end
  end
  local ctx = req.ctx or {}
  ctx.identity = identity
  ctx.actions = actions
  req.ctx = ctx
  return nil
end

-- may_pull(reg, ctx, name) -> whether the catalog shows name to ctx's
-- caller: the token grants pull, and the before_read hooks agree.
local function may_pull(reg, ctx, name)
  local identity = ctx.identity
  local actions = _M.granted(identity, "repository", name)
  if not actions.pull then
    return false
  end
  local hooks = reg.hooks
  if hooks and hooks:has("before_read") then
    local c = {}
    for k, v in pairs(ctx) do c[k] = v end
    c.op, c.repo, c.actions = "catalog", name, actions
    return hooks:run("before_read", c) == true
  end
  return true
end

-- catalog(reg, { n =, last = }, ctx) -> repositories the caller may pull,
-- n of them at most | nil, err, code
function Auth:catalog(reg, opts, ctx)
  if self.mode == "none" or not ctx or not ctx.identity then
    return reg:catalog(opts, ctx)
  end
  local want = opts and opts.n
  local last = opts and opts.last
  local out = {}
  while true do
    local batch = want and max(want, 100) or nil
    local list, err, code = reg:catalog({ n = batch, last = last }, ctx)
    if not list then
      return nil, err, code
    end
    for _, name in ipairs(list) do
      if may_pull(reg, ctx, name) then
        out[#out + 1] = name
        if want and #out >= want then
          return out
        end
      end
    end
    if not batch or #list < batch then
      return out
    end
    last = list[#list]
  end
end

return _M

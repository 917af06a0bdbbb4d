-- A tiny token endpoint for the specs (Docker's token protocol), run by
-- support.token_server() in an nginx of its own:
--   GET /token?service=<svc>&scope=repository:<name>:pull,push[&scope=...]
--   Authorization: Basic (optional: without it the caller is anonymous)
--   -> 200 {"token": "<jwt>", "access_token": "<jwt>", "expires_in": 300}
-- Policy: a user may pull and push under <user>/, everyone may pull
-- public/*, alice may push there, a logged-in user may list the catalog.
-- Bad credentials: 401.
-- luacheck: globals ngx TOKEN_HOME
local ngx = ngx
local cjson = require "cjson.safe"

local _M = {}

local USERS = { alice = "alice-secret", bob = "bob-secret" }
local PUBLISHERS = { alice = true }

local support

local function init()
  if support then return end
  support = require "09-auth.support"
  local home = TOKEN_HOME -- set by the nginx.conf (an absolute path)
  support.FIXTURES = home .. "/spec/fixtures/auth"
  support.set_tmp(ngx.config.prefix())
end

local function user_of(auth)
  if not auth then return nil, true end
  local b64 = auth:match("^Basic%s+(%S+)$")
  local raw = b64 and ngx.decode_base64(b64)
  local user, password = (raw or ""):match("^([^:]*):(.*)$")
  if user and USERS[user] and USERS[user] == password then
    return user, true
  end
  return nil, false
end

local function grant(user, scope)
  local rtype, name, actions = scope:match("^([^:]+):(.+):([^:]+)$")
  if not rtype then return nil end
  local granted = {}
  for a in actions:gmatch("[^,]+") do
    local ok = false
    if rtype == "repository" then
      if user and name:sub(1, #user + 1) == user .. "/" then
        ok = a == "pull" or a == "push"
      elseif name:sub(1, 7) == "public/" then
        ok = a == "pull" or (a == "push" and PUBLISHERS[user] ~= nil)
      end
    elseif rtype == "registry" and name == "catalog" then
      ok = user ~= nil
    end
    if ok then granted[#granted + 1] = a end
  end
  return { type = rtype, name = name, actions = granted }
end

function _M.handle()
  init()
  local args = ngx.req.get_uri_args()
  local user, ok = user_of(ngx.var.http_authorization)
  if not ok then
    ngx.status = 401
    ngx.header["Content-Type"] = "application/json"
    ngx.header["WWW-Authenticate"] = 'Basic realm="token"'
    ngx.say('{"errors":[{"code":"UNAUTHORIZED","message":'
      .. '"invalid username or password"}]}')
    return ngx.exit(401)
  end
  local scopes = args.scope
  if type(scopes) == "string" then scopes = { scopes } end
  local access = {}
  for _, s in ipairs(scopes or {}) do
    -- several scopes may come space-separated in one parameter
    for one in s:gmatch("%S+") do
      local g = grant(user, one)
      if g and #g.actions > 0 then access[#access + 1] = g end
    end
  end
  local now = ngx.time()
  local claims = support.claims({ sub = user or "", access = access,
    iat = now, nbf = now, exp = now + 300,
    aud = args.service or support.SERVICE })
  if #access == 0 then
    claims.access = nil -- an empty Lua table would encode as {}
  end
  local token = support.mint(claims, { alg = "RS256" })
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode({ token = token, access_token = token,
    expires_in = 300, issued_at = ngx.utctime():gsub(" ", "T") .. "Z" }))
end

return _M

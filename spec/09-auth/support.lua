-- Shared by the spec/09-auth specs: minting test tokens with the fixture
-- keys (openssl signs), and starting `berth serve` with access control, a
-- token endpoint and curl.
--   local support = require "09-auth.support"
local helpers = require "helpers"
local bit = require "bit"
local cjson = require "cjson.safe"

local band, bor, lshift, rshift = bit.band, bit.bor, bit.lshift, bit.rshift
local byte = string.byte
local concat = table.concat

local _M = {}

_M.FIXTURES = "spec/fixtures/auth"
_M.ISSUER = "berth-test-issuer"
_M.SERVICE = "berth-test-registry"

local function fixture(name)
  return _M.FIXTURES .. "/" .. name
end
_M.fixture = fixture

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.q = q

-- sh(cmd, keep_preload) -> output (stdout and stderr), ok, exit code
-- Tools run without the sanitizer runtime a spec run may preload (curl
-- can hang in it); only what loads libberth (nginx) needs it.
function _M.sh(cmd, keep_preload)
  if not keep_preload then
    cmd = "unset LD_PRELOAD; " .. cmd
  end
  local p = io.popen("( " .. cmd .. "\n) 2>&1; printf '\\n%d' $?")
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)\n(%d+)$")
  code = tonumber(code)
  return text or out, code == 0, code
end

function _M.must(cmd)
  local out, ok, code = _M.sh(cmd)
  if not ok then
    error(("command failed (exit %s): %s\n%s"):format(tostring(code), cmd,
      out), 2)
  end
  return out
end

---------------------------------------------------------------------------
-- base64url, DER -> raw ECDSA signatures, signing

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

function _M.b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = bor(lshift(a, 16), lshift(b or 0, 8), c or 0)
    local n = c and 4 or (b and 3 or 2)
    for j = 1, n do
      local idx = band(rshift(v, 6 * (4 - j)), 63)
      out[#out + 1] = B64:sub(idx + 1, idx + 1)
    end
  end
  return concat(out)
end

-- An ECDSA-Sig-Value (SEQUENCE { INTEGER r, INTEGER s }) as JWS wants it:
-- r and s left-padded to 32 bytes each.
function _M.der_to_raw(der)
  local pos = 1
  local function tag(want)
    assert(byte(der, pos) == want, "unexpected DER tag")
    local len = byte(der, pos + 1)
    pos = pos + 2
    if len >= 0x80 then
      local n = len - 0x80
      len = 0
      for _ = 1, n do
        len = len * 256 + byte(der, pos)
        pos = pos + 1
      end
    end
    return len
  end
  tag(0x30)
  local parts = {}
  for i = 1, 2 do
    local len = tag(0x02)
    local v = der:sub(pos, pos + len - 1)
    pos = pos + len
    v = v:gsub("^%z+", "")
    assert(#v <= 32, "integer too long for P-256")
    parts[i] = ("\0"):rep(32 - #v) .. v
  end
  return parts[1] .. parts[2]
end

local scratch
-- set_tmp(dir): where signing and curl put their scratch files
function _M.set_tmp(dir)
  scratch = dir
end

local function tmp(name)
  if not scratch then
    scratch = helpers.tmpdir()
  end
  return scratch .. "/" .. name
end
_M.tmp = tmp

local counter = 0
local function next_id()
  counter = counter + 1
  return counter
end

-- sign(input, key, alg) -> raw signature bytes (openssl dgst)
function _M.sign(input, key, alg)
  local n = next_id()
  local inpath, sigpath = tmp("in" .. n), tmp("sig" .. n)
  helpers.write_file(inpath, input)
  if alg == "HS256" then
    _M.must("openssl dgst -sha256 -binary -hmac " .. q(key) .. " -out "
      .. q(sigpath) .. " " .. q(inpath))
  else
    _M.must("openssl dgst -sha256 -sign " .. q(key) .. " -out " .. q(sigpath)
      .. " " .. q(inpath))
  end
  local sig = assert(helpers.read_file(sigpath))
  os.remove(inpath)
  os.remove(sigpath)
  if alg == "ES256" then
    sig = _M.der_to_raw(sig)
  end
  return sig
end

-- claims(over) -> the claims of a good token for alice, with over applied
-- (a field set to false is removed)
function _M.claims(over)
  local now = os.time()
  local c = {
    iss = _M.ISSUER,
    aud = _M.SERVICE,
    sub = "alice",
    iat = now - 10,
    nbf = now - 10,
    exp = now + 300,
    jti = tostring(next_id()),
    access = {
      { type = "repository", name = "alice/app", actions = { "pull", "push" } },
    },
  }
  for k, v in pairs(over or {}) do
    if v == false then
      c[k] = nil
    else
      c[k] = v
    end
  end
  return c
end

-- mint(claims, { key = path, alg = "RS256"|"ES256"|..., kid = s,
--   header = {...} extra header fields, signature = raw override,
--   repeat_header = {...}, repeat_claims = {...} members written a second
--   time after the encoded ones }) -> compact JWS
function _M.mint(claims, opts)
  opts = opts or {}
  local alg = opts.alg or "RS256"
  local key = opts.key or fixture(alg == "ES256" and "ec.key" or "rsa.key")
  local header = { alg = alg, typ = "JWT", kid = opts.kid }
  for k, v in pairs(opts.header or {}) do
    header[k] = v
  end
  local input = _M.b64url(_M.json_repeating(header, opts.repeat_header))
    .. "." .. _M.b64url(_M.json_repeating(claims, opts.repeat_claims))
  local sig
  if opts.signature then
    sig = opts.signature
  elseif alg == "none" then
    sig = ""
  else
    sig = _M.sign(input, key, alg)
  end
  return input .. "." .. _M.b64url(sig)
end

-- json_repeating(t, again?) -> t as a JSON object with each member of
-- again appended once more (cjson itself never repeats a member)
function _M.json_repeating(t, again)
  local text = assert(cjson.encode(t))
  for k, v in pairs(again or {}) do
    text = text:sub(1, -2) .. "," .. cjson.encode(k) .. ":"
      .. cjson.encode(v) .. "}"
  end
  return text
end

-- bcrypt(password) -> a "$2y$04$..." entry's hash, by libcrypt (cost 4:
-- fast), for passwords no fixture holds
function _M.bcrypt(password)
  local ffi = require "ffi"
  pcall(ffi.cdef, "char *crypt(const char *key, const char *salt);")
  local lib = ffi.load("crypt")
  return ffi.string(lib.crypt(password, "$2y$04$abcdefghijklmnopqrstuu"))
end

-- basic(user, password) -> an Authorization header value
function _M.basic(user, password)
  local s = user .. ":" .. password
  local b = _M.b64url(s):gsub("-", "+"):gsub("_", "/")
  return "Basic " .. b .. ("="):rep((3 - #s % 3) % 3)
end

---------------------------------------------------------------------------
-- curl

-- curl(method, url, opts) -> { status, headers = { lower = value }, body }
-- opts: headers = { "Name: value" }, data = string, file = path,
--   args = extra arguments (string), user = "name:password"
function _M.curl(method, url, opts)
  opts = opts or {}
  local n = next_id()
  local hfile, bfile = tmp("h" .. n), tmp("b" .. n)
  local args = { "curl -s -S -g", "-D", q(hfile), "-o", q(bfile),
    "-w '%{http_code} %{http_version}'" }
  if method == "HEAD" then
    args[#args + 1] = "-I"
  else
    args[#args + 1] = "-X " .. q(method)
  end
  for _, h in ipairs(opts.headers or {}) do
    args[#args + 1] = "-H " .. q(h)
  end
  if opts.user then
    args[#args + 1] = "-u " .. q(opts.user)
  end
  if opts.data then
    local dfile = tmp("d" .. n)
    helpers.write_file(dfile, opts.data)
    opts.file = dfile
  end
  if opts.file then
    args[#args + 1] = "--data-binary @" .. q(opts.file)
  end
  if opts.args then
    args[#args + 1] = opts.args
  end
  args[#args + 1] = q(url)
  local out = _M.sh(concat(args, " "))
  local status, version = out:match("(%d%d%d) ([%d.]+)$")
  local resp = { status = tonumber(status), http_version = version,
    headers = {}, output = out }
  local raw = helpers.read_file(hfile) or ""
  local block = raw:match(".*\r\n\r\n(HTTP/.-)\r\n\r\n$") or raw
  for line in block:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then
      resp.headers[k:lower()] = v
    end
  end
  resp.body = helpers.read_file(bfile) or ""
  resp.json = cjson.decode(resp.body)
  os.remove(hfile)
  os.remove(bfile)
  return resp
end

-- error_code(resp) -> the first OCI error code of a response body
function _M.error_code(resp)
  local doc = resp.json
  return type(doc) == "table" and doc.errors and doc.errors[1]
    and doc.errors[1].code
end

---------------------------------------------------------------------------
-- servers

math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16)
  + tonumber(_M.sh("echo $$"):match("%d+") or 0))

local function free_port()
  for _ = 1, 50 do
    local port = math.random(20000, 45000)
    local out = _M.sh("ss -Hltn 'sport = :" .. port .. "'")
    if not out:find(":" .. port .. " ", 1, true) then
      return port
    end
  end
  error("no free port")
end
_M.free_port = free_port

-- the working directory (ctest changes it without changing $PWD)
local PWD = _M.sh("pwd -P"):match("^[^\n]+")
local LIB = os.getenv("BERTH_LIB") or "build/libberth.so"
if LIB:sub(1, 1) ~= "/" then
  LIB = PWD .. "/" .. LIB
end

local Server = {}
Server.__index = Server

-- serve{ auth_config = path, config = path, tls = bool, delete = bool,
--   workers = n, root = dir } -> server (url, port, host, root, log)
function _M.serve(opts, attempt)
  opts = opts or {}
  local root = opts.root or helpers.tmpdir()
  local port = free_port()
  local log = root .. ".log"
  helpers.at_exit(function() os.remove(log) end)
  local args = { "env BERTH_LIB=" .. q(LIB), "bin/berth", "serve",
    "--listen", "127.0.0.1:" .. port, "--root", q(root),
    "--workers", tostring(opts.workers or 2), helpers.SERVE_AS }
  if opts.delete then args[#args + 1] = "--delete" end
  if opts.config then
    args[#args + 1] = "--config " .. q(opts.config)
  end
  if opts.auth_config then
    args[#args + 1] = "--auth-config " .. q(opts.auth_config)
  end
  local scheme = "http"
  if opts.tls then
    scheme = "https"
    args[#args + 1] = "--tls-cert " .. q(fixture("tls.crt"))
    args[#args + 1] = "--tls-key " .. q(fixture("tls.key"))
  end
  os.execute("setsid " .. concat(args, " ") .. " > " .. q(log)
    .. " 2>&1 < /dev/null &")
  local srv = setmetatable({ url = scheme .. "://127.0.0.1:" .. port,
    port = port, host = "127.0.0.1:" .. port, root = root, log = log },
    Server)
  for _ = 1, 100 do
    local code = _M.sh("curl -k -s -o /dev/null -w '%{http_code}' "
      .. srv.url .. "/v2/")
    if code == "401" or code == "200" then
      return srv
    end
    os.execute("sleep 0.1")
  end
  local text = helpers.read_file(log) or ""
  srv:stop()
  -- another process took the port between the check and the bind
  if text:find("Address already in use", 1, true) and (attempt or 1) < 5 then
    opts.root = root
    return _M.serve(opts, (attempt or 1) + 1)
  end
  error("berth serve did not start:\n" .. text)
end

function Server:pid()
  local s = helpers.read_file(self.root .. "/.berth-run/nginx.pid")
  return s and tonumber(s:match("%d+"))
end

function Server:stop()
  local pid = self:pid()
  if not pid then
    return
  end
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not _M.sh("kill -0 " .. pid .. " 2>/dev/null && echo alive")
        :find("alive") then
      return
    end
    os.execute("sleep 0.05")
  end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
end

function Server:log_text()
  return helpers.read_file(self.log) or ""
end

-- A token endpoint (Docker's token protocol) in an nginx of its own:
-- spec/09-auth/token_server.lua behind GET /token.
function _M.token_server(attempt)
  local dir = helpers.tmpdir()
  local port = free_port()
  local lua = PWD .. "/lua"
  local spec = PWD .. "/spec"
  local conf = concat({
    "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
    "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
    _M.sh("id -u"):match("^0") and "user root root;" or "",
    "worker_processes 1;",
    "pid " .. dir .. "/nginx.pid;",
    "error_log " .. dir .. "/error.log notice;",
    "env BERTH_LIB;",
    "events { worker_connections 64; }",
    "http {",
    "  access_log " .. dir .. "/access.log;",
    "  client_body_temp_path " .. dir .. "/body;",
    "  proxy_temp_path " .. dir .. "/proxy;",
    "  fastcgi_temp_path " .. dir .. "/fastcgi;",
    "  uwsgi_temp_path " .. dir .. "/uwsgi;",
    "  scgi_temp_path " .. dir .. "/scgi;",
    "  lua_package_path \"" .. lua .. "/?.lua;" .. lua .. "/?/init.lua;"
      .. spec .. "/?.lua;;\";",
    "  init_by_lua_block { TOKEN_HOME = \"" .. PWD .. "\" }",
    "  server {",
    "    listen 127.0.0.1:" .. port .. ";",
    "    location = /token {",
    "      content_by_lua_block { require(\"09-auth.token_server\").handle() }",
    "    }",
    "  }",
    "}",
  }, "\n")
  helpers.write_file(dir .. "/nginx.conf", conf)
  os.execute("env BERTH_LIB=" .. q(LIB) .. " setsid nginx -p " .. q(dir)
    .. " -c " .. q(dir .. "/nginx.conf") .. " -g 'daemon off;' > "
    .. q(dir .. "/out.log") .. " 2>&1 < /dev/null &")
  local ts = setmetatable({ url = "http://127.0.0.1:" .. port .. "/token",
    port = port, root = dir, log = dir .. "/error.log" }, Server)
  ts.pid = function()
    local s = helpers.read_file(dir .. "/nginx.pid")
    return s and tonumber(s:match("%d+"))
  end
  for _ = 1, 100 do
    local code = _M.sh("curl -s -o /dev/null -w '%{http_code}' -u x:y "
      .. ts.url)
    if code == "401" then
      return ts
    end
    os.execute("sleep 0.1")
  end
  local text = (helpers.read_file(dir .. "/out.log") or "")
    .. (helpers.read_file(dir .. "/error.log") or "")
  ts:stop()
  if text:find("Address already in use", 1, true) and (attempt or 1) < 5 then
    return _M.token_server((attempt or 1) + 1)
  end
  error("token server did not start:\n" .. text)
end

-- write_auth_config(tbl) -> path of a Lua file returning tbl
function _M.auth_config(tbl)
  local path = tmp("auth-" .. next_id() .. ".lua")
  local function lit(v)
    if type(v) == "table" then
      local parts = {}
      for k, x in pairs(v) do
        if type(k) == "number" then
          parts[#parts + 1] = lit(x)
        else
          parts[#parts + 1] = "[" .. ("%q"):format(k) .. "] = " .. lit(x)
        end
      end
      return "{ " .. concat(parts, ", ") .. " }"
    elseif type(v) == "string" then
      return ("%q"):format(v)
    end
    return tostring(v)
  end
  helpers.write_file(path, "return " .. lit(tbl) .. "\n")
  return path
end

---------------------------------------------------------------------------
-- images

-- build_image(layout, tag) -> manifest digest: a one-layer image made with
-- umoci (a small text file and 200 kB of random bytes)
function _M.build_image(layout, tag)
  local ref = q(layout .. ":" .. tag)
  if not helpers.read_file(layout .. "/index.json") then
    _M.must("umoci init --layout " .. q(layout))
  end
  local bundle = layout .. ".bundle-" .. tag
  _M.must("umoci new --image " .. ref)
  _M.must("umoci unpack --rootless --image " .. ref .. " " .. q(bundle))
  _M.must("mkdir -p " .. q(bundle .. "/rootfs/etc"))
  helpers.write_file(bundle .. "/rootfs/etc/hello", "image " .. tag .. " "
    .. tostring(math.random()) .. "\n")
  _M.must("head -c 200000 /dev/urandom > " .. q(bundle .. "/rootfs/big"))
  _M.must("umoci repack --image " .. ref .. " " .. q(bundle))
  _M.must("rm -rf " .. q(bundle))
  local index = cjson.decode(assert(helpers.read_file(layout
    .. "/index.json")))
  for _, d in ipairs(index.manifests) do
    if (d.annotations or {})["org.opencontainers.image.ref.name"] == tag then
      return d.digest
    end
  end
  error("umoci made no " .. tag)
end

-- skopeo(args) -> output, ok
function _M.skopeo(args)
  return _M.sh("skopeo --insecure-policy " .. args)
end

-- Absolute path of a fixture (configuration files live in temp dirs).
function _M.abs(name)
  return PWD .. "/" .. fixture(name)
end

return _M

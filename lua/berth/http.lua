-- The OCI Distribution API (v1.1) as a function of (request, registry):
-- no nginx in here, so specs drive it directly; lua/berth/nginx.lua adapts
-- it to ngx.
--
-- request  = { method, path (raw, percent-encoded), query (raw string),
--              headers (lowercase keys), body = function(n) -> chunk, ""
--              at the end, or nil, err; body_length = number|nil,
--              body_file = path|nil (a body nginx spooled to disk),
--              client = address|nil (failed logins are counted per address),
--              ctx = table|nil (handed to every registry call) }
-- response = { status, headers = { Name = value }, body = string|nil,
--              file = path|nil (blob content for the server to send) }
local json = require "berth.json"
local errors = require "berth.errors"
local manifest = require "berth.manifest"
local parse_digest = require("berth.digest").parse
local upload_state = require "berth.upload_state"
local auth_mod = require "berth.auth"
local C = require("berth.ffi").C

local concat = table.concat
local tonumber = tonumber
local tostring = tostring
local type = type
local setmetatable = setmetatable
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local collectgarbage = collectgarbage
local str_char = string.char

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

-- Bytes per read of a request body: bounds memory and each C call.
local CHUNK = 256 * 1024
local MANIFEST_MAX = manifest.MAX

local API_VERSION = "registry/2.0"
local OCI_INDEX = manifest.OCI_INDEX

local MANIFEST_TYPES = manifest.IS_BUILTIN

-- new{ registry = reg, automatic_crossmount = bool, auth = berth.auth
--   object | nil, secret = string | nil, sessions = berth.sessions
--   object | nil (caps on open upload sessions) } -> app
-- secret: CNCF Distribution's http.secret. With it an upload's Location
-- carries the _state Distribution signs and checks, so either registry
-- continues an upload the other began; without it Locations carry none
-- (berth's sessions need none).
function _M.new(opts)
  if type(opts) ~= "table" or not opts.registry then
    error("new needs { registry = ... }", 2)
  end
  if opts.secret ~= nil and (type(opts.secret) ~= "string"
      or opts.secret == "") then
    error("secret must be a non-empty string", 2)
  end
  return setmetatable({
    reg = opts.registry,
    automatic_crossmount = opts.automatic_crossmount ~= false,
    auth = opts.auth,
    secret = opts.secret,
    sessions = opts.sessions,
  }, mt)
end

local function text_response(status, body, headers)
  headers = headers or {}
  headers["Content-Type"] = headers["Content-Type"] or "application/json"
  headers["Content-Length"] = #body
  return { status = status, headers = headers, body = body }
end

local function json_response(status, doc, headers)
  return text_response(status, json.encode(doc), headers)
end

local json_string, json_string_array = json.string, json.string_array

-- error_response(code, message, status?) -> response with the spec's body:
-- the status and OCI code errors.def gives code (a code it does not know
-- is an internal failure), the message one line (errors.h).
local UNKNOWN = errors.lookup("UNKNOWN")

local function error_response(code, message, status)
  local rec = code ~= nil and errors.lookup(code) or UNKNOWN
  local oci = rec.api
  local doc = { errors = { { code = oci,
    message = message and errors.one_line(message) or oci } } }
  return json_response(status or rec.http, doc)
end
_M.error_response = error_response

local function empty(status, headers)
  headers = headers or {}
  headers["Content-Length"] = 0
  return { status = status, headers = headers }
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return str_char(tonumber(h, 16)) end))
end

local function parse_query(q)
  local args = {}
  if not q or q == "" then
    return args
  end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = unescape((k:gsub("+", " ")))
    if args[k] == nil then
      args[k] = unescape((v:gsub("+", " ")))
    end
  end
  return args
end

local function escape(s)
  return (s:gsub("[^%w%-%._~/:]", function(c)
    return ("%%%02X"):format(c:byte())
  end))
end

-- Read a whole request body of at most max bytes (manifests only).
local function read_all(req, max)
  local parts, n = {}, 0
  if req.body_length and req.body_length > max then
    return nil, "too large"
  end
  while true do
    local chunk, err = req.body(CHUNK)
    if not chunk then
      return nil, err or "body read failed"
    end
    if chunk == "" then
      break
    end
    n = n + #chunk
    if n > max then
      return nil, "too large"
    end
    parts[#parts + 1] = chunk
  end
  return concat(parts)
end

-- Stream the request body into an upload. -> bytes | nil, err, code
-- A body nginx spooled to a file beside the store is moved in whole when
-- the upload is empty, rather than copied.
local function stream_body(req, up)
  if req.body_file and up:size() == 0 then
    local ok, err, code = up:adopt(req.body_file, req.body_follower)
    if ok then
      return up:size()
    end
    if code ~= "UNSUPPORTED" then
      return nil, err, code
    end
  end
  local total = 0
  while true do
    local chunk, err = req.body(CHUNK)
    if not chunk then
      return nil, err or "body read failed"
    end
    if chunk == "" then
      return total
    end
    local ok, werr, code = up:write(chunk)
    if not ok then
      return nil, werr, code
    end
    total = total + #chunk
    -- Each chunk is garbage once written: collect it now, or a long body
    -- leaves tens of MiB of dead strings before the collector catches up.
    collectgarbage("step", #chunk / 1024)
  end
end

local function upload_location(name, id)
  return "/v2/" .. name .. "/blobs/uploads/" .. id
end

-- Byte counts in headers and messages: integers, never "1e+15".
local function int(n)
  return ("%.0f"):format(n)
end

local function range_header(size)
  return "0-" .. int(size > 0 and size - 1 or 0)
end

local function upload_headers(self, name, up)
  local size = up:size()
  local loc = upload_location(name, up.id)
  if self.secret then
    loc = loc .. "?_state=" .. escape(upload_state.pack(self.secret, {
      name = name, id = up.id, offset = size, started = up:started() }))
  end
  return {
    ["Location"] = loc,
    ["Range"] = range_header(size),
    ["Docker-Upload-UUID"] = up.id,
  }
end

-- Route table: patterns on the decoded path, most specific first.
-- Matched on the raw path, so an encoded "/" inside a digest or an upload
-- id stays inside that segment; captures are decoded afterwards.
local ROUTES = {
  { "^/v2(/?)$", "base" },
  { "^/v2/_catalog$", "catalog" },
  { "^/v2/(.+)/tags/list$", "tags" },
  { "^/v2/(.+)/manifests/([^/]+)$", "manifest" },
  { "^/v2/(.+)/blobs/uploads/?$", "uploads" },
  { "^/v2/(.+)/blobs/uploads/([^/]+)$", "upload" },
  { "^/v2/(.+)/blobs/([^/]+)$", "blob" },
  { "^/v2/(.+)/referrers/([^/]+)$", "referrers" },
}

local METHODS = {
  base = { GET = true, HEAD = true },
  catalog = { GET = true },
  tags = { GET = true },
  manifest = { GET = true, HEAD = true, PUT = true, DELETE = true },
  uploads = { POST = true },
  upload = { GET = true, PATCH = true, PUT = true, DELETE = true },
  blob = { GET = true, HEAD = true, DELETE = true },
  referrers = { GET = true },
}

local handlers = {}

function handlers.base()
  return json_response(200, {})
end

-- Pagination shared by catalog and tags: n and last, Link when cut short.
local function page_args(args)
  local n
  if args.n and args.n ~= "" then
    n = tonumber(args.n)
    if not n or n < 0 or n ~= math.floor(n) then
      return nil, error_response("UNSUPPORTED", "n must be a non-negative integer", 400)
    end
  end
  return { n = n, last = args.last ~= "" and args.last or nil }
end

local function link_header(path, last, n)
  return ("<%s?last=%s&n=%d>; rel=\"next\""):format(path, escape(last), n)
end

-- Ask for one more than n to learn whether there is a next page.
local function paginate(list, page, path)
  local headers = {}
  if page.n and #list > page.n then
    for i = #list, page.n + 1, -1 do
      list[i] = nil
    end
    if page.n > 0 then
      headers["Link"] = link_header(path, list[#list], page.n)
    end
  end
  return headers
end

function handlers.catalog(self, req, args)
  local page, bad = page_args(args)
  if not page then return bad end
  local opts = { n = page.n and page.n + 1, last = page.last }
  local list, err, code
  if self.auth then -- only what the caller may pull
    list, err, code = self.auth:catalog(self.reg, opts, req.ctx)
  else
    list, err, code = self.reg:catalog(opts, req.ctx)
  end
  if not list then return error_response(code, err) end
  local headers = paginate(list, page, "/v2/_catalog")
  return text_response(200, '{"repositories":' .. json_string_array(list)
    .. "}", headers)
end

function handlers.tags(self, req, args, name)
  local page, bad = page_args(args)
  if not page then return bad end
  local list, err, code
  if page.n == 0 then
    -- n=0 asks for nothing; still a 404 for an unknown repository.
    list, err, code = self.reg:list_tags(name, { n = 1 }, req.ctx)
    if list then list = {} end
  else
    list, err, code = self.reg:list_tags(name, {
      n = page.n and page.n + 1, last = page.last }, req.ctx)
  end
  if not list then return error_response(code, err) end
  local headers = paginate(list, page, "/v2/" .. name .. "/tags/list")
  return text_response(200, '{"name":' .. json_string(name) .. ',"tags":'
    .. json_string_array(list) .. "}", headers)
end

-- Does the Accept header rule out this media type? Only when the client
-- negotiates manifest types at all (lists one) and lists neither it nor */*.
local function refused_by_accept(accept, media_type)
  if type(accept) == "table" then
    accept = concat(accept, ",")
  end
  if not accept or accept == "" then
    return false
  end
  local negotiates = false
  for item in accept:gmatch("[^,]+") do
    local t = item:match("^%s*([^;%s]+)")
    if t == media_type or t == "*/*" then
      return false
    end
    if t and MANIFEST_TYPES[t] then
      negotiates = true
    end
  end
  return negotiates
end

local function manifest_headers(info)
  return {
    ["Content-Type"] = info.media_type,
    ["Content-Length"] = info.size,
    ["Docker-Content-Digest"] = info.digest,
    ["ETag"] = '"' .. info.digest .. '"',
  }
end

function handlers.manifest(self, req, args, name, ref)
  local reg = self.reg
  local method = req.method
  if method == "GET" or method == "HEAD" then
    local body, info, err, code
    if method == "GET" then
      body, err, code = reg:get_manifest(name, ref, req.ctx)
      info = body and err
    else
      info, err, code = reg:head_manifest(name, ref, req.ctx)
    end
    if not info then
      if code == "TAG_INVALID" then code = "MANIFEST_UNKNOWN" end
      return error_response(code, err)
    end
    if refused_by_accept(req.headers["accept"], info.media_type) then
      return error_response("MANIFEST_UNKNOWN", "manifest type "
        .. info.media_type .. " not in Accept")
    end
    return { status = 200, headers = manifest_headers(info), body = body }
  elseif method == "PUT" then
    local body, rerr = read_all(req, MANIFEST_MAX)
    if not body then
      if rerr == "too large" then
        return error_response("ETOOLARGE", "manifest larger than 4 MiB")
      end
      return error_response("MANIFEST_INVALID", "manifest body: " .. rerr)
    end
    local ct = req.headers["content-type"]
    if type(ct) == "table" then
      return error_response("MANIFEST_INVALID", "more than one Content-Type")
    end
    local digest, info, code = reg:put_manifest(name, ref, body, ct, req.ctx)
    if not digest then
      return error_response(code, info)
    end
    local headers = {
      ["Location"] = "/v2/" .. name .. "/manifests/" .. digest,
      ["Docker-Content-Digest"] = digest,
    }
    if type(info) == "table" and info.subject then
      headers["OCI-Subject"] = info.subject
    end
    return empty(201, headers)
  else -- DELETE
    local ok, err, code = reg:delete_manifest(name, ref, req.ctx)
    if not ok then
      if code == "TAG_INVALID" then code = "MANIFEST_UNKNOWN" end
      return error_response(code, err)
    end
    return empty(202)
  end
end

-- size nil: the server that sends the file sets Content-Length.
local function blob_headers(size, digest)
  return {
    ["Content-Length"] = size,
    ["Docker-Content-Digest"] = digest,
    ["Content-Type"] = "application/octet-stream",
    ["ETag"] = '"' .. digest .. '"',
    ["Accept-Ranges"] = "bytes",
    ["Cache-Control"] = "max-age=31536000",
  }
end

function handlers.blob(self, req, args, name, digest)
  local reg = self.reg
  if req.method == "DELETE" then
    local ok, err, code = reg:delete_blob(name, digest, req.ctx)
    if not ok then return error_response(code, err) end
    return empty(202)
  end
  if req.method == "HEAD" then
    local size, err, code = reg:stat_blob(name, digest, req.ctx)
    if not size then return error_response(code, err) end
    return { status = 200, headers = blob_headers(size, digest) }
  end
  -- GET: one lookup (link, then the driver's hand-off). A local file the
  -- server sends with its own Content-Length and Range handling: file is
  -- its absolute path, file_rel the same under the blobs directory
  -- (berth.nginx serves that); a URL (object storage) the client is sent
  -- to.
  local send, err, code = reg:blob_send(name, digest, req.ctx)
  if not send then return error_response(code, err) end
  if send.kind == "url" then
    local h = blob_headers(nil, digest)
    h["Location"] = send.url
    return { status = 307, headers = h }
  end
  return { status = 200, headers = blob_headers(nil, digest),
    file = send.path, file_rel = send.rel }
end

-- Finish an upload with the request's digest; 201 on success.
local function commit(self, req, name, up, digest)
  if not digest or digest == "" then
    up:close()
    return error_response("DIGEST_INVALID", "digest parameter missing")
  end
  local ok, err, code = self.reg:commit_upload(up, digest, nil, req.ctx)
  if not ok then
    return error_response(code, err)
  end
  return empty(201, {
    ["Location"] = "/v2/" .. name .. "/blobs/" .. digest,
    ["Docker-Content-Digest"] = digest,
  })
end

local function body_failed(up, err, code)
  up:close()
  if code then
    return error_response(code, err)
  end
  return error_response("BLOB_UPLOAD_INVALID", "request body: " .. tostring(err))
end

function handlers.uploads(self, req, args, name)
  local reg = self.reg
  local mount = args.mount
  if mount and mount ~= "" then
    local from = args.from
    if from == "" then from = nil end
    if from or self.automatic_crossmount then
      local ok = reg:mount_blob(name, from, mount, req.ctx)
      if ok then
        return empty(201, {
          ["Location"] = "/v2/" .. name .. "/blobs/" .. mount,
          ["Docker-Content-Digest"] = mount,
        })
      end
    end
    -- Not mountable: an ordinary upload session, as the spec says.
  end
  -- Single-request upload: the body is the whole blob. The client never
  -- learns its session, so one that fails must leave none behind: a
  -- digest that cannot match is refused before the session exists.
  if args.digest and not parse_digest(args.digest) then
    return error_response("DIGEST_INVALID",
      "invalid digest: " .. args.digest:sub(1, 200))
  end
  -- a session the client comes back to counts against the caps
  local sessions = not args.digest and self.sessions or nil
  local wait = sessions and sessions:full(name, req.client)
  if wait then
    local r = error_response("TOOMANYREQUESTS", "too many open upload"
      .. " sessions for " .. name .. " or from this address; finish or"
      .. " cancel some, or retry in " .. wait .. " s")
    r.headers["Retry-After"] = tostring(wait)
    return r
  end
  local up, err, code = reg:start_upload(name, req.ctx)
  if not up then return error_response(code, err) end
  if sessions then sessions:opened(up.id, name, req.client) end
  if args.digest then
    local n, berr, bcode = stream_body(req, up)
    if not n then
      up:cancel()
      return body_failed(up, berr, bcode)
    end
    return commit(self, req, name, up, args.digest)
  end
  local headers = upload_headers(self, name, up)
  up:close()
  return empty(202, headers)
end

-- Offsets from 2^53 on are not exact in a Lua number: no upload's.
local OFFSET_LIMIT = 2 ^ 53

-- Content-Range of a PATCH: "<start>-<end>" (some clients write
-- "bytes <start>-<end>" or "bytes=<start>-<end>"). -> start, end | false
-- when present but not a range | nil when absent
local function parse_content_range(v)
  if v == nil then return nil end
  if type(v) == "table" then return false end
  local s, e = v:match("^%s*(%d+)%-(%d+)%s*$")
  if not s then
    s, e = v:match("^%s*bytes[ =](%d+)%-(%d+)%s*$")
  end
  s, e = tonumber(s), tonumber(e)
  if not s or e < s or e >= OFFSET_LIMIT then
    return false
  end
  return s, e
end

-- Open an upload a request goes on with. -> upload, state | nil, refusal
-- With a secret, only through a Location berth or Distribution gave: its
-- signed _state must name this upload (Distribution's ResumeBlobUpload,
-- which answers 404 BLOB_UPLOAD_INVALID and leaves the upload be).
local function open_upload(self, req, args, name, id, mode)
  local st, err, code
  if self.secret then
    st, err, code = upload_state.unpack(self.secret, args._state)
    if st and (st.name ~= name or st.id ~= id) then
      st, err, code = nil, "upload state is for another upload",
        "BLOB_UPLOAD_INVALID"
    end
    if not st then
      return nil, error_response(code, err, 404)
    end
  end
  local up
  up, err, code = self.reg:open_upload(name, id, mode, req.ctx)
  if not up then
    return nil, error_response(code, err)
  end
  return up, st
end

-- The answer to a chunk that does not start where the upload ends: 416,
-- with where it does end and a Location to go on from.
local function out_of_order(self, name, up, problem)
  local headers = upload_headers(self, name, up)
  up:close()
  local r = error_response("ERANGE", problem)
  for k, v in pairs(headers) do
    r.headers[k] = v
  end
  return r
end

function handlers.upload(self, req, args, name, id)
  local method = req.method
  if method == "GET" then
    -- the status of a stale Location too (the conformance suite asks):
    -- the answer's Location is a current one
    local up, refused = open_upload(self, req, args, name, id, "r")
    if not up then return refused end
    local headers = upload_headers(self, name, up)
    up:close()
    return empty(204, headers)
  end
  local up, st = open_upload(self, req, args, name, id, "w")
  if not up then return st end
  -- A state whose offset is not the upload's size is a Location the upload
  -- has moved on from: what it sends is out of order (Distribution 3
  -- answers 416; docker-registry 2.8 answers 404 BLOB_UPLOAD_INVALID)
  if st and st.offset ~= up:size() then
    return out_of_order(self, name, up, "upload has " .. int(up:size())
      .. " bytes, its Location's state says " .. int(st.offset))
  end
  if method == "DELETE" then
    local ok, cerr, ccode = up:cancel()
    if not ok then return error_response(ccode, cerr) end
    if self.sessions then self.sessions:closed(id) end
    return empty(204)
  end
  if method == "PATCH" then
    local start, finish = parse_content_range(req.headers["content-range"])
    local problem
    if start == false then
      problem = "Content-Range is not <start>-<end> (below 2^53)"
    elseif start and start ~= up:size() then
      problem = "chunk out of order: upload has " .. int(up:size())
        .. " bytes, chunk starts at " .. int(start)
    elseif start and req.body_length
        and req.body_length ~= finish - start + 1 then
      problem = "Content-Range covers " .. int(finish - start + 1)
        .. " bytes, the body has " .. int(req.body_length)
    end
    if problem then
      return out_of_order(self, name, up, problem)
    end
    local n, berr, bcode = stream_body(req, up)
    if not n then return body_failed(up, berr, bcode) end
    local headers = upload_headers(self, name, up)
    -- the flush makes the bytes durable: acknowledged only once it has
    local ok, cerr, ccode = up:close()
    if not ok then return error_response(ccode, cerr) end
    return empty(202, headers)
  end
  -- PUT: optional last chunk, then commit.
  local n, berr, bcode = stream_body(req, up)
  if not n then return body_failed(up, berr, bcode) end
  local resp = commit(self, req, name, up, args.digest)
  if self.sessions and resp.status == 201 then self.sessions:closed(id) end
  return resp
end

function handlers.referrers(self, req, args, name, digest)
  local artifact_type = args.artifactType
  if artifact_type == "" then artifact_type = nil end
  local index, err, code = self.reg:referrers(name, digest, artifact_type, req.ctx)
  if not index then return error_response(code, err) end
  local headers = {
    ["Content-Type"] = OCI_INDEX,
    ["Content-Length"] = #index,
  }
  if artifact_type then
    headers["OCI-Filters-Applied"] = "artifactType"
  end
  return { status = 200, headers = headers, body = index }
end

local function match_route(raw_path)
  for _, r in ipairs(ROUTES) do
    local c1, c2 = raw_path:match(r[1])
    if c1 then
      return r[2], { unescape(c1), c2 and unescape(c2) }
    end
  end
end

-- Authentication and the actions the route needs (berth.auth): nil when
-- the request may go on, with req.ctx.identity and req.ctx.actions set for
-- the hooks, else the 401, 403 or 429 response.
local function authorize(self, req, route, name, args)
  local refused = self.auth:authorize(req, route, name, args)
  if not refused then return nil end
  local resp = error_response(refused.code, refused.message, refused.status)
  for k, v in pairs(refused.headers) do
    resp.headers[k] = v
  end
  return resp
end

-- A name the store takes (else the route's handler answers NAME_INVALID,
-- before any policy is asked).
local function valid_name(name)
  return C.berth_name_validate(name, #name, nil) == 0
end

-- The answer to a request whatever its body: no route, a method the
-- route does not serve, a refused login, or a policy that refuses what it
-- does to its repository (before_request); nil when it may go on.
local function refusal(self, req, route, captures, args)
  if not route then
    return error_response("NAME_UNKNOWN", "no route for "
      .. (req.path or "/"):sub(1, 200))
  elseif not METHODS[route][req.method] then
    return error_response("UNSUPPORTED", "method " .. tostring(req.method)
      .. " not allowed")
  end
  local resp = self.auth and authorize(self, req, route, captures[1], args)
  if resp then return resp end
  -- only when a policy asks: this runs for every request
  local action = self.reg.hooks:has("before_request")
    and auth_mod.action(route, req.method)
  if action and valid_name(captures[1]) then
    local ok, err, code = self.reg:admit(captures[1], action, req.ctx)
    if not ok then return error_response(code, err) end
  end
  return nil
end

-- refuse_early(req) -> nil | response: for an adapter that must refuse
-- before it reads (spools) a body; handle() checks again.
function _M.refuse_early(self, req)
  local route, captures = match_route(req.path or "/")
  local resp = refusal(self, req, route, captures, parse_query(req.query))
  if resp then
    resp.headers["Docker-Distribution-API-Version"] = API_VERSION
  end
  return resp
end

-- handle(req) -> response; never raises for anything a client sends.
function _M.handle(self, req)
  local route, captures = match_route(req.path or "/")
  local args = parse_query(req.query)
  local resp = refusal(self, req, route, captures, args)
  if not resp then
    local ok, r = pcall(handlers[route], self, req, args, captures[1],
      captures[2])
    if ok then
      resp = r
    else
      resp = error_response("UNKNOWN", "internal error")
      resp.internal_error = r
    end
  end
  resp.headers = resp.headers or {}
  resp.headers["Docker-Distribution-API-Version"] = API_VERSION
  return resp
end

return _M

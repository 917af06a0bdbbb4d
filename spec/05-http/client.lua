-- A tiny HTTP test client for the OCI Distribution API specs: one interface,
-- two transports.
--
--   local client = require "05-http.client"   -- (spec/ is on package.path)
--   local c = client.in_process(app)           -- calls app:handle(req)
--   local c = client.http("http://127.0.0.1:5000")   -- curl via io.popen
--
--   local resp = c:request("PUT", "/v2/a/b/blobs/uploads/x?digest=...", {
--     headers = { ["Content-Type"] = "application/octet-stream" },
--     body = "bytes" | { "chunk", "chunk", ... },
--     chunked = true,          -- no Content-Length, Transfer-Encoding: chunked
--     content_length = 123,    -- declare a length other than the body's
--                              -- (a shorter body then ends with nil, "closed")
--     fail_after = 10,         -- the body function fails after 10 bytes
--   })
--   resp.status, resp.headers, resp.body
--   client.header(resp, "location")      -- case-insensitive lookup
--   client.relative_location(resp)       -- path?query of Location, as reggie
--
-- The in-process request handed to app:handle:
--   { method, path (raw, percent-encoded, no query), query (raw or nil),
--     headers (lowercase keys), body = function(n) -> chunk (at most n
--     bytes), "" at the end, or nil, "closed"; body_length = number|nil }
-- The response: { status, headers (any case), body = string|nil,
--   file = path|nil }. A file is read here, honouring a Range request header
--   (single range) as nginx would; HEAD never reads it.
local _M = {}

local concat = table.concat
local fmt = string.format

---------------------------------------------------------------------------
-- helpers shared by both transports

-- header(resp_or_headers, name) -> value | nil (case-insensitive; a list of
-- values is joined with ", ")
function _M.header(resp, name)
  local headers = resp and (resp.headers or resp) or {}
  local want = name:lower()
  for k, v in pairs(headers) do
    if type(k) == "string" and k:lower() == want then
      if type(v) == "table" then
        return concat(v, ", ")
      end
      return tostring(v)
    end
  end
  return nil
end

-- relative_location(resp) -> "/path?query" | "" (what reggie's
-- GetRelativeLocation gives: the path and raw query of the Location header,
-- whether the Location is absolute or a path)
function _M.relative_location(resp)
  local loc = _M.header(resp, "Location")
  if not loc or loc == "" then
    return ""
  end
  -- strip scheme://authority
  local rest = loc:match("^[%a][%w+.-]*://[^/?#]*(.*)$")
  if rest then
    loc = rest
  end
  loc = loc:gsub("#.*$", "")
  return loc
end

-- Go's url.QueryEscape: unreserved characters stay, space is "+", the rest
-- is %XX (upper case).
function _M.query_escape(s)
  return (tostring(s):gsub("[^%w%-_%.~ ]", function(c)
    return fmt("%%%02X", c:byte())
  end):gsub(" ", "+"))
end

-- encode_query{ k = v, ... } -> "k=v&..." with keys sorted, as Go's
-- url.Values.Encode() does (the conformance suite's SetQueryParam).
function _M.encode_query(params)
  local keys = {}
  for k in pairs(params) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local out = {}
  for i, k in ipairs(keys) do
    out[i] = _M.query_escape(k) .. "=" .. _M.query_escape(params[k])
  end
  return concat(out, "&")
end

-- with_query(path, params) -> path with params appended (after any query
-- already in path, as resty does)
function _M.with_query(path, params)
  if not params or next(params) == nil then
    return path
  end
  local q = _M.encode_query(params)
  if path:find("?", 1, true) then
    if path:sub(-1) == "?" then
      return path .. q
    end
    return path .. "&" .. q
  end
  return path .. "?" .. q
end

local function body_string(body)
  if body == nil then
    return nil
  end
  if type(body) == "table" then
    return concat(body)
  end
  return body
end

local function lower_headers(h)
  local out = {}
  for k, v in pairs(h or {}) do
    out[k:lower()] = v
  end
  return out
end

local function has_payload(method)
  return method == "POST" or method == "PUT" or method == "PATCH"
end

-- A body function over a list of chunks; each call returns at most n bytes.
-- fail_after: after that many bytes, returns nil, "closed" (a client that
-- went away mid-body).
local function body_reader(chunks, fail_after)
  local i, pos, sent = 1, 1, 0
  return function(n)
    n = n or math.huge
    if fail_after and sent >= fail_after then
      return nil, "closed"
    end
    while chunks[i] and pos > #chunks[i] do
      i, pos = i + 1, 1
    end
    local cur = chunks[i]
    if not cur then
      if fail_after then
        return nil, "closed"
      end
      return ""
    end
    local take = math.min(n, #cur - pos + 1)
    if fail_after then
      take = math.min(take, fail_after - sent)
    end
    local piece = cur:sub(pos, pos + take - 1)
    pos = pos + take
    sent = sent + #piece
    return piece
  end
end

local function read_file(path, offset, length)
  local f, err = io.open(path, "rb")
  if not f then
    return nil, err
  end
  if offset and offset > 0 then
    f:seek("set", offset)
  end
  local data = length and f:read(length) or f:read("*a")
  f:close()
  return data or ""
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local size = f:seek("end")
  f:close()
  return size
end

-- Parse "bytes=a-b" / "bytes=a-" / "bytes=-n" against size (single range).
-- -> first, last | nil (unsatisfiable) | false (not a single byte range)
local function parse_range(v, size)
  local a, b = v:match("^%s*bytes%s*=%s*(%d*)%s*%-%s*(%d*)%s*$")
  if not a then
    return false
  end
  local first, last
  if a == "" then
    if b == "" then
      return false
    end
    local n = tonumber(b)
    if n == 0 then
      return nil
    end
    first = math.max(size - n, 0)
    last = size - 1
  else
    first = tonumber(a)
    last = b ~= "" and math.min(tonumber(b), size - 1) or size - 1
    if b ~= "" and tonumber(b) < first then
      return false
    end
  end
  if first >= size then
    return nil
  end
  return first, last
end

---------------------------------------------------------------------------
-- in-process transport

local InProcess = {}
InProcess.__index = InProcess

function _M.in_process(app)
  return setmetatable({ app = app, kind = "in_process", header = _M.header,
    relative_location = _M.relative_location }, InProcess)
end

function InProcess:request(method, path_with_query, opts)
  opts = opts or {}
  local path, query = path_with_query:match("^([^?]*)%?(.*)$")
  if not path then
    path = path_with_query
  end
  local headers = lower_headers(opts.headers)
  local chunks
  if type(opts.body) == "table" then
    chunks = opts.body
  elseif opts.body ~= nil then
    chunks = { opts.body }
  else
    chunks = {}
  end
  local total = 0
  for _, c in ipairs(chunks) do
    total = total + #c
  end
  local body_length
  if opts.chunked and total > 0 then
    headers["content-length"] = nil
    headers["transfer-encoding"] = "chunked"
    body_length = nil
  else
    body_length = opts.content_length or total
    if headers["content-length"] == nil
        and (body_length > 0 or has_payload(method)) then
      headers["content-length"] = tostring(body_length)
    end
  end
  local fail_after = opts.fail_after
  if opts.content_length and opts.content_length > total and not fail_after then
    fail_after = total -- the connection closes before the declared length
  end
  local req = {
    method = method,
    path = path,
    query = (query ~= nil and query ~= "") and query or nil,
    headers = headers,
    body = body_reader(chunks, fail_after),
    body_length = body_length,
  }
  local resp = self.app:handle(req)
  assert(type(resp) == "table", "app:handle returned " .. tostring(resp))
  local out = { status = resp.status, headers = resp.headers or {},
    file = resp.file }
  local body = resp.body
  if type(body) == "function" then
    local parts = {}
    while true do
      local c = body()
      if c == nil or c == "" then
        break
      end
      parts[#parts + 1] = c
    end
    body = concat(parts)
  end
  out.body = body
  if resp.file and method ~= "HEAD" then
    local size = file_size(resp.file)
    local range = headers["range"]
    if size and range and resp.status == 200 then
      local first, last = parse_range(range, size)
      if first then
        out.status = 206
        out.body = read_file(resp.file, first, last - first + 1)
        out.headers = setmetatable({}, nil)
        for k, v in pairs(resp.headers or {}) do
          if k:lower() ~= "content-length" then
            out.headers[k] = v
          end
        end
        out.headers["Content-Range"] = fmt("bytes %d-%d/%d", first, last, size)
        out.headers["Content-Length"] = tostring(last - first + 1)
      elseif first == nil then
        out.status = 416
        out.body = ""
        out.headers = { ["Content-Range"] = fmt("bytes */%d", size) }
      else
        out.body = read_file(resp.file)
      end
    else
      out.body = read_file(resp.file)
    end
  end
  if out.body == nil then
    out.body = ""
  end
  out.request = { method = method, path = path_with_query, headers = headers }
  return out
end

---------------------------------------------------------------------------
-- HTTP transport (curl)

local Http = {}
Http.__index = Http

function _M.http(base_url)
  base_url = base_url:gsub("/+$", "")
  return setmetatable({ base = base_url, kind = "http", header = _M.header,
    relative_location = _M.relative_location }, Http)
end

local function shq(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function parse_headers(raw)
  -- curl -D may hold several blocks (100 Continue, ...): keep the last
  local blocks = {}
  for block in (raw .. "\r\n\r\n"):gmatch("(.-)\r\n\r\n") do
    if block:match("^HTTP/") then
      blocks[#blocks + 1] = block
    end
  end
  local last = blocks[#blocks] or ""
  local status, headers = nil, {}
  for line in (last .. "\r\n"):gmatch("(.-)\r\n") do
    if not status then
      status = tonumber(line:match("^HTTP/%S+%s+(%d+)"))
    else
      local k, v = line:match("^([^:]+):%s*(.-)%s*$")
      if k then
        if headers[k] then
          headers[k] = headers[k] .. ", " .. v
        else
          headers[k] = v
        end
      end
    end
  end
  return status, headers
end

function Http:request(method, path_with_query, opts)
  opts = opts or {}
  assert(not opts.fail_after, "truncated bodies need the in-process transport")
  local url
  if path_with_query:match("^https?://") then
    url = path_with_query
  else
    url = self.base .. path_with_query
  end
  local hdr_file, out_file = os.tmpname(), os.tmpname()
  local body_file
  local args = { "curl", "-sS", "--path-as-is", "-g", "-D", shq(hdr_file),
    "-o", shq(out_file), "-w", "'%{http_code}'" }
  if method == "HEAD" then
    args[#args + 1] = "--head"
  else
    args[#args + 1] = "-X " .. shq(method)
  end
  local headers = lower_headers(opts.headers)
  local body = body_string(opts.body)
  -- curl adds these unless told otherwise
  args[#args + 1] = "-H 'Expect:'"
  if headers["content-type"] == nil then
    args[#args + 1] = "-H 'Content-Type:'"
  end
  if body ~= nil and #body > 0 then
    body_file = os.tmpname()
    local f = assert(io.open(body_file, "wb"))
    f:write(body)
    f:close()
    args[#args + 1] = "--data-binary @" .. shq(body_file)
    headers["content-length"] = nil
    if opts.chunked then
      headers["transfer-encoding"] = "chunked"
    elseif opts.content_length then
      headers["content-length"] = tostring(opts.content_length)
    end
  elseif has_payload(method) and headers["content-length"] == nil then
    headers["content-length"] = tostring(opts.content_length or 0)
  end
  for k, v in pairs(headers) do
    args[#args + 1] = "-H " .. shq(k .. ": " .. tostring(v):gsub("[\r\n]", ""))
  end
  args[#args + 1] = shq(url)
  local p = assert(io.popen(concat(args, " ") .. " 2>&1"))
  local code_out = p:read("*a")
  p:close()
  local raw = read_file(hdr_file) or ""
  local resp_body = read_file(out_file) or ""
  os.remove(hdr_file)
  os.remove(out_file)
  if body_file then
    os.remove(body_file)
  end
  local status, resp_headers = parse_headers(raw)
  if not status then
    error("curl failed for " .. method .. " " .. url .. ": " .. code_out)
  end
  return { status = status, headers = resp_headers, body = resp_body,
    request = { method = method, path = path_with_query, headers = headers } }
end

---------------------------------------------------------------------------

-- describe(resp) -> a one-paragraph account of a request and its answer,
-- for assertion messages.
function _M.describe(resp)
  if not resp then
    return "(no response)"
  end
  local hs = {}
  for k, v in pairs(resp.headers or {}) do
    hs[#hs + 1] = k .. ": " .. tostring(v)
  end
  table.sort(hs)
  local body = resp.body or ""
  if #body > 400 then
    body = body:sub(1, 400) .. "..."
  end
  if body:find("[^\t\r\n\32-\126]") then
    body = fmt("<%d bytes of binary>", #(resp.body or ""))
  end
  local req = resp.request or {}
  return fmt("%s %s -> %s\n  headers: %s\n  body: %s", tostring(req.method),
    tostring(req.path), tostring(resp.status), concat(hs, "; "), body)
end

-- new(app) -> a client for BERTH_TEST_URL when set, else in-process on app
-- (app may be a function building it, so a live run builds no store).
function _M.from_env(app)
  local url = os.getenv("BERTH_TEST_URL")
  if url and url ~= "" then
    return _M.http(url)
  end
  if type(app) == "function" then
    app = app()
  end
  return _M.in_process(app)
end

return _M

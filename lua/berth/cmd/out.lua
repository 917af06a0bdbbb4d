-- Output helpers shared by the `berth` subcommands: aligned tables, human
-- sizes, JSON (arrays stay arrays when empty) and a progress bar on stderr.
--   local out = require "berth.cmd.out"
--   out.table(env.stdout, { "REPOSITORY", "TAGS" }, rows, { "l", "r" })
--   out.json(env.stdout, { repositories = out.array(list) })
local cjson = require "cjson.safe"

local type = type
local error = error
local pairs = pairs
local tostring = tostring
local setmetatable = setmetatable
local getmetatable = getmetatable
local floor = math.floor
local huge = math.huge
local sort = table.sort
local concat = table.concat
local rep = string.rep
local format = string.format
local os_time = os.time
local os_clock = os.clock

local _M = { _VERSION = "0.1.0" }

-- Messages ------------------------------------------------------------------

-- fail(env, name, msg, exit?, code?) -> exit (default 1), after writing
-- "berth <name>: <msg>" to env.stderr, and with --json (env.json) also
-- {"error":{"code":..,"message":..}} to env.stdout: code is the store's
-- error code when there is one, else USAGE (exit 2) or FAILED.
function _M.fail(env, name, msg, exit, code)
  exit = exit or 1
  _M.problem(env, name, msg)
  if env.json then
    _M.json(env.stdout, { error = { code = code
      or (exit == 2 and "USAGE" or "FAILED"), message = tostring(msg) } })
  end
  return exit
end

-- problem(env, name, msg): "berth <name>: <msg>" on env.stderr, for what
-- a command found beside the result it gives (the JSON result says it)
function _M.problem(env, name, msg)
  env.stderr:write("berth ", tostring(name), ": ", tostring(msg), "\n")
end

-- warn(env, name, msg): "berth <name>: warning: <msg>" on env.stderr
function _M.warn(env, name, msg)
  env.stderr:write("berth ", tostring(name), ": warning: ", tostring(msg),
    "\n")
end

-- Human sizes --------------------------------------------------------------

local UNITS = { "KiB", "MiB", "GiB", "TiB", "PiB" }

-- size(n) -> "512 B", "1.5 KiB", "2.0 MiB", ... ("-" for nil)
function _M.size(n)
  if type(n) ~= "number" then
    return "-"
  end
  if n < 1024 then
    return format("%d B", n)
  end
  local v, i = n / 1024, 1
  while v >= 1024 and i < #UNITS do
    v = v / 1024
    i = i + 1
  end
  return format("%.1f %s", v, UNITS[i])
end

-- Tables --------------------------------------------------------------------

-- Display width of a UTF-8 string: code points, not bytes.
local function width(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end
_M.width = width

-- format_table(headers|nil, rows, align?) -> text: columns padded to the
-- widest cell, two spaces apart; align[i] = "r" right-aligns column i.
-- The last column is not padded, so lines carry no trailing blanks.
function _M.format_table(headers, rows, align)
  align = align or {}
  local all = {}
  if headers then
    all[1] = headers
  end
  for i = 1, #rows do
    all[#all + 1] = rows[i]
  end
  local ncol, w = 0, {}
  for _, row in pairs(all) do
    if #row > ncol then ncol = #row end
    for c = 1, #row do
      local cw = width(tostring(row[c]))
      if cw > (w[c] or 0) then w[c] = cw end
    end
  end
  local lines = {}
  for r = 1, #all do
    local row, cells = all[r], {}
    for c = 1, ncol do
      local s = row[c] == nil and "" or tostring(row[c])
      local pad = rep(" ", w[c] - width(s))
      if align[c] == "r" then
        cells[c] = pad .. s
      elseif c == ncol then
        cells[c] = s
      else
        cells[c] = s .. pad
      end
    end
    lines[r] = concat(cells, "  "):gsub("%s+$", "")
  end
  return #lines > 0 and concat(lines, "\n") .. "\n" or ""
end

-- table(fh, headers|nil, rows, align?): write format_table's text to fh.
function _M.table(fh, headers, rows, align)
  fh:write(_M.format_table(headers, rows, align))
end

-- JSON ----------------------------------------------------------------------
-- Debian's lua-cjson 2.1.0 encodes an empty table as {}, so arrays are
-- marked (out.array) and this encoder writes them as [] even when empty.
-- Objects get their keys sorted, so the output is stable.

local ARRAY_MT = { __name = "berth.cmd.out.array" }

-- array(t?) -> t marked as a JSON array (a new empty one without t)
function _M.array(t)
  return setmetatable(t or {}, ARRAY_MT)
end

local function is_sequence(t)
  local n = #t
  if n == 0 then
    return false
  end
  local count = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or floor(k) ~= k then
      return false
    end
    count = count + 1
  end
  return count == n
end

-- Strings: quotes, backslashes and control characters escaped; '/' and
-- UTF-8 left as they are (cjson 2.1.0 writes "\/").
local ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function escape_char(c)
  return ESCAPES[c] or format("\\u%04x", c:byte())
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', escape_char) .. '"'
end

local encode_value

local function encode_table(t, parts, depth)
  if depth > 100 then
    return nil, "cannot encode: nested too deep"
  end
  if getmetatable(t) == ARRAY_MT or is_sequence(t) then
    parts[#parts + 1] = "["
    for i = 1, #t do
      if i > 1 then parts[#parts + 1] = "," end
      local ok, err = encode_value(t[i], parts, depth + 1)
      if not ok then return nil, err end
    end
    parts[#parts + 1] = "]"
    return true
  end
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then
      return nil, "cannot encode: object key of type " .. type(k)
    end
    keys[#keys + 1] = k
  end
  sort(keys)
  parts[#parts + 1] = "{"
  for i = 1, #keys do
    if i > 1 then parts[#parts + 1] = "," end
    parts[#parts + 1] = encode_string(keys[i])
    parts[#parts + 1] = ":"
    local ok, err = encode_value(t[keys[i]], parts, depth + 1)
    if not ok then return nil, err end
  end
  parts[#parts + 1] = "}"
  return true
end

encode_value = function(v, parts, depth)
  local tv = type(v)
  if tv == "table" then
    return encode_table(v, parts, depth)
  elseif tv == "number" then
    if v ~= v or v == huge or v == -huge then
      return nil, "cannot encode: number " .. tostring(v)
    end
    if v == floor(v) and v > -2^53 and v < 2^53 then
      parts[#parts + 1] = format("%d", v)
    else
      parts[#parts + 1] = format("%.14g", v)
    end
    return true
  elseif tv == "string" then
    parts[#parts + 1] = encode_string(v)
    return true
  elseif tv == "boolean" then
    parts[#parts + 1] = v and "true" or "false"
    return true
  elseif v == nil or v == cjson.null then
    parts[#parts + 1] = "null"
    return true
  end
  return nil, "cannot encode: value of type " .. tv
end

-- encode(v) -> JSON text | nil, err
function _M.encode(v)
  local parts = {}
  local ok, err = encode_value(v, parts, 0)
  if not ok then
    return nil, err
  end
  return concat(parts)
end

-- json(fh, v): write v as one line of JSON; raises on a value that has no
-- JSON form (a bug in the command, reported as an internal error).
function _M.json(fh, v)
  local s, err = _M.encode(v)
  if not s then
    error(err, 2)
  end
  fh:write(s, "\n")
end

-- Progress ------------------------------------------------------------------
-- A bar on stderr, drawn only when env.isatty and the work turns out long:
-- after LONG_SECONDS, or at once for totals of BIG_BYTES bytes and more.

local LONG_SECONDS = 2
local BIG_BYTES = 64 * 1024 * 1024
local BAR = 24

local function noop() end

-- progress(env, label, total, unit?) -> { update(n), set(n), done() }
-- update(n) adds n (default 1) to the work done, set(n) sets it; unit
-- "bytes" shows sizes. The functions work called with . or with :.
function _M.progress(env, label, total, unit)
  local p = { update = noop, set = noop, done = noop }
  if not (env and env.isatty and env.stderr) then
    return p
  end
  local fh = env.stderr
  local bytes = unit == "bytes"
  if type(total) ~= "number" or total <= 0 then
    total = nil
  end
  local start = os_time()
  local eager = bytes and total and total >= BIG_BYTES
  local done_n, drawn, last_line = 0, false, nil
  local last_pct, last_clock = nil, 0
  local function amount(n)
    return bytes and _M.size(n) or tostring(n)
  end
  local function draw()
    if not drawn and not eager and os_time() - start < LONG_SECONDS then
      return
    end
    -- redraw when the percentage moves (or, without a total, ten times a
    -- second of CPU at most), not on every chunk
    local line
    if total then
      local frac = done_n / total
      if frac > 1 then frac = 1 end
      local pct = floor(frac * 100)
      if pct == last_pct then
        return
      end
      last_pct = pct
      local fill = floor(frac * BAR + 0.5)
      line = format("%s [%s%s] %3d%% %s/%s", label, rep("#", fill),
        rep("-", BAR - fill), floor(frac * 100), amount(done_n),
        amount(total))
    else
      local now = os_clock()
      if drawn and now - last_clock < 0.1 then
        return
      end
      last_clock = now
      line = format("%s %s", label, amount(done_n))
    end
    if line ~= last_line then
      fh:write("\r\27[K", line)
      if fh.flush then fh:flush() end
      last_line = line
      drawn = true
    end
  end
  -- Accept p.update(n) and p:update(n) alike.
  local function arg(a, b)
    if type(a) == "table" then return b end
    return a
  end
  p.update = function(a, b)
    done_n = done_n + (arg(a, b) or 1)
    draw()
  end
  p.set = function(a, b)
    done_n = arg(a, b) or 0
    draw()
  end
  p.done = function()
    if drawn then
      fh:write("\r\27[K")
      if fh.flush then fh:flush() end
      drawn = false
    end
    p.update, p.set = noop, noop
  end
  return p
end

return _M

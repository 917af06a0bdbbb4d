-- The interactive shell behind `berth repl`: Lua (LuaJIT) with a store
-- open, pretty-printing of what expressions return, and completion of
-- methods, fields, repository names and tags.
--
--   local repl = require "berth.repl"
--   local r = repl.new{ store = store, write = io.write }
--   r:feed("store:tag_list('library/app')")  --> prints { "latest", "v1" }
--   r:complete('store:tag_list("')            --> { "library/app", ... }
--   r:run(repl.reader{ histfile = "..." })     -- the interactive loop
--
-- The core (feed, complete, the formatters) is plain Lua and reads no
-- terminal, so specs drive it line by line. Line editing comes from
-- Debian's lua-readline (GNU readline through the Lua C API, no FFI
-- callbacks), used through its callback interface and posix.poll so that
-- Ctrl-C cancels the line being typed; without it, lines are read plainly.
local cjson = require "cjson.safe"
local berth = require "berth"
local store_mod = require "berth.store"
local manifest = require "berth.manifest"

local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local pcall = pcall
local select = select
local tostring = tostring
local tonumber = tonumber
local rawget = rawget
local getmetatable = getmetatable
local setmetatable = setmetatable
local setfenv = setfenv
local unpack = unpack
local loadstring = loadstring
local concat = table.concat
local sort = table.sort
local fmt = string.format
local rep = string.rep
local floor = math.floor
local huge = math.huge

local _M = { _VERSION = "0.1.0" }

local Repl = {}
local repl_mt = { __index = Repl }

local RED, DIM, RESET = "\27[31m", "\27[2m", "\27[0m"
local ELLIPSIS = "\226\128\166" -- U+2026

-- Values -----------------------------------------------------------------

-- humanize(bytes) -> "527 B", "1.5 MiB"
function _M.humanize(n)
  if type(n) ~= "number" then
    return tostring(n)
  end
  if n < 1024 then
    return fmt("%d B", n)
  end
  local units = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" }
  local i = 0
  repeat
    n = n / 1024
    i = i + 1
  until n < 1024 or i == #units
  return fmt("%.1f %s", n, units[i])
end
local humanize = _M.humanize

local function paint(s, color, on)
  if not on then
    return s
  end
  return color .. s .. RESET
end

local function is_integer(v)
  return v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53
end

local function number_text(v)
  if v ~= v then
    return "nan"
  elseif v == huge then
    return "math.huge"
  elseif v == -huge then
    return "-math.huge"
  elseif is_integer(v) then
    return fmt("%d", v)
  end
  return fmt("%.14g", v)
end

local ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r",
  ['"'] = '\\"', ["\\"] = "\\\\" }

-- quote(s, max?) -> a Lua string literal, cut after max bytes.
function _M.quote(s, max)
  local total = #s
  if max and total > max then
    local cut = max
    -- do not cut a UTF-8 sequence in two
    while cut > 0 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80
        and s:byte(cut + 1) < 0xC0 do
      cut = cut - 1
    end
    s = s:sub(1, cut)
  else
    total = nil
  end
  local q = s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or fmt("\\%03d", c:byte())
  end)
  if total then
    return '"' .. q .. ELLIPSIS .. '" (' .. total .. " bytes)"
  end
  return '"' .. q .. '"'
end
local quote = _M.quote

-- short_digest("sha256:abcd...") -> "sha256:abcdef012345…"
function _M.short_digest(d)
  local algo, hex = d:match("^([%w+._-]+):(%x+)$")
  if not algo or #hex <= 12 then
    return d
  end
  return algo .. ":" .. hex:sub(1, 12) .. ELLIPSIS
end
local short_digest = _M.short_digest

local DESCRIPTOR_KEYS = { digest = true, size = true, media_type = true,
  mediaType = true, kind = true, platform = true, artifact_type = true,
  artifactType = true, urls = true }

-- is_descriptor(t) -> true for { digest =, size =, media_type = } tables
-- (manifest_get's info, Manifest:refs() entries, decoded JSON descriptors)
function _M.is_descriptor(t)
  if type(t) ~= "table" or getmetatable(t) ~= nil
      or type(t.digest) ~= "string" or type(t.size) ~= "number"
      or type(t.media_type or t.mediaType) ~= "string"
      or not t.digest:match("^[%w+._-]+:%x+$") then
    return false
  end
  for k in next, t do
    if not DESCRIPTOR_KEYS[k] then
      return false
    end
  end
  return true
end
local is_descriptor = _M.is_descriptor

-- format_descriptor(d) -> "sha256:abcd…   1.5 MiB  application/..."
function _M.format_descriptor(d)
  local size = humanize(d.size)
  local parts = { short_digest(d.digest), rep(" ", 8 - #size) .. size,
    d.media_type or d.mediaType }
  local extra = {}
  if d.kind then
    extra[#extra + 1] = d.kind
  end
  local p = d.platform
  if type(p) == "table" and (p.os or p.architecture) then
    extra[#extra + 1] = (p.os or "?") .. "/" .. (p.architecture or "?")
  end
  if d.artifact_type or d.artifactType then
    extra[#extra + 1] = d.artifact_type or d.artifactType
  end
  if d.urls then
    extra[#extra + 1] = "foreign"
  end
  if #extra > 0 then
    parts[#parts + 1] = "(" .. concat(extra, ", ") .. ")"
  end
  return concat(parts, "  ")
end
local format_descriptor = _M.format_descriptor

-- JSON ---------------------------------------------------------------------

-- pretty_json(text, color) -> indented text in the document's own key order,
-- each "size" followed by a `// 1.5 MiB` comment. text must be valid JSON.
function _M.pretty_json(text, color)
  local lines, line = {}, {}
  local comment
  local depth = 0
  local stack = {} -- { obj = bool, expect_key = bool, key = string }
  local i, n = 1, #text

  local function newline()
    local s = rep("  ", depth) .. concat(line)
    if comment then
      s = s .. "  " .. paint("// " .. comment, DIM, color)
      comment = nil
    end
    lines[#lines + 1] = s
    line = {}
  end
  local function emit(s)
    line[#line + 1] = s
  end
  local function skip_ws(j)
    return text:find("[^ \t\r\n]", j) or n + 1
  end

  while true do
    i = skip_ws(i)
    if i > n then
      break
    end
    local c = text:sub(i, i)
    local top = stack[#stack]
    if c == "{" or c == "[" then
      local j = skip_ws(i + 1)
      local close = c == "{" and "}" or "]"
      if text:sub(j, j) == close then
        emit(c .. close)
        i = j + 1
      else
        emit(c)
        stack[#stack + 1] = { obj = c == "{", expect_key = c == "{" }
        newline()
        depth = depth + 1
        i = i + 1
      end
    elseif c == "}" or c == "]" then
      newline()
      depth = depth - 1
      stack[#stack] = nil
      emit(c)
      i = i + 1
    elseif c == "," then
      emit(",")
      newline()
      if top and top.obj then
        top.expect_key = true
      end
      i = i + 1
    elseif c == ":" then
      emit(": ")
      i = i + 1
    elseif c == '"' then
      local j = i + 1
      while true do
        local k = text:find('["\\]', j)
        if not k then
          j = n
          break
        end
        if text:sub(k, k) == "\\" then
          j = k + 2
        else
          j = k
          break
        end
      end
      local s = text:sub(i, j)
      emit(s)
      if top and top.obj and top.expect_key then
        top.key = s:sub(2, -2)
        top.expect_key = false
      end
      i = j + 1
    else
      local j = (text:find("[,%]} \t\r\n]", i) or n + 1) - 1
      local lit = text:sub(i, j)
      emit(lit)
      local num = tonumber(lit)
      if top and top.obj and top.key == "size" and num and num >= 0 then
        comment = humanize(num)
      end
      i = j + 1
    end
  end
  if #line > 0 then
    newline()
  end
  return concat(lines, "\n")
end
local pretty_json = _M.pretty_json

-- json_text(s) -> true when s is a JSON object worth pretty-printing
-- (manifests and indexes, with schemaVersion, and other JSON objects such
-- as image configs), up to the manifest limit
local JSON_MAX = manifest.MAX
local function json_text(s)
  if #s > JSON_MAX or not s:find("^%s*{") then
    return false
  end
  local v = cjson.decode(s)
  return type(v) == "table"
end

-- is_manifest_json(s) -> true for a manifest or index body
function _M.is_manifest_json(s)
  if type(s) ~= "string" or #s > JSON_MAX or not s:find("^%s*{") then
    return false
  end
  local v = cjson.decode(s)
  return type(v) == "table" and v.schemaVersion ~= nil
end

-- Tables -------------------------------------------------------------------

local registry_mod -- loaded by new(), for recognising registry objects

-- A one-line name for the objects berth hands out; nil for other values.
local function object_text(v)
  local mt = getmetatable(v)
  if mt == nil then
    return nil
  end
  if type(mt) == "table" and mt.__index == store_mod.Store then
    return "<store " .. (v._p and tostring(v.root or "?") or "closed") .. ">"
  end
  if manifest.is_manifest(v) then
    if not v._p then
      return "<manifest closed>"
    end
    local ok, s = pcall(function()
      return fmt("<manifest %s  %s  %s, %d refs>", short_digest(v:digest()),
        humanize(#v:body()), v:media_type(), #v:refs())
    end)
    return ok and s or "<manifest>"
  end
  if registry_mod and type(mt) == "table" and mt.__index == registry_mod then
    local st = rawget(v, "store")
    return "<registry " .. (st and tostring(st.root or "?") or "closed")
      .. ">"
  end
  if type(v) == "table" and rawget(v, "id") and rawget(v, "_store") then
    return "<upload " .. tostring(v.id) .. (v._p and "" or " closed") .. ">"
  end
  if type(mt) == "table" and mt.__tostring then
    local ok, s = pcall(tostring, v)
    return ok and tostring(s) or nil
  end
  return nil
end

local KEY_RANK = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return (KEY_RANK[ta] or 9) < (KEY_RANK[tb] or 9)
        or ((KEY_RANK[ta] or 9) == (KEY_RANK[tb] or 9) and ta < tb)
  end
  if ta == "number" or ta == "string" then
    return a < b
  end
  return tostring(a) < tostring(b)
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then
    return k
  end
  if type(k) == "string" then
    return "[" .. quote(k, 60) .. "]"
  end
  if type(k) == "number" then
    return "[" .. number_text(k) .. "]"
  end
  return "[" .. tostring(k) .. "]"
end

local STRING_MAX = 120 -- characters of a string shown inside a table
local ITEMS_MAX = 200  -- entries of one table
local DEPTH_MAX = 5

local render

local function render_table(t, ctx, depth, seen)
  local obj = object_text(t)
  if obj then
    return obj
  end
  if is_descriptor(t) then
    return format_descriptor(t)
  end
  if seen[t] then
    return "<cycle>"
  end
  if next(t) == nil then
    return "{}"
  end
  if depth >= DEPTH_MAX then
    return "{" .. ELLIPSIS .. "}"
  end
  seen[t] = true
  local n = 0
  while rawget(t, n + 1) ~= nil do
    n = n + 1
  end
  local keys = {}
  for k in next, t do
    if not (type(k) == "number" and k >= 1 and k <= n and is_integer(k)) then
      keys[#keys + 1] = k
    end
  end
  sort(keys, key_less)
  local items, more = {}, 0
  for i = 1, n do
    if #items >= ITEMS_MAX then
      more = more + 1
    else
      items[#items + 1] = render(rawget(t, i), ctx, depth + 1, seen)
    end
  end
  for _, k in ipairs(keys) do
    if #items >= ITEMS_MAX then
      more = more + 1
    else
      items[#items + 1] = key_text(k) .. " = "
        .. render(rawget(t, k), ctx, depth + 1, seen)
    end
  end
  seen[t] = nil
  if more > 0 then
    items[#items + 1] = ELLIPSIS .. " (" .. more .. " more)"
  end
  local one = "{ " .. concat(items, ", ") .. " }"
  if not one:find("\n") and #one + depth * 2 <= ctx.width then
    return one
  end
  local pad = rep("  ", depth + 1)
  local out = { "{" }
  for _, s in ipairs(items) do
    out[#out + 1] = pad .. s .. ","
  end
  out[#out + 1] = rep("  ", depth) .. "}"
  return concat(out, "\n")
end

render = function(v, ctx, depth, seen)
  local tv = type(v)
  if tv == "string" then
    return quote(v, STRING_MAX)
  elseif tv == "number" then
    return number_text(v)
  elseif tv == "table" then
    return render_table(v, ctx, depth, seen)
  end
  return tostring(v)
end

-- format(v, opts?) -> text for one value as the REPL prints it:
-- opts = { color = bool, width = columns (80) }. Strings print as they are
-- (JSON objects indented, binary data quoted), tables as trees.
function _M.format(v, opts)
  opts = opts or {}
  local ctx = { color = opts.color, width = opts.width or 80 }
  if type(v) == "string" then
    if json_text(v) then
      return pretty_json(v, ctx.color)
    end
    -- text prints as is; control bytes other than newline and tab do not
    if v:find("[%z\1-\8\11-\31\127]") then
      return quote(v, 1024)
    end
    return v
  end
  return render(v, ctx, 0, {})
end
local format = _M.format

-- is_failure(n, ...) -> true for the `nil, message, code` triple (or the
-- `nil, message` pair) that berth's calls return on failure.
function _M.is_failure(n, a, b, c)
  return (n == 2 or n == 3) and a == nil and type(b) == "string"
    and (n == 2 or c == nil or (type(c) == "string"
      and c:match("^[%u_][%u%d_]*$") ~= nil))
end
local is_failure = _M.is_failure

-- format_failure(message, code, color) -> "error BLOB_UNKNOWN: blob unknown…"
function _M.format_failure(message, code, color)
  local s = code and ("error " .. code .. ": " .. message)
    or ("error: " .. message)
  return paint(s, RED, color)
end
local format_failure = _M.format_failure

-- format_results(opts, n, ...) -> the text for the values an expression
-- returned ("" for none)
function _M.format_results(opts, n, ...)
  opts = opts or {}
  if n == 0 then
    return ""
  end
  local a, b, c = ...
  if is_failure(n, a, b, c) then
    return format_failure(b, c, opts.color)
  end
  local parts, multi = {}, false
  for i = 1, n do
    local s = format((select(i, ...)), opts)
    parts[i] = s
    multi = multi or s:find("\n") ~= nil
  end
  return concat(parts, multi and "\n" or "\t")
end
local format_results = _M.format_results

-- Completion ---------------------------------------------------------------

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false",
  "for", "function", "if", "in", "local", "nil", "not", "or", "repeat",
  "return", "then", "true", "until", "while" }

-- GNU readline's default rl_completer_word_break_characters: the word
-- being completed starts after the last of these.
local WORD_BREAK = "[ \t\n\"\\'`@$><=;|&{(]"

-- word_start(line) -> index where the word before the end of line starts
function _M.word_start(line)
  local from = #line + 1
  while from > 1 and not line:sub(from - 1, from - 1):find(WORD_BREAK) do
    from = from - 1
  end
  return from
end

-- Calls whose first string argument is a repository name.
local REPO_ARG = {}
for name in ([[blob_stat blob_get blob_path blob_put blob_mount blob_delete
    blob_list blob_reader blob_writer upload_open manifest_put manifest_get
    manifest_head manifest_delete manifest_list referrers referrers_rebuild
    tag_get tag_set tag_delete tag_list tag_lookup tag_reindex tags show
    put_manifest get_manifest head_manifest delete_manifest set_tag
    delete_tag start_upload open_upload mount_blob delete_blob stat_blob
    list_tags list_manifests]]):gmatch("%S+") do
  REPO_ARG[name] = true
end

-- What the second string argument of a call (after the repository) is.
local SECOND_ARG = {
  manifest_get = "ref", manifest_head = "ref", show = "ref",
  get_manifest = "ref", head_manifest = "ref", delete_manifest = "ref",
  tag_get = "tag", tag_set = "tag", tag_delete = "tag", set_tag = "tag",
  delete_tag = "tag",
  manifest_delete = "manifest", tag_lookup = "manifest",
  referrers = "manifest",
  blob_stat = "blob", blob_get = "blob", blob_path = "blob",
  blob_delete = "blob", blob_reader = "blob", stat_blob = "blob",
  delete_blob = "blob",
  blob_mount = "repo", mount_blob = "repo",
}

local function list_or_empty(f, ...)
  local ok, list = pcall(f, ...)
  if ok and type(list) == "table" then
    return list
  end
  return {}
end

-- The names a string argument may take.
function Repl:_string_candidates(fname, argn, repo, word)
  local st = self.store
  if not st or not st._p then
    return {}
  end
  local kind
  if argn == 1 then
    kind = REPO_ARG[fname] and "repo"
  else
    kind = SECOND_ARG[fname]
  end
  if kind == "repo" then
    return list_or_empty(st.catalog, st)
  end
  local out = {}
  local function add(list)
    for _, s in ipairs(list) do
      out[#out + 1] = s
    end
  end
  if kind == "tag" or kind == "ref" then
    add(list_or_empty(st.tag_list, st, repo))
  end
  if kind == "manifest" or (kind == "ref" and word:find("^sha")) then
    add(list_or_empty(st.manifest_list, st, repo))
  end
  if kind == "blob" then
    add(list_or_empty(st.blob_list, st, repo))
  end
  return out
end

-- The string keys of v, its metatables' __index tables included; only
-- functions when methods is set. name -> value
local function collect_keys(v, methods, out, depth, visited)
  if depth > 8 then
    return
  end
  local mt
  if type(v) == "table" then
    if visited[v] then
      return
    end
    visited[v] = true
    for k, x in next, v do
      if type(k) == "string" and k:match("^[%a_][%w_]*$")
          and out[k] == nil and (not methods or type(x) == "function") then
        out[k] = x
      end
    end
    mt = getmetatable(v)
  elseif type(v) == "string" then
    mt = getmetatable("")
  else
    return
  end
  local index = type(mt) == "table" and rawget(mt, "__index")
  if type(index) == "table" then
    collect_keys(index, methods, out, depth + 1, visited)
  end
end

-- resolve("berth.digest") -> the value, looked up in the REPL's globals
function Repl:_resolve(path)
  local v = self.env
  for name in path:gmatch("[^.]+") do
    if not name:match("^[%a_][%w_]*$") then
      return nil
    end
    local tv = type(v)
    if tv ~= "table" and tv ~= "string" then
      return nil
    end
    local ok, x = pcall(function() return v[name] end)
    if not ok then
      return nil
    end
    v = x
  end
  return v
end

local function filter(names, word, private_ok)
  local out, seen = {}, {}
  for _, s in ipairs(names) do
    if type(s) == "string" and s:sub(1, #word) == word and not seen[s]
        and (private_ok or not s:find("^_")) then
      seen[s] = true
      out[#out + 1] = s
    end
  end
  sort(out)
  return out
end

-- complete(line, from?) -> { candidate, ... }: completions of the word that
-- starts at from (default: readline's word before the end of line). Each
-- candidate replaces the whole word. Never raises.
function Repl:complete(line, from)
  local ok, list = pcall(self._complete, self, line, from)
  if not ok or type(list) ~= "table" then
    return {}
  end
  return list
end

function Repl:_complete(line, from)
  from = from or _M.word_start(line)
  local before, word = line:sub(1, from - 1), line:sub(from)

  -- inside a string argument: repository names, tags, digests
  local q = before:sub(-1)
  if q == '"' or q == "'" then
    local b = before:sub(1, -2)
    local fname = b:match("([%a_][%w_]*)%s*%(%s*$")
    if fname then
      return filter(self:_string_candidates(fname, 1, nil, word), word, true)
    end
    local repo
    fname, repo = b:match("([%a_][%w_]*)%s*%(%s*[\"']([^\"']*)[\"']%s*,%s*$")
    if fname then
      return filter(self:_string_candidates(fname, 2, repo, word), word,
        true)
    end
    return {}
  end

  -- a field or a method: berth.dig, store:tag_
  local path, sep, partial = word:match("^(.*)([.:])([%w_]*)$")
  if path then
    if path:find(":") or not path:match("^[%a_][%w_.]*$")
        or path:find("%.%.") or path:find("%.$") then
      return {}
    end
    local v = self:_resolve(path)
    local keys = {}
    collect_keys(v, sep == ":", keys, 0, {})
    local names = {}
    for k in pairs(keys) do
      names[#names + 1] = k
    end
    local found = filter(names, partial, partial:find("^_"))
    local out = {}
    for i, k in ipairs(found) do
      out[i] = path .. sep .. k
    end
    if #found == 1 then
      local x = keys[found[1]]
      if type(x) == "function" then
        out[1] = out[1] .. "("
      elseif type(x) == "table" and sep == "." then
        out[1] = out[1] .. "."
      end
    end
    return out
  end

  -- a global name or a keyword
  if word:match("^[%a_][%w_]*$") then
    local keys = {}
    collect_keys(self.env, false, keys, 0, {})
    local names = {}
    for k in pairs(keys) do
      names[#names + 1] = k
    end
    for _, k in ipairs(KEYWORDS) do
      names[#names + 1] = k
    end
    local out = filter(names, word, word:find("^_"))
    if #out == 1 then
      local x = keys[out[1]]
      if type(x) == "function" then
        out[1] = out[1] .. "("
      elseif type(x) == "table" then
        out[1] = out[1] .. "."
      end
    end
    return out
  end
  return {}
end

-- The REPL ---------------------------------------------------------------

local HELP = [[
berth repl: LuaJIT with a store open. An expression prints its values
(`=expr` too), statements run, and an unfinished chunk continues on the
next line. Failures print as `error CODE: message`.

  store              the store; store:<TAB> lists its methods
  berth              the berth module: berth.digest, berth.errors, berth.manifest
  reg                the registry over the store (--config's plugins and hooks)
  ls()               repository names
  tags(repo)         the tags of a repository
  show(repo, ref)    a manifest (ref: tag or digest), indented
  pp(v, ...)         pretty-print values (print(v) prints them raw)
  help()             this text
  quit()             leave (or Ctrl-D); Ctrl-C cancels the line or the call

TAB completes globals, fields (berth.), methods (store:), repository names
in a first string argument (store:tag_list(") and tags or digests in the
second (show("repo", ").
]]

local function default_write(s)
  io.stdout:write(s)
  io.stdout:flush()
end

-- new{ store =, reg =, write = function(s), color = bool, width = n,
--      globals = { name = value } } -> repl
function _M.new(opts)
  opts = opts or {}
  registry_mod = registry_mod or require("berth.registry")
  local self = setmetatable({
    store = opts.store,
    write = opts.write or default_write,
    color = opts.color and true or false,
    width = opts.width or 80,
    buffer = nil,
    quit = false,
    errors = 0,
  }, repl_mt)
  local env = setmetatable({}, { __index = _G })
  self.env = env
  env.berth = berth
  env.store = opts.store
  if opts.reg ~= nil then
    env.reg = opts.reg
  elseif opts.store then
    local ok, reg = pcall(registry_mod.new, { store = opts.store })
    env.reg = ok and reg or nil
  end
  self:_install_helpers()
  for k, v in pairs(opts.globals or {}) do
    env[k] = v
  end
  return self
end

function Repl:_out(s)
  self.write(s)
end

function Repl:_print_values(n, ...)
  if is_failure(n, ...) then
    self.errors = self.errors + 1
  end
  local s = format_results({ color = self.color, width = self.width }, n,
    ...)
  if s ~= "" then
    self:_out(s .. "\n")
  end
end

function Repl:_install_helpers()
  local env = self.env
  local function need_store()
    local st = self.store
    if not st then
      error("no store is open", 3)
    end
    return st
  end
  -- ls(opts?) -> repository names
  env.ls = function(opts)
    return need_store():catalog(opts)
  end
  -- tags(repo) -> tags
  env.tags = function(repo)
    return need_store():tag_list(repo)
  end
  -- show(repo, ref): prints the manifest | nil, err, code
  env.show = function(repo, ref)
    local st = need_store()
    if type(repo) ~= "string" or type(ref) ~= "string" then
      error("usage: show(repo, tag_or_digest)", 2)
    end
    local body, info, code = st:manifest_get(repo, ref)
    if not body then
      return nil, info, code
    end
    local sep = ref:find(":") and "@" or ":"
    self:_out(paint(fmt("-- %s%s%s  %s  %s  %s", repo, sep, ref, info.digest,
      humanize(info.size), info.media_type), DIM, self.color) .. "\n")
    if json_text(body) then
      self:_out(pretty_json(body, self.color) .. "\n")
    else
      self:_out(format(body, { color = self.color }) .. "\n")
    end
  end
  -- pp(v, ...): pretty-print values
  env.pp = function(...)
    self:_print_values(select("#", ...), ...)
  end
  env.print = function(...)
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do
      parts[i] = tostring((select(i, ...)))
    end
    self:_out(concat(parts, "\t") .. "\n")
  end
  env.help = function()
    self:_out(HELP)
  end
  env.quit = function()
    self.quit = true
  end
  env.exit = env.quit
end

-- prompt() -> the prompt for the next line
function Repl:prompt()
  return self.buffer and "berth>> " or "berth> "
end

local function incomplete(err)
  -- LuaJIT reports an unterminated chunk "near '<eof>'"; a short string
  -- cannot continue on the next line, so that one is an error.
  return err:sub(-7) == "'<eof>'" and not err:find("unfinished string")
end

-- compile(src) -> function | "more" | nil, err
local function compile(src)
  local f1, e1 = loadstring("return " .. src, "=stdin")
  if f1 then
    return f1
  end
  local f2, e2 = loadstring(src, "=stdin")
  if f2 then
    return f2
  end
  if incomplete(e2) or incomplete(e1) then
    return "more"
  end
  return nil, e2
end

function Repl:_error(e)
  self.errors = self.errors + 1
  local msg
  if type(e) == "string" then
    msg = e
  else
    local ok, s = pcall(format, e, { color = false })
    msg = ok and s or tostring(e)
  end
  self:_out(paint("error: " .. msg, RED, self.color) .. "\n")
end

local function pack(...)
  return { n = select("#", ...), ... }
end

-- feed(line) -> "more" when the chunk continues on the next line, else
-- "done" (it ran, and printed its values or its error)
function Repl:feed(line)
  local src
  if self.buffer then
    src = self.buffer .. "\n" .. line
  else
    src = line:gsub("^=", "return ", 1)
  end
  local f, err = compile(src)
  if f == "more" then
    self.buffer = src
    return "more"
  end
  self.buffer = nil
  if not f then
    self:_error(err)
    return "done"
  end
  setfenv(f, self.env)
  -- Compiled traces do not run hooks: interpret what was typed (not the
  -- library code it calls), so that Ctrl-C can stop a loop in it.
  if jit then
    jit.off(f, true)
  end
  self.evaluating = true
  local res = pack(pcall(f))
  self.evaluating = false
  if self.armed then
    debug.sethook()
    self.armed = false
  end
  if not res[1] then
    self:_error(res[2])
    return "done"
  end
  local ok, perr = pcall(self._print_values, self, res.n - 1,
    unpack(res, 2, res.n))
  if not ok then
    self:_error(perr)
  end
  return "done"
end

-- cancel(): drop an unfinished chunk (Ctrl-C)
function Repl:cancel()
  self.buffer = nil
end

-- finish() -> at the end of input: reports an unfinished chunk
function Repl:finish()
  if self.buffer then
    local _, err = loadstring(self.buffer, "=stdin")
    self.buffer = nil
    self:_error(err or "unfinished chunk")
  end
end

-- Ctrl-C: a luaposix handler (lua-posix comes with lua-readline) that sets
-- a flag, and while an expression runs also arms a hook that raises
-- "interrupted!" in it. Unlike luajit's own handler it stays installed,
-- and it never raises inside readline's C frames. -> restore function | nil
function Repl:_trap_interrupts()
  local ok, psignal = pcall(require, "posix.signal")
  if not ok or type(psignal.signal) ~= "function" then
    return nil
  end
  local function on_interrupt()
    self.interrupted = true
    if self.evaluating and not self.armed then
      self.armed = true
      debug.sethook(function()
        debug.sethook()
        self.armed = false
        error("interrupted!", 2)
      end, "", 1)
    end
  end
  local okset = pcall(psignal.signal, psignal.SIGINT, on_interrupt)
  if not okset then
    return nil
  end
  return function()
    pcall(psignal.signal, psignal.SIGINT, psignal.SIG_DFL)
  end
end

-- run(reader) -> true: the loop. reader:read(prompt, interrupted) returns
-- a line, nil at the end of input, or false when Ctrl-C cancelled the line
-- (interrupted() tells whether Ctrl-C was pressed since the read began).
function Repl:run(reader)
  local restore = reader.interactive and self:_trap_interrupts()
  local function interrupted()
    return self.interrupted
  end
  while not self.quit do
    self.interrupted = false
    local ok, line = pcall(reader.read, reader, self:prompt(), interrupted)
    if not ok and tostring(line):find("interrupted!", 1, true) then
      -- Ctrl-C under luajit's own handler (no lua-posix)
      self:_out("\n")
      self:cancel()
    elseif not ok then
      self:_error(line)
      break
    elseif line == false then
      self:cancel()
    elseif line == nil then
      self:finish()
      if reader.interactive then
        self:_out("\n")
      end
      break
    else
      local okf, err = pcall(self.feed, self, line)
      if not okf then
        self:_error(err)
      end
    end
  end
  if reader.close then
    reader:close()
  end
  if restore then
    restore()
  end
  return true
end

-- Readers -------------------------------------------------------------------

local EINTR = 4

-- plain_reader{ input = file (io.stdin), write = fn, prompt = bool }
function _M.plain_reader(opts)
  local input = opts.input or io.stdin
  local write = opts.write or default_write
  return {
    interactive = opts.prompt,
    read = function(_, prompt, interrupted)
      if opts.prompt then
        write(prompt)
      end
      local line = input:read("*l")
      if line == nil and interrupted and interrupted() then
        write("\n")
        return false
      end
      return line
    end,
  }
end

-- readline_reader{ histfile = path|nil, complete = function(line, from) }
--   -> reader | nil, err. Reads from the terminal with GNU readline.
function _M.readline_reader(opts)
  local ok, rl = pcall(require, "readline")
  if not ok then
    return nil, "lua-readline is not installed"
  end
  local okp, poll = pcall(require, "posix.poll")
  if not okp then
    return nil, "lua-posix is not installed"
  end
  local rpoll = poll.rpoll
  rl.set_readline_name("berth")
  rl.set_options({ histfile = opts.histfile or "", keeplines = 1000,
    completion = true, auto_add = false })
  local complete = opts.complete
  -- Called by readline in C: it must return a table of strings and never
  -- raise (an error would unwind through readline's frames).
  local function completer(text, from, to)
    rl.set_completion_append_character("")
    local okc, list = pcall(complete, text:sub(1, to - 1), from)
    if not okc or type(list) ~= "table" then
      return {}
    end
    local out = {}
    for _, s in ipairs(list) do
      if type(s) == "string" then
        out[#out + 1] = s
      end
    end
    return out
  end
  local last
  local reader = { interactive = true }

  -- lua-readline's handler_remove closes its terminal stream before
  -- readline restores the terminal through it, which is only safe once
  -- readline has finished a line itself. So a line cancelled by Ctrl-C is
  -- not removed: the next read installs the handler again (readline
  -- starts a fresh line), and the stream the module opened for the
  -- cancelled line is closed here, through its descriptor: the lowest free
  -- one when it was opened.
  local okfd, unistd = pcall(require, "posix.unistd")
  local live, tty_fd = false, nil
  local function next_fd()
    if not okfd then
      return nil
    end
    local fd = unistd.dup(0)
    if fd then
      unistd.close(fd)
    end
    return fd
  end

  -- The callback interface: poll() returns on Ctrl-C (EINTR), where a
  -- blocking readline() would only return at the next Enter.
  function reader.read(_, prompt, interrupted)
    local line, done = nil, false
    -- lua-readline keeps the lua_State of the last call: set it from here.
    rl.set_complete_function(completer)
    local old_fd = live and tty_fd or nil
    tty_fd = next_fd()
    rl.handler_install(prompt, function(l)
      line, done = l, true
      -- readline has restored the terminal before calling this
      live = false
      rl.handler_remove()
    end)
    live = true
    if old_fd and old_fd ~= tty_fd and unistd.isatty(old_fd) then
      unistd.close(old_fd)
    end
    while not done do
      if interrupted and interrupted() then
        -- the line is dropped; the handler stays until the next read
        io.stdout:write("\n")
        io.stdout:flush()
        return false
      end
      local n, _, errno = rpoll(0, -1)
      if n and n > 0 then
        rl.read_char()
      elseif not n and errno ~= EINTR then
        return nil -- the terminal went away: end of input
      end
    end
    if line and line:find("%S") and line ~= last then
      rl.add_history(line)
      last = line
    end
    return line
  end

  function reader.close()
    if opts.histfile then
      pcall(rl.save_history)
    end
  end

  return reader
end

return _M

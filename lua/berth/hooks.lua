-- The hook chain: named points around every write (and one before reads)
-- where policy plugins run, in Lua, between calls into C.
--
-- A plugin is a table { PRIORITY = n, VERSION = "x.y.z", <phase>(self, ctx,
-- conf) } (Kong's handler shape). Plugins run by PRIORITY, highest first,
-- ties by name, each under pcall.
--   before_* phases: a method answers true (or nothing) to let the operation
--     go on, or nil/false, message, code to refuse it. The first refusal
--     stops the chain; a method that raises fails closed with DENIED.
--     The registry runs them before anything is written.
--   after_* phases: the operation is done and cannot be undone, so every
--     plugin runs and failures are only collected, for the log.
--
-- Plugins that are not trusted run in a sandbox (Redis-style): their file
-- is loaded with an allow-listed environment, JIT compilation off (LuaJIT
-- does not call count hooks from compiled traces) and an instruction-count
-- hook, so an endless loop fails closed. The sandbox bounds Lua
-- instructions, not time spent inside library calls (string.rep, gsub).
local errors = require "berth.errors"

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local xpcall = xpcall
local error = error
local select = select
local setmetatable = setmetatable
local getmetatable = getmetatable
local tostring = tostring
local unpack = unpack
local setfenv = setfenv
local loadstring = loadstring
local sort = table.sort
local debug_sethook = debug.sethook
local debug_gethook = debug.gethook
local debug_traceback = debug.traceback
local jit_off = jit and jit.off

local _M = { _VERSION = "0.1.0" }
local Chain = {}
local mt = { __index = Chain }

-- The hook points, in the order an operation meets them.
local PHASES = {
  "before_request",
  "before_read",
  "before_blob_upload", "before_blob_commit", "after_blob_commit",
  "before_manifest_put", "before_tag_set",
  "after_manifest_put", "after_tag_set",
  "before_manifest_delete", "after_manifest_delete",
  "before_tag_delete", "after_tag_delete",
  "before_blob_delete", "after_blob_delete",
}
local IS_PHASE, IS_AFTER = {}, {}
for _, p in ipairs(PHASES) do
  IS_PHASE[p] = true
  IS_AFTER[p] = p:sub(1, 6) == "after_"
end
_M.PHASES = PHASES

-- Instructions a sandboxed call may run before it is stopped.
local DEFAULT_LIMIT = 1000000
_M.DEFAULT_LIMIT = DEFAULT_LIMIT
local LIMIT_MSG = "instruction limit exceeded"

-- Functions, or tables with __call (busted spies, memoized handlers).
local function callable(v)
  if type(v) == "function" then
    return true
  end
  local m = type(v) == "table" and getmetatable(v)
  return m and m.__call ~= nil or false
end

local function pack(...)
  return { n = select("#", ...), ... }
end

-- Set while a sandboxed call runs past its limit. Calls are synchronous,
-- so one flag serves every sandbox.
local tripped = false

local function on_limit()
  tripped = true
  error(LIMIT_MSG, 0)
end

-- An error with where it was raised, for the log.
local function traced(e)
  return debug_traceback(tostring(e), 2)
end

local function untraced(e)
  return e
end

local function copy_lib(lib, without)
  local t = {}
  for k, v in pairs(lib) do
    if not (without and without[k]) then
      t[k] = v
    end
  end
  return t
end

-- The string library a sandbox sees, also as the methods of a string: all
-- strings share one metatable, so its __index is swapped for the run.
-- Sandboxed code cannot reach this table itself (no getmetatable), only
-- its functions.
local SANDBOX_STRING = copy_lib(string, { dump = true })
local string_mt = getmetatable("")

-- run_limited(limit, handler, fn, ...) -> xpcall's results, with the count
-- hook on and the sandbox's string methods
local function run_limited(limit, handler, fn, ...)
  local old_hook, old_mask, old_count = debug_gethook()
  local methods = string_mt.__index
  tripped = false
  string_mt.__index = SANDBOX_STRING
  debug_sethook(on_limit, "", limit)
  local res = pack(xpcall(fn, handler, ...))
  if old_hook then
    debug_sethook(old_hook, old_mask, old_count)
  else
    debug_sethook()
  end
  string_mt.__index = methods
  if tripped then
    tripped = false
    return false, LIMIT_MSG
  end
  return unpack(res, 1, res.n)
end

-- A fresh allow-listed environment per plugin: libraries are copies, so a
-- plugin cannot change what other code sees.
local function sandbox_env()
  local env = {
    string = copy_lib(SANDBOX_STRING),
    table = copy_lib(table),
    math = copy_lib(math),
    pairs = pairs, ipairs = ipairs, next = next, select = select,
    type = type, tostring = tostring, tonumber = tonumber,
    error = error, unpack = unpack,
  }
  -- pcall must not swallow the instruction limit: once it trips, every
  -- pcall in the sandbox re-raises it.
  env.pcall = function(f, ...)
    local res = pack(pcall(f, ...))
    if tripped then
      error(LIMIT_MSG, 0)
    end
    return unpack(res, 1, res.n)
  end
  return env
end

-- load_sandboxed(path, limit?) -> value the file returns | nil, err
-- Source only: LuaJIT bytecode could escape any environment.
function _M.load_sandboxed(path, limit)
  if type(path) ~= "string" then
    error("path must be a string", 2)
  end
  local f, err = io.open(path, "rb")
  if not f then
    return nil, err
  end
  local src = f:read("*a")
  f:close()
  if src:sub(1, 1) == "\27" then
    return nil, path .. ": binary chunks are not loaded in the sandbox"
  end
  local chunk
  chunk, err = loadstring(src, "@" .. path)
  if not chunk then
    return nil, err
  end
  if jit_off then
    jit_off(chunk, true) -- recursive: every function the file defines
  end
  setfenv(chunk, sandbox_env())
  local ok, res = run_limited(limit or DEFAULT_LIMIT, untraced, chunk)
  if not ok then
    return nil, path .. ": " .. tostring(res)
  end
  return res
end

-- A sandboxed plugin gets its own copy of ctx, so it cannot change what
-- the plugins after it see.
local function deep_copy(v, seen)
  if type(v) ~= "table" then
    return v
  end
  seen = seen or {}
  if seen[v] then
    return seen[v]
  end
  local t = {}
  seen[v] = t
  for k, x in pairs(v) do
    t[deep_copy(k, seen)] = deep_copy(x, seen)
  end
  return t
end

-- new(plugins) -> chain
-- plugins: { { name =, handler =, conf =, sandbox = bool, limit = n }, ... }
function _M.new(plugins)
  if plugins == nil then
    plugins = {}
  end
  if type(plugins) ~= "table" then
    error("plugins must be a table", 2)
  end
  local list, seen = {}, {}
  for i, p in ipairs(plugins) do
    if type(p) ~= "table" or type(p.name) ~= "string" then
      error("plugin #" .. i .. " must be a table with a name", 2)
    end
    local h = p.handler
    if type(h) ~= "table" then
      error("plugin " .. p.name .. ": handler must be a table", 2)
    end
    if type(h.PRIORITY) ~= "number" then
      error("plugin " .. p.name .. ": PRIORITY must be a number", 2)
    end
    if seen[p.name] then
      error("plugin " .. p.name .. " is configured twice", 2)
    end
    seen[p.name] = true
    -- Compiled traces do not call count hooks: a sandboxed plugin given
    -- as a table (not through load_sandboxed) is interpreted too.
    if p.sandbox and jit_off then
      for _, v in pairs(h) do
        if type(v) == "function" then
          jit_off(v, true)
        end
      end
    end
    for k, v in pairs(h) do
      if type(k) == "string" and (k:find("^before_") or k:find("^after_"))
          then
        if not IS_PHASE[k] then
          error("plugin " .. p.name .. ": unknown phase " .. k, 2)
        end
        if not callable(v) then
          error("plugin " .. p.name .. ": " .. k .. " must be a function", 2)
        end
      end
    end
    list[#list + 1] = {
      name = p.name,
      handler = h,
      priority = h.PRIORITY,
      conf = p.conf or {},
      sandbox = p.sandbox and true or false,
      limit = p.limit or DEFAULT_LIMIT,
    }
  end
  sort(list, function(a, b)
    if a.priority ~= b.priority then
      return a.priority > b.priority
    end
    return a.name < b.name
  end)
  -- phase -> the plugins that implement it, in order
  local by_phase = {}
  for _, phase in ipairs(PHASES) do
    local l = {}
    for _, p in ipairs(list) do
      if callable(p.handler[phase]) then
        l[#l + 1] = p
      end
    end
    by_phase[phase] = l
  end
  return setmetatable({ plugins = list, by_phase = by_phase }, mt)
end

-- names() -> plugin names in the order they run
function Chain:names()
  local t = {}
  for i, p in ipairs(self.plugins) do
    t[i] = p.name
  end
  return t
end

-- has(phase) -> true when some plugin implements phase
function Chain:has(phase)
  local l = self.by_phase[phase]
  return l ~= nil and #l > 0
end

-- A code a client can be given: the plugin's, when it is one of berth's.
local function code_or_denied(code)
  if type(code) == "string" and errors.lookup(code) then
    return code
  end
  return "DENIED"
end

local function call(p, phase, ctx)
  local fn = p.handler[phase]
  if p.sandbox then
    return run_limited(p.limit, traced, fn, p.handler, deep_copy(ctx),
      p.conf)
  end
  return xpcall(fn, traced, p.handler, ctx, p.conf)
end

-- run(phase, ctx) -> true | nil, err, code, plugin_name, log_detail
--   (before_* phases)
-- run(phase, ctx) -> true, errs | true   (after_* phases)
-- A plugin that raises refuses with err "policy <name> failed": its error
-- names server paths, so it and the trace are only in log_detail. errs
-- (for the log) lists "<plugin>: <message>" for each after-hook that
-- failed, the error and trace for one that raised.
function Chain:run(phase, ctx)
  local list = self.by_phase[phase]
  if not list then
    error("unknown hook phase: " .. tostring(phase), 2)
  end
  if type(ctx) ~= "table" then
    error("ctx must be a table", 2)
  end
  local after = IS_AFTER[phase]
  local errs
  for i = 1, #list do
    local p = list[i]
    local ok, res, err, code = call(p, phase, ctx)
    local msg, detail
    if not ok then
      msg = "policy " .. p.name .. " failed"
      detail = msg .. ": " .. tostring(res)
      code = "DENIED"
    elseif res == false or (res == nil and err ~= nil) then
      msg = err ~= nil and tostring(err) or "denied by policy " .. p.name
      code = code_or_denied(code)
    end
    if msg then
      if not after then
        return nil, msg, code, p.name, detail
      end
      errs = errs or {}
      errs[#errs + 1] = detail or (p.name .. ": " .. msg)
    end
  end
  return true, errs
end

return _M

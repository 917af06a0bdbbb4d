-- Configuration checking against a schema (plugins/<name>/schema.lua and
-- the registry's own configuration): unknown keys and wrong types are
-- errors that name the owner and the field; defaults are filled in.
--
-- A schema is { name = "...", fields = { <field> = <spec>, ... } } where a
-- spec is
--   { type = "string"|"number"|"integer"|"boolean"|"array"|"record"|"table"
--            |"function"|"any",
--     of = <spec or type name> (array elements), fields = {...} (record),
--     one_of = { values }, min = n, required = true, default = value,
--     check = function(v) -> true | nil, err, description = "..." }
local type = type
local pairs = pairs
local tostring = tostring
local floor = math.floor
local sort = table.sort
local concat = table.concat
local error = error

local _M = { _VERSION = "0.1.0" }

local TYPES = {
  string = true, number = true, integer = true, boolean = true,
  array = true, record = true, table = true, ["function"] = true,
  any = true,
}

local ARTICLE = {
  string = "a string", number = "a number", integer = "an integer",
  boolean = "a boolean", array = "an array", record = "a table",
  table = "a table", ["function"] = "a function",
}

-- Copies defaults, so that no two configurations share a table.
local function deep_copy(v)
  if type(v) ~= "table" then
    return v
  end
  local t = {}
  for k, x in pairs(v) do
    t[k] = deep_copy(x)
  end
  return t
end
_M.deep_copy = deep_copy

local function is_array(t)
  local n = #t
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or floor(k) ~= k then
      return false
    end
  end
  return true
end

local function describe(spec)
  if type(spec) == "string" then
    spec = { type = spec }
  end
  if spec.type == "array" and spec.of then
    local of = type(spec.of) == "string" and spec.of or spec.of.type
    return "an array of " .. of .. "s"
  end
  return ARTICLE[spec.type] or spec.type
end

local check_value

local function check_fields(fields, t, path)
  -- unknown keys first, in a stable order, so the message is reproducible
  local unknown = {}
  for k in pairs(t) do
    if fields[k] == nil then
      unknown[#unknown + 1] = tostring(k)
    end
  end
  if #unknown > 0 then
    sort(unknown)
    local name = path == "" and unknown[1] or path .. "." .. unknown[1]
    return nil, "unknown field '" .. name .. "'"
  end
  local names = {}
  for k in pairs(fields) do
    names[#names + 1] = k
  end
  sort(names)
  local out = {}
  for i = 1, #names do
    local k = names[i]
    local v, err = check_value(fields[k], t[k],
      path == "" and k or path .. "." .. k)
    if err then
      return nil, err
    end
    out[k] = v
  end
  return out
end

-- check_value(spec, v, path) -> checked value (defaults filled) | nil, err
check_value = function(spec, v, path)
  if type(spec) == "string" then
    spec = { type = spec }
  end
  if v == nil then
    if spec.default ~= nil then
      return deep_copy(spec.default)
    end
    if spec.required then
      return nil, "field '" .. path .. "' is required"
    end
    return nil
  end
  local t = spec.type
  local ok
  if t == "any" then
    ok = true
  elseif t == "integer" then
    ok = type(v) == "number" and floor(v) == v
  elseif t == "array" then
    ok = type(v) == "table" and is_array(v)
  elseif t == "record" then
    ok = type(v) == "table"
  else
    ok = type(v) == t
  end
  if not ok then
    return nil, "field '" .. path .. "' must be " .. describe(spec)
      .. ", got " .. type(v)
  end
  if spec.min and type(v) == "number" and v < spec.min then
    return nil, "field '" .. path .. "' must be at least " .. spec.min
  end
  if spec.one_of then
    local found = false
    for i = 1, #spec.one_of do
      if spec.one_of[i] == v then
        found = true
        break
      end
    end
    if not found then
      local names = {}
      for i = 1, #spec.one_of do
        names[i] = tostring(spec.one_of[i])
      end
      return nil, "field '" .. path .. "' must be one of "
        .. concat(names, ", ") .. ", got " .. tostring(v)
    end
  end
  if t == "array" then
    local out = {}
    for i = 1, #v do
      local x, err = v[i]
      if spec.of then
        x, err = check_value(spec.of, x, path .. "[" .. i .. "]")
        if err then
          return nil, err
        end
      end
      out[i] = x
    end
    v = out
  elseif t == "record" and spec.fields then
    local out, err = check_fields(spec.fields, v, path)
    if not out then
      return nil, err
    end
    v = out
  end
  if spec.check then
    local ok2, err = spec.check(v)
    if not ok2 then
      return nil, "field '" .. path .. "' " .. tostring(err)
    end
  end
  return v
end

-- Schema sanity: a broken schema is the plugin author's bug, so it raises.
local function check_schema(schema, level)
  if type(schema) ~= "table" or type(schema.fields) ~= "table" then
    error("schema must be a table with fields", level)
  end
  for k, spec in pairs(schema.fields) do
    local t = type(spec) == "string" and spec or spec.type
    if not TYPES[t] then
      error("schema " .. tostring(schema.name) .. ": field '" .. tostring(k)
        .. "' has unknown type " .. tostring(t), level)
    end
  end
end

-- validate(schema, conf, owner) -> conf with defaults | nil, err
-- owner prefixes the message: "plugin immutable-tags: unknown field 'x'".
function _M.validate(schema, conf, owner)
  check_schema(schema, 3)
  owner = owner or schema.name or "configuration"
  if conf == nil then
    conf = {}
  end
  if type(conf) ~= "table" then
    return nil, owner .. ": configuration must be a table, got " .. type(conf)
  end
  local out, err = check_fields(schema.fields, conf, "")
  if not out then
    return nil, owner .. ": " .. err
  end
  return out
end

-- dirname(path) -> the directory part of a file path ("." for none)
function _M.dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- resolve(path, dir) -> path, relative paths taken as relative to dir
function _M.resolve(path, dir)
  if type(path) ~= "string" or path:sub(1, 1) == "/" or not dir then
    return path
  end
  return dir .. "/" .. path
end

-- What a configuration file may use: data, not the machine.
local function file_env()
  return {
    string = string, table = table, math = math,
    pairs = pairs, ipairs = ipairs, next = next, select = select,
    type = type, tostring = tostring, tonumber = tonumber,
    error = error, unpack = unpack,
    os = { getenv = os.getenv },
  }
end

-- load_file(path, schema) -> conf | nil, err, "EINVAL"
-- A configuration file is Lua that returns a table, or sets its fields as
-- globals; it runs in a restricted environment, and the result is checked
-- against schema (validate). Errors name the file.
function _M.load_file(path, schema)
  if type(path) ~= "string" then
    error("path must be a string", 2)
  end
  local f, err = io.open(path, "rb")
  if not f then
    return nil, tostring(err), "EINVAL"
  end
  local src = f:read("*a")
  f:close()
  if src:sub(1, 1) == "\27" then
    return nil, path .. ": binary chunks are not loaded", "EINVAL"
  end
  local chunk
  chunk, err = loadstring(src, "@" .. path)
  if not chunk then
    return nil, err, "EINVAL"
  end
  local env = file_env()
  local base = {}
  for k in pairs(env) do
    base[k] = true
  end
  setfenv(chunk, env)
  local ok, res = pcall(chunk)
  if not ok then
    return nil, tostring(res), "EINVAL"
  end
  if res == nil then
    res = {}
    for k, v in pairs(env) do
      if not base[k] then
        res[k] = v
      end
    end
  elseif type(res) ~= "table" then
    return nil, path .. ": must return a table, got " .. type(res), "EINVAL"
  end
  local conf
  conf, err = _M.validate(schema, res, path)
  if not conf then
    return nil, err, "EINVAL"
  end
  return conf
end

return _M

-- The option parser every `berth` subcommand uses, and the shared
-- --root DIR / --config FILE handling that opens the store or registry.
--
--   local args = require "berth.cmd.args"
--   local SPEC = { name = "tags", usage = USAGE, flags = { "json" },
--                  args = { "REPO" } }
--   local o, _, code = args.parse(argv, SPEC, env)
--   if not o then return code end        -- the usage error is written
--   local store, err = args.open_store(o)
--
-- GNU style: --name VALUE, --name=VALUE, -x for declared short names,
-- flags take no value, `--` ends the options, and options may come before,
-- between or after the positional arguments. Every command takes
-- --root DIR and --config FILE (the registry configuration, whose
-- store.root is used unless --root is given; default ./berth-data).
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local concat = table.concat
local io_open = io.open

local _M = { _VERSION = "0.1.0" }

-- Where the store is when neither --root nor a configuration says.
_M.DEFAULT_ROOT = "./berth-data"

-- Options every subcommand takes.
local COMMON = { root = "DIR", config = "FILE" }

local function key_of(name)
  return (name:gsub("%-", "_"))
end

-- The spec's flags and options as lookup tables.
local function tables(spec)
  local flags, options = {}, {}
  for k, v in pairs(spec.flags or {}) do
    flags[type(k) == "number" and v or k] = true
  end
  for k, v in pairs(COMMON) do
    options[k] = { metavar = v }
  end
  for k, v in pairs(spec.options or {}) do
    if type(v) == "table" then
      options[k] = v
    else
      options[k] = { metavar = tostring(v) }
    end
  end
  return flags, options
end

-- Check the positional arguments against spec.args: names in order, "X?"
-- optional, "X..." any number (at least one unless "X...?").
local function check_positional(list, names)
  if not names then
    return true
  end
  local i = 1
  for _, name in ipairs(names) do
    local base, suffix = name:match("^(.-)([%.%?]*)$")
    if suffix == "..." or suffix == "...?" then
      if suffix == "..." and list[i] == nil then
        return nil, "missing argument " .. base
      end
      return true
    end
    if list[i] == nil and suffix ~= "?" then
      return nil, "missing argument " .. base
    end
    i = i + 1
  end
  if list[i] ~= nil then
    return nil, "unexpected argument '" .. tostring(list[i]) .. "'"
  end
  return true
end

local function parse(argv, spec)
  local flags, options = tables(spec)
  local short = spec.short or {}
  local o = { args = {} }
  local pos = o.args
  local i, n = 1, #argv
  while i <= n do
    local a = argv[i]
    if type(a) ~= "string" then
      return nil, "argument " .. i .. " is not a string"
    end
    if a == "--" then
      for j = i + 1, n do
        pos[#pos + 1] = argv[j]
      end
      break
    end
    local name, value
    if a:sub(1, 2) == "--" then
      name, value = a:match("^%-%-([^=]+)=(.*)$")
      if not name then
        name = a:sub(3)
      end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      local s = a:sub(2)
      name = short[s]
      if s == "h" then
        name = "help"
      end
      if not name then
        return nil, "unknown option " .. a
      end
    end
    if not name then
      pos[#pos + 1] = a
    elseif name == "help" then
      o.help = true
    elseif flags[name] then
      if value ~= nil then
        return nil, "option --" .. name .. " takes no value"
      end
      o[key_of(name)] = true
    elseif options[name] then
      if value == nil then
        i = i + 1
        value = argv[i]
        if value == nil then
          return nil, "option --" .. name .. " needs a value ("
            .. options[name].metavar .. ")"
        end
      end
      local key = key_of(name)
      if options[name].multi then
        local list = o[key] or {}
        list[#list + 1] = value
        o[key] = list
      else
        o[key] = value
      end
    else
      return nil, "unknown option --" .. name
    end
    i = i + 1
  end
  local ok, err = check_positional(pos, spec.args)
  if not ok then
    return nil, err
  end
  return o
end

-- usage_error(env, name, usage, msg) -> 2, after writing
-- "berth <name>: <msg>" (out.fail) and the usage text to env.stderr
function _M.usage_error(env, name, usage, msg)
  require("berth.cmd.out").fail(env, name, msg, 2)
  if usage then
    local e = env.stderr
    e:write(usage)
    if usage:sub(-1) ~= "\n" then
      e:write("\n")
    end
  end
  return 2
end

-- Does argv ask for --json (before any "--"), for a command that has it?
local function wants_json(argv, spec)
  local has = false
  for _, f in ipairs(spec.flags or {}) do
    if f == "json" then has = true end
  end
  for _, a in ipairs(has and argv or {}) do
    if a == "--" then return false end
    if a == "--json" then return true end
  end
  return false
end

-- parse(argv, spec, env?) -> opts | nil, err, 2
-- spec = { name =, usage =, flags = { "json", ... },
--   options = { depth = "N" | { metavar = "N", multi = true }, ... },
--   short = { j = "json" }, args = { "REPO", "REF?", "PATH..." } }
-- opts: flags and options by name with "-" as "_" (--dry-run ->
-- opts.dry_run), a multi option as a list, positionals in opts.args (and
-- opts[1], opts[2], ...). With env, a failure is written as a usage error.
function _M.parse(argv, spec, env)
  if type(argv) ~= "table" then
    error("argv must be a table", 2)
  end
  spec = spec or {}
  if env then
    -- failures from here on are JSON on stdout too (out.fail)
    env.json = wants_json(argv, spec)
  end
  local o, err = parse(argv, spec)
  if not o then
    if env then
      _M.usage_error(env, spec.name or "?", spec.usage, err)
    end
    return nil, err, 2
  end
  for k, v in ipairs(o.args) do
    o[k] = v
  end
  return o
end

-- is_dir(path) -> true when path is a directory
function _M.is_dir(path)
  local f = io_open(path .. "/.", "rb")
  if f then
    f:close()
    return true
  end
  return false
end

-- store_options(opts) -> { root =, driver =, fsync = }, conf | nil, err
-- The configuration of --config with --root on top (berth.registry's
-- resolve), the store's root defaulting to DEFAULT_ROOT.
function _M.store_options(opts)
  local conf, err = require("berth.registry").resolve{ config = opts.config,
    root = opts.root }
  if not conf then
    return nil, "config " .. opts.config .. ": " .. tostring(err)
  end
  conf.store.root = conf.store.root or _M.DEFAULT_ROOT
  return conf.store, conf
end

-- Does dir hold a store's tree: Distribution's or berth's own?
function _M.has_store_tree(dir)
  return _M.is_dir(dir .. "/docker/registry/v2") or _M.is_dir(dir .. "/berth")
end

-- Is dir a store: a store's tree, or nothing at all but berth serve's run
-- files (a store nothing was pushed to)? A mistyped root is neither.
function _M.is_store(dir)
  if _M.has_store_tree(dir) then
    return true
  end
  local ok, dirent = pcall(require, "posix.dirent")
  if not ok then return true end -- cannot tell: as before
  for _, name in ipairs(dirent.dir(dir) or {}) do
    if name ~= "." and name ~= ".." and not name:find("^%.berth%-") then
      return false
    end
  end
  return true
end

local function check_root(so, create)
  -- a store in memory or in a bucket has no tree under root
  if so.driver == "mem" or so.driver == "s3" or create then
    return true
  end
  if not _M.is_dir(so.root) then
    return nil, "no store at " .. so.root
      .. " (give --root DIR or --config FILE)"
  end
  if not _M.is_store(so.root) then
    return nil, so.root .. " is not a store: it holds neither"
      .. " docker/registry/v2 nor berth/ (give the store's --root)"
  end
  return true
end

-- open_store(opts, { create = bool }?) -> store | nil, err, code
-- opts from parse (root, config). Without create, the root must exist.
function _M.open_store(opts, mode)
  local so, err = _M.store_options(opts)
  if not so then
    return nil, err, "EINVAL"
  end
  local ok
  ok, err = check_root(so, mode and mode.create)
  if not ok then
    return nil, err, "ENOTFOUND"
  end
  local berth = require "berth"
  local store, code
  store, err, code = berth.open(so)
  if not store then
    return nil, "cannot open the store at " .. so.root .. ": "
      .. tostring(err), code
  end
  return store
end

-- open_registry(opts, { create = bool }?) -> registry | nil, err, code
-- The registry of --config (plugins, handlers, policies) on --root, or a
-- plain registry on the root when there is no configuration.
function _M.open_registry(opts, mode)
  local so, conf = _M.store_options(opts)
  if not so then
    return nil, conf, "EINVAL"
  end
  local ok, err = check_root(so, mode and mode.create)
  if not ok then
    return nil, err, "ENOTFOUND"
  end
  local registry = require "berth.registry"
  local reg, code
  reg, err, code = registry.new(conf)
  if not reg then
    return nil, tostring(err), code
  end
  return reg
end

-- The options every command shows in its usage.
_M.COMMON_USAGE = concat({
  "  --root DIR      the store (default " .. _M.DEFAULT_ROOT .. ")",
  "  --config FILE   registry configuration; its store.root unless --root",
  "  -h, --help      this text",
}, "\n") .. "\n"

return _M

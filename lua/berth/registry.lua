-- The policy-aware registry: a store, a media-type handler registry and a
-- hook chain. Every operation builds a ctx, runs the before-hooks (nothing
-- is written until they all agree), calls the store, then runs the
-- after-hooks, whose failures are only reported. The HTTP layer and the
-- REPL call this, not the store.
--
--   local registry = require "berth.registry"
--   local reg = assert(registry.new{
--     root = "/var/lib/berth",
--     plugins = { { name = "immutable-tags", config = { patterns = { "v*" } } } },
--   })
--   local dgst, info = reg:put_manifest("library/app", "v1", body, ctype)
--
-- ctx, as the plugins see it (fields that do not apply are nil):
--   op            "put_manifest", "set_tag", "get_manifest", "head_manifest",
--                 "delete_manifest", "delete_tag", "start_upload",
--                 "open_upload", "upload_status", "commit_upload",
--                 "mount_blob", "delete_blob", "stat_blob", "blob_path",
--                 "read_blob", "list_tags", "list_manifests", "catalog",
--                 "referrers"
--   repo, reference, tag, digest
--   old_digest    what ctx.tag points at before the operation (nil: new tag)
--   tags          on a manifest delete: the tags that go with it
--   media_type, manifest (the body as decoded JSON), descriptors, subject,
--   artifact_type, size (manifest bytes, or the blob's bytes on commit),
--   declared_size, upload_id, from (mount source)
--   identity, actions, and whatever else the caller's ctx carries
local store_mod = require "berth.store"
local digest = require "berth.digest"
local handlers = require "berth.handlers"
local hooks = require "berth.hooks"
local config = require "berth.config"
local one_line = require("berth.errors").one_line

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local tostring = tostring
local setmetatable = setmetatable
local io_open = io.open

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local PLUGIN_FIELDS = {
  name = { type = "string", required = true },
  config = "table",
  path = "string",      -- a plugin outside the plugin directories
  handler = "table",    -- a plugin given as a table (specs, embedding)
  sandbox = "boolean",  -- untrusted: allow-listed env, instruction limit
  limit = { type = "integer", min = 1 },
}

-- An S3 store, named as CNCF Distribution's s3 storage section names it.
local S3_FIELDS = {
  regionendpoint = { type = "string", required = true },
  bucket = { type = "string", required = true },
  region = "string",
  accesskey = { type = "string", required = true },
  secretkey = { type = "string", required = true },
  rootdirectory = "string",
  -- berth addresses a bucket by path only (as RGW and Distribution do
  -- with a regionendpoint)
  forcepathstyle = { type = "boolean", check = function(v)
    return v or nil, "must be true: berth addresses buckets by path"
  end },
}

local STORE_FIELDS = {
  root = "string",
  driver = { type = "string", one_of = { "fs", "mem", "s3" } },
  fsync = { type = "string", one_of = { "none", "data", "full" } },
  s3 = { type = "record", fields = S3_FIELDS },
}

local COMMON = {
  delete = { type = "boolean", default = false },
  plugins = { type = "array", default = {},
    of = { type = "record", fields = PLUGIN_FIELDS } },
  handlers = { type = "array", default = {}, of = "any" },
  plugin_dirs = { type = "array", of = "string" },
  log = "function",
}

-- The server's sections: registry.new takes them (a configuration file
-- goes to it whole, from the command line too) and leaves them alone.
local SERVER = {
  auth = "table", -- berth.auth checks it
  -- caps on open upload sessions, and their purge while serving
  uploads = require("berth.sessions").SCHEMA,
  -- CNCF Distribution's http.secret, which signs an upload's _state
  http = { type = "record", fields = {
    secret = { type = "string", check = function(v)
      return v ~= "" or nil, "must not be empty"
    end },
  } },
}

-- What a configuration file may hold.
local FILE_SCHEMA = { name = "configuration", fields = {
  store = { type = "record", fields = STORE_FIELDS },
} }
-- What registry.new takes: the same, a store object, or the store's
-- fields at the top level.
local NEW_SCHEMA = { name = "registry", fields = {
  store = "table",
} }
for _, t in ipairs({ COMMON, SERVER }) do
  for k, v in pairs(t) do
    FILE_SCHEMA.fields[k] = v
    NEW_SCHEMA.fields[k] = v
  end
end
for k, v in pairs(STORE_FIELDS) do
  NEW_SCHEMA.fields[k] = v
end

local function is_store(v)
  return type(v) == "table" and type(v.blob_stat) == "function"
end

local function file_exists(path)
  local f = io_open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

local dirname = config.dirname
local resolve = config.resolve

-- plugins/ beside lua/: lua/berth/registry.lua -> ../../plugins
local DEFAULT_PLUGIN_DIR
do
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" then
    DEFAULT_PLUGIN_DIR = dirname(dirname(dirname(src:sub(2)))) .. "/plugins"
  end
end

-- Run a trusted Lua file and return its value.
local function run_file(path)
  local chunk, err = loadfile(path)
  if not chunk then
    return nil, err
  end
  local ok, res = pcall(chunk)
  if not ok then
    return nil, tostring(res)
  end
  return res
end

-- find_plugin(name, dirs) -> handler path, schema path | nil
local function find_plugin(name, dirs)
  local try = {}
  for _, d in ipairs(dirs or {}) do
    try[#try + 1] = d
  end
  try[#try + 1] = DEFAULT_PLUGIN_DIR
  for _, d in ipairs(try) do
    local h = d .. "/" .. name .. "/handler.lua"
    if file_exists(h) then
      local s = d .. "/" .. name .. "/schema.lua"
      return h, file_exists(s) and s or nil
    end
  end
  local h = package.searchpath("plugins." .. name .. ".handler",
    package.path)
  if h then
    local s = dirname(h) .. "/schema.lua"
    return h, file_exists(s) and s or nil
  end
  return nil
end

-- load_plugin(spec, dirs) -> hook chain entry | nil, err
local function load_plugin(spec, dirs)
  local name = spec.name
  local what = "plugin " .. name
  local h, schema = spec.handler, nil
  if not h then
    local hpath, spath
    if spec.path then
      hpath = spec.path
      if hpath:match("/handler%.lua$") or hpath == "handler.lua" then
        local s = dirname(hpath) .. "/schema.lua"
        spath = file_exists(s) and s or nil
      end
    else
      if not name:find("^[%w][%w_-]*$") then
        return nil, what .. ": invalid plugin name"
      end
      hpath, spath = find_plugin(name, dirs)
      if not hpath then
        return nil, what .. ": not found (plugins/" .. name
          .. "/handler.lua)"
      end
    end
    local err
    if spec.sandbox then
      h, err = hooks.load_sandboxed(hpath, spec.limit)
    else
      h, err = run_file(hpath)
    end
    if not h then
      return nil, what .. ": " .. tostring(err)
    end
    if spath then
      if spec.sandbox then
        schema, err = hooks.load_sandboxed(spath, spec.limit)
      else
        schema, err = run_file(spath)
      end
      if not schema then
        return nil, what .. ": " .. tostring(err)
      end
    end
  end
  if type(h) ~= "table" then
    return nil, what .. ": handler must return a table"
  end
  if type(h.PRIORITY) ~= "number" then
    return nil, what .. ": handler has no numeric PRIORITY"
  end
  local conf = spec.config or {}
  if schema then
    local ok, res, verr = pcall(config.validate, schema, conf, what)
    if not ok then
      return nil, what .. ": bad schema: " .. tostring(res)
    end
    if not res then
      return nil, verr
    end
    conf = res
  end
  return {
    name = name,
    handler = h,
    conf = conf,
    sandbox = spec.sandbox,
    limit = spec.limit,
  }
end

-- load_handler(v) -> handler table | nil, err: a table, a module name or a
-- path to a .lua file
local function load_handler(v, i)
  if type(v) == "table" then
    return v
  end
  if type(v) ~= "string" then
    return nil, "handlers[" .. i .. "] must be a table or a string"
  end
  local h, err
  if v:match("%.lua$") then
    h, err = run_file(v)
  else
    local ok, res = pcall(require, v)
    h, err = ok and res or nil, not ok and tostring(res) or nil
  end
  if type(h) ~= "table" then
    return nil, "handler " .. v .. ": " .. tostring(err or "not a table")
  end
  return h
end

-- new(opts) -> registry | nil, err, code
-- opts: { store = store object | { root=, driver=, fsync= }, root=,
--         driver=, fsync=, delete = bool, plugins = { ... },
--         handlers = { ... }, plugin_dirs = { ... }, log = function(msg) }
function _M.new(opts)
  if type(opts) ~= "table" then
    error("options must be a table", 2)
  end
  local conf, err = config.validate(NEW_SCHEMA, opts, "registry")
  if not conf then
    return nil, err, "EINVAL"
  end
  local store_opts
  if conf.store and not is_store(conf.store) then
    store_opts, err = config.validate({ fields = STORE_FIELDS }, conf.store,
      "registry: store")
    if not store_opts then
      return nil, err, "EINVAL"
    end
  elseif not conf.store then
    store_opts = { root = conf.root, driver = conf.driver,
      fsync = conf.fsync }
  end
  if store_opts and not store_opts.root and store_opts.driver ~= "mem" then
    return nil, "registry: store root is required", "EINVAL"
  end

  local hreg = handlers.new()
  for i, v in ipairs(conf.handlers) do
    local h
    h, err = load_handler(v, i)
    if not h then
      return nil, "registry: " .. err, "EINVAL"
    end
    local ok, res = pcall(h.override and hreg.override or hreg.register,
      hreg, h)
    if not ok then
      return nil, "registry: " .. tostring(res), "EINVAL"
    end
  end

  local entries = {}
  for _, spec in ipairs(conf.plugins) do
    local e
    e, err = load_plugin(spec, conf.plugin_dirs)
    if not e then
      return nil, "registry: " .. err, "EINVAL"
    end
    entries[#entries + 1] = e
  end
  local ok, chain = pcall(hooks.new, entries)
  if not ok then
    return nil, "registry: " .. tostring(chain), "EINVAL"
  end

  -- Open the store last, so a configuration error leaves nothing open.
  local st, owned = conf.store, false
  if store_opts then
    local code
    st, err, code = store_mod.open(store_opts)
    if not st then
      return nil, err, code
    end
    owned = true
  end
  return setmetatable({
    store = st,
    handlers = hreg,
    hooks = chain,
    delete = conf.delete,
    log = conf.log,
    _owned = owned,
  }, mt)
end

-- A configuration file sees only these.


-- load(path) -> configuration table | nil, err, code
-- The file returns a table, or sets globals (store = {...}, plugins = ...).
function _M.load(path)
  local conf, err, code = config.load_file(path, FILE_SCHEMA)
  if not conf then
    return nil, err, code
  end
  local dir = dirname(path)
  for _, p in ipairs(conf.plugins) do
    p.path = resolve(p.path, dir)
  end
  for i, h in ipairs(conf.handlers) do
    if type(h) == "string" and h:match("%.lua$") then
      conf.handlers[i] = resolve(h, dir)
    end
  end
  if conf.plugin_dirs then
    for i, d in ipairs(conf.plugin_dirs) do
      conf.plugin_dirs[i] = resolve(d, dir)
    end
  end
  return conf
end

-- resolve{ config = path?, root = dir?, fsync = ?, delete = bool? }
-- -> conf | nil, err, code
-- The effective configuration: the file's (load), with the command line's
-- options on top. Every reader of a configuration resolves it here: the
-- commands (berth.cmd.args), berth serve's checks and nginx (berth.nginx).
function _M.resolve(settings)
  local conf = {}
  if settings.config then
    local err, code
    conf, err, code = _M.load(settings.config)
    if not conf then
      return nil, err, code
    end
  end
  local store = {}
  for k, v in pairs(conf.store or {}) do
    store[k] = v
  end
  store.root = settings.root or store.root
  store.fsync = settings.fsync or store.fsync
  -- Distribution's environment over the file: REGISTRY_STORAGE=s3 and
  -- REGISTRY_STORAGE_S3_<KEY> (the s3 section's keys, upper case)
  local getenv = settings.getenv or os.getenv
  if getenv("REGISTRY_STORAGE") == "s3" then
    store.driver = "s3"
  end
  local s3 = {}
  for k, v in pairs(store.s3 or {}) do
    s3[k] = v
  end
  for k in pairs(S3_FIELDS) do
    local v = getenv("REGISTRY_STORAGE_S3_" .. k:upper())
    if v ~= nil then
      s3[k] = k == "forcepathstyle" and v == "true" or v
    end
  end
  if next(s3) then
    store.s3 = s3
  end
  conf.store = store
  if settings.delete then
    conf.delete = true
  end
  return conf
end

-- open(path) -> registry | nil, err, code: load(path), then new()
function _M.open(path)
  local conf, err, code = _M.load(path)
  if not conf then
    return nil, err, code
  end
  return _M.new(conf)
end

-- close() -> true; closes the store when the registry opened it
function _M:close()
  if self._owned and self.store then
    self.store:close()
  end
  self.store = nil
  return true
end

local function check_string(v, what)
  if type(v) ~= "string" then
    error(what .. " must be a string", 3)
  end
end

local function is_digest(ref)
  return ref:find(":", 1, true) ~= nil
end

-- The OCI tag grammar: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
local function valid_tag(tag)
  return #tag <= 128 and tag:find("^[%w_][%w._-]*$") ~= nil
end

local function new_ctx(op, repo, ctx_in)
  local ctx = {}
  if ctx_in ~= nil then
    if type(ctx_in) ~= "table" then
      error("ctx must be a table", 3)
    end
    for k, v in pairs(ctx_in) do
      ctx[k] = v
    end
  end
  ctx.op = op
  ctx.repo = repo
  return ctx
end

-- Run before-hooks; a raising plugin's error and trace go to the log.
local function before(self, phase, ctx)
  local ok, err, code, who, detail = self.hooks:run(phase, ctx)
  if detail and self.log then
    pcall(self.log, one_line(phase .. ": " .. detail))
  end
  return ok, err, code, who
end

-- Run after-hooks; their failures go to the log and to the caller.
local function after(self, phase, ctx, warnings)
  local _, errs = self.hooks:run(phase, ctx)
  if errs then
    warnings = warnings or {}
    for _, e in ipairs(errs) do
      warnings[#warnings + 1] = e
      if self.log then
        pcall(self.log, one_line(phase .. ": " .. e))
      end
    end
  end
  return warnings
end

-- What the hooks of a tag write decide on: where ctx.tag points
-- (ctx.old_digest; nil: nowhere). A read that fails (an i/o error, a
-- damaged link) is not "no tag": the write is refused with its error
-- before any hook decides on a guess. -> true | nil, err, code
local function read_old_digest(self, repo, ctx)
  local d, err, code = self.store:tag_get(repo, ctx.tag)
  if not d and code ~= "MANIFEST_UNKNOWN" then
    return nil, err, code
  end
  ctx.old_digest = d
  return true
end

-- The same for a manifest delete: the tags that go with it (ctx.tags).
local function read_tags(self, repo, dgst, ctx)
  local tags, err, code = self.store:tag_lookup(repo, dgst)
  if not tags then
    return nil, err, code
  end
  ctx.tags = tags
  return true
end

-- Writes of tags are compare-and-set against what the hooks saw (ctx's
-- old_digest, or tags): when another request changed it meanwhile, the
-- hooks decide again on what is there now, at most this many times.
local TAG_ATTEMPTS = 5

-- write() -> result | nil, err, code, "ETAG_CHANGED" when what phase's
-- hooks approved no longer holds; refresh(ctx) -> true | nil, err, code
-- reads it again. -> write's answer, or the refresh's or hooks' refusal
local function write_checked(self, ctx, phase, refresh, write)
  local res, err, code
  for _ = 1, TAG_ATTEMPTS do
    res, err, code = write()
    if code ~= "ETAG_CHANGED" then
      break
    end
    local ok, herr, hcode = refresh(ctx)
    if ok then
      ok, herr, hcode = before(self, phase, ctx)
    end
    if not ok then
      return nil, herr, hcode
    end
  end
  return res, err, code
end

-- A refresh for write_checked: where ctx's tag points now.
local function tag_refresh(self, repo)
  return function(ctx)
    return read_old_digest(self, repo, ctx)
  end
end

-- put_manifest(repo, reference, body, content_type, ctx) -> digest, info
--   | nil, err, code; info = { digest, size, media_type, subject (its
--   digest), warnings (after-hook failures) }
function _M:put_manifest(repo, reference, body, content_type, ctx_in)
  check_string(repo, "repository name")
  check_string(reference, "reference")
  check_string(body, "body")
  local parsed, err, code = self.handlers:parse(content_type, body)
  if not parsed then
    return nil, err, code
  end
  local m = parsed.c
  local tag, dgst, expected
  if is_digest(reference) then
    local want, algo = digest.parse(reference)
    if not want then
      m:close()
      return nil, "invalid digest: " .. reference, "DIGEST_INVALID"
    end
    local got = parsed.digest
    if algo ~= "sha256" then
      got = digest.compute(body, algo)
    end
    if got ~= want then
      m:close()
      return nil, "digest mismatch: expected " .. want .. " got "
        .. tostring(got), "DIGEST_INVALID"
    end
    dgst, expected = want, want
  else
    if not valid_tag(reference) then
      m:close()
      return nil, "invalid tag: " .. reference:sub(1, 200), "TAG_INVALID"
    end
    tag, dgst = reference, parsed.digest
  end
  local ok
  ok, err, code = self.handlers:validate(parsed, self.store)
  if not ok then
    m:close()
    return nil, err, code
  end

  local ctx = new_ctx("put_manifest", repo, ctx_in)
  ctx.reference = reference
  ctx.tag = tag
  ctx.digest = dgst
  ctx.media_type = parsed.media_type
  ctx.manifest = parsed.doc
  ctx.descriptors = parsed.descriptors
  ctx.subject = parsed.subject
  ctx.artifact_type = parsed.artifact_type
  ctx.size = parsed.size
  if tag then
    ok, err, code = read_old_digest(self, repo, ctx)
  end
  if ok then
    ok, err, code = before(self, "before_manifest_put", ctx)
  end
  if ok and tag then
    ok, err, code = before(self, "before_tag_set", ctx)
  end
  if not ok then
    m:close()
    return nil, err, code
  end

  local stored
  if tag then
    stored, err, code = write_checked(self, ctx, "before_tag_set",
      tag_refresh(self, repo), function()
        return self.store:manifest_put(repo, m, { tag = tag,
          digest = expected, tag_expected = ctx.old_digest or false })
      end)
  else
    stored, err, code = self.store:manifest_put(repo, m, { digest = expected })
  end
  m:close()
  if not stored then
    return nil, err, code
  end
  ctx.digest = stored
  local warnings = after(self, "after_manifest_put", ctx)
  if tag then
    warnings = after(self, "after_tag_set", ctx, warnings)
  end
  return stored, {
    digest = stored,
    size = parsed.size,
    media_type = parsed.media_type,
    subject = parsed.subject and parsed.subject.digest or nil,
    warnings = warnings,
  }
end

local function read_ctx(op, repo, reference, ctx_in)
  local ctx = new_ctx(op, repo, ctx_in)
  ctx.reference = reference
  if is_digest(reference) then
    ctx.digest = reference
  else
    ctx.tag = reference
  end
  return ctx
end

-- get_manifest(repo, reference, ctx) -> body, info | nil, err, code
function _M:get_manifest(repo, reference, ctx_in)
  check_string(repo, "repository name")
  check_string(reference, "reference")
  local ok, err, code = before(self, "before_read",
    read_ctx("get_manifest", repo, reference, ctx_in))
  if not ok then
    return nil, err, code
  end
  return self.store:manifest_get(repo, reference)
end

-- head_manifest(repo, reference, ctx) -> info | nil, err, code
function _M:head_manifest(repo, reference, ctx_in)
  check_string(repo, "repository name")
  check_string(reference, "reference")
  local ok, err, code = before(self, "before_read",
    read_ctx("head_manifest", repo, reference, ctx_in))
  if not ok then
    return nil, err, code
  end
  return self.store:manifest_head(repo, reference)
end

local function deletes_disabled()
  return nil, "deletes are disabled in this registry", "UNSUPPORTED"
end

-- delete_manifest(repo, reference, ctx) -> true, warnings | nil, err, code
-- By digest: the manifest and its tags. By tag: only the tag.
function _M:delete_manifest(repo, reference, ctx_in)
  check_string(repo, "repository name")
  check_string(reference, "reference")
  if not self.delete then
    return deletes_disabled()
  end
  local st = self.store
  if is_digest(reference) then
    local dgst = digest.parse(reference)
    if not dgst then
      return nil, "invalid digest: " .. reference, "DIGEST_INVALID"
    end
    local ctx = new_ctx("delete_manifest", repo, ctx_in)
    ctx.reference = reference
    ctx.digest = dgst
    local ok, err, code = read_tags(self, repo, dgst, ctx)
    if ok then
      ok, err, code = before(self, "before_manifest_delete", ctx)
    end
    if not ok then
      return nil, err, code
    end
    ok, err, code = write_checked(self, ctx, "before_manifest_delete",
      function(c) return read_tags(self, repo, dgst, c) end,
      function() return st:manifest_delete(repo, dgst, ctx.tags) end)
    if not ok then
      return nil, err, code
    end
    return true, after(self, "after_manifest_delete", ctx)
  end
  if not valid_tag(reference) then
    return nil, "invalid tag: " .. reference:sub(1, 200), "TAG_INVALID"
  end
  local ctx = new_ctx("delete_tag", repo, ctx_in)
  ctx.reference = reference
  ctx.tag = reference
  -- the digest a tag delete names is where the tag points
  local function refresh(c)
    local ok, err, code = read_old_digest(self, repo, c)
    c.digest = c.old_digest
    return ok, err, code
  end
  local ok, err, code = refresh(ctx)
  if ok then
    ok, err, code = before(self, "before_tag_delete", ctx)
  end
  if not ok then
    return nil, err, code
  end
  ok, err, code = write_checked(self, ctx, "before_tag_delete", refresh,
    function()
      return st:tag_delete_if(repo, reference, ctx.old_digest or false)
    end)
  if not ok then
    return nil, err, code
  end
  return true, after(self, "after_tag_delete", ctx)
end

-- set_tag(repo, tag, digest, ctx) -> true, warnings | nil, err, code
function _M:set_tag(repo, tag, dgst, ctx_in)
  check_string(repo, "repository name")
  check_string(tag, "tag")
  check_string(dgst, "digest")
  if not valid_tag(tag) then
    return nil, "invalid tag: " .. tag:sub(1, 200), "TAG_INVALID"
  end
  local ctx = new_ctx("set_tag", repo, ctx_in)
  ctx.reference = tag
  ctx.tag = tag
  ctx.digest = dgst
  local ok, err, code = read_old_digest(self, repo, ctx)
  if ok then
    ok, err, code = before(self, "before_tag_set", ctx)
  end
  if not ok then
    return nil, err, code
  end
  ok, err, code = write_checked(self, ctx, "before_tag_set",
    tag_refresh(self, repo),
    function()
      return self.store:tag_set_if(repo, tag, dgst, ctx.old_digest or false)
    end)
  if not ok then
    return nil, err, code
  end
  return true, after(self, "after_tag_set", ctx)
end

-- admit(repo, action, ctx) -> true | nil, err, code: the before_request
-- hooks on what a request is about to do to repo ("pull", "push" or
-- "delete"), before any of its body is read.
function _M:admit(repo, action, ctx_in)
  check_string(repo, "repository name")
  check_string(action, "action")
  if not self.hooks:has("before_request") then
    return true
  end
  local ctx = new_ctx("request", repo, ctx_in)
  ctx.action = action
  return before(self, "before_request", ctx)
end

-- start_upload(repo, ctx) -> upload | nil, err, code
function _M:start_upload(repo, ctx_in)
  check_string(repo, "repository name")
  local ok, err, code = before(self, "before_blob_upload",
    new_ctx("start_upload", repo, ctx_in))
  if not ok then
    return nil, err, code
  end
  local up
  up, err, code = self.store:blob_writer(repo)
  if not up then
    return nil, err, code
  end
  up.repo = repo
  return up
end

-- open_upload(repo, id, mode, ctx) -> upload | nil, err, code
-- mode "w" continues the upload (before_blob_upload), "r" reads its status
-- (before_read).
function _M:open_upload(repo, id, mode, ctx_in)
  check_string(repo, "repository name")
  check_string(id, "upload id")
  mode = mode or "w"
  local ctx = new_ctx(mode == "w" and "open_upload" or "upload_status",
    repo, ctx_in)
  ctx.upload_id = id
  local ok, err, code = before(self,
    mode == "w" and "before_blob_upload" or "before_read", ctx)
  if not ok then
    return nil, err, code
  end
  local up
  up, err, code = self.store:upload_open(repo, id, mode)
  if not up then
    return nil, err, code
  end
  up.repo = repo
  return up
end

-- commit_upload(upload, digest, size, ctx) -> true, warnings
--   | nil, err, code
-- The upload's repository is upload.repo (set by start_upload and
-- open_upload) or ctx.repo. A refused commit cancels the upload: the
-- policy's answer will not change, and its data would only take space.
function _M:commit_upload(up, dgst, size, ctx_in)
  if type(up) ~= "table" then
    error("upload must be an upload object", 2)
  end
  local repo = up.repo or (ctx_in and ctx_in.repo)
  if type(repo) ~= "string" then
    error("upload has no repository (open it through the registry)", 2)
  end
  check_string(dgst, "digest")
  local ctx = new_ctx("commit_upload", repo, ctx_in)
  ctx.digest = dgst
  ctx.size = up:size()
  ctx.declared_size = size
  ctx.upload_id = up.id
  local ok, err, code = before(self, "before_blob_commit", ctx)
  if not ok then
    up:cancel()
    return nil, err, code
  end
  ok, err, code = up:commit(dgst, size)
  if not ok then
    return nil, err, code
  end
  return true, after(self, "after_blob_commit", ctx)
end

-- mount_blob(repo, from, digest, ctx) -> true, warnings | nil, err, code
-- Reading from `from` passes before_read; linking into repo passes
-- before_blob_commit, as an upload of the same blob would.
function _M:mount_blob(repo, from, dgst, ctx_in)
  check_string(repo, "repository name")
  check_string(dgst, "digest")
  local st = self.store
  local ok, err, code
  if from ~= nil then
    check_string(from, "source repository name")
    local rctx = new_ctx("mount_blob", from, ctx_in)
    rctx.digest = dgst
    ok, err, code = before(self, "before_read", rctx)
    if not ok then
      return nil, err, code
    end
  end
  local size
  size, err, code = st:blob_stat(from, dgst)
  if not size then
    return nil, err, code
  end
  local ctx = new_ctx("mount_blob", repo, ctx_in)
  ctx.from = from
  ctx.digest = dgst
  ctx.size = size
  ok, err, code = before(self, "before_blob_commit", ctx)
  if not ok then
    return nil, err, code
  end
  ok, err, code = st:blob_mount(repo, from, dgst)
  if not ok then
    return nil, err, code
  end
  return true, after(self, "after_blob_commit", ctx)
end

-- delete_blob(repo, digest, ctx) -> true, warnings | nil, err, code
function _M:delete_blob(repo, dgst, ctx_in)
  check_string(repo, "repository name")
  check_string(dgst, "digest")
  if not self.delete then
    return deletes_disabled()
  end
  local ctx = new_ctx("delete_blob", repo, ctx_in)
  ctx.digest = dgst
  local ok, err, code = before(self, "before_blob_delete", ctx)
  if not ok then
    return nil, err, code
  end
  ok, err, code = self.store:blob_delete(repo, dgst)
  if not ok then
    return nil, err, code
  end
  return true, after(self, "after_blob_delete", ctx)
end

-- Reads: before_read, then the store call.
local function read(self, op, repo, ctx_in, fields)
  local ctx = new_ctx(op, repo, ctx_in)
  if fields then
    for k, v in pairs(fields) do
      ctx[k] = v
    end
  end
  return before(self, "before_read", ctx)
end

-- stat_blob(repo, digest, ctx) -> size | nil, err, code
function _M:stat_blob(repo, dgst, ctx_in)
  check_string(repo, "repository name")
  check_string(dgst, "digest")
  local ok, err, code = read(self, "stat_blob", repo, ctx_in,
    { digest = dgst })
  if not ok then return nil, err, code end
  return self.store:blob_stat(repo, dgst)
end

-- blob_send(repo, digest, ctx) -> how to send the blob (Store:blob_send)
--   | nil, err, code; the same read as blob_path
function _M:blob_send(repo, dgst, ctx_in)
  check_string(repo, "repository name")
  check_string(dgst, "digest")
  local ok, err, code = read(self, "blob_path", repo, ctx_in,
    { digest = dgst })
  if not ok then return nil, err, code end
  return self.store:blob_send(repo, dgst)
end

-- blob_path(repo, digest, ctx) -> local path, path under the blobs
--   directory | nil, err, code
function _M:blob_path(repo, dgst, ctx_in)
  check_string(repo, "repository name")
  check_string(dgst, "digest")
  local ok, err, code = read(self, "blob_path", repo, ctx_in,
    { digest = dgst })
  if not ok then return nil, err, code end
  return self.store:blob_path(repo, dgst)
end

-- blob_reader(repo, digest, offset, ctx) -> reader | nil, err, code
function _M:blob_reader(repo, dgst, offset, ctx_in)
  check_string(repo, "repository name")
  check_string(dgst, "digest")
  local ok, err, code = read(self, "read_blob", repo, ctx_in,
    { digest = dgst })
  if not ok then return nil, err, code end
  return self.store:blob_reader(repo, dgst, offset)
end

-- list_tags(repo, { n =, last = }, ctx) -> { tag, ... } | nil, err, code
function _M:list_tags(repo, opts, ctx_in)
  check_string(repo, "repository name")
  local ok, err, code = read(self, "list_tags", repo, ctx_in)
  if not ok then return nil, err, code end
  return self.store:tag_list(repo, opts)
end

-- list_manifests(repo, ctx) -> { digest, ... } | nil, err, code
function _M:list_manifests(repo, ctx_in)
  check_string(repo, "repository name")
  local ok, err, code = read(self, "list_manifests", repo, ctx_in)
  if not ok then return nil, err, code end
  return self.store:manifest_list(repo)
end

-- catalog({ n =, last = }, ctx) -> { repo, ... } | nil, err, code
function _M:catalog(opts, ctx_in)
  local ok, err, code = read(self, "catalog", nil, ctx_in)
  if not ok then return nil, err, code end
  return self.store:catalog(opts)
end

-- referrers(repo, subject, artifact_type, ctx) -> index JSON
--   | nil, err, code
function _M:referrers(repo, subject, artifact_type, ctx_in)
  check_string(repo, "repository name")
  check_string(subject, "subject digest")
  local ok, err, code = read(self, "referrers", repo, ctx_in,
    { digest = subject, artifact_type = artifact_type })
  if not ok then return nil, err, code end
  return self.store:referrers(repo, subject, artifact_type)
end

return _M

-- Lua strings go to C as NUL-terminated ones, where "a\0evil" reads as "a":
-- every string argument of every method of the store's objects, given with
-- a NUL byte in it, must get a clean error and change nothing (before, the
-- gc and fsck methods let link_remove("a\0evil", ...) remove a's link).
--
-- The methods are found by walking the classes, so a method added later
-- fails here until CALLS says how to call it.
require "berth"
local manifest = require "berth.manifest"
local store_mod = require "berth.store"
local driver = require "berth.driver"
local helpers = require "helpers"

-- Arguments that are not names: content (NUL bytes are data) and values
-- Lua checks against a fixed set without handing them to C.
local DATA_MT, ENUM_MT = {}, {}
local function DATA(s) return setmetatable({ s }, DATA_MT) end
local function ENUM(s) return setmetatable({ s }, ENUM_MT) end

local function plain(v)
  if type(v) ~= "table" then return v end
  local mt = getmetatable(v)
  if mt == DATA_MT or mt == ENUM_MT then return v[1] end
  if mt then return v end -- an object (a manifest)
  local t = {}
  for k, x in pairs(v) do t[k] = plain(x) end
  return t
end

-- Each way to put a NUL byte into one string of args (nested tables too).
local function nul_variants(args)
  local out = {}
  local function walk(v, path)
    if type(v) == "string" then
      out[#out + 1] = { path = path, value = v .. "\0evil" }
    elseif type(v) == "table" and getmetatable(v) == nil then
      for k, x in pairs(v) do
        local p = { unpack(path) }
        p[#p + 1] = k
        walk(x, p)
      end
    end
  end
  for i = 1, args.n do walk(args[i], { i }) end
  local calls = {}
  for _, var in ipairs(out) do
    local a = { n = args.n }
    for i = 1, args.n do a[i] = plain(args[i]) end
    local t = a
    for j = 1, #var.path - 1 do t = t[var.path[j]] end
    t[var.path[#var.path]] = var.value
    local where = table.concat(var.path, ".")
    calls[#calls + 1] = { args = a, where = where }
  end
  return calls
end

local function pack(...) return { n = select("#", ...), ... } end

-- The store's whole tree: every directory and every file's content.
local function snapshot(root)
  local p = io.popen("cd '" .. root .. "' && find . -type d | sort && "
    .. "find . -type f -print0 | sort -z | xargs -0 -r sha256sum")
  local s = p:read("*a")
  p:close()
  return s
end

-- One test per method of class: every string argument of calls[name]()
-- in turn with a NUL byte in it; object() makes the object to call, and
-- tree() is the directory that must stay as it was.
local function check(class, what, calls, object, tree)
  local names = {}
  for name, fn in pairs(class) do
    if type(fn) == "function" and not name:match("^_") then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    it(what .. ":" .. name, function()
      local args = calls[name]
      assert(args ~= nil, "no call of " .. what .. ":" .. name
        .. " in this spec: say how to call it")
      if not args then return end
      for _, call in ipairs(nul_variants(args())) do
        local obj = object()
        local before = snapshot(tree())
        local a = call.args
        local ok, err, code = obj[name](obj, unpack(a, 1, a.n))
        local where = what .. ":" .. name .. " argument " .. call.where
        assert(ok == nil, where .. ": accepted")
        assert(type(err) == "string" and err:find("NUL byte", 1, true),
          where .. ": " .. tostring(err))
        assert(type(code) == "string", where .. ": no code")
        assert(before == snapshot(tree()), where .. ": changed the store")
      end
    end)
  end
end

describe("every binding refuses a NUL byte in a name", function()
  local store, root, fx

  -- a store of its own for each method: a call that got through must not
  -- spoil the next
  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
    fx = {}
    fx.blob = assert(store:blob_put("a", "layer content"))
    fx.config = assert(store:blob_put("a", "{}"))
    assert(store:blob_put("b", "in b"))
    local body = ('{"schemaVersion":2,'
      .. '"mediaType":"application/vnd.oci.image.manifest.v1+json",'
      .. '"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
      .. '"digest":"%s","size":2},"layers":[{"mediaType":'
      .. '"application/vnd.oci.image.layer.v1.tar","digest":"%s",'
      .. '"size":13}]}'):format(fx.config, fx.blob)
    fx.manifest = assert(store:manifest_put("a",
      assert(manifest.parse(body)), { tag = "t" }))
    fx.body = body
    local up = assert(store:blob_writer("a"))
    fx.upload = up.id
    up:close()
    fx.file = helpers.tmpdir() .. "/local"
    helpers.write_file(fx.file, "local file")
    -- what lookups cache, so that the snapshots compare only effects
    assert(store:tag_lookup("a", fx.manifest))
    assert(store:referrers("a", fx.manifest))
  end)

  -- method -> function(fx) -> a valid argument list, each string in it a
  -- name the call hands to C unless marked DATA or ENUM; or false for a
  -- method that takes no string.
  local function m() return assert(manifest.parse(fx.body)) end
  local STORE = {
    close = false, new_epoch = false, repositories = false,
    blob_stat = function() return pack("a", fx.blob) end,
    blob_get = function() return pack("a", fx.blob) end,
    blob_path = function() return pack("a", fx.blob) end,
    blob_send = function() return pack("a", fx.blob) end,
    blob_put = function() return pack("a", DATA"x", ENUM"sha256") end,
    blob_mount = function() return pack("c", "a", fx.blob) end,
    blob_delete = function() return pack("a", fx.blob) end,
    blob_purge = function() return pack(fx.blob) end,
    blob_condemn = function() return pack(fx.blob) end,
    blob_reprieve = function() return pack(fx.blob) end,
    blob_purge_condemned = function() return pack(fx.blob) end,
    blob_reprieve_all = false,
    blob_link_withdraw = function() return pack("a", fx.blob) end,
    blob_link_restore = function() return pack("a", fx.blob) end,
    blob_link_reprieve = function() return pack("a", fx.blob) end,
    blob_links_condemn = function() return pack(fx.blob) end,
    blob_links_purge = function() return pack(fx.blob) end,
    blob_restore_links = false,
    blob_list = function() return pack("a") end,
    blob_reader = function() return pack("a", fx.blob) end,
    blob_info = function() return pack(fx.blob) end,
    blob_verify = function() return pack(fx.blob) end,
    follow = function() return pack(fx.file) end,
    blob_writer = function() return pack("a") end,
    upload_open = function() return pack("a", fx.upload, ENUM"w") end,
    uploads = function() return pack("a") end,
    upload_purge = function() return pack("a", fx.upload) end,
    links = function() return pack("a", { ENUM"tag" }) end,
    link_stat = function() return pack("a", ENUM"tag", nil, "t") end,
    link_remove = function() return pack("a", ENUM"tag", nil, "t") end,
    link_leftover = function() return pack("a", ENUM"tag_index", fx.manifest,
      "t") end,
    blob_leftover = function() return pack(fx.blob) end,
    tag_get = function() return pack("a", "t") end,
    tag_set = function() return pack("a", "t2", fx.manifest) end,
    tag_set_if = function() return pack("a", "t", fx.manifest,
      fx.manifest) end,
    tag_delete = function() return pack("a", "t") end,
    tag_delete_if = function() return pack("a", "t", fx.manifest) end,
    tag_list = function() return pack("a", { n = 10, last = "s" }) end,
    tag_lookup = function() return pack("a", fx.manifest) end,
    tag_reindex = function() return pack("a") end,
    catalog = function() return pack({ n = 10, last = "a" }) end,
    manifest_put = function() return pack("a", m(), { tag = "t2",
      digest = fx.manifest, tag_expected = fx.manifest }) end,
    manifest_get = function() return pack("a", "t") end,
    manifest_head = function() return pack("a", fx.manifest) end,
    manifest_delete = function() return pack("a", fx.manifest, { "t" }) end,
    manifest_restore = function() return pack("a", fx.manifest) end,
    manifest_list = function() return pack("a") end,
    referrers = function() return pack("a", fx.manifest,
      "application/example") end,
    referrers_rebuild = function() return pack("a") end,
  }
  local UPLOAD = {
    size = false, started = false, flush = false, cancel = false,
    close = false,
    write = function() return pack(DATA"chunk") end,
    adopt = function() return pack(fx.file) end,
    commit = function() return pack(helpers.sha256sum("")) end,
  }
  local READER = { read = false, close = false }
  local FOLLOWER = { hashed = false, close = false }

  -- objects other than the store are closed at the end
  local opened = {}
  after_each(function()
    for _, o in ipairs(opened) do o:close() end
    opened = {}
  end)
  local function new(o)
    opened[#opened + 1] = o
    return o
  end
  local function tree() return root end

  check(store_mod.Store, "Store", STORE, function() return store end, tree)
  check(store_mod.Upload, "Upload", UPLOAD, function()
    return new(assert(store:blob_writer("a")))
  end, tree)
  check(store_mod.Reader, "Reader", READER, function()
    return new(assert(store:blob_reader("a", fx.blob)))
  end, tree)
  check(store_mod.Follower, "Follower", FOLLOWER, function()
    return new(assert(store:follow(fx.file)))
  end, tree)
end)

describe("berth.driver refuses a NUL byte in a path", function()
  local d, root

  before_each(function()
    root = helpers.tmpdir()
    d = assert(driver.fs(root))
    assert(d:put("/a", "content"))
  end)

  after_each(function() d:close() end)

  local DRIVER = {
    fs = false, mem = false, fault = false, s3 = false, -- constructors
    close = false, count = false, watch = false,
    arm = function() return pack(ENUM"off", 0) end,
    get = function() return pack("/a") end,
    put = function() return pack("/p", DATA"x") end,
    stat = function() return pack("/a") end,
    list = function() return pack("/") end,
    move = function() return pack("/a", "/b") end,
    remove = function() return pack("/a") end,
    local_path = function() return pack("/a") end,
    reader = function() return pack("/a") end,
    writer = function() return pack("/w") end,
    import = function() return pack("/i", root .. "/a") end,
    list_version = function() return pack("/") end,
    leftover = function() return pack("/", 0) end,
    lock = function() return pack("/l") end,
    put_if = function() return pack("/p", DATA"x", "version") end,
    list_page = function() return pack("/", "cursor") end,
    send = function() return pack("/a") end,
  }
  check(driver, "driver", DRIVER, function() return d end,
    function() return root end)

  it("driver.s3", function()
    local o = { endpoint = "http://127.0.0.1:1", bucket = "b",
      region = "r", access_key = "k", secret_key = "s", root = "x" }
    for _, k in ipairs({ "endpoint", "bucket", "region", "access_key",
        "secret_key", "root" }) do
      local bad = {}
      for kk, v in pairs(o) do bad[kk] = v end
      bad[k] = bad[k] .. "\0evil"
      local ok, err, code = driver.s3(bad)
      assert.is_nil(ok, k)
      assert.matches("NUL byte", err, 1, true)
      assert.equal("EINVAL", code)
    end
  end)

  it("driver.fs", function()
    local ok, err, code = driver.fs(root .. "/x\0evil")
    assert.is_nil(ok)
    assert.matches("NUL byte", err, 1, true)
    assert.equal("EINVAL", code)
    assert.is_nil(helpers.read_file(root .. "/x"))
  end)
end)

describe("berth.manifest refuses a NUL byte in a media type", function()
  local BODY = '{"schemaVersion":2,"config":{"mediaType":"a/b","digest":'
    .. '"sha256:' .. ("0"):rep(64) .. '","size":1},"layers":[]}'
  local function refused(ok, err, code)
    assert.is_nil(ok)
    assert.matches("NUL byte", err, 1, true)
    assert.equal("MANIFEST_INVALID", code)
  end

  it("parse and detect", function()
    local ct = "application/vnd.oci.image.manifest.v1+json\0evil"
    refused(manifest.parse(BODY, ct))
    refused(manifest.detect(ct, BODY))
  end)

  it("new", function()
    refused(manifest.new{ media_type = "a/b\0evil", body = "{}" })
    refused(manifest.new{ media_type = "a/b", body = "{}",
      artifact_type = "c/d\0evil" })
    local ref = { digest = "sha256:" .. ("0"):rep(64) }
    for _, k in ipairs({ "media_type", "artifact_type" }) do
      ref[k] = "c/d\0evil"
      refused(manifest.new{ media_type = "a/b", body = "{}", refs = { ref } })
      ref[k] = nil
    end
    for _, k in ipairs({ "os", "architecture" }) do
      ref.platform = { [k] = "x\0evil" }
      refused(manifest.new{ media_type = "a/b", body = "{}", refs = { ref } })
    end
  end)
end)

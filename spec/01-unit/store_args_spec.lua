-- The store object is one class: require "berth.store" alone gives every
-- method, and every method decodes its arguments the same way (one
-- decoder): a closed store, a value of the wrong type or out of range
-- raise at the caller's line, naming the argument; before, the methods
-- added from berth.manifest, berth.tag and berth.gc came only with those
-- modules, and the numbers and a closed manifest went unchecked to C.
local berth = require "berth"
local manifest = require "berth.manifest"
local store_mod = require "berth.store"
local helpers = require "helpers"

-- The public methods of a class, sorted.
local function methods(class)
  local list = {}
  for name, fn in pairs(class) do
    if type(fn) == "function" and not name:match("^_") then
      list[#list + 1] = name
    end
  end
  table.sort(list)
  return list
end

describe("require 'berth.store'", function()
  it("alone gives every method of the store", function()
    -- A process of its own: this one has loaded every berth module.
    local script = os.tmpname()
    helpers.write_file(script, [[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local Store = require("berth.store").Store
local list = {}
for name, fn in pairs(Store) do
  if type(fn) == "function" and not name:match("^_") then
    list[#list + 1] = name
  end
end
table.sort(list)
print(table.concat(list, " "))
]])
    local p = io.popen("luajit " .. script .. " 2>&1; rm -f " .. script)
    local alone = p:read("*a"):gsub("\n$", "")
    p:close()
    assert.equal(table.concat(methods(store_mod.Store), " "), alone)
    -- what berth.store's own users call
    for _, name in ipairs({ "blob_stat", "manifest_put", "tag_set",
        "catalog", "uploads", "links", "blob_verify" }) do
      assert.matches(" " .. name .. " ", " " .. alone .. " ", 1, true)
    end
  end)
end)

-- An error raised at the caller's line names a line of this file, not one
-- inside berth.
local HERE = debug.getinfo(1, "S").short_src
local function raised_here(err, message)
  local where, said = tostring(err):match("^(.-):%d+: (.*)$")
  assert.equal(HERE, where, tostring(err))
  assert.equal(message, said)
end

local function raises_here(fn, message)
  local ok, err = pcall(fn)
  assert.is_false(ok, "accepted")
  raised_here(err, message)
end

describe("every store method", function()
  it("raises 'store is closed' at its caller's line", function()
    local store = assert(berth.open{ root = helpers.tmpdir() })
    store:close()
    for _, name in ipairs(methods(store_mod.Store)) do
      if name ~= "close" then
        local ok, err = pcall(function()
          local r = store[name](store); return r
        end)
        assert.is_false(ok, name)
        raised_here(err, "store is closed")
      end
    end
  end)
end)

describe("a store method's arguments", function()
  local store, dgst
  before_each(function()
    store = helpers.new_store({ fsync = "none" })
    dgst = assert(store:blob_put("a", "content"))
  end)

  it("a closed manifest raises at the caller's line", function()
    local m = assert(manifest.parse('{"schemaVersion":2,"mediaType":'
      .. '"application/vnd.oci.image.manifest.v1+json","config":{'
      .. '"mediaType":"a/b","digest":"' .. dgst .. '","size":7},'
      .. '"layers":[]}'))
    m:close()
    raises_here(function() local r = store:manifest_put("a", m); return r end,
      "manifest is closed")
    raises_here(function() local r = store:manifest_put("a", {}); return r end,
      "manifest must be a manifest object")
  end)

  it("a limit, offset or size must be a non-negative integer", function()
    local COUNT = "%s must be a non-negative integer"
    for _, bad in ipairs({ "10", -1, 1.5, true }) do
      raises_here(function()
        local r = store:blob_get("a", dgst, bad); return r
      end, COUNT:format("max"))
      raises_here(function()
        local r = store:blob_reader("a", dgst, bad); return r
      end, COUNT:format("offset"))
      local up = assert(store:blob_writer("a"))
      raises_here(function()
        local r = up:commit(dgst, bad); return r
      end, COUNT:format("size"))
      up:cancel()
      raises_here(function()
        local r = store:tag_list("a", { n = bad }); return r
      end, COUNT:format("n"))
    end
    -- nil is the default, 0 is a value
    assert.equal("content", store:blob_reader("a", dgst, nil):read(100))
    assert.equal("", store:blob_reader("a", dgst, 7):read(100))
    assert.equal("content", store:blob_get("a", dgst))
  end)

  it("a cutoff must be a number", function()
    for _, bad in ipairs({ "1h", true, {} }) do
      raises_here(function()
        local r = store:blob_leftover(dgst, bad, false); return r
      end, "cutoff must be a number")
      raises_here(function()
        local r = store:link_leftover("a", "layer", dgst, nil, bad, false)
        return r
      end, "cutoff must be a number")
    end
    -- not a leftover: the blob has its data, the link its file
    local ok, _, code = store:blob_leftover(dgst, 0, false)
    assert.is_nil(ok)
    assert.equal("EEXISTS", code)
    ok, _, code = store:link_leftover("a", "layer", dgst, nil, nil, false)
    assert.is_nil(ok)
    assert.equal("EEXISTS", code)
  end)

  it("a mode or a link kind must be one of its values", function()
    local up = assert(store:blob_writer("a"))
    up:close()
    raises_here(function()
      local r = store:upload_open("a", up.id, "rw"); return r
    end, "mode must be one of w, r")
    local status = assert(store:upload_open("a", up.id, "r"))
    assert.is_false(status.writable)
    status:close()
    raises_here(function()
      local r = store:link_stat("a", "layers", dgst); return r
    end, "link kind must be one of layer, revision, tag, tag_index")
    raises_here(function()
      local r = store:links("a", { "layer", "tags" }); return r
    end, "link kind must be one of layer, revision, tag, tag_index")
  end)
end)

-- lua/berth/ffi.lua mirrors core/include/berth/*.h by hand: this spec keeps
-- them from drifting apart. Every public function of the headers must be
-- declared for LuaJIT and exported by its library: auth.h's by
-- libberth-auth, s3.h's by libberth-s3, the others' by libberth.
local berth_ffi = require "berth.ffi"
local C = berth_ffi.C
local A = berth_ffi.load_auth()
local S3 = berth_ffi.load_s3()

-- The library a header's functions are in.
local function lib_of(path)
  return path:match("/auth%.h$") and A or path:match("/s3%.h$") and S3 or C
end
local helpers = require "helpers"

-- Public function names of the C headers: "berth_x(" at the start of a
-- declaration (after its return type).
local function header_functions()
  local names = {}
  local p = io.popen("ls core/include/berth/*.h core/include/berth/sys/*.h")
  for path in p:lines() do
    local text = helpers.read_file(path):gsub("/%*.-%*/", "")
    for name in text:gmatch("[%w_%*]+%s+%**(berth_[%w_]+)%s*%(") do
      names[name] = path
    end
  end
  p:close()
  return names
end

describe("the FFI declarations", function()
  local names = header_functions()

  it("find the headers' functions", function()
    assert.is_not_nil(names.berth_blob_stat)
    assert.is_not_nil(names.berth_digest_parse)
    assert.is_nil(names.berth_error) -- a type, not a function
  end)

  it("declare every function of the headers, and the library has it",
    function()
      local missing = {}
      for name, path in pairs(names) do
        local lib = lib_of(path)
        local ok = pcall(function() return lib[name] end)
        if not ok then
          missing[#missing + 1] = name .. " (" .. path .. ")"
        end
      end
      table.sort(missing)
      assert.same({}, missing)
    end)

  it("leave tokens, passwords and S3 out of libberth", function()
    assert.is_not_nil(names.berth_jwt_verify)
    assert.is_not_nil(names.berth_driver_s3_new)
    for name, path in pairs(names) do
      if lib_of(path) ~= C then
        assert.is_false(pcall(function() return C[name] end), name)
      end
    end
  end)

  -- built with -fvisibility=hidden: BERTH_API marks the API (errors.h)
  it("cover everything the libraries export", function()
    local auth = berth_ffi.path:gsub("libberth[^/]*$", "libberth-auth.so")
    local s3 = berth_ffi.path:gsub("libberth[^/]*$", "libberth-s3.so")
    for _, lib in ipairs({ berth_ffi.path, auth, s3 }) do
      local extra = {}
      local p = io.popen("nm -D --defined-only " .. lib)
      for line in p:lines() do
        local kind, name = line:match("^%x+ (%a) ([%w_]+)$")
        if kind and kind ~= "U" and not names[name] then
          extra[#extra + 1] = name
        end
      end
      p:close()
      table.sort(extra)
      assert.same({}, extra, lib)
    end
  end)
end)

-- The cdef of lua/berth/ffi.lua copies the headers' structs and enums by
-- hand: a field out of place, an array of the wrong length or a changed
-- constant would have LuaJIT read and write beside what C does. The
-- program spec/01-unit/ffi_layout.c prints what the C compiler makes of
-- the headers; this compares it with LuaJIT's view of the cdef.
local ffi = require "ffi"
local helpers = require "helpers"
local C = require("berth.ffi").C

local function build_dir()
  local lib = os.getenv("BERTH_LIB") or "build/libberth.so"
  return lib:match("^(.*)/[^/]*$") or "."
end

-- The C side: sizes["t"], offsets["t"]["f"], consts["NAME"]
local function c_layout()
  local sizes, offsets, consts = {}, {}, {}
  local p = assert(io.popen(build_dir() .. "/berth_ffi_layout"))
  for line in p:lines() do
    local kind, a, b, c = line:match("^(%a+) (%S+) (%S+) ?(%S*)$")
    if kind == "size" then
      sizes[a] = tonumber(b)
    elseif kind == "offset" then
      offsets[a] = offsets[a] or {}
      offsets[a][b] = tonumber(c)
    elseif kind == "const" then
      consts[a] = tonumber(b)
    end
  end
  p:close()
  return sizes, offsets, consts
end

-- The cdef side: the structs declared with a body and their fields, and
-- the enum constants.
local function cdef_layout()
  local text = helpers.read_file("lua/berth/ffi.lua")
    :match("ffi%.cdef %[%[(.-)%]%]"):gsub("/%*.-%*/", "")
  local structs, consts = {}, {}
  for name, body in text:gmatch("typedef struct ([%w_]+) (%b{})") do
    local fields = {}
    for decl in body:sub(2, -2):gmatch("[^;]+") do
      local field = decl:match("([%w_]+)%s*%[[^%]]*%]%s*$")
        or decl:match("([%w_]+)%s*$")
      if field then
        fields[#fields + 1] = field
      end
    end
    structs[name] = fields
  end
  for name, value in text:gmatch("(BERTH_[%w_]+) = (%-?%d+)") do
    consts[name] = tonumber(value)
  end
  return structs, consts
end

describe("the FFI declarations' layout", function()
  local sizes, offsets, c_consts = c_layout()
  local structs, consts = cdef_layout()

  it("is read from both sides", function()
    assert.equal(264, sizes.berth_error)
    assert.same({ "code", "sys_errno", "message" }, structs.berth_error)
    assert.equal(2, consts.BERTH_FSYNC_FULL)
  end)

  it("gives every struct the size and field offsets C gives it", function()
    local wrong = {}
    for name, fields in pairs(structs) do
      if sizes[name] == nil then
        wrong[#wrong + 1] = name .. ": not in ffi_layout.c"
      elseif ffi.sizeof(name) ~= sizes[name] then
        wrong[#wrong + 1] = ("%s: size %d, C says %d"):format(name,
          ffi.sizeof(name), sizes[name])
      end
      local c_fields = offsets[name] or {}
      local seen = {}
      for _, f in ipairs(fields) do
        seen[f] = true
        if c_fields[f] == nil then
          wrong[#wrong + 1] = name .. "." .. f .. ": not in ffi_layout.c"
        elseif ffi.offsetof(name, f) ~= c_fields[f] then
          wrong[#wrong + 1] = ("%s.%s: offset %d, C says %d"):format(name, f,
            ffi.offsetof(name, f), c_fields[f])
        end
      end
      for f in pairs(c_fields) do
        if not seen[f] then
          wrong[#wrong + 1] = name .. "." .. f .. ": not in the cdef"
        end
      end
    end
    for name in pairs(sizes) do
      if not structs[name] then
        wrong[#wrong + 1] = name .. ": not in the cdef"
      end
    end
    table.sort(wrong)
    assert.same({}, wrong)
  end)

  it("gives every enum constant the value C gives it", function()
    local wrong = {}
    for name, value in pairs(consts) do
      if c_consts[name] == nil then
        wrong[#wrong + 1] = name .. ": not in ffi_layout.c"
      elseif value ~= c_consts[name] or tonumber(C[name]) ~= value then
        wrong[#wrong + 1] = ("%s: %d, C says %d"):format(name, value,
          c_consts[name])
      end
    end
    for name in pairs(c_consts) do
      if consts[name] == nil then
        wrong[#wrong + 1] = name .. ": not in the cdef"
      end
    end
    table.sort(wrong)
    assert.same({}, wrong)
  end)
end)

-- The one JSON encoder of what berth writes (HTTP bodies, annotations):
-- "/" stays "/", as Distribution writes it (lua-cjson writes "\/").
local cjson = require "cjson.safe"

local concat = table.concat
local ipairs = ipairs

local _M = { _VERSION = "0.1.0" }

-- encode(value) -> JSON text | nil, err
-- Every "\/" cjson writes is an escaped "/": a "\" of the input is "\\",
-- and no "/" is left unescaped, so one pass takes them all back.
local function encode(v)
  local s, err = cjson.encode(v)
  if not s then
    return nil, err
  end
  return (s:gsub("\\/", "/"))
end
_M.encode = encode

-- Tags and repository names need no escaping (one scan proves it): far
-- cheaper than encoding a thousand tags one by one.
local NEEDS_ESCAPE = "[^%w._/,%-]"

-- string(s) -> a JSON string
function _M.string(s)
  if not s:find(NEEDS_ESCAPE) then
    return '"' .. s .. '"'
  end
  return encode(s)
end

-- string_array(list) -> a JSON array of strings. Put together here anyway:
-- Debian's lua-cjson encodes an empty table as {}.
function _M.string_array(list)
  if #list == 0 then
    return "[]"
  elseif not concat(list, ","):find(NEEDS_ESCAPE) then
    return '["' .. concat(list, '","') .. '"]'
  end
  local parts = {}
  for i, s in ipairs(list) do
    parts[i] = encode(s)
  end
  return "[" .. concat(parts, ",") .. "]"
end

return _M

-- Glob patterns for repository names and tags, shared by the plugins:
-- `*` matches within one path segment, `**` across segments, `?` one
-- character other than "/". Everything else is literal.
local type = type
local error = error
local concat = table.concat

local _M = { _VERSION = "0.1.0" }

-- Compiled patterns, by glob; globs come from configuration, so few.
local cache = {}

-- compile(glob) -> Lua pattern, anchored at both ends
function _M.compile(glob)
  if type(glob) ~= "string" then
    error("glob must be a string", 2)
  end
  local pat = cache[glob]
  if pat then
    return pat
  end
  local out, n, i = { "^" }, 1, 1
  local len = #glob
  while i <= len do
    local c = glob:sub(i, i)
    n = n + 1
    if c == "*" then
      if glob:sub(i + 1, i + 1) == "*" then
        out[n] = ".*"
        i = i + 1
      else
        out[n] = "[^/]*"
      end
    elseif c == "?" then
      out[n] = "[^/]"
    elseif c:find("^%w$") then
      out[n] = c
    else
      -- "-", ".", "/" and the rest: escaped, so never a pattern item
      out[n] = "%" .. c
    end
    i = i + 1
  end
  out[n + 1] = "$"
  pat = concat(out)
  cache[glob] = pat
  return pat
end

-- match(s, glob) -> true | false
function _M.match(s, glob)
  return s:find(_M.compile(glob)) ~= nil
end

-- match_any(s, globs) -> the first glob that matches s | nil
function _M.match_any(s, globs)
  if type(s) ~= "string" or not globs then
    return nil
  end
  for i = 1, #globs do
    if s:find(_M.compile(globs[i])) then
      return globs[i]
    end
  end
  return nil
end

return _M

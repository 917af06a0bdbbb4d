-- Shared by the spec/11-install specs: `cmake --install` of the build the
-- specs run against (the directory of $BERTH_LIB) into a fresh prefix.
--   local support = require "11-install.support"
local helpers = require "helpers"

local _M = {}

-- q(s) -> s quoted for sh
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.q = q

-- Commands run without the sanitizer runtime the ASan pass preloads into
-- luajit (curl and the compilers need not carry it); what runs the
-- installed library gets it back from _M.RUN_ENV.
local SANITIZER = {}
for _, k in ipairs({ "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS" }) do
  local v = os.getenv(k)
  if v then
    SANITIZER[#SANITIZER + 1] = k .. "=" .. q(v)
  end
end
_M.RUN_ENV = "env -u BERTH_LIB " .. table.concat(SANITIZER, " ")

-- sh(cmd) -> output (stdout and stderr), exit code
function _M.sh(cmd)
  local p = io.popen("unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS; ( "
    .. cmd .. "\n) 2>&1; printf '\\n%d' $?")
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)\n(%d+)$")
  return text or out, tonumber(code)
end

-- must(cmd) -> output; raises with the command and its output on failure
function _M.must(cmd)
  local out, code = _M.sh(cmd)
  if code ~= 0 then
    error(("command failed (exit %s): %s\n%s"):format(tostring(code), cmd,
      out), 2)
  end
  return out
end

-- The build directory: where the library the specs load was built.
function _M.build_dir()
  local lib = os.getenv("BERTH_LIB") or "build/libberth.so"
  if lib:sub(1, 1) ~= "/" then
    lib = helpers.cwd() .. "/" .. lib
  end
  return (lib:match("^(.*)/[^/]*$"))
end

-- install() -> prefix: a temp directory holding the installed tree
function _M.install()
  local prefix = helpers.tmpdir()
  _M.must("cmake --install " .. q(_M.build_dir()) .. " --prefix "
    .. q(prefix))
  return prefix
end

return _M

-- Every shell example in the README (its ```sh blocks), run as written, in
-- README order, in a copy of the checkout, as a new user would: the quick
-- start builds the copy and serves on 127.0.0.1:5000, the push and pull go
-- to it, and so on. Only the blocks SKIP names are not run. An example
-- that needs a file the user brings (a TLS certificate, the auth.lua the
-- README shows) gets it from spec/fixtures first.
local helpers = require "helpers"
local tools = require "04-nginx.tools"

local q = tools.q

-- first line of a block -> why it is not run here
local SKIP = {
  ["bash .ci/run"] = "the test suite itself",
  ["bash bench/sha256.sh           # berth's SHA-256 against mbedTLS and"
    .. " openssl"] = "benchmarks: minutes of both cores, not a test",
}

-- The environment of a new user's shell: no library or sanitizer the
-- suite runs with, so the copy's own build is what runs (and curl, which
-- deadlocks in setlocale at start under LD_PRELOAD=libasan.so, runs).
local CLEAN_ENV = "env -u BERTH_LIB -u LD_PRELOAD -u ASAN_OPTIONS"
  .. " -u UBSAN_OPTIONS -u LUA_PATH -u LUA_CPATH"

local function sh(cmd)
  local p = io.popen(CLEAN_ENV .. " sh -c " .. q(cmd) .. " 2>&1; echo \"exit $?\"")
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("exit (%d+)%s*$")), out
end

local README = helpers.read_file("README.md")

local function blocks()
  local list = {}
  for block in README:gmatch("\n```sh\n(.-)```") do
    list[#list + 1] = block
  end
  return list
end

-- The README's auth.lua, as the access control section shows it.
local function readme_file(first_line)
  for block in README:gmatch("\n```lua\n(.-)```") do
    if block:sub(1, #first_line) == first_line then
      return block
    end
  end
  error("README has no ```lua block starting " .. first_line)
end

-- A server block runs until the next one: its process group.
local running

local function stop()
  if not running then return end
  os.execute("kill -TERM -" .. running.pgid .. " 2>/dev/null")
  for _ = 1, 200 do
    if sh("pgrep -g " .. running.pgid) ~= 0 then break end
    os.execute("sleep 0.1")
  end
  os.execute("kill -KILL -" .. running.pgid .. " 2>/dev/null")
  running = nil
end

local function serve(dir, block, n)
  stop()
  local log = dir .. "/.example-" .. n .. ".log"
  local pidfile = dir .. "/.example-" .. n .. ".pgid"
  os.execute("cd " .. q(dir) .. " && setsid " .. CLEAN_ENV .. " bash -c "
    .. q("echo $$ > " .. q(pidfile) .. "; exec bash -euo pipefail -c "
      .. q(block)) .. " > " .. q(log) .. " 2>&1 < /dev/null &")
  local tls = block:find("--tls-cert", 1, true)
  local url = (tls and "https" or "http") .. "://127.0.0.1:5000/v2/"
  -- bin/setup may build first: wait while the example's shell lives
  for _ = 1, 3000 do
    local pgid = tonumber((helpers.read_file(pidfile) or ""):match("%d+"))
    if pgid then running = { pgid = pgid } end
    local _, code = sh("curl -s --max-time 2 -o /dev/null -w '%{http_code}'"
      .. (tls and " --cacert " .. q(dir .. "/server.crt") or "") .. " "
      .. url)
    code = code:match("^(%d%d%d)")
    if code == "200" or code == "401" then
      return code
    end
    if running and sh("pgrep -g " .. running.pgid) ~= 0 then
      break
    end
    os.execute("sleep 0.1")
  end
  error("example " .. n .. " did not serve:\n" .. block .. "\n"
    .. (helpers.read_file(log) or ""))
end

describe("the README's shell examples", function()
  it("are all in ```sh blocks (an indented block is a synopsis or output)",
    function()
    for block in ("\n" .. README):gmatch("\n\n(    [^\n]*\n)") do
      local line = block:match("^    (%S+)")
      if line and (line:find("^bin/") or line == "bash" or line == "luajit"
          or line == "umoci" or line == "skopeo" or line == "curl") then
        assert.truthy(block:find(" [--", 1, true),
          "a command outside ```sh: " .. block)
      end
    end
  end)

  it("run as written in a copy of the checkout", function()
    assert.is_not.equal(0, sh("ss -Htln 'sport = :5000' | grep -q ."),
      "port 5000 is in use: the README's examples serve there")
    local dir = helpers.tmpdir()
    finally(function() stop() end)
    -- the files git tracks, as they are in the working tree
    local code, out = sh("cd " .. q(helpers.cwd()) .. " && git ls-files -z"
      .. " | tar --null -T - -cf - | tar -xf - -C " .. q(dir))
    assert.equal(0, code, out)
    -- what a user brings to the examples that name it
    local fx = helpers.cwd() .. "/spec/fixtures/auth/"
    assert.equal(0, sh("cp " .. q(fx .. "tls.crt") .. " " .. q(dir
      .. "/server.crt") .. " && cp " .. q(fx .. "tls.key") .. " "
      .. q(dir .. "/server.key") .. " && cp " .. q(fx .. "rsa.crt") .. " "
      .. q(dir .. "/issuer.crt")))
    helpers.write_file(dir .. "/auth.lua", readme_file("-- auth.lua\n"))
    local ran, list = 0, blocks()
    assert.truthy(#list >= 6, "README has " .. #list .. " ```sh blocks")
    for n, block in ipairs(list) do
      local first = block:match("^[^\n]*")
      if not SKIP[first] then
        ran = ran + 1
        if block:find("bin/berth serve", 1, true) then
          local status = serve(dir, block, n)
          -- the TLS example turns on access control
          assert.equal(block:find("--auth-config", 1, true) and "401"
            or "200", status)
        else
          code, out = sh("cd " .. q(dir)
            .. " && timeout 600 bash -euo pipefail -c " .. q(block)
            .. " < /dev/null")
          assert.equal(0, code, "example " .. n .. ":\n" .. block .. "\n"
            .. out)
        end
      end
    end
    assert.equal(#list - 2, ran)
    -- the pull example's image is the one pushed, and the import landed
    assert.truthy(tools.exists(dir .. "/pulled/index.json"))
    assert.truthy(tools.exists(dir .. "/exported/index.json"))
  end)
end)

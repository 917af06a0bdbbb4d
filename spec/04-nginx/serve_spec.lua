-- `berth serve` as an operator starts it: the root its --config names, a
-- configuration it checks whole before it says it serves, a second serve
-- on a running one refused before it writes anything, and a directory that
-- is not a store refused.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"

local q = tools.q

-- serve(argv) -> exit code, output, for a serve that must not start
-- (bounded: one that starts is stopped and fails the spec)
local function refused(argv)
  -- not server.sh: serve loads libberth (its checks), under ASan too
  local p = io.popen("{ cd " .. q(helpers.cwd()) .. " && timeout 20"
    .. " bin/berth serve --listen 127.0.0.1:" .. server.free_port() .. " "
    .. argv .. "; } 2>&1; echo \"exit $?\"")
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("exit (%d+)%s*$"))
  assert.is_not.equal(124, code, "it started: " .. out)
  return code, out
end

describe("berth serve", function()
  it("serves the root its --config names, and says which", function()
    local dir = helpers.tmpdir()
    local root = dir .. "/from-config"
    helpers.write_file(dir .. "/berth.lua", ("store = { root = %q }\n")
      :format(root))
    local cwd_before = tools.exists("berth-data")
    local srv = server.start{ config = dir .. "/berth.lua", config_root = root }
    finally(function()
      srv:stop()
      helpers.rmrf(dir)
    end)
    local data = "a blob for the configured root\n"
    local r = tools.curl("POST", srv.url .. "/v2/cfg/app/blobs/uploads/"
      .. "?digest=" .. helpers.sha256sum(data), { data = data })
    assert.equal(201, r.status, r.body)
    assert.is_true(tools.exists(root .. "/docker/registry/v2/blobs"))
    assert.equal(cwd_before, tools.exists("berth-data"))
    local log = helpers.read_file(srv.log)
    assert.matches("serving " .. root:gsub("%p", "%%%0") .. " on", log)
    assert.matches("a new store at " .. root:gsub("%p", "%%%0"), log)
  end)

  it("does not start with a plugin that does not load", function()
    local dir = helpers.tmpdir()
    finally(function() helpers.rmrf(dir) end)
    helpers.write_file(dir .. "/berth.lua",
      'plugins = { { name = "no-such-plugin" } }\n')
    local code, out = refused("--root " .. q(dir .. "/store") .. " --config "
      .. q(dir .. "/berth.lua"))
    assert.is_not.equal(0, code)
    assert.matches("no%-such%-plugin", out)
    assert.is_nil(out:find("serving", 1, true), out)
    helpers.write_file(dir .. "/broken.lua", "return { PRIORITY = ")
    helpers.write_file(dir .. "/berth2.lua",
      'plugins = { { name = "broken", path = "broken.lua" } }\n')
    code, out = refused("--root " .. q(dir .. "/store") .. " --config "
      .. q(dir .. "/berth2.lua"))
    assert.is_not.equal(0, code)
    assert.matches("broken", out)
  end)

  it("refuses a second serve on a running one, before writing anything",
    function()
    local srv = server.start{}
    finally(function() srv:stop() end)
    local conf = helpers.read_file(srv.root .. "/.berth-run/nginx.conf")
    local code, out = refused("--root " .. q(srv.root))
    assert.equal(1, code)
    assert.matches("already serving", out, 1, true)
    assert.matches("nginx pid " .. srv:pid(), out, 1, true)
    assert.equal(conf, helpers.read_file(srv.root
      .. "/.berth-run/nginx.conf"))
    assert.equal(200, tools.curl("GET", srv.url .. "/v2/").status)
  end)

  it("refuses a directory that is neither a store nor empty", function()
    local dir = helpers.tmpdir()
    finally(function() helpers.rmrf(dir) end)
    helpers.write_file(dir .. "/notes.txt", "someone's files\n")
    local code, out = refused("--root " .. q(dir))
    assert.equal(1, code)
    assert.matches("is not a store", out, 1, true)
    assert.is_false(tools.exists(dir .. "/.berth-run"))
  end)
end)

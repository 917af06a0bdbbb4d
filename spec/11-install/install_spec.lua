-- `cmake --install` gives a tree that runs on its own: bin/berth finds the
-- installed library, Lua modules and plugins (not the checkout's), from
-- any directory, and serves through nginx.
local helpers = require "helpers"
local support = require "11-install.support"
local server = require "04-nginx.server"

local q = support.q
local LAYOUT = helpers.cwd() .. "/spec/fixtures/manifests/layout"

describe("the installed tree", function()
  local prefix, berth, elsewhere

  setup(function()
    prefix = support.install()
    berth = support.RUN_ENV .. " " .. q(prefix .. "/bin/berth")
    elsewhere = "cd " .. q(helpers.tmpdir()) .. " && "
  end)

  it("holds the command, the libraries, the Lua modules and the plugins",
    function()
      for _, f in ipairs({ "bin/berth", "lib/libberth.so",
        "lib/libberth-auth.so", "lib/libberth-s3.so", "include/berth/s3.h",
        "lib/pkgconfig/berth.pc",
        "lib/cmake/berth/berthConfig.cmake", "include/berth/berth.h",
        "share/berth/lua/berth/store.lua",
        "share/berth/plugins/immutable-tags/handler.lua" }) do
        support.must("test -f " .. q(prefix .. "/" .. f))
      end
      -- the plugins' specs are the checkout's
      support.must("! test -e "
        .. q(prefix .. "/share/berth/plugins/immutable-tags/spec"))
    end)

  it("runs berth from any directory, with a plugin of its own", function()
    local root = helpers.tmpdir() .. "/store"
    local conf = helpers.tmpdir() .. "/berth.lua"
    helpers.write_file(conf, [[
return { plugins = { { name = "immutable-tags",
  config = { patterns = { "v*" } } } } }
]])
    local common = " --root " .. q(root) .. " --config " .. q(conf)
    local out = support.must(elsewhere .. berth .. " import "
      .. q(LAYOUT .. ":amd64") .. " app:v1" .. common)
    assert.matches("imported .* as app:v1", out)
    -- the plugin (share/berth/plugins) refuses moving the tag
    local code
    out, code = support.sh(elsewhere .. berth .. " import "
      .. q(LAYOUT .. ":arm64") .. " app:v1" .. common)
    assert.is_not.equal(0, code)
    assert.matches("tag v1 is immutable", out)
    out = support.must(elsewhere .. berth .. " ls --root " .. q(root))
    assert.matches("\napp +1 +1\n", out)
  end)

  it("serves a store from nginx", function()
    local root = helpers.tmpdir()
    support.must(elsewhere .. berth .. " import " .. q(LAYOUT .. ":amd64")
      .. " app:v1 --root " .. q(root))
    local srv = server.start{ root = root, bin = berth }
    finally(function() srv:stop() end)
    local out = support.must("curl -s " .. srv.url .. "/v2/app/tags/list")
    assert.equal('{"name":"app","tags":["v1"]}', out:match("^(.-)%s*$"))
  end)
end)

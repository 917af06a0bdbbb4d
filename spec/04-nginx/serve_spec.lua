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
    .. (argv:find("--user", 1, true) and "" or helpers.SERVE_AS .. " ")
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

  it("serves a root whose path has a space and a quote in it", function()
    local dir = helpers.tmpdir() .. "/a b'c"
    os.execute("mkdir " .. q(dir))
    local srv = server.start{ root = dir .. "/store" }
    finally(function() srv:stop() end)
    -- over 1 MiB: nginx spools it (client_body_temp_path)
    local data = helpers.random_bytes(2 * 1024 * 1024)
    local dgst = helpers.sha256sum(data)
    local r = tools.curl("POST", srv.url .. "/v2/space/app/blobs/uploads/"
      .. "?digest=" .. dgst, { data = data })
    assert.equal(201, r.status, r.body)
    -- served by nginx from the blob directory (the alias)
    r = tools.curl("GET", srv.url .. "/v2/space/app/blobs/" .. dgst)
    assert.equal(200, r.status)
    assert.equal(dgst, helpers.sha256sum(r.body))
  end)

  it("reads the configuration once, where the environment is whole",
    function()
    -- nginx clears its workers' environment: a configuration they read
    -- again would find no secret, and sign no upload state
    local srv = server.configured(finally,
      'http = { secret = os.getenv("BERTH_SPEC_SECRET") }\n',
      { env = "BERTH_SPEC_SECRET=a-secret-from-the-environment" })
    local r = tools.curl("POST", srv.url .. "/v2/env/app/blobs/uploads/")
    assert.equal(202, r.status, r.body)
    assert.matches("_state=", r.headers["location"], 1, true)
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

describe("berth serve started by root", function()
  local root_only = io.popen("id -u"):read("*l") == "0" and it or pending

  -- a directory the user berth can reach (helpers.tmpdir is root's alone)
  local function open_dir()
    local dir = helpers.tmpdir()
    os.execute("chmod 755 " .. q(dir))
    return dir
  end

  -- "user path" of every file in the store root that root does not own
  -- except what root's own processes keep there (run directory, the
  -- spool's lock file)
  local function root_owned(root)
    local p = io.popen("find " .. q(root) .. " -user root ! -path '*/.berth-run*'"
      .. " ! -name .serving")
    local out = p:read("*a")
    p:close()
    return out
  end

  local function push(srv, repo, data)
    local r = tools.curl("POST", srv.url .. "/v2/" .. repo .. "/blobs/uploads/"
      .. "?digest=" .. helpers.sha256sum(data), { data = data })
    assert.equal(201, r.status, r.body)
  end

  root_only("runs the workers as the user berth for a new store, which it"
    .. " gives to berth, and the CLI run by root acts as the store's owner",
    function()
    local dir = open_dir()
    local srv = server.start{ root = dir .. "/store", serve_as = "" }
    finally(function() srv:stop() end)
    assert.same({ "berth", "berth" }, srv:worker_users())
    push(srv, "who/app", "pushed to berth's workers\n")
    assert.equal("", root_owned(srv.root))
    -- a CLI command run by root on berth's store writes as berth
    local out = tools.sh("bin/berth import --root " .. q(srv.root)
      .. " spec/fixtures/manifests/layout:amd64 who/app:v1 2>&1"
      .. "; bin/berth gc --root " .. q(srv.root) .. " --grace 0 2>&1")
    assert.equal("", root_owned(srv.root), out)
    push(srv, "who/app", "and again after root's commands\n")
  end)

  root_only("refuses a store root owns unless --user root asks for root"
    .. " workers", function()
    local dir = open_dir()
    local first = server.start{ root = dir .. "/store", serve_as = "--user root" }
    assert.same({ "root", "root" }, first:worker_users())
    push(first, "root/app", "root's workers wrote this\n")
    first:stop()
    local conf = helpers.read_file(dir .. "/store/.berth-run/nginx.conf")
    local code, out = refused("--root " .. q(dir .. "/store") .. " --user ''")
    assert.equal(1, code, out)
    assert.matches("belongs to root", out, 1, true)
    assert.matches("chown -R berth: " .. dir .. "/store", out, 1, true)
    assert.matches("--user root", out, 1, true)
    assert.equal(conf, helpers.read_file(dir
      .. "/store/.berth-run/nginx.conf"))
  end)

  root_only("runs the workers as the owner of a store someone else owns",
    function()
    local dir = open_dir()
    os.execute("mkdir " .. q(dir .. "/store") .. " && chown nobody:nogroup "
      .. q(dir .. "/store"))
    -- nobody may not reach the checkout (bin/setup lets only berth through)
    local reach = os.execute("runuser -u nobody -- test -r "
      .. q(helpers.cwd() .. "/lua/berth/nginx.lua"))
    if reach == true or reach == 0 then
      local srv = server.start{ root = dir .. "/store", serve_as = "" }
      finally(function() srv:stop() end)
      assert.same({ "nobody", "nobody" }, srv:worker_users())
      push(srv, "nobody/app", "nobody's\n")
    else
      local code, out = refused("--root " .. q(dir .. "/store")
        .. " --user ''")
      assert.equal(1, code, out)
      assert.matches("the workers run as nobody, who cannot reach", out, 1,
        true)
    end
  end)

  root_only("says who cannot reach the store, before starting", function()
    local dir = helpers.tmpdir() -- 0700, root's
    local code, out = refused("--root " .. q(dir .. "/store") .. " --user ''")
    assert.equal(1, code, out)
    assert.matches("the workers run as berth, who cannot reach " .. dir
      .. "/store (" .. dir .. " does not let them through)", out, 1, true)
    assert.is_false(tools.exists(dir .. "/store"))
  end)

  root_only("lets only root choose another user", function()
    local dir = open_dir()
    os.execute("chown berth: " .. q(dir))
    local out = tools.sh("cd " .. q(helpers.cwd()) .. " && runuser -u berth"
      .. " -- bin/berth serve --root " .. q(dir .. "/store") .. " --user root"
      .. " 2>&1; echo \"exit $?\"")
    assert.matches("only root starts workers as another user", out, 1, true)
    assert.matches("exit 1", out, 1, true)
  end)
end)


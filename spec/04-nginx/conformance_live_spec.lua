-- The OCI conformance checks and the API error checks of spec/05-http, run
-- over the wire against a live `berth serve --delete` (nginx in front), by
-- a child busted with BERTH_TEST_URL and BERTH_TEST_ROOT set.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"

local q = tools.q

-- run(file, srv) -> summary counts, full output
-- The child opens the server's store (BERTH_TEST_ROOT) with the library the
-- server loads, build/libberth.so, and without the sanitizer runtime (its
-- curl would deadlock under LD_PRELOAD=libasan.so; tools.sh unsets it).
local function run(file, srv)
  local lib = tools.must("pwd"):match("[^\n]+") .. "/build/libberth.so"
  local out = tools.sh(("BERTH_TEST_URL=%s BERTH_TEST_ROOT=%s BERTH_LIB=%s "
    .. "luajit /usr/bin/busted -o plainTerminal %s"):format(q(srv.url),
    q(srv.root), q(lib), q(file)))
  local s, f, e, p = out:match(
    "(%d+) successe?s? / (%d+) failures? / (%d+) errors? / (%d+) pending")
  return {
    successes = tonumber(s), failures = tonumber(f), errors = tonumber(e),
    pending = tonumber(p),
  }, out
end

describe("spec/05-http against a live berth serve", function()
  local srv

  after_each(function()
    if srv then srv:stop() end
  end)

  for _, case in ipairs({
    -- file, at least this many passing checks, whether berth has an
    -- http.secret
    { "spec/05-http/conformance_spec.lua", 70 },
    { "spec/05-http/api_errors_spec.lua", 100 },
    -- upload Locations carry Distribution's signed _state, and the suite
    -- follows them (stale ones too)
    { "spec/05-http/conformance_spec.lua", 70, true },
  }) do
    local file, least, secret = case[1], case[2], case[3]
    it(file .. " passes" .. (secret and " with http.secret" or ""),
      function()
      local conf
      if secret then
        conf = helpers.tmpdir() .. "/berth.conf.lua"
        helpers.write_file(conf, 'return { http = { secret = "s" } }')
      end
      srv = server.start{ delete = true, config = conf }
      if secret then
        local r = tools.curl("POST", srv.url .. "/v2/s/blobs/uploads/")
        assert.matches("?_state=", r.headers["location"], 1, true)
        r = tools.curl("DELETE", tools.location(srv.url, r))
        assert.equal(204, r.status)
      end
      local counts, out = run(file, srv)
      assert.is_number(counts.successes, "no busted summary:\n" .. out)
      assert.equal(0, counts.failures, out)
      assert.equal(0, counts.errors, out)
      assert.is_true(counts.successes >= least, out)
      assert.same({}, srv:error_lines())
    end)
  end
end)

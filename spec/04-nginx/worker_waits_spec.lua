-- Nothing waits inside an nginx worker: a tag write that finds the tag lock
-- held by another process waits with ngx.sleep, so the worker's other work
-- goes on (C tries the lock once and answers EBUSY). Measured by a 2 ms
-- ngx.timer.every in the worker: the longest gap between two of its runs
-- while the lock is held. A worker that blocked on the lock would show a
-- gap as long as the hold.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"
local berth = require "berth"
local driver = require "berth.driver"
local support = require "03-plugins.support"

local q = tools.q

-- The probe: a plugin whose before_request answers the longest timer gap
-- (in its refusal's message) for repository "lag-read", and starts over
-- for "lag-reset".
local PROBE = [[
local gap, last, started = 0, nil, false
local function tick(premature)
  if premature then return end
  ngx.update_time()
  local now = ngx.now()
  if last and now - last > gap then gap = now - last end
  last = now
end
return {
  PRIORITY = 1, VERSION = "0.1.0",
  before_request = function(_, ctx)
    if ctx.repo == "lag-reset" then
      if not started then
        started = assert(ngx.timer.every(0.002, tick))
      end
      gap, last = 0, nil
      return nil, "reset", "DENIED"
    elseif ctx.repo == "lag-read" then
      return nil, ("gap %.4f"):format(gap), "DENIED"
    end
    return true
  end,
}
]]

-- Wait for cond() to hold, polling; raises after about s seconds.
local function wait_for(cond, s, what)
  for _ = 1, s * 100 do
    if cond() then return end
    tools.sleep(0.01)
  end
  error("timed out waiting for " .. what)
end

describe("a worker whose request waits for the tag lock", function()
  it("goes on with its other work meanwhile", function()
    local dir = helpers.tmpdir()
    finally(function() helpers.rmrf(dir) end)
    helpers.write_file(dir .. "/handler.lua", PROBE)
    local root = helpers.tmpdir()
    local store = assert(berth.open{ root = root })
    local body = support.image_in(store, "app")
    store:close()
    local srv = server.configured(finally, 'plugins = { { name = "probe", '
      .. 'path = "' .. dir .. '/handler.lua" } }\n',
      { root = root, workers = 1 })
    local function probe(repo)
      local r = tools.curl("GET", srv.url .. "/v2/" .. repo .. "/tags/list")
      assert.equal(403, r.status, r.body)
      return r.body
    end
    probe("lag-reset")

    -- another process (this one) holds the lock while the PUT arrives
    local d = assert(driver.fs(root))
    finally(function() d:close() end)
    local lock = assert(d:lock("/berth/v1/repositories/app/_taglock"))
    helpers.write_file(dir .. "/manifest", body)
    local out = dir .. "/put"
    os.execute(tools.NO_SANITIZER .. "(curl -s -o " .. q(out .. ".body")
      .. " -w '%{http_code}' "
      .. "-X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' "
      .. "--data-binary @" .. q(dir .. "/manifest") .. " "
      .. q(srv.url .. "/v2/app/manifests/latest") .. " > " .. q(out)
      .. ".tmp; mv " .. q(out) .. ".tmp " .. q(out) .. ") &")
    -- the manifest is stored before its tag is set: from then on the PUT
    -- is at the lock (or a few link writes before it)
    local hex = tools.sha256(body):match("(%x+)$")
    local digest = "sha256:" .. hex
    local link = root .. "/docker/registry/v2/repositories/app/_manifests/"
      .. "revisions/sha256/" .. hex .. "/link"
    wait_for(function() return tools.exists(link) end, 60, "the manifest")
    local HOLD = 2
    tools.sleep(HOLD)
    assert.is_nil(helpers.read_file(out), "the PUT did not wait: "
      .. tostring(helpers.read_file(out .. ".body")))
    lock:release()
    wait_for(function() return helpers.read_file(out) end, 60, "the PUT")
    assert.equal("201", helpers.read_file(out),
      helpers.read_file(out .. ".body"))

    local gap = tonumber(probe("lag-read"):match("gap ([%d.]+)"))
    -- a blocked worker's gap is the whole hold; a loaded machine delays a
    -- timer by far less than half of it
    assert.is_true(gap < HOLD / 2, "the worker stalled for " .. gap .. " s")
    assert.equal(digest, tools.curl("HEAD", srv.url
      .. "/v2/app/manifests/latest").headers["docker-content-digest"])
  end)
end)

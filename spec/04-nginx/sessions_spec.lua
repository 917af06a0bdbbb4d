-- Upload sessions are bounded while serving: open ones are capped per
-- repository and per client address (429 with Retry-After), a finished or
-- cancelled one frees its place, and abandoned ones are purged by the
-- server itself, counted in its log.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"

-- A server with the configuration's uploads section; stopped at the end.
local function serve(finally, uploads)
  return server.configured(finally, "uploads = " .. uploads .. "\n")
end

local function post(srv, repo)
  return tools.curl("POST", srv.url .. "/v2/" .. repo .. "/blobs/uploads/")
end

local function on_disk(srv)
  return tonumber((tools.stdout("find " .. tools.q(srv.root
    .. "/docker/registry/v2/repositories") .. " -path '*/_uploads/*'"
    .. " -name startedat 2>/dev/null | wc -l")))
end

describe("berth serve's upload sessions", function()
  it("are capped per repository and per client", function()
    local srv = serve(finally, "{ max_per_repository = 5, max_per_client = 8 }")
    local first
    for _ = 1, 5 do
      local r = post(srv, "capped/a")
      assert.equal(202, r.status, r.body)
      first = first or tools.location(srv.url, r)
    end
    local r = post(srv, "capped/a")
    assert.equal(429, r.status)
    assert.equal("TOOMANYREQUESTS", tools.json(r.body).errors[1].code)
    assert.is_true(tonumber(r.headers["retry-after"]) >= 1)
    -- another repository, up to the client's cap of 8
    for _ = 1, 3 do assert.equal(202, post(srv, "capped/b").status) end
    assert.equal(429, post(srv, "capped/c").status)
    -- a single-request upload leaves no session: not counted
    local data = "a whole blob in one request\n"
    r = tools.curl("POST", srv.url .. "/v2/capped/c/blobs/uploads/?digest="
      .. helpers.sha256sum(data), { data = data })
    assert.equal(201, r.status, r.body)
    -- a cancelled session frees its place, a finished one too
    assert.equal(204, tools.curl("DELETE", first).status)
    r = post(srv, "capped/c")
    assert.equal(202, r.status)
    assert.equal(429, post(srv, "capped/c").status)
    local loc = tools.location(srv.url, r)
    r = tools.curl("PUT", loc .. (loc:find("?", 1, true) and "&" or "?")
      .. "digest=" .. helpers.sha256sum(data), { data = data })
    assert.equal(201, r.status, r.body)
    assert.equal(202, post(srv, "capped/c").status)
    assert.equal(8, on_disk(srv))
  end)

  it("are purged by the server once abandoned", function()
    local srv = serve(finally, "{ purge_after = 1 }")
    local r = post(srv, "purged/a")
    assert.equal(202, r.status)
    local loc = tools.location(srv.url, r)
    assert.equal(202, post(srv, "purged/b").status)
    for _ = 1, 300 do
      if on_disk(srv) == 0 then break end
      os.execute("sleep 0.1")
    end
    assert.equal(0, on_disk(srv))
    assert.equal(404, tools.curl("GET", loc).status)
    assert.matches("purged %d+ upload sessions", helpers.read_file(srv.log))
  end)
end)

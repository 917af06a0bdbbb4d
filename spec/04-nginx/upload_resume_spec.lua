-- An upload a power cut interrupted, resumed through nginx as a client
-- would: the status and a chunk sent from the wrong offset tell where the
-- session really is (its last durable hash state), and the chunks from
-- there end in the right digest (issue 11). The power cut's leftovers are
-- made by hand on the store nginx serves.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"

local OCTETS = "Content-Type: application/octet-stream"

describe("an upload resumed through nginx after a power cut", function()
  local srv, data, dgst

  setup(function()
    srv = server.start{}
    data = helpers.random_bytes(20000)
    dgst = helpers.sha256sum(data)
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  local function session(repo, id)
    return srv.root .. "/docker/registry/v2/repositories/" .. repo
      .. "/_uploads/" .. id
  end

  local function patch(loc, from, to)
    return tools.curl("PATCH", loc, { data = data:sub(from + 1, to),
      headers = { OCTETS, ("Content-Range: %d-%d"):format(from, to - 1) } })
  end

  -- POST, then PATCHes ending at each offset of `acked`.
  -- -> the Location, the upload's id
  local function push(repo, acked)
    local r = tools.curl("POST", srv.url .. "/v2/" .. repo
      .. "/blobs/uploads/")
    assert.equal(202, r.status)
    local loc = tools.location(srv.url, r)
    local from = 0
    for _, to in ipairs(acked) do
      r = patch(loc, from, to)
      assert.equal(202, r.status, r.body)
      assert.equal("0-" .. (to - 1), r.headers["range"])
      loc = tools.location(srv.url, r)
      from = to
    end
    return loc, loc:match("/uploads/([%x-]+)")
  end

  -- The status says `at`, a chunk from past it is refused with the same
  -- Range, and the rest from `at` ends in the blob.
  local function resumes_at(repo, loc, at, wrong)
    local r = tools.curl("GET", loc)
    assert.equal(204, r.status)
    assert.equal("0-" .. (at - 1), r.headers["range"])
    r = patch(loc, wrong, #data)
    assert.equal(416, r.status)
    assert.equal("0-" .. (at - 1), r.headers["range"])
    r = patch(loc, at, 15000)
    assert.equal(202, r.status, r.body)
    loc = tools.location(srv.url, r)
    r = tools.curl("PUT", loc .. (loc:find("?", 1, true) and "&" or "?")
      .. "digest=" .. dgst, { data = data:sub(15001), headers = { OCTETS } })
    assert.equal(201, r.status, r.body)
    r = tools.curl("GET", srv.url .. "/v2/" .. repo .. "/blobs/" .. dgst)
    assert.equal(200, r.status)
    assert.equal(dgst, helpers.sha256sum(r.body))
  end

  it("resumes at the last acknowledged byte when zeros follow it",
    function()
      local loc, id = push("power/zeros", { 5000 })
      local f = assert(io.open(session("power/zeros", id) .. "/data", "ab"))
      f:write(("\0"):rep(8192 - 5000))
      f:close()
      resumes_at("power/zeros", loc, 5000, 8192)
    end)

  it("resumes at the older hash state when the newest is torn", function()
    local loc, id = push("power/torn", { 5000 })
    local states = session("power/torn", id) .. "/hashstates/sha256/"
    local older = assert(helpers.read_file(states .. "5000"))
    local r = patch(loc, 5000, 9000)
    assert.equal(202, r.status, r.body)
    loc = tools.location(srv.url, r)
    -- Distribution keeps every state; the newest lost its content
    helpers.write_file(states .. "5000", older)
    helpers.write_file(states .. "9000", "")
    resumes_at("power/torn", loc, 5000, 9000)
  end)
end)

-- kill -9 of a whole `berth serve` (master and workers) in the middle of 20
-- concurrent pushes, at three different moments. After each kill the store
-- on disk must hold the invariants (DESIGN.md), a restarted server must serve
-- every tagged manifest whole, and pushes must complete again: an
-- interrupted upload session resumed where the server says it stands, and
-- fresh pushes of every image.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"

local q = tools.q
local PUSH = "spec/fixtures/interop/push.sh"
local CHUNK = 512 * 1024
local IMAGES = 20

-- delays (seconds) before the kill: early (first PATCHes), middle, late
-- (some images complete), each with some jitter
local DELAYS = { { 0.15, 0.35 }, { 0.6, 1.0 }, { 1.6, 2.4 } }

describe("kill -9 during concurrent pushes", function()
  local work
  local images = {}

  setup(function()
    work = helpers.tmpdir()
    math.randomseed(os.time())
    for i = 1, IMAGES do
      local im = { name = ("crash/img%02d"):format(i), tag = "v1" }
      im.layer = ("%s/layer%02d"):format(work, i)
      tools.random_file(im.layer, math.random(1024 * 1024, 4 * 1024 * 1024))
      im.layer_digest = tools.sha256_file(im.layer)
      im.layer_size = tools.file_size(im.layer)
      local config = ('{"architecture":"amd64","os":"linux","rootfs":'
        .. '{"type":"layers","diff_ids":["%s"]},"config":{"Env":["N=%d"]}}')
        :format(im.layer_digest, i)
      im.config = ("%s/config%02d"):format(work, i)
      helpers.write_file(im.config, config)
      im.config_digest = helpers.sha256sum(config)
      local manifest = ('{"schemaVersion":2,"mediaType":'
        .. '"application/vnd.oci.image.manifest.v1+json","config":'
        .. '{"mediaType":"application/vnd.oci.image.config.v1+json",'
        .. '"digest":"%s","size":%d},"layers":[{"mediaType":'
        .. '"application/vnd.oci.image.layer.v1.tar","digest":"%s",'
        .. '"size":%d}]}'):format(im.config_digest, #config, im.layer_digest,
          im.layer_size)
      im.manifest = ("%s/manifest%02d.json"):format(work, i)
      helpers.write_file(im.manifest, manifest)
      im.digest = helpers.sha256sum(manifest)
      images[i] = im
    end
  end)

  -- Start the pushes in the background; -> their pids.
  local function start_pushes(srv, round)
    local cmds = {}
    for i, im in ipairs(images) do
      im.state = ("%s/r%d-state%02d"):format(work, round, i)
      helpers.write_file(im.state, "")
      cmds[#cmds + 1] = ("setsid sh %s %s %s %d %s %s %s -- %s %s "
        .. "> /dev/null 2>&1 < /dev/null & echo $!"):format(PUSH, srv.url,
        im.name, CHUNK, q(im.state), q(im.manifest), im.tag, q(im.layer),
        q(im.config))
    end
    local out = tools.must(table.concat(cmds, "\n"))
    local pids = {}
    for p in out:gmatch("%d+") do
      pids[#pids + 1] = tonumber(p)
    end
    assert.equal(IMAGES, #pids)
    return pids
  end

  -- The sessions a push had open when the server died: upload lines with
  -- no blob line after them -> { { im, digest, file, location }, ... }
  local function interrupted()
    local list = {}
    for _, im in ipairs(images) do
      local open = {}
      for line in (helpers.read_file(im.state) or ""):gmatch("[^\n]+") do
        local kind, d, rest = line:match("^(%a+) (%S+) ?(.*)$")
        if kind == "upload" then
          open[d] = { loc = rest, acked = 0 }
        elseif kind == "offset" and open[d] then
          local n, loc = rest:match("^(%d+) (%S+)$")
          open[d].acked = tonumber(n)
          open[d].loc = loc
        elseif kind == "blob" then
          open[d] = nil
        end
      end
      for d, u in pairs(open) do
        local file = d == im.layer_digest and im.layer or im.config
        list[#list + 1] = { im = im, digest = d, file = file, loc = u.loc,
          acked = u.acked }
      end
    end
    table.sort(list, function(a, b) return a.acked > b.acked end)
    return list
  end

  -- every manifest served by tag is whole: its blobs fetchable, right bytes
  local function check_served(srv, root)
    local n = 0
    for ref, dgst in pairs(tools.store_tags(root)) do
      local name, tag = ref:match("^(.+):([^:]+)$")
      local r = tools.curl("GET", srv.url .. "/v2/" .. name .. "/manifests/"
        .. tag, { headers = {
          "Accept: application/vnd.oci.image.manifest.v1+json" } })
      assert.equal(200, r.status, ref .. ": " .. r.body)
      assert.equal(dgst, r.headers["docker-content-digest"])
      assert.equal(dgst, helpers.sha256sum(r.body))
      for _, d in ipairs(tools.manifest_blobs(r.body)) do
        local b = tools.curl("GET", srv.url .. "/v2/" .. name .. "/blobs/"
          .. d)
        assert.equal(200, b.status, ref .. " blob " .. d)
        assert.equal(d, helpers.sha256sum(b.body))
      end
      n = n + 1
    end
    return n
  end

  for round, delay in ipairs(DELAYS) do
    it(("leaves a consistent store when killed after %.2f-%.2f s")
      :format(delay[1], delay[2]), function()
      local root = helpers.tmpdir()
      local srv = server.start{ root = root, workers = 2 }
      local pushers = {}
      finally(function()
        tools.kill(pushers, "KILL")
        if srv then tools.kill_tree(srv:pid()) end
      end)

      pushers = start_pushes(srv, round)
      local wait = delay[1] + math.random() * (delay[2] - delay[1])
      tools.sleep(("%.2f"):format(wait))
      local victims = tools.kill_tree(srv:pid())
      assert.is_true(#victims >= 3, "master and 2 workers")
      assert.is_true(tools.wait_gone(victims, 5))
      -- the pushes fail fast once nothing listens
      if not tools.wait_gone(pushers, 10) then
        tools.kill(pushers, "KILL")
      end

      local problems, stats = tools.check_store(root)
      assert.same({}, problems)
      local sessions = interrupted()
      local done = 0
      for _, im in ipairs(images) do
        if (helpers.read_file(im.state) or ""):find("manifest %S+ 201") then
          done = done + 1
        end
      end
      print(("round %d: killed after %.2f s: %d of %d images pushed, %d "
        .. "sessions open, %d blobs, %d tags on disk"):format(round, wait,
        done, IMAGES, #sessions, stats.blobs, stats.tags))
      srv = nil

      -- the same store, served again
      srv = server.start{ root = root, workers = 2 }
      assert.equal(stats.tags, check_served(srv, root))

      -- resume interrupted sessions where the server says they stand
      local resumed = 0
      for _, s in ipairs(sessions) do
        -- (an upload with no acknowledged byte answers Range 0-0, which
        -- cannot tell 0 bytes from 1: only those with some)
        if resumed >= 2 or s.acked == 0 then break end
        local url = srv.url .. s.loc:match("^https?://[^/]+(/.*)$")
        local r = tools.curl("GET", url)
        assert.equal(204, r.status, "upload status of " .. url)
        local last = tonumber((r.headers["range"] or ""):match("^0%-(%d+)$"))
        assert.is_number(last, "Range: " .. tostring(r.headers["range"]))
        local have = last + 1
        -- at least what was acknowledged, at most the whole blob
        assert.is_true(have >= s.acked, ("server has %d, acked %d")
          :format(have, s.acked))
        local size = tools.file_size(s.file)
        assert.is_true(have <= size)
        local rest = work .. "/rest"
        tools.must(("tail -c +%d %s > %s"):format(have + 1, q(s.file),
          q(rest)))
        if have < size then
          r = tools.curl("PATCH", url, { file = rest, headers = {
            "Content-Type: application/octet-stream",
            ("Content-Range: %d-%d"):format(have, size - 1) } })
          assert.equal(202, r.status, r.body)
          url = tools.location(srv.url, r)
        end
        r = tools.curl("PUT", url .. (url:find("?", 1, true) and "&" or "?")
          .. "digest=" .. s.digest)
        assert.equal(201, r.status, r.body)
        assert.equal(s.digest, r.headers["docker-content-digest"])
        resumed = resumed + 1
      end
      if #sessions > 0 and sessions[1].acked > 0 then
        assert.is_true(resumed > 0)
      end
      print(("round %d: resumed %d sessions"):format(round, resumed))

      -- and every image pushed afresh completes
      local cmds = {}
      for i, im in ipairs(images) do
        im.state = ("%s/r%d-again%02d"):format(work, round, i)
        cmds[#cmds + 1] = ("sh %s %s %s %d %s %s %s -- %s %s &"):format(PUSH,
          srv.url, im.name, 4 * 1024 * 1024, q(im.state), q(im.manifest),
          im.tag, q(im.layer), q(im.config))
      end
      tools.must(table.concat(cmds, "\n") .. "\nwait")
      for _, im in ipairs(images) do
        assert.matches("manifest " .. im.digest .. " 201",
          helpers.read_file(im.state) or "", 1, true)
      end
      assert.equal(IMAGES, check_served(srv, root))
      assert.same({}, srv:error_lines())
      srv:stop()
      srv = nil
      assert.same({}, (tools.check_store(root)))
    end)
  end
end)

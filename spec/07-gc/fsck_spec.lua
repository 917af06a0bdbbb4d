-- fsck (lua/berth/fsck.lua, berth fsck): damage made by hand on disk is
-- found and named, --repair fixes it so that the next fsck passes.
local helpers = require "helpers"
local cjson = require "cjson"
local S = require "07-gc.support"
local fsck = require "berth.fsck"
local gc = require "berth.gc"
local cmd_fsck = require "berth.cmd.fsck"

local function kinds(report)
  local t = {}
  for _, p in ipairs(report.problems) do
    t[#t + 1] = p.kind
  end
  table.sort(t)
  return t
end

local function find(report, kind, field, value)
  for _, p in ipairs(report.problems) do
    if p.kind == kind and (field == nil or p[field] == value) then
      return p
    end
  end
end

local function rmrf(path)
  assert(path:match("^/tmp/berth%-spec%-"))
  assert(os.execute("rm -rf '" .. path .. "'"))
end

describe("fsck", function()
  local store, root, good, index

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
    good = S.image(store, "app", { tag = "good", seed = "good" })
    local c1 = S.image(store, "app", { seed = "c1" })
    local c2 = S.image(store, "app", { seed = "c2" })
    index = S.index(store, "app", { c1, c2 }, "multi")
    index.children = { c1, c2 }
    S.image(store, "lib/other", { tag = "1.0", seed = "other" })
  end)

  local function run_cmd(argv)
    local env, stdout, stderr = S.env()
    local rc = cmd_fsck.run(argv, env)
    return rc, stdout(), stderr()
  end

  it("passes a clean store with exit 0", function()
    local r = assert(fsck.run(store))
    assert.is_true(r.ok)
    assert.same({}, r.problems)
    assert.equal(2, r.repositories)
    assert.is_true(r.blobs.checked > 10)
    local rc, text = run_cmd({ "--root", root })
    assert.equal(0, rc)
    assert.matches("no problems", text, 1, true)
    local json
    rc, json = run_cmd({ "--root", root, "--json" })
    assert.equal(0, rc)
    local j = cjson.decode(json)
    assert.is_true(j.ok)
    assert.same({}, j.problems)
  end)

  it("finds a corrupt blob, a dangling tag and a missing layer; --repair"
    .. " leaves a store that passes", function()
    -- 1. a layer whose bytes changed on disk
    local bad = S.image(store, "app", { tag = "bad", seed = "bad" })
    local corrupt = bad.layers[1]
    local f = assert(io.open(S.blob_file(root, corrupt), "r+b"))
    f:seek("set", 100)
    f:write("XXXXXXXX")
    f:close()
    -- 2. a tag whose manifest's revision link was removed by hand
    local lost = S.image(store, "app", { tag = "lost", seed = "lost" })
    rmrf(S.repo_dir(root, "app") .. "/_manifests/revisions/sha256/"
      .. S.hex(lost.digest))
    -- 3. a layer whose data directory is gone
    local holey = S.image(store, "lib/other", { tag = "holey",
      seed = "holey" })
    local missing = holey.layers[2]
    rmrf(S.blob_dir(root, missing))

    local r = assert(fsck.run(store))
    assert.is_false(r.ok)
    assert.same({ "corrupt_blob", "dangling_layer_link", "dangling_tag",
      "missing_reference" }, kinds(r))
    assert.equal(corrupt, find(r, "corrupt_blob").digest)
    local dt = find(r, "dangling_tag")
    assert.equal("lost", dt.tag)
    assert.equal(lost.digest, dt.digest)
    assert.equal(missing, find(r, "dangling_layer_link").digest)
    local mr = find(r, "missing_reference")
    assert.equal(holey.digest, mr.digest)
    assert.equal(missing, mr.ref)
    assert.matches("gone from the store", mr.fix, 1, true)
    assert.equal(1, r.blobs.corrupt)

    -- the command: exit 1, each problem named, and --json
    local rc, text = run_cmd({ "--root", root })
    assert.equal(1, rc)
    assert.matches("corrupt_blob: blob " .. corrupt, text, 1, true)
    assert.matches('dangling_tag: app: tag "lost" points at', text, 1, true)
    assert.matches("missing_reference: lib/other@" .. holey.digest, text, 1,
      true)
    assert.matches("4 problems", text, 1, true)
    local json
    rc, json = run_cmd({ "--root", root, "--json" })
    assert.equal(1, rc)
    local j = cjson.decode(json)
    assert.is_false(j.ok)
    assert.equal(4, #j.problems)
    assert.equal(1, j.counts.corrupt_blob)

    -- repair
    rc, text = run_cmd({ "--root", root, "--repair" })
    -- every problem repaired: the store is healthy, exit 0, and it says so
    assert.equal(0, rc, text)
    assert.matches("problems, all repaired", text, 1, true)
    assert.matches("repaired: remove the blob's data", text, 1, true)
    assert.is_nil(text:match("NOT repaired"))
    rc, text = run_cmd({ "--root", root })
    assert.equal(0, rc, text)
    assert.matches("no problems", text, 1, true)

    -- what is broken went, the rest is whole
    assert.is_false(S.exists(S.blob_file(root, corrupt)))
    local _, _, code = store:manifest_get("app", "bad")
    assert.equal("MANIFEST_UNKNOWN", code)
    _, _, code = store:manifest_get("app", "lost")
    assert.equal("MANIFEST_UNKNOWN", code)
    _, _, code = store:manifest_get("lib/other", "holey")
    assert.equal("MANIFEST_UNKNOWN", code)
    assert.same({ "good", "multi" }, store:tag_list("app"))
    assert.same({ "1.0" }, store:tag_list("lib/other"))
    assert.equal(good.body, (store:manifest_get("app", "good")))
    for d in pairs(good.blobs) do
      assert.equal(d, helpers.sha256sum(store:blob_get("app", d)))
    end
    assert.truthy(store:manifest_get("app", "multi"))
  end)

  it("names a tag without its current link in quotes, one line", function()
    -- what a delete cut short leaves: a leftover, not damage
    os.remove(S.repo_dir(root, "app") .. "/_manifests/tags/good/current/link")
    local r = assert(fsck.run(store))
    assert.same({}, r.problems)
    local msgs = {}
    for _, p in ipairs(r.leftovers) do
      assert.is_nil(p.message:find("%c"), p.message)
      assert.is_nil(p.message:find("  ", 1, true), p.message)
      msgs[#msgs + 1] = p.message
    end
    assert.same({ [[app: tag "good" has no current link (a set or a delete]]
      .. [[ cut short)]] }, msgs)
    local rc, text = run_cmd({ "--root", root })
    assert.equal(0, rc)
    assert.matches([[leftover: app: tag "good" has no current link]], text, 1,
      true)
    assert.matches("1 leftover of a crash", text, 1, true)
  end)

  it("puts back what is still stored instead of removing manifests",
    function()
      -- a layer link removed by hand (data still there)
      local layer = good.layers[1]
      rmrf(S.repo_dir(root, "app") .. "/_layers/sha256/" .. S.hex(layer))
      -- an index child's revision removed by hand
      local child = index.children[1]
      rmrf(S.repo_dir(root, "app") .. "/_manifests/revisions/sha256/"
        .. S.hex(child.digest))
      local r = assert(fsck.run(store))
      assert.same({ "missing_reference", "missing_reference" }, kinds(r))
      local p = find(r, "missing_reference", "ref", layer)
      assert.matches("link the blob", p.fix, 1, true)
      p = find(r, "missing_reference", "ref", child.digest)
      assert.equal(index.digest, p.digest)
      assert.matches("put the child manifest back", p.fix, 1, true)
      r = assert(fsck.run(store, { repair = true }))
      assert.equal(2, #r.problems)
      assert.is_true(r.problems[1].repaired and r.problems[2].repaired)
      assert.same({}, assert(fsck.run(store)).problems)
      assert.truthy(store:manifest_get("app", "good"))
      assert.truthy(store:manifest_get("app", child.digest))
      assert.equal(good.blobs[layer], store:blob_stat("app", layer))
    end)

  it("finds damaged links, tag history of lost manifests, stale uploads"
    .. " and empty blob directories", function()
      local dir = S.repo_dir(root, "app")
      -- damaged layer link
      helpers.write_file(dir .. "/_layers/sha256/" .. S.hex(good.config)
        .. "/link", "not a digest")
      -- a tag's history naming a manifest whose data is gone
      local old = S.image(store, "app", { tag = "moving", seed = "old" })
      S.image(store, "app", { tag = "moving", seed = "new" })
      assert(store:manifest_delete("app", old.digest))
      assert(store:blob_purge(old.digest))
      -- stale upload
      local up = assert(store:blob_writer("app"))
      assert(up:close())
      helpers.write_file(dir .. "/_uploads/" .. up.id .. "/startedat",
        "2020-01-01T00:00:00Z")
      -- a blob directory without data
      local empty = assert(store:blob_put(nil, "will be emptied"))
      os.remove(S.blob_file(root, empty))

      local r = assert(fsck.run(store))
      assert.same({ "damaged_link", "dangling_tag_history",
        "missing_reference", "stale_upload" }, kinds(r))
      -- a damaged link links nothing: the manifest misses its config
      local mr = find(r, "missing_reference")
      assert.equal(good.digest, mr.digest)
      assert.equal(good.config, mr.ref)
      assert.matches("link the blob", mr.fix, 1, true)
      local dl = find(r, "damaged_link")
      assert.equal("layer", dl.link)
      assert.equal("damaged", dl.state)
      assert.equal(good.config, dl.digest)
      assert.equal("moving", find(r, "dangling_tag_history").tag)
      assert.equal(up.id, find(r, "stale_upload").id)
      -- what a crash leaves too: a leftover, not damage
      assert.equal(1, #r.leftovers)
      assert.equal("blob_without_data", r.leftovers[1].kind)
      assert.equal(empty, r.leftovers[1].digest)
      -- repair removes the damaged link and links the config again
      r = assert(fsck.run(store, { repair = true }))
      for _, p in ipairs(r.problems) do
        assert.is_true(p.repaired, p.message)
      end
      local again = assert(fsck.run(store))
      assert.same({}, again.problems)
      assert.same({}, again.leftovers)
      assert.truthy(store:manifest_get("app", "good"))
      assert.equal("sha256", (store:tag_get("app", "moving"):match("^(%w+)")))
    end)

  it("reports blob data that is no file; --repair removes it", function()
    local d = assert(store:blob_put(nil, "to be a directory"))
    local file = S.blob_file(root, d)
    assert(os.remove(file))
    assert(os.execute("mkdir '" .. file .. "'"))
    local r = assert(fsck.run(store))
    assert.equal(1, #r.problems)
    assert.equal(d, r.problems[1].digest)
    assert.equal("blob_without_data", r.problems[1].kind)
    assert(fsck.run(store, { repair = true }))
    assert.same({}, assert(fsck.run(store)).problems)
    assert.is_false(S.exists(S.blob_dir(root, d)))
  end)

  -- The walk of blobs/ takes <alg>/<hh>/<hex> for a blob only where the
  -- layout puts that blob (hh its hex's first two): elsewhere, it named a
  -- directory that does not exist, which no --repair could remove.
  it("takes a directory under blobs/ where no blob goes for none",
      function()
    local hex = S.hex(S.digest_of("astray"))
    local astray = root .. S.V2 .. "/blobs/sha256/"
      .. (hex:sub(1, 2) == "00" and "01" or "00") .. "/" .. hex
    assert(os.execute("mkdir -p '" .. astray .. "'"))
    for _, d in ipairs(assert(store:blob_list())) do
      assert.not_equal("sha256:" .. hex, d)
    end
    local r = assert(fsck.run(store, { repair = true }))
    assert.same({}, r.problems)
    assert.is_true(r.ok)
  end)

  it("rebuilds berth's referrers and tag indexes with --repair", function()
    local sig = S.image(store, "app", { seed = "sig", layers = 1,
      subject = { digest = good.digest, size = good.size } })
    rmrf(root .. "/berth")
    assert(fsck.run(store, { repair = true }))
    assert.matches(sig.digest, store:referrers("app", good.digest), 1, true)
    assert.truthy(S.exists(root .. "/berth/v1/repositories/app/_tagsof/"
      .. "sha256/" .. S.hex(good.digest) .. "/good"))
  end)

  it("draws a progress bar on a terminal for long work, nothing elsewhere",
    function()
      assert(store:blob_put(nil, string.rep("x", 64 * 1024 * 1024)))
      local env, _, stderr = S.env(true)
      assert.equal(0, cmd_fsck.run({ "--root", root }, env))
      assert.matches("fsck: verifying blobs [", stderr(), 1, true)
      local env2, _, stderr2 = S.env(false)
      assert.equal(0, cmd_fsck.run({ "--root", root }, env2))
      assert.equal("", stderr2())
      -- the library reports its phases to any callback
      local phases = {}
      assert(fsck.run(store, { progress = function(phase, done, total)
        phases[phase] = phases[phase] or {}
        phases[phase].done, phases[phase].total = done, total
      end }))
      assert.equal(phases.verify.total, phases.verify.done)
      assert.is_true(phases.verify.total > 64 * 1024 * 1024)
      assert.equal(2, phases.repositories.total)
    end)

  it("runs as bin/berth fsck", function()
    local lib = os.getenv("BERTH_LIB") or "build/libberth.so"
    local berth = "BERTH_LIB=" .. lib .. " bin/berth"
    local text, rc = S.run(berth .. " fsck --help")
    assert.equal(0, rc)
    assert.matches("usage: berth fsck", text, 1, true)
    text, rc = S.run(berth .. " fsck --root " .. root .. " --json")
    assert.equal(0, rc)
    assert.is_true(cjson.decode(text).ok)
    local f = assert(io.open(S.blob_file(root, good.layers[1]), "r+b"))
    f:write("!")
    f:close()
    text, rc = S.run(berth .. " fsck --root " .. root)
    assert.equal(1, rc)
    assert.matches("corrupt_blob", text, 1, true)
    text, rc = S.run(berth .. " fsck --root " .. root .. " --repair")
    assert.equal(0, rc) -- repaired: healthy
    assert.matches("repaired: remove the blob's data", text, 1, true)
    text, rc = S.run(berth .. " fsck --root " .. root)
    assert.equal(0, rc)
    assert.matches("no problems", text, 1, true)
    text, rc = S.run(berth .. " fsck --root " .. root .. " --bogus 2>&1")
    assert.equal(2, rc)
    assert.matches("unknown option --bogus", text, 1, true)
  end)

  -- what a gc killed after withdrawing links leaves (gc.lua): no damage
  it("passes a store with _layers links a killed gc withdrew, and they"
    .. " work", function()
    local layer = good.layers[1]
    local orphan = assert(store:blob_put("lib/other", "an orphan"))
    assert(store:blob_link_withdraw("app", layer))
    assert(store:blob_link_withdraw("lib/other", orphan))
    for _, repair in ipairs({ false, true }) do
      local r = assert(fsck.run(store, { repair = repair }))
      assert.same({}, r.problems)
      assert.same({}, r.errors)
    end
    assert.equal(good.blobs[layer], store:blob_stat("app", layer))
    assert.truthy(store:blob_stat("lib/other", orphan))
    assert.same({}, S.journal(root))
  end)

  it("and gc agree: after gc, fsck passes", function()
    S.plant(store, root, "orphan", 7200)
    assert(gc.run(store, { settle = 0, delete_untagged = true }))
    assert.same({}, assert(fsck.run(store)).problems)
  end)
end)

describe("gc and fsck under i/o faults", function()
  local berth = require "berth"
  local driver = require "berth.driver"

  -- A small store on a fault-injecting memory driver: a tagged image with
  -- a referrer, a tagged index over two untagged children, an untagged
  -- image, an orphan and an upload session.
  local function faulty()
    local d = driver.fault(assert(driver.mem()))
    local store = assert(berth.open({ driver = d }))
    local keep = {}
    keep[1] = S.image(store, "r", { tag = "t", seed = "faults", layers = 1 })
    keep[2] = S.image(store, "r", { seed = "sig", layers = 1,
      subject = { digest = keep[1].digest, size = keep[1].size } })
    keep[3] = S.image(store, "r", { seed = "c1", layers = 1 })
    keep[4] = S.image(store, "r", { seed = "c2", layers = 1 })
    S.index(store, "r", { keep[3], keep[4] }, "multi")
    S.image(store, "r", { seed = "untagged", layers = 1 })
    assert(store:blob_put(nil, "orphan"))
    local up = assert(store:blob_writer("r"))
    assert(up:close())
    return d, store, keep
  end

  local OPTS = { grace = 0, upload_grace = 0, settle = 0,
    delete_untagged = true, now = function() return os.time() + 10 end }

  local RUNS = {
    gc = function(store) return gc.run(store, OPTS) end,
    ["fsck --repair"] = function(store)
      return fsck.run(store, { repair = true })
    end,
  }

  for _, what in ipairs({ "gc", "fsck --repair" }) do
    for _, mode in ipairs({ "fail_one", "crash" }) do
      it(what .. " fails cleanly at every operation (" .. mode .. ") and"
        .. " loses nothing a tag needs", function()
        local run = RUNS[what]
        local d, store = faulty()
        d:arm("off", 0)
        assert(run(store))
        local total = d:count()
        store:close()
        assert.is_true(total > 50, total)
        for nth = 1, total do
          local keep
          d, store, keep = faulty()
          d:arm(mode, nth)
          local ok, r, err = pcall(run, store)
          assert.is_true(ok, r)
          assert.is_true(r ~= nil or type(err) == "string")
          d:arm("off", 0)
          for _, img in ipairs(keep) do
            assert.equal(img.body, (store:manifest_get("r", img.digest)))
            for dg, size in pairs(img.blobs) do
              assert.equal(size, store:blob_verify(dg))
              assert.equal(size, store:blob_stat("r", dg))
            end
          end
          assert.truthy(store:manifest_get("r", "t"))
          assert.truthy(store:manifest_get("r", "multi"))
          store:close()
        end
      end)
    end
  end
end)

-- Garbage collection (lua/berth/gc.lua, core/src/gc.c): what is kept and
-- what goes, --delete-untagged, upload sessions, --dry-run, and the CLI.
local helpers = require "helpers"
local cjson = require "cjson"
local S = require "07-gc.support"
local gc = require "berth.gc"
local fsck = require "berth.fsck"
local cmd_gc = require "berth.cmd.gc"

local HOUR = 3600
local V2 = S.V2

-- Every file under root with its size, one string: "nothing changed" is
-- this being equal before and after.
local function tree(root)
  local p = io.popen("cd '" .. root .. "' && find . -type f -printf '%p %s\\n'"
    .. " | sort")
  local s = p:read("*a")
  p:close()
  return s
end

local function set_of(list, key)
  local t = {}
  for _, v in ipairs(list) do t[key and v[key] or v] = true end
  return t
end

local function has_blob(root, d)
  return S.exists(S.blob_file(root, d))
end

-- The world the specs collect in. Everything is two hours old except what
-- is said to be young.
--   app:   A (tag v1) with referrer RA (untagged), U (untagged) with
--          referrer RU, index I (tag multi) over C1 and C2 (untagged),
--          X (untagged, nothing needs it) with referrer RX
--   other: O (tag latest), which reuses U's first layer
--   orphans: OLD (data, no link), OLD_LINKED (old data, old link in app),
--            YOUNG (fresh data), YOUNG_LINK (old data, fresh link in app),
--          and Y: an untagged manifest pushed just now.
local function world(store, root)
  local w = {}
  w.A = S.image(store, "app", { tag = "v1", seed = "A" })
  w.RA = S.image(store, "app", { seed = "RA", layers = 1,
    artifact_type = "application/x.sig",
    subject = { digest = w.A.digest, size = w.A.size } })
  w.U = S.image(store, "app", { seed = "U" })
  w.RU = S.image(store, "app", { seed = "RU", layers = 1,
    subject = { digest = w.U.digest, size = w.U.size } })
  w.C1 = S.image(store, "app", { seed = "C1" })
  w.C2 = S.image(store, "app", { seed = "C2" })
  w.I = S.index(store, "app", { w.C1, w.C2 }, "multi")
  w.X = S.image(store, "app", { seed = "X" })
  w.RX = S.image(store, "app", { seed = "RX", layers = 1,
    subject = { digest = w.X.digest, size = w.X.size } })
  local shared = w.U.layers[1]
  w.O = S.image(store, "other", { tag = "latest", seed = "O",
    reuse = { { digest = shared, size = w.U.blobs[shared] } } })
  w.OLD = S.plant(store, root, "old orphan")
  w.OLD_LINKED = assert(store:blob_put("app", "old, linked, unreferenced"))
  w.YOUNG_LINK = assert(store:blob_put("app", "old data, young link"))
  S.age_all(root, 2 * HOUR)
  -- young things
  w.YOUNG = S.plant(store, root, "young orphan")
  assert(store:blob_mount("app", nil, w.YOUNG_LINK)) -- rewrites the link
  w.Y = S.image(store, "app", { seed = "Y" })
  return w
end

-- Blobs of images, as a list of digests (manifest, config, layers).
local function blobs_of(...)
  local list = {}
  for _, img in ipairs({ ... }) do
    list[#list + 1] = img.digest
    for d in pairs(img.blobs or {}) do list[#list + 1] = d end
  end
  return list
end

describe("gc", function()
  local store, root, w

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
    w = world(store, root)
  end)

  it("removes old unreferenced blobs, keeps referenced and young ones",
    function()
      local r = assert(gc.run(store, { settle = 0 }))
      local removed = set_of(r.removed.blobs, "digest")
      assert.same({ [w.OLD] = true, [w.OLD_LINKED] = true }, removed)
      assert.equal(2, r.blobs.removed)
      assert.equal(#"old orphan" + #"old, linked, unreferenced",
        r.blobs.removed_bytes)
      assert.is_false(has_blob(root, w.OLD))
      assert.is_false(has_blob(root, w.OLD_LINKED))
      -- its link went with it
      assert.is_nil(store:link_stat("app", "layer", w.OLD_LINKED))
      assert.equal(1, r.links.removed)
      -- young: fresh data, or old data with a fresh link
      assert.is_true(has_blob(root, w.YOUNG))
      assert.is_true(has_blob(root, w.YOUNG_LINK))
      assert.equal(2, r.blobs.young)
      -- tagged, untagged-but-linked, index children, referrers: all kept
      for _, d in ipairs(blobs_of(w.A, w.RA, w.U, w.RU, w.C1, w.C2, w.I,
        w.X, w.RX, w.O, w.Y)) do
        assert.is_true(has_blob(root, d), d)
      end
      assert.equal(0, r.manifests.removed)
      assert.equal(r.blobs.total, r.blobs.kept + r.blobs.young
        + r.blobs.removed)
      -- and the store is whole
      local f = assert(fsck.run(store))
      assert.same({}, f.problems)
    end)

  -- Distribution stores what Go's decoder reads, keys in any case; berth's
  -- parser refuses such a body, and gc must still keep what Go sees in it.
  it("keeps the blobs of a stored manifest with case-variant keys",
    function()
      local layer = assert(store:blob_put("dist", "a layer under Layers"))
      local cfg = assert(store:blob_put("dist", "{}"))
      local body = cjson.encode({ schemaVersion = 2,
        mediaType = S.OCI_MANIFEST,
        config = { mediaType = S.OCI_CONFIG, digest = cfg, size = 2 },
        Layers = { { mediaType = S.OCI_LAYER, Digest = layer,
          size = #"a layer under Layers" } } })
      local d = assert(store:blob_put("dist", body))
      local rev = S.repo_dir(root, "dist") .. "/_manifests/revisions/sha256/"
        .. S.hex(d)
      assert(os.execute("mkdir -p '" .. rev .. "'"))
      helpers.write_file(rev .. "/link", d)
      S.age_all(root, 2 * HOUR)
      assert(gc.run(store, { settle = 0 }))
      assert.is_true(has_blob(root, d))
      assert.is_true(has_blob(root, layer))
      assert.is_true(has_blob(root, cfg))
    end)

  it("keeps a blob whose data is old while a push links it", function()
    -- the upload of content already stored rewrites only the link
    local up = assert(store:blob_writer("app"))
    assert(up:write("old orphan"))
    assert(up:commit(w.OLD))
    local r = assert(gc.run(store, { settle = 0 }))
    assert.is_nil(set_of(r.removed.blobs, "digest")[w.OLD])
    assert.is_true(has_blob(root, w.OLD))
  end)

  it("keeps everything within a long grace period", function()
    local r = assert(gc.run(store, { grace = 3 * HOUR, settle = 0 }))
    assert.equal(0, r.blobs.removed)
    assert.is_true(has_blob(root, w.OLD))
  end)

  it("deletes untagged manifests with --delete-untagged, except index"
    .. " children, referrers of kept ones and young ones", function()
    local r = assert(gc.run(store, { delete_untagged = true, settle = 0 }))
    local gone = {}
    for _, m in ipairs(r.removed.manifests) do
      assert.equal("app", m.repo)
      gone[m.digest] = true
    end
    assert.same({ [w.U.digest] = true, [w.RU.digest] = true,
      [w.X.digest] = true, [w.RX.digest] = true }, gone)
    assert.equal(4, r.manifests.removed)
    local left = set_of(assert(store:manifest_list("app")))
    assert.same(set_of({ w.A.digest, w.RA.digest, w.C1.digest, w.C2.digest,
      w.I.digest, w.Y.digest }), left)
    -- the blobs of what was deleted went too, except the layer "other"
    -- still uses
    local shared = w.U.layers[1]
    for _, d in ipairs(blobs_of(w.U, w.RU, w.X, w.RX)) do
      assert.equal(d == shared, has_blob(root, d), d)
    end
    for _, d in ipairs(blobs_of(w.A, w.RA, w.C1, w.C2, w.I, w.O, w.Y)) do
      assert.is_true(has_blob(root, d), d)
    end
    assert.equal("v1", store:tag_lookup("app", w.A.digest)[1])
    assert.matches(w.RA.digest, store:referrers("app", w.A.digest), 1, true)
    local f = assert(fsck.run(store))
    assert.same({}, f.problems)
  end)

  it("keeps a referrer chain of a kept manifest (to a fixpoint)", function()
    -- a signature of the signature RA of A, untagged and old
    local RRA = S.image(store, "app", { seed = "RRA", layers = 1,
      subject = { digest = w.RA.digest, size = w.RA.size } })
    S.age_revision(root, "app", RRA.digest, 2 * HOUR)
    for d in pairs(RRA.blobs) do S.age_blob(root, d, 2 * HOUR) end
    S.age(S.blob_file(root, RRA.digest), 2 * HOUR)
    local r = assert(gc.run(store, { delete_untagged = true, settle = 0 }))
    assert.is_nil(set_of(r.removed.manifests, "digest")[RRA.digest])
    assert.truthy(store:manifest_head("app", RRA.digest))
    for _, d in ipairs(blobs_of(RRA)) do
      assert.is_true(has_blob(root, d), d)
    end
  end)

  describe("races, played in the settle window", function()
    -- opts.sleep runs between the unlinking of the candidates and the
    -- second mark: what a concurrent push does there is what gc must see.
    local function manifest_over(layers)
      local cfg = assert(store:blob_put("app", '{"os":"linux"}'))
      local descs = {}
      for i, d in ipairs(layers) do
        descs[i] = { mediaType = S.OCI_LAYER, digest = d,
          size = assert(store:blob_stat(nil, d)) }
      end
      return assert(require("berth.manifest").parse(cjson.encode({
        schemaVersion = 2, mediaType = S.OCI_MANIFEST,
        config = { mediaType = S.OCI_CONFIG, digest = cfg,
          size = #'{"os":"linux"}' },
        layers = descs })))
    end

    -- gc has withdrawn the orphan's old link: whoever reads through it
    -- puts it back, and gc's last look then sees it.
    it("a pull of an orphan whose link gc has withdrawn finds it, and the"
      .. " orphan stays", function()
      local size
      local r = assert(gc.run(store, { settle = 0, sleep = function()
        assert.is_nil(store:link_stat("app", "layer", w.OLD_LINKED))
        size = store:blob_stat("app", w.OLD_LINKED)
      end }))
      assert.equal(#"old, linked, unreferenced", size)
      assert.is_nil(set_of(r.removed.blobs, "digest")[w.OLD_LINKED])
      assert.truthy(store:blob_stat("app", w.OLD_LINKED))
      assert.truthy(store:link_stat("app", "layer", w.OLD_LINKED))
    end)

    it("a manifest put that needs an orphan's withdrawn link succeeds, and"
      .. " the orphan stays", function()
      local d, err
      local r = assert(gc.run(store, { settle = 0, sleep = function()
        d, err = store:manifest_put("app", manifest_over({ w.OLD_LINKED }),
          { tag = "late" })
      end }))
      assert.truthy(d, err)
      assert.is_nil(set_of(r.removed.blobs, "digest")[w.OLD_LINKED])
      assert.truthy(store:blob_stat("app", w.OLD_LINKED))
      assert.same({}, assert(fsck.run(store)).problems)
    end)

    it("keeps an orphan a manifest verified against before the unlinking",
      function()
        local d
        local r = assert(gc.run(store, { settle = 0, sleep = function()
          -- verified earlier; its revision lands now
          d = assert(store:manifest_put("app", manifest_over({
            w.OLD_LINKED, w.OLD }), { tag = "late", skip_verify = true }))
        end }))
        assert.same({}, r.removed.blobs)
        assert.is_true(has_blob(root, w.OLD_LINKED))
        assert.is_true(has_blob(root, w.OLD))
        -- the link it had is back
        assert.truthy(store:blob_stat("app", w.OLD_LINKED))
        assert.equal(d, store:tag_get("app", "late"))
      end)

    it("keeps an orphan a push links again meanwhile", function()
      local r = assert(gc.run(store, { settle = 0, sleep = function()
        assert(store:blob_mount("app", nil, w.OLD))
      end }))
      assert.is_nil(set_of(r.removed.blobs, "digest")[w.OLD])
      assert.is_true(has_blob(root, w.OLD))
    end)

    it("puts back an untagged manifest deleted under a tag or an index"
      .. " that arrived meanwhile", function()
      local idx
      local r = assert(gc.run(store, { settle = 0, delete_untagged = true,
        sleep = function()
          -- a tag_set that checked X's revision before it went
          local tagdir = S.repo_dir(root, "app") .. "/_manifests/tags/late"
          assert(os.execute("mkdir -p " .. tagdir .. "/current"))
          helpers.write_file(tagdir .. "/current/link", w.X.digest)
          -- an index put that verified U before it went
          local body = cjson.encode({ schemaVersion = 2,
            mediaType = S.OCI_INDEX, manifests = { {
              mediaType = S.OCI_MANIFEST, digest = w.U.digest,
              size = w.U.size } } })
          idx = assert(store:manifest_put("app", assert(require(
            "berth.manifest").parse(body)), { tag = "idx",
            skip_verify = true }))
        end }))
      assert.equal(2, r.manifests.restored)
      assert.equal(2, r.manifests.removed) -- RU and RX
      assert.same({ [w.RU.digest] = true, [w.RX.digest] = true },
        set_of(r.removed.manifests, "digest"))
      assert.equal(w.X.body, (store:manifest_get("app", "late")))
      assert.truthy(store:manifest_get("app", idx))
      for _, d in ipairs(blobs_of(w.X, w.U)) do
        assert.is_true(has_blob(root, d), d)
      end
      assert.same({}, assert(fsck.run(store)).problems)
    end)
  end)

  describe("upload sessions", function()
    local function uploads_dir(id)
      return S.repo_dir(root, "app") .. "/_uploads/" .. id
    end

    it("purges those older than the upload grace", function()
      local old = assert(store:blob_writer("app"))
      assert(old:write("abandoned"))
      local old_id = old.id
      assert(old:close())
      helpers.write_file(uploads_dir(old_id) .. "/startedat",
        "2020-01-01T00:00:00Z")
      local fresh = assert(store:blob_writer("app"))
      assert(fresh:write("in progress"))
      local fresh_id = fresh.id
      assert(fresh:close())
      -- a session whose startedat is gone, untouched for 8 days
      local orphan = assert(store:blob_writer("app"))
      local orphan_id = orphan.id
      assert(orphan:close())
      os.remove(uploads_dir(orphan_id) .. "/startedat")
      S.age(uploads_dir(orphan_id) .. "/data", 8 * 86400)
      S.age(uploads_dir(orphan_id), 8 * 86400)

      local r = assert(gc.run(store, { settle = 0 }))
      assert.equal(3, r.uploads.total)
      assert.equal(2, r.uploads.removed)
      assert.same({ [old_id] = true, [orphan_id] = true },
        set_of(r.removed.uploads, "id"))
      assert.is_false(S.exists(uploads_dir(old_id) .. "/startedat"))
      assert.is_false(S.exists(uploads_dir(orphan_id) .. "/data"))
      assert.is_true(S.exists(uploads_dir(fresh_id) .. "/startedat"))
      -- the fresh one still works
      local again = assert(store:upload_open("app", fresh_id))
      assert(again:commit(helpers.sha256sum("in progress")))
      -- a shorter upload grace takes young ones too
      local young = assert(store:blob_writer("app"))
      assert(young:close())
      r = assert(gc.run(store, { upload_grace = 0, now = function()
        return os.time() + 5 end, settle = 0 }))
      assert.equal(1, r.uploads.removed)
    end)

    it("leaves a session alone while a request writes it", function()
      local up = assert(store:blob_writer("app"))
      assert(up:write("busy"))
      helpers.write_file(uploads_dir(up.id) .. "/startedat",
        "2020-01-01T00:00:00Z")
      local r = assert(gc.run(store, { settle = 0 }))
      assert.equal(1, r.uploads.busy)
      assert.equal(0, r.uploads.removed)
      local ok, _, code = store:upload_purge("app", up.id)
      assert.is_nil(ok)
      assert.equal("EBUSY", code)
      assert(up:write(" still"))
      assert(up:commit(helpers.sha256sum("busy still")))
    end)
  end)

  describe("--dry-run", function()
    for _, untagged in ipairs({ false, true }) do
      it("changes nothing and reports what a run then removes"
        .. (untagged and " (--delete-untagged)" or ""), function()
        local up = assert(store:blob_writer("app"))
        assert(up:close())
        helpers.write_file(S.repo_dir(root, "app") .. "/_uploads/" .. up.id
          .. "/startedat", "2020-01-01T00:00:00Z")
        local before = tree(root)
        local dry = assert(gc.run(store, { dry_run = true,
          delete_untagged = untagged }))
        assert.equal(before, tree(root))
        assert.is_true(dry.dry_run)
        assert.is_true(dry.blobs.removed > 0)
        local real = assert(gc.run(store, { delete_untagged = untagged,
          settle = 0 }))
        assert.are_not.equal(before, tree(root))
        assert.same(dry.removed, real.removed)
        assert.same(dry.blobs, real.blobs)
        assert.same(dry.manifests, real.manifests)
        assert.same(dry.uploads, real.uploads)
      end)
    end
  end)

  describe("berth gc", function()
    it("reports in text and --json, exit 0", function()
      local env, stdout = S.env()
      assert.equal(0, cmd_gc.run({ "--root", root, "--dry-run" }, env))
      local text = stdout()
      assert.matches("would remove blob " .. w.OLD, text, 1, true)
      assert.matches("2 to remove", text, 1, true)
      assert.is_true(has_blob(root, w.OLD))
      local env2, stdout2, stderr2 = S.env()
      assert.equal(0, cmd_gc.run({ "--root", root, "--json", "--grace",
        "90m", "--delete-untagged" }, env2))
      assert.equal("", stderr2()) -- no progress bar without a terminal
      local r = cjson.decode(stdout2())
      assert.is_false(r.dry_run)
      assert.equal(5400, r.grace)
      assert.equal(4, r.manifests.removed)
      assert.equal(r.blobs.removed, #r.removed.blobs)
      assert.is_false(has_blob(root, w.OLD))
      assert.same({}, r.removed.uploads)
    end)

    it("answers a bad duration and an unknown option with exit 2",
      function()
        local env, _, stderr = S.env()
        assert.equal(2, cmd_gc.run({ "--root", root, "--grace", "soon" },
          env))
        assert.matches("invalid duration", stderr(), 1, true)
        assert.equal(2, cmd_gc.run({ "--root", root, "--force" }, S.env()))
      end)

    it("fails with exit 1 without a store", function()
      local env, _, stderr = S.env()
      assert.equal(1, cmd_gc.run({ "--root", root .. "/nope" }, env))
      assert.matches("no store", stderr(), 1, true)
    end)

    it("runs as bin/berth gc", function()
      local lib = os.getenv("BERTH_LIB") or "build/libberth.so"
      local berth = "BERTH_LIB=" .. lib .. " bin/berth"
      local text, rc = S.run(berth .. " gc --help")
      assert.equal(0, rc)
      assert.matches("usage: berth gc", text, 1, true)
      text, rc = S.run(berth .. " gc --root " .. root .. " --json --dry-run")
      assert.equal(0, rc)
      assert.equal(2, cjson.decode(text).blobs.removed)
      text, rc = S.run(berth .. " gc --root " .. root)
      assert.equal(0, rc)
      assert.matches("2 removed", text, 1, true)
      assert.is_false(has_blob(root, w.OLD))
      text, rc = S.run(berth .. " gc --root " .. root .. " --grace x 2>&1")
      assert.equal(2, rc)
      assert.matches("invalid duration", text, 1, true)
    end)
  end)

  describe("durations", function()
    it("parses s, m, h, d, w and sums", function()
      assert.equal(30, gc.parse_duration("30s"))
      assert.equal(1800, gc.parse_duration("30m"))
      assert.equal(3600, gc.parse_duration("1h"))
      assert.equal(7 * 86400, gc.parse_duration("7d"))
      assert.equal(5400, gc.parse_duration("1h30m"))
      assert.equal(45, gc.parse_duration("45"))
      assert.is_nil(gc.parse_duration("1y"))
      assert.is_nil(gc.parse_duration(""))
    end)
  end)

  it("leaves berth's own caches for the repositories of V2 alone", function()
    assert.is_true(S.exists(root .. "/berth/v1/repositories/app/_tagsof"
      .. "/sha256/" .. S.hex(w.A.digest) .. "/v1"))
    assert(gc.run(store, { delete_untagged = true, settle = 0 }))
    assert.is_true(S.exists(root .. V2 .. "/repositories/app/_manifests"
      .. "/tags/v1/current/link"))
  end)
end)

describe("gc store methods", function()
  local store, root

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
  end)

  it("lists repositories without manifests", function()
    S.image(store, "a/b", { tag = "t" })
    local up = assert(store:blob_writer("uploads/only"))
    assert(up:close())
    assert(store:blob_put("layers-only", "x"))
    assert.same({ "a/b", "layers-only", "uploads/only" },
      store:repositories())
    assert.same({ "a/b" }, store:catalog())
  end)

  it("verifies blob content", function()
    local d = assert(store:blob_put(nil, "hello"))
    assert.equal(5, store:blob_verify(d))
    helpers.write_file(S.blob_file(root, d), "jello")
    local ok, err, code, actual = store:blob_verify(d)
    assert.is_nil(ok)
    assert.equal("DIGEST_INVALID", code)
    assert.matches("corrupt", err)
    assert.equal(helpers.sha256sum("jello"), actual)
    ok, err, code = store:blob_verify("sha256:" .. ("1"):rep(64))
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("BLOB_UNKNOWN", code)
    local info = assert(store:blob_info(d))
    assert.equal(5, info.size)
    assert.is_true(math.abs(info.mtime - os.time()) < 60)
  end)

  it("describes and removes links, damaged ones too", function()
    local img = S.image(store, "r", { tag = "t", layers = 1 })
    local kinds = {}
    for _, l in ipairs(assert(store:links("r"))) do
      kinds[#kinds + 1] = l.kind .. ":" .. l.state
    end
    assert.same({ "layer:ok", "layer:ok", "revision:ok", "tag:ok",
      "tag_index:ok" }, kinds)
    local dir = S.repo_dir(root, "r")
    local layer = img.layers[1]
    helpers.write_file(dir .. "/_layers/sha256/" .. S.hex(layer) .. "/link",
      "garbage")
    local l = assert(store:link_stat("r", "layer", layer))
    assert.equal("damaged", l.state)
    assert.is_nil(l.target)
    helpers.write_file(dir .. "/_layers/sha256/" .. S.hex(layer) .. "/link",
      img.config)
    assert.equal("mismatch", store:link_stat("r", "layer", layer).state)
    assert(store:link_remove("r", "layer", layer))
    local _, _, code = store:link_stat("r", "layer", layer)
    assert.equal("ENOTFOUND", code)
    _, _, code = store:link_remove("r", "layer", layer)
    assert.equal("ENOTFOUND", code)
    -- a tag directory without current/link
    os.remove(dir .. "/_manifests/tags/t/current/link")
    local tag_links = assert(store:links("r", { "tag" }))
    assert.equal(1, #tag_links)
    assert.equal("absent", tag_links[1].state)
    assert.equal("t", tag_links[1].tag)
    assert(store:link_remove("r", "tag", nil, "t"))
    assert.same({}, store:tag_list("r"))
    assert.has_error(function() store:links("r", { "nope" }) end)
  end)
end)

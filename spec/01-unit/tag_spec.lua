-- Tags, the digest -> tags reverse index and the catalog.
--
-- Tags need manifests. The manifest store is not used here: revisions are
-- made by hand in Distribution's layout (the body as a blob, the revision
-- link), through the store's driver so that both drivers are covered.
local helpers = require "helpers"
local ffi = require "ffi"
local C = require("berth.ffi").C

local V2 = "/docker/registry/v2"
local OWN = "/berth/v1"
local MISSING = "sha256:" .. string.rep("0", 64)

local function assert_fails(code, ok, err, got_code)
  assert.is_nil(ok)
  assert.is_string(err)
  assert.equal(code, got_code)
end

local function hex(dgst)
  return (dgst:match("^sha256:(%x+)$"))
end

-- Raw access to the store's driver, for what the API does not show.
local function driver(store)
  return C.berth_store_driver(store._p)
end

local function drv_put(store, path, content)
  local err = ffi.new("berth_error")
  local rc = C.berth_driver_put(driver(store), path, content, #content, err)
  assert(rc == 0, ffi.string(err.message))
end

-- drv_get(store, path) -> content | nil
local function drv_get(store, path)
  local buf = ffi.new("berth_buf")
  local rc = C.berth_driver_get(driver(store), buf, path, 4096, nil)
  local s = rc == 0 and ffi.string(buf.ptr, buf.len) or nil
  C.berth_buf_dispose(buf)
  return s
end

local function drv_exists(store, path)
  local info = ffi.new("berth_stat_info")
  return C.berth_driver_stat(driver(store), info, path, nil) == 0
end

local function drv_remove(store, path)
  return C.berth_driver_remove(driver(store), path, nil) == 0
end

local function revision_link(repo, dgst)
  return V2 .. "/repositories/" .. repo .. "/_manifests/revisions/sha256/"
    .. hex(dgst) .. "/link"
end

-- A manifest in Distribution's layout: blob data plus revision link.
local function make_manifest(store, repo, body)
  local dgst = assert(store:blob_put(nil, body))
  drv_put(store, revision_link(repo, dgst), dgst)
  return dgst
end

local function tag_dir(repo, tag)
  return V2 .. "/repositories/" .. repo .. "/_manifests/tags/" .. tag
end

local function reverse_entry(repo, dgst, tag)
  return OWN .. "/repositories/" .. repo .. "/_tagsof/sha256/" .. hex(dgst)
    .. "/" .. tag
end

for _, driver_name in ipairs({ "fs", "mem" }) do
  describe("tags (" .. driver_name .. " driver)", function()
    local store, root, A, B

    -- finally() does not exist in before_each, so new_store cannot clean
    -- up from there: after_each does.
    before_each(function()
      store, root = helpers.new_store({ driver = driver_name, fsync = "none" })
      A = make_manifest(store, "r", '{"m":"a"}')
      B = make_manifest(store, "r", '{"m":"b"}')
    end)

    after_each(function()
      store:close()
      helpers.rmrf(root)
    end)

    describe("set and get", function()
      it("points a tag at a manifest and reads it back", function()
        assert.is_true(store:tag_set("r", "latest", A))
        assert.equal(A, store:tag_get("r", "latest"))
      end)

      it("moves a tag, keeping the old index link as history", function()
        assert(store:tag_set("r", "t", A))
        assert(store:tag_set("r", "t", B))
        assert.equal(B, store:tag_get("r", "t"))
        assert.equal(B, drv_get(store, tag_dir("r", "t") .. "/current/link"))
        assert.equal(A, drv_get(store, tag_dir("r", "t") .. "/index/sha256/"
          .. hex(A) .. "/link"))
        assert.equal(B, drv_get(store, tag_dir("r", "t") .. "/index/sha256/"
          .. hex(B) .. "/link"))
      end)

      it("setting a tag to where it points already is a success", function()
        assert(store:tag_set("r", "t", A))
        assert(store:tag_set("r", "t", A))
        assert.equal(A, store:tag_get("r", "t"))
        assert.same({ "t" }, store:tag_lookup("r", A))
      end)

      it("sets only from what it expects (compare-and-set)", function()
        assert(store:tag_set_if("r", "t", A, nil)) -- must not exist: new
        assert_fails("ETAG_CHANGED", store:tag_set_if("r", "t", B, false))
        assert_fails("ETAG_CHANGED", store:tag_set_if("r", "t", B, B))
        assert.equal(A, store:tag_get("r", "t"))
        assert(store:tag_set_if("r", "t", B, A))
        assert.equal(B, store:tag_get("r", "t"))
        assert.same({ "t" }, store:tag_lookup("r", B))
        assert_fails("MANIFEST_UNKNOWN",
          store:tag_set_if("r", "u", MISSING, nil))
        assert_fails("DIGEST_INVALID", store:tag_set_if("r", "t", A, "x"))
        assert.equal(B, store:tag_get("r", "t"))
      end)

      it("deletes only from what it expects (compare-and-set)", function()
        assert(store:tag_set("r", "t", A))
        assert_fails("ETAG_CHANGED", store:tag_delete_if("r", "t", B))
        assert_fails("ETAG_CHANGED", store:tag_delete_if("r", "t", nil))
        assert.equal(A, store:tag_get("r", "t"))
        assert(store:tag_delete_if("r", "t", A))
        assert_fails("MANIFEST_UNKNOWN", store:tag_get("r", "t"))
        assert_fails("MANIFEST_UNKNOWN", store:tag_delete_if("r", "t", nil))
        assert_fails("ETAG_CHANGED", store:tag_delete_if("r", "t", A))
      end)

      it("answers MANIFEST_UNKNOWN for a missing tag", function()
        assert_fails("MANIFEST_UNKNOWN", store:tag_get("r", "nope"))
        assert_fails("MANIFEST_UNKNOWN", store:tag_get("unknown/repo", "t"))
        local _, err = store:tag_get("r", "nope")
        assert.equal("manifest unknown: r:nope", err)
      end)

      it("refuses to point a tag at a manifest that is not there", function()
        assert_fails("MANIFEST_UNKNOWN", store:tag_set("r", "t", MISSING))
        -- a blob without a revision link is not a manifest of r
        local blob = assert(store:blob_put("r", "just a layer"))
        assert_fails("MANIFEST_UNKNOWN", store:tag_set("r", "t", blob))
        -- a manifest of another repository is not one of r
        local other = make_manifest(store, "other", '{"m":"other"}')
        assert_fails("MANIFEST_UNKNOWN", store:tag_set("r", "t", other))
        -- a revision link naming another digest is damage, not a manifest
        drv_put(store, revision_link("r", MISSING), A)
        assert_fails("MANIFEST_UNKNOWN", store:tag_set("r", "t", MISSING))
        assert.is_false(drv_exists(store, tag_dir("r", "t")))
      end)

      it("answers DIGEST_INVALID for a digest that does not parse", function()
        assert_fails("DIGEST_INVALID", store:tag_set("r", "t", "sha256:abc"))
        assert_fails("DIGEST_INVALID", store:tag_lookup("r", "nope"))
      end)

      it("answers EIO for a damaged current link", function()
        assert(store:tag_set("r", "t", A))
        drv_put(store, tag_dir("r", "t") .. "/current/link", "garbage")
        assert_fails("EIO", store:tag_get("r", "t"))
        -- the tag can still be repaired and deleted
        assert(store:tag_set("r", "t", B))
        assert.equal(B, store:tag_get("r", "t"))
        assert(store:tag_delete("r", "t"))
      end)
    end)

    describe("validation", function()
      local bad_tags = { "", "-x", ".x", string.rep("a", 129), "a/b", "a:b",
        "../x", "a b", "a\nb", "é" }

      it("answers TAG_INVALID for tags outside the grammar", function()
        for _, tag in ipairs(bad_tags) do
          assert_fails("TAG_INVALID", store:tag_get("r", tag))
          assert_fails("TAG_INVALID", store:tag_set("r", tag, A))
          assert_fails("TAG_INVALID", store:tag_delete("r", tag))
        end
      end)

      it("accepts tags at the edges of the grammar", function()
        for _, tag in ipairs({ "a", "_", "0", string.rep("a", 128), "A-._z",
          "_.-" }) do
          assert.is_true(store:tag_set("r", tag, A))
          assert.equal(A, store:tag_get("r", tag))
        end
      end)

      it("answers NAME_INVALID for hostile repository names", function()
        for _, repo in ipairs({ "", "../r", "r/..", "/r", "r/", "a//b", "R",
          "r/../../etc", "a b", "a\0b", string.rep("a", 256), "_manifests",
          "r/_manifests", ".", "a:b" }) do
          assert_fails("NAME_INVALID", store:tag_get(repo, "t"))
          assert_fails("NAME_INVALID", store:tag_set(repo, "t", A))
          assert_fails("NAME_INVALID", store:tag_delete(repo, "t"))
          assert_fails("NAME_INVALID", store:tag_list(repo))
          assert_fails("NAME_INVALID", store:tag_lookup(repo, A))
          assert_fails("NAME_INVALID", store:tag_reindex(repo))
        end
      end)

      it("rejects a tag with a NUL byte instead of cutting it short", function()
        assert(store:tag_set("r", "a", A))
        assert_fails("TAG_INVALID", store:tag_get("r", "a\0b"))
        assert_fails("TAG_INVALID", store:tag_delete("r", "a\0b"))
        assert.equal(A, store:tag_get("r", "a"))
      end)

      it("raises for arguments of the wrong type", function()
        assert.has_error(function() store:tag_get("r", 1) end,
          "tag must be a string")
        assert.has_error(function() store:tag_get(nil, "t") end,
          "repository name must be a string")
        assert.has_error(function() store:tag_set("r", "t", 1) end,
          "digest must be a string")
        assert.has_error(function() store:tag_list("r", { n = -1 }) end,
          "n must be a non-negative integer")
        assert.has_error(function() store:tag_list("r", { n = 1.5 }) end,
          "n must be a non-negative integer")
        assert.has_error(function() store:tag_list("r", { last = 1 }) end,
          "last must be a string")
        assert.has_error(function() store:catalog("x") end,
          "options must be a table")
      end)
    end)

    describe("delete", function()
      it("removes the tag and its history, not the manifest", function()
        assert(store:tag_set("r", "t", A))
        assert(store:tag_set("r", "t", B))
        assert.is_true(store:tag_delete("r", "t"))
        assert_fails("MANIFEST_UNKNOWN", store:tag_get("r", "t"))
        assert.is_false(drv_exists(store, tag_dir("r", "t")))
        assert.equal(A, drv_get(store, revision_link("r", A)))
        assert.equal(B, drv_get(store, revision_link("r", B)))
        assert.same({}, store:tag_list("r"))
        assert.same({}, store:tag_lookup("r", B))
      end)

      it("answers MANIFEST_UNKNOWN for a tag that is not there", function()
        assert_fails("MANIFEST_UNKNOWN", store:tag_delete("r", "nope"))
        assert(store:tag_set("r", "t", A))
        assert(store:tag_delete("r", "t"))
        assert_fails("MANIFEST_UNKNOWN", store:tag_delete("r", "t"))
        assert_fails("MANIFEST_UNKNOWN", store:tag_delete("unknown", "t"))
      end)

      it("removes a tag directory a crashed delete left behind", function()
        assert(store:tag_set("r", "t", A))
        drv_remove(store, tag_dir("r", "t") .. "/current")
        assert(store:tag_delete("r", "t"))
        assert.same({}, store:tag_list("r"))
      end)
    end)

    describe("list", function()
      local names, expected

      before_each(function()
        -- 250 tags mixing case, digits and punctuation, so the order is
        -- bytewise and not numeric or case-folded.
        names = {}
        for i = 1, 250 do
          local forms = { "v%d", "V%d", "%d", "_%d", "x.%d", "x-%d", "rc%03d" }
          names[i] = string.format(forms[i % #forms + 1], i)
        end
        for i, name in ipairs(names) do
          assert(store:tag_set("r", name, i % 2 == 0 and A or B))
        end
        expected = {}
        for i, name in ipairs(names) do expected[i] = name end
        table.sort(expected)
      end)

      it("lists every tag in bytewise order", function()
        assert.same(expected, store:tag_list("r"))
        assert.same(expected, store:tag_list("r", {}))
        assert.equal(250, #expected)
      end)

      it("pages with n and last", function()
        for _, size in ipairs({ 100, 7, 1 }) do
          local got, last = {}, nil
          for _ = 1, 300 do
            local page = assert(store:tag_list("r", { n = size, last = last }))
            assert.is_true(#page <= size)
            if #page == 0 then break end
            for _, t in ipairs(page) do got[#got + 1] = t end
            last = page[#page]
          end
          assert.same(expected, got)
        end
      end)

      it("starts strictly after last, which need not be a tag", function()
        assert.same({ expected[11], expected[12] },
          store:tag_list("r", { n = 2, last = expected[10] }))
        -- "v1" < "v10": a name between two tags starts at the next one
        local after = {}
        for _, t in ipairs(expected) do
          if t > "v1~" then after[#after + 1] = t end
        end
        assert.same(after, store:tag_list("r", { last = "v1~" }))
        assert.same(expected, store:tag_list("r", { last = "" }))
      end)

      it("gives an empty page past the end and for n = 0", function()
        assert.same({}, store:tag_list("r", { last = expected[250] }))
        assert.same({}, store:tag_list("r", { last = "~" }))
        assert.same({}, store:tag_list("r", { n = 0 }))
        assert.same({}, store:tag_list("r", { n = 0, last = "a" }))
      end)
    end)

    it("answers NAME_UNKNOWN when listing an unknown repository", function()
      assert_fails("NAME_UNKNOWN", store:tag_list("unknown"))
      assert_fails("NAME_UNKNOWN", store:tag_list("unknown", { n = 0 }))
      -- a repository with blobs but no manifests is not known either
      assert(store:blob_put("layers/only", "x"))
      assert_fails("NAME_UNKNOWN", store:tag_list("layers/only"))
    end)

    it("lists no tags for a repository with manifests only", function()
      assert.same({}, store:tag_list("r"))
      assert(store:tag_set("r", "t", A))
      assert(store:tag_delete("r", "t"))
      assert.same({}, store:tag_list("r"))
    end)

    -- A first set writes the index link, then current/link: cut short
    -- between the two (kill -9, a power cut) it leaves a tag directory
    -- that names no manifest. So does a delete cut short.
    it("does not list a tag directory without current/link", function()
      assert(store:tag_set("r", "a", A))
      assert(store:tag_set("r", "c", B))
      drv_put(store, tag_dir("r", "b") .. "/index/sha256/" .. hex(A)
        .. "/link", A)
      assert.same({ "a", "c" }, store:tag_list("r"))
      -- a page is filled with tags, the leftover takes no place in it
      assert.same({ "a", "c" }, store:tag_list("r", { n = 2 }))
      assert.same({ "c" }, store:tag_list("r", { n = 1, last = "a" }))
      assert_fails("MANIFEST_UNKNOWN", store:tag_get("r", "b"))
      -- the set completes: a tag like any other
      assert(store:tag_set("r", "b", A))
      assert.same({ "a", "b", "c" }, store:tag_list("r"))
    end)

    it("skips names in the tags directory that are not tags", function()
      assert(store:tag_set("r", "good", A))
      drv_put(store, V2 .. "/repositories/r/_manifests/tags/-bad/current/link",
        A)
      assert.same({ "good" }, store:tag_list("r"))
    end)

    describe("lookup", function()
      it("follows set, move and delete", function()
        assert(store:tag_set("r", "t2", A))
        assert(store:tag_set("r", "t1", A))
        assert(store:tag_set("r", "t3", B))
        assert.same({ "t1", "t2" }, store:tag_lookup("r", A))
        assert.same({ "t3" }, store:tag_lookup("r", B))
        assert(store:tag_set("r", "t2", B))
        assert.same({ "t1" }, store:tag_lookup("r", A))
        assert.same({ "t2", "t3" }, store:tag_lookup("r", B))
        assert(store:tag_delete("r", "t1"))
        assert.same({}, store:tag_lookup("r", A))
        assert.same({ "t2", "t3" }, store:tag_lookup("r", B))
      end)

      it("finds nothing for a digest without tags or an unknown repository",
        function()
          assert.same({}, store:tag_lookup("r", A))
          assert.same({}, store:tag_lookup("r", MISSING))
          assert.same({}, store:tag_lookup("unknown/repo", A))
          -- and a lookup does not make the repository exist
          assert.is_false(drv_exists(store, OWN .. "/repositories/unknown"))
        end)

      it("keeps repositories apart", function()
        local C2 = make_manifest(store, "s", '{"m":"a"}')
        assert.equal(A, C2)
        assert(store:tag_set("r", "t", A))
        assert(store:tag_set("s", "u", A))
        assert.same({ "t" }, store:tag_lookup("r", A))
        assert.same({ "u" }, store:tag_lookup("s", A))
      end)

      it("drops a stale entry left in the index", function()
        assert(store:tag_set("r", "t", A))
        assert(store:tag_set("r", "u", B))
        assert.same({ "t" }, store:tag_lookup("r", A))
        -- stale by hand: u points at B, t's entry for B never existed
        drv_put(store, reverse_entry("r", A, "u"), "u")
        drv_put(store, reverse_entry("r", A, "gone"), "gone")
        drv_put(store, reverse_entry("r", A, "-junk"), "-junk")
        assert.same({ "t" }, store:tag_lookup("r", A))
        assert.is_false(drv_exists(store, reverse_entry("r", A, "u")))
        assert.is_false(drv_exists(store, reverse_entry("r", A, "gone")))
        assert.same({ "u" }, store:tag_lookup("r", B))
      end)

      it("keeps its cache where no repository can be", function()
        -- "_tagsof" is not a valid name component, so no repository's own
        -- files can sit at the path of another repository's entry.
        assert(store:tag_set("r", "x", A))
        local nested = "r/_tagsof/sha256/" .. hex(A) .. "/x"
        local ok, err, code = store:tag_set(nested, "n", A)
        assert.is_nil(ok)
        assert.is_string(err)
        assert.equal("NAME_INVALID", code)
        assert.same({ "x" }, store:tag_lookup("r", A))
      end)

      it("rebuilds after a new epoch what another registry tagged", function()
        assert(store:tag_set("r", "mine", A))
        assert.same({ "mine" }, store:tag_lookup("r", A)) -- index complete
        -- CNCF Distribution tags A too; it knows nothing of the index.
        drv_put(store, tag_dir("r", "theirs") .. "/current/link", A)
        drv_put(store, tag_dir("r", "theirs") .. "/index/sha256/" .. hex(A)
          .. "/link", A)
        assert(store:new_epoch())
        assert.same({ "mine", "theirs" }, store:tag_lookup("r", A))
        -- deleting the manifest removes both tags
        assert(store:manifest_delete("r", A))
        assert_fails("MANIFEST_UNKNOWN", store:tag_get("r", "theirs"))
      end)

      it("is right for a store written without the reverse index", function()
        assert(store:tag_set("r", "t1", A))
        assert(store:tag_set("r", "t2", A))
        assert(store:tag_set("r", "t3", B))
        assert(drv_remove(store, "/berth"))
        assert.same({ "t1", "t2" }, store:tag_lookup("r", A))
        assert.same({ "t3" }, store:tag_lookup("r", B))
        -- the first lookup built the index
        assert.equal("t3", drv_get(store, reverse_entry("r", B, "t3")))
      end)

      it("is right when berth tagged before it ever indexed", function()
        -- Distribution's tags, then one set by berth: the index is partial
        assert(store:tag_set("r", "old1", A))
        assert(store:tag_set("r", "old2", B))
        assert(drv_remove(store, "/berth"))
        assert(store:tag_set("r", "new", A))
        assert.same({ "new", "old1" }, store:tag_lookup("r", A))
        assert.same({ "old2" }, store:tag_lookup("r", B))
      end)

      it("reindex restores lost entries and drops stale ones", function()
        assert(store:tag_set("r", "t", A))
        assert(store:tag_set("r", "u", B))
        assert.same({ "t" }, store:tag_lookup("r", A)) -- index complete
        -- damage: t's entry lost (as if Distribution had set t), a stale one
        assert(drv_remove(store, reverse_entry("r", A, "t")))
        drv_put(store, reverse_entry("r", A, "u"), "u")
        assert.same({}, store:tag_lookup("r", A))
        assert.is_true(store:tag_reindex("r"))
        assert.is_true(drv_exists(store, reverse_entry("r", A, "t")))
        assert.is_false(drv_exists(store, reverse_entry("r", A, "u")))
        assert.same({ "t" }, store:tag_lookup("r", A))
        assert.same({ "u" }, store:tag_lookup("r", B))
        assert_fails("NAME_UNKNOWN", store:tag_reindex("unknown"))
      end)
    end)

    describe("catalog", function()
      it("is empty for an empty store", function()
        local empty = helpers.new_store({ driver = driver_name })
        assert.same({}, empty:catalog())
      end)

      it("lists nested repositories in Distribution's order", function()
        for _, repo in ipairs({ "z", "a/b", "a-b", "a", "a.b", "b/c/d",
          "a/b/c", "a0" }) do
          make_manifest(store, repo, '{"repo":"' .. repo .. '"}')
        end
        -- blobs only: no _manifests
        assert(store:blob_put("layers", "x"))
        -- "/" sorts before every other byte, as in Distribution's lessPath
        local all = { "a", "a/b", "a/b/c", "a-b", "a.b", "a0", "b/c/d", "r",
          "z" }
        assert.same(all, store:catalog())
        assert.same(all, store:catalog({}))
        -- pages of every size add up to the whole
        for size = 1, #all + 1 do
          local got, last = {}, nil
          for _ = 1, 20 do
            local page = assert(store:catalog({ n = size, last = last }))
            if #page == 0 then break end
            assert.is_true(#page <= size)
            for _, r in ipairs(page) do got[#got + 1] = r end
            last = page[#page]
          end
          assert.same(all, got)
        end
        assert.same({ "a/b/c", "a-b" }, store:catalog({ n = 2, last = "a/b" }))
        assert.same({ "a-b" }, store:catalog({ n = 1, last = "a/b/c" }))
        assert.same({ "b/c/d", "r", "z" }, store:catalog({ last = "a0" }))
        assert.same({ "b/c/d" }, store:catalog({ n = 1, last = "b" }))
        assert.same({}, store:catalog({ last = "z" }))
        assert.same({}, store:catalog({ last = "zz" }))
        assert.same({}, store:catalog({ n = 0 }))
      end)

      it("drops a repository whose last manifest was deleted", function()
        local G = make_manifest(store, "gone", '{"m":"g"}')
        make_manifest(store, "gone/child", '{"m":"c"}')
        assert.same({ "gone", "gone/child", "r" }, store:catalog())
        -- Distribution removes the link file and leaves its directory
        assert(drv_remove(store, revision_link("gone", G)))
        assert.same({ "gone/child", "r" }, store:catalog())
        assert.same({ "gone/child", "r" }, store:catalog({ last = "gone" }))
        assert.same({ "r" }, store:catalog({ last = "gone/child" }))
      end)

      it("ignores directories that cannot be repositories", function()
        drv_put(store, V2 .. "/repositories/Upper/_manifests/revisions/sha256/"
          .. hex(A) .. "/link", A)
        drv_put(store, V2 .. "/repositories/_x/_manifests/revisions/sha256/"
          .. hex(A) .. "/link", A)
        drv_put(store, V2 .. "/repositories/afile", "not a directory")
        assert.same({ "r" }, store:catalog())
      end)
    end)
  end)
end

describe("tags on disk (fs driver)", function()
  local store, root

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
  end)

  after_each(function()
    store:close()
    helpers.rmrf(root)
  end)

  it("writes Distribution's links and berth's reverse entry", function()
    local A = make_manifest(store, "lib/app", '{"m":"a"}')
    local B = make_manifest(store, "lib/app", '{"m":"b"}')
    assert(store:tag_set("lib/app", "v1", A))
    local tags = root .. V2 .. "/repositories/lib/app/_manifests/tags/v1"
    assert.equal(A, helpers.read_file(tags .. "/current/link"))
    assert.equal(A, helpers.read_file(tags .. "/index/sha256/" .. hex(A)
      .. "/link"))
    local own = root .. OWN .. "/repositories/lib/app/_tagsof/sha256/"
    assert.equal("v1", helpers.read_file(own .. hex(A) .. "/v1"))

    assert(store:tag_set("lib/app", "v1", B))
    assert.equal(B, helpers.read_file(tags .. "/current/link"))
    assert.equal(A, helpers.read_file(tags .. "/index/sha256/" .. hex(A)
      .. "/link"))
    assert.equal(B, helpers.read_file(tags .. "/index/sha256/" .. hex(B)
      .. "/link"))
    assert.equal("v1", helpers.read_file(own .. hex(B) .. "/v1"))
    assert.is_nil(helpers.read_file(own .. hex(A) .. "/v1"))

    assert(store:tag_delete("lib/app", "v1"))
    assert.is_nil(io.open(tags, "r"))
    assert.is_nil(helpers.read_file(own .. hex(B) .. "/v1"))
  end)

  it("serves tags Distribution wrote by hand", function()
    local A = make_manifest(store, "d", '{"m":"a"}')
    local tags = root .. V2 .. "/repositories/d/_manifests/tags/"
    for _, t in ipairs({ "b", "a" }) do
      os.execute("mkdir -p '" .. tags .. t .. "/current' '" .. tags .. t
        .. "/index/sha256/" .. hex(A) .. "'")
      helpers.write_file(tags .. t .. "/current/link", A)
      helpers.write_file(tags .. t .. "/index/sha256/" .. hex(A) .. "/link", A)
    end
    assert.equal(A, store:tag_get("d", "a"))
    assert.same({ "a", "b" }, store:tag_list("d"))
    assert.same({ "a", "b" }, store:tag_lookup("d", A))
    assert.same({ "d" }, store:catalog())
  end)

  it("answers lookups from a store it cannot write", function()
    local A = make_manifest(store, "ro", '{"m":"a"}')
    assert(store:tag_set("ro", "t", A))
    assert(drv_remove(store, "/berth"))
    -- a file where the index directory would go: building it fails
    helpers.write_file(root .. "/berth", "in the way")
    assert.same({ "t" }, store:tag_lookup("ro", A))
  end)
end)

-- Crash safety: the fault driver stops (crash) or fails (fail_one) the Nth
-- storage operation of a tag change, for every N in turn. Afterwards the
-- tag is old or new, never dangling, and the reverse index is still a
-- superset of the truth (or no longer marked complete), so lookups are
-- right.
describe("the tag lock", function()
  it("is the driver's lock on the repository's _taglock", function()
    jit.off() -- the watcher is a C callback: no compiled caller
    jit.flush()
    finally(function() jit.on() end)
    local t = helpers.watched_stores(finally)
    local A = make_manifest(t.plain, "lib/app", '{"m":"a"}')
    local seen = {}
    t.driver:watch(function(op, path)
      if path:find("_taglock", 1, true) then
        seen[#seen + 1] = op .. " " .. path
      end
    end)
    assert(t.watched:tag_set("lib/app", "v1", A))
    assert(t.watched:tag_delete("lib/app", "v1"))
    t.driver:watch(nil)
    local lock = "lock " .. OWN .. "/repositories/lib/app/_taglock"
    assert.same({ lock, lock }, seen)
  end)
end)

describe("a tag write while another process holds the tag lock", function()
  local busy = require "berth.busy"

  it("costs a manifest put a retry of its tag alone", function()
    jit.off() -- the watcher is a C callback: no compiled caller
    jit.flush()
    finally(function() jit.on() end)
    local t = helpers.watched_stores(finally)
    local other = assert(require("berth.driver").fs(t.root))
    finally(function() other:close() end)
    local held = assert(other:lock(OWN .. "/repositories/r/_taglock"))
    local m = assert(require("berth.manifest").parse('{"schemaVersion":2,'
      .. '"mediaType":"application/vnd.oci.image.index.v1+json",'
      .. '"manifests":[]}'))
    finally(function() m:close() end)
    local tries, puts = 0, {}
    t.driver:watch(function(op, path)
      if op == "lock" and path:find("/_taglock$") then
        tries = tries + 1
        if tries == 3 then held:release() end -- the third try takes it
      elseif op == "put" then
        puts[path] = (puts[path] or 0) + 1
      end
    end)
    local d = assert(t.watched:manifest_put("r", m, { tag = "v1" }))
    t.driver:watch(nil)
    assert.equal(3, tries)
    assert.equal(1, puts[revision_link("r", d)])
    assert.equal(d, t.plain:tag_get("r", "v1"))
  end)

  it("waits (berth.busy), then answers EIO; C itself never waits",
     function()
    local store, root = helpers.new_store({ fsync = "none" })
    finally(function() store:close() helpers.rmrf(root) end)
    local A = make_manifest(store, "r", '{"m":"a"}')
    -- another open file description of the lock file: an flock that
    -- excludes the store's as another process's would
    local d = assert(require("berth.driver").fs(root))
    finally(function() d:close() end)
    local lock = assert(d:lock(OWN .. "/repositories/r/_taglock"))
    local e = ffi.new("berth_error")
    local dgst = ffi.new("berth_digest")
    assert.equal(0, C.berth_digest_parse(dgst, A, #A, nil))
    assert.equal(require("berth.errors").BY_NAME.EBUSY.value,
      C.berth_tag_set(store._p, "r", "t", dgst, e))
    local wait = busy.WAIT
    busy.WAIT = 0.01
    finally(function() busy.WAIT = wait end)
    assert_fails("EIO", store:tag_set("r", "t", A))
    assert_fails("EIO", store:tag_delete("r", "t"))
    lock:release()
    assert(store:tag_set("r", "t", A))
    assert.equal(A, store:tag_get("r", "t"))
  end)
end)

describe("tags under faults", function()
  local berth = require "berth"
  local fault_driver = require "berth.driver"
  local MARKER = OWN .. "/repositories/r/_tagsof/_complete"

  local function setup(root)
    local store = assert(berth.open{ root = root, fsync = "none" })
    local A = make_manifest(store, "r", '{"m":"a"}')
    local B = make_manifest(store, "r", '{"m":"b"}')
    assert(store:tag_set("r", "t", A))
    assert(store:tag_set("r", "u", A))
    assert(store:tag_set("r", "w", B))
    assert.same({ "t", "u" }, store:tag_lookup("r", A)) -- index complete
    assert.is_true(drv_exists(store, MARKER))
    store:close()
    return A, B
  end

  -- Every invariant a crashed tag change can touch.
  local function check(root, A, B)
    local store = assert(berth.open{ root = root, fsync = "none" })
    local complete = drv_exists(store, MARKER)
    local want = { [A] = {}, [B] = {} }
    for _, t in ipairs(assert(store:tag_list("r"))) do
      local cur = store:tag_get("r", t)
      if cur then
        assert.is_truthy(want[cur], "tag points at an unknown manifest")
        table.insert(want[cur], t)
        assert.is_true(not complete or
          drv_exists(store, reverse_entry("r", cur, t)),
          "index marked complete but misses " .. t)
      end
    end
    assert.same(want[A], store:tag_lookup("r", A))
    assert.same(want[B], store:tag_lookup("r", B))
    store:close()
    return want
  end

  local function faulty(root, mode, n)
    local fault = fault_driver.fault(assert(fault_driver.fs(root)))
    local store = assert(berth.open{ driver = fault })
    fault:arm(mode, n)
    return store, fault
  end

  local function each_fault(mode, op, after)
    local n = 1
    while true do
      local root = helpers.tmpdir()
      local A, B = setup(root)
      local store, fault = faulty(root, mode, n)
      local ok, err, code = op(store, A, B)
      local ops = fault:count()
      store:close()
      if not ok then
        assert.is_string(err)
        assert.is_string(code)
      end
      after(check(root, A, B), ok, A, B)
      helpers.rmrf(root)
      if ops < n then break end -- the fault came after the last operation
      n = n + 1
      assert.is_true(n < 100)
    end
  end

  for _, mode in ipairs({ "crash", "fail_one" }) do
    it("moving a tag (" .. mode .. ")", function()
      each_fault(mode, function(store, _, B)
        return store:tag_set("r", "t", B)
      end, function(want, ok, A, B)
        local moved = want[B][1] == "t"
        if ok then assert.is_true(moved) end
        assert.same(moved and { "u" } or { "t", "u" }, want[A])
        assert.same(moved and { "t", "w" } or { "w" }, want[B])
      end)
    end)

    it("deleting a tag (" .. mode .. ")", function()
      each_fault(mode, function(store)
        return store:tag_delete("r", "t")
      end, function(want, ok, A, B)
        if ok then assert.same({ "u" }, want[A]) end
        assert.same({ "w" }, want[B])
      end)
    end)

    it("a lookup that builds the index (" .. mode .. ")", function()
      local n = 1
      while true do
        local root = helpers.tmpdir()
        local A, B = setup(root)
        local plain = assert(berth.open{ root = root, fsync = "none" })
        assert(drv_remove(plain, "/berth"))
        plain:close()
        local store, fault = faulty(root, mode, n)
        local got, err, code = store:tag_lookup("r", A)
        local ops = fault:count()
        store:close()
        if got then
          -- never a wrong answer, whatever failed on the way
          assert.same({ "t", "u" }, got)
        else
          assert.is_string(err)
          assert.equal("EIO", code)
        end
        check(root, A, B)
        helpers.rmrf(root)
        if ops < n then break end
        n = n + 1
        assert.is_true(n < 100)
      end
    end)
  end
end)

-- Whole tag lists are cached per store object under the version of the
-- tags directory, which exists once the directory is a second old.
describe("the tag list cache (fs driver)", function()
  local berth = require "berth"
  local store, root, A

  local function settle()
    os.execute("sleep 1.1")
  end

  local function cached(repo)
    local cache = store._tag_cache
    return cache ~= nil and cache.repos[repo] ~= nil
  end

  before_each(function()
    store, root = helpers.new_store({ fsync = "none" })
    A = make_manifest(store, "r", '{"m":"a"}')
    for i = 1, 120 do
      assert(store:tag_set("r", string.format("t%03d", i), A))
    end
  end)

  after_each(function()
    store:close()
    helpers.rmrf(root)
  end)

  it("is not used while the directory changed within the second", function()
    assert.equal(120, #store:tag_list("r"))
    assert.is_false(cached("r"))
  end)

  it("pages from the cache as the store does", function()
    settle()
    local all = assert(store:tag_list("r"))
    assert.is_true(cached("r"))
    assert.equal(120, #all)
    local function page(o) -- what berth_tag_list answers, worked out here
      local want = {}
      for i = 1, 120 do
        local t = string.format("t%03d", i)
        if (not o.last or t > o.last) and #want < (o.n or math.huge) then
          want[#want + 1] = t
        end
      end
      return want
    end
    for _, o in ipairs({ { n = 7 }, { n = 7, last = "t050" },
      { last = "t0505" }, { last = "" }, { last = "t120" }, { n = 0 },
      { n = 1000, last = "a" }, { last = "u" }, { last = "t001" } }) do
      assert.same(page(o), store:tag_list("r", o))
    end
    -- a page is the caller's: changing it leaves the cache alone
    local first = store:tag_list("r", { n = 2 })
    first[1] = "changed"
    assert.same({ "t001", "t002" }, store:tag_list("r", { n = 2 }))
  end)

  it("sees tags added and removed, by itself or another store", function()
    settle()
    assert.equal(120, #store:tag_list("r"))
    assert.is_true(cached("r"))
    assert(store:tag_set("r", "new", A))
    local list = store:tag_list("r")
    assert.equal(121, #list)
    assert.equal("new", list[1])
    settle()
    assert.equal(121, #store:tag_list("r"))
    local other = assert(berth.open{ root = root, fsync = "none" })
    assert(other:tag_delete("r", "t060"))
    other:close()
    list = store:tag_list("r")
    assert.equal(120, #list)
    for _, t in ipairs(list) do
      assert.not_equal("t060", t)
    end
  end)

  -- A tag whose first set is under way (or was cut short) is not listed;
  -- its current link arrives without changing the tags directory.
  it("sees a tag whose current link came after the list was cached",
    function()
      drv_put(store, tag_dir("r", "half") .. "/index/sha256/" .. hex(A)
        .. "/link", A)
      settle()
      assert.equal(120, #store:tag_list("r"))
      assert.is_true(cached("r"))
      drv_put(store, tag_dir("r", "half") .. "/current/link", A)
      local list = store:tag_list("r")
      assert.equal(121, #list)
      assert.equal("half", list[1])
    end)

  it("answers NAME_UNKNOWN once the repository is gone", function()
    settle()
    assert.equal(120, #store:tag_list("r"))
    helpers.rmrf(root .. V2 .. "/repositories/r")
    local ok, err, code = store:tag_list("r")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal("NAME_UNKNOWN", code)
  end)
end)

describe("the link walk", function()
  it("goes on past a tag deleted while it walks", function()
    jit.off() -- the watcher is a C callback: no compiled caller
    jit.flush()
    finally(function() jit.on() end)
    local t = helpers.watched_stores(finally)
    local A = make_manifest(t.plain, "r", '{"m":"a"}')
    assert(t.plain:tag_set("r", "t1", A))
    assert(t.plain:tag_set("r", "t2", A))
    local gone = false
    t.driver:watch(function(op, path)
      if not gone and op == "get" and path:find("/tags/t1/current/link$")
      then
        gone = true
        assert(t.plain:tag_delete("r", "t1"))
      end
    end)
    local links = assert(t.watched:links("r", { "tag", "tag_index" }))
    t.driver:watch(nil)
    assert.is_true(gone)
    local seen = {}
    for _, l in ipairs(links) do seen[#seen + 1] = l.kind .. " " .. l.tag end
    assert.same({ "tag t2", "tag_index t2" }, seen)
  end)
end)

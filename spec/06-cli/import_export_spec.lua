-- berth import and berth export, run as child processes: the fixture
-- layout, broken layouts, policies through --config, and the round trip of
-- images that umoci built (one image, and a multi-platform index).
local helpers = require "helpers"
local support = require "06-cli.support"
local berth_lib = require "berth"

local berth = support.berth
local q = support.q

local LAYOUT = support.FX .. "layout"

-- A copy of the fixture layout that a spec may break.
local function layout_copy()
  local dir = helpers.tmpdir() .. "/layout"
  support.must("cp -r " .. q(LAYOUT) .. " " .. q(dir))
  return dir
end

local function open(root)
  local st = assert(berth_lib.open({ root = root, fsync = "none" }))
  return st
end

local function new_root()
  return helpers.tmpdir() .. "/store"
end

describe("berth import", function()
  it("an image of a layout, by its ref.name, into REPO:TAG", function()
    local root = new_root() -- created by the import
    local r = berth({ "import", LAYOUT .. ":amd64", "library/app:v1" },
      { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.equal("", r.stderr)
    assert.matches("^imported .*layout:amd64 as library/app:v1 "
      .. support.AMD64 .. ": 1 manifest, 2 blobs %(2 uploaded", r.stdout)
    local st = open(root)
    assert.equal(support.AMD64, st:tag_get("library/app", "v1"))
    assert.equal(support.blob(support.AMD64),
      (st:manifest_get("library/app", "v1")))
    for _, d in ipairs({ support.CONFIG_AMD64, support.LAYER }) do
      assert.equal(support.blob(d), st:blob_get("library/app", d))
    end
    st:close()
  end)

  it("--json; blobs the store has are linked, not uploaded again",
    function()
      local root = new_root()
      assert.equal(0, berth({ "import", LAYOUT .. ":amd64", "a:x" },
        { root = root }).code)
      local r = berth({ "import", LAYOUT .. ":arm64", "b", "--json" },
        { root = root })
      assert.equal(0, r.code, r.stderr)
      assert.same({ repository = "b", tag = "arm64", digest = support.ARM64,
        mediaType = support.OCI_MANIFEST, manifests = 1, blobs = 2,
        uploaded = 1, uploaded_bytes = #support.blob(support.CONFIG_ARM64),
        linked = 1 }, support.json(r.stdout))
      -- the same again: everything is there
      r = berth({ "import", LAYOUT .. ":arm64", "b:again", "--json" },
        { root = root })
      assert.equal(0, r.code, r.stderr)
      local v = support.json(r.stdout)
      assert.equal(0, v.uploaded)
      assert.equal(2, v.linked)
      local st = open(root)
      assert.same({ "again", "arm64" }, st:tag_list("b"))
      st:close()
    end)

  it("the destination tag defaults to the layout's, else latest",
    function()
      local root = new_root()
      local r = berth({ "import", LAYOUT .. ":arm64", "r" }, { root = root })
      assert.equal(0, r.code, r.stderr)
      -- a layout of one image needs no TAG
      local dir = helpers.tmpdir() .. "/one"
      support.must("mkdir -p " .. q(dir .. "/blobs/sha256"))
      for _, d in ipairs({ support.AMD64, support.CONFIG_AMD64,
        support.LAYER }) do
        support.layout_put(dir, support.blob(d))
      end
      helpers.write_file(dir .. "/oci-layout", '{"imageLayoutVersion":"1.0.0"}')
      helpers.write_file(dir .. "/index.json", '{"schemaVersion":2,'
        .. '"manifests":[{"mediaType":"' .. support.OCI_MANIFEST .. '",'
        .. '"digest":"' .. support.AMD64 .. '","size":345}]}')
      r = berth({ "import", dir, "r" }, { root = root })
      assert.equal(0, r.code, r.stderr)
      local st = open(root)
      assert.same({ "arm64", "latest" }, st:tag_list("r"))
      assert.equal(support.AMD64, st:tag_get("r", "latest"))
      st:close()
    end)

  it("several images and no TAG, or an unknown TAG: exit 1, tags listed",
    function()
      local root = new_root()
      local r = berth({ "import", LAYOUT, "r:x" }, { root = root })
      assert.equal(1, r.code)
      assert.matches("lists 2 manifests; name one as .*:TAG %(tags: amd64,"
        .. " arm64%)", r.stderr)
      r = berth({ "import", LAYOUT .. ":s390x", "r:x" }, { root = root })
      assert.equal(1, r.code)
      assert.matches("no manifest tagged s390x %(tags: amd64, arm64%)",
        r.stderr)
    end)

  it("not a layout: exit 1", function()
    local root = new_root()
    local dir = helpers.tmpdir()
    local r = berth({ "import", dir .. "/nowhere:x", "r:x" }, { root = root })
    assert.equal(1, r.code)
    assert.matches("no such directory", r.stderr)
    r = berth({ "import", dir, "r:x" }, { root = root })
    assert.equal(1, r.code)
    assert.matches("not an OCI image layout", r.stderr)
  end)

  it("a missing blob: exit 1 before anything is written", function()
    local dir = layout_copy()
    assert(os.remove(support.blob_path(dir, support.LAYER)))
    local root = new_root()
    local r = berth({ "import", dir .. ":amd64", "r:x" }, { root = root })
    assert.equal(1, r.code)
    assert.matches("blob " .. support.LAYER .. " %(layer of "
      .. support.AMD64 .. "%) missing", r.stderr)
    local st = open(root)
    assert.same({}, st:catalog())
    assert.same({}, st:blob_list())
    st:close()
  end)

  it("a blob that is there but cannot be read is not called missing",
    function()
    local dir = layout_copy()
    local path = support.blob_path(dir, support.AMD64)
    assert(os.remove(path))
    support.must("ln -s " .. q(path) .. " " .. q(path)) -- ELOOP
    local r = berth({ "import", dir .. ":amd64", "r:x" }, { root = new_root() })
    assert.equal(1, r.code)
    assert.matches("blob " .. support.AMD64 .. " cannot be read: ", r.stderr,
      1, true)
  end)

  it("a blob whose bytes do not match its digest: exit 1, not stored",
    function()
      local dir = layout_copy()
      local path = support.blob_path(dir, support.LAYER)
      local data = helpers.read_file(path)
      helpers.write_file(path, data:sub(1, -2) .. "X")
      local root = new_root()
      local r = berth({ "import", dir .. ":amd64", "r:x" }, { root = root })
      assert.equal(1, r.code)
      assert.matches("berth import: blob " .. support.LAYER .. ": .*digest",
        r.stderr)
      local st = open(root)
      assert.is_nil(st:blob_stat(nil, support.LAYER))
      assert.is_nil(st:tag_get("r", "x"))
      st:close()
      -- no upload left behind
      local left = support.must("find " .. q(root) .. " -path '*_uploads/*'"
        .. " -type f | wc -l")
      assert.equal("0", left:match("%d+"))
    end)

  it("a manifest whose bytes do not match: exit 1", function()
    local dir = layout_copy()
    local path = support.blob_path(dir, support.AMD64)
    helpers.write_file(path, helpers.read_file(path) .. " ")
    local r = berth({ "import", dir .. ":amd64", "r:x" },
      { root = new_root() })
    assert.equal(1, r.code)
    assert.matches("blob " .. support.AMD64 .. " has digest", r.stderr)
  end)

  it("with --config the registry's policies apply", function()
    local root = new_root()
    local conf = helpers.tmpdir() .. "/berth.lua"
    helpers.write_file(conf, "store = { root = " .. ("%q"):format(root)
      .. ", fsync = \"none\" }\nplugins = { { name = \"no-latest\", path = "
      .. ("%q"):format(require("helpers").cwd() .. "/examples/policy-no-latest.lua")
      .. " } }\n")
    local r = berth({ "import", LAYOUT .. ":amd64", "prod/app:latest",
      "--config", conf })
    assert.equal(1, r.code)
    assert.matches("prod/ images are pulled by version, not latest",
      r.stderr)
    r = berth({ "import", LAYOUT .. ":amd64", "prod/app:v1", "--config",
      conf })
    assert.equal(0, r.code, r.stderr)
    local st = open(root)
    assert.same({ "v1" }, st:tag_list("prod/app"))
    st:close()
  end)

  it("usage errors: exit 2", function()
    local root = new_root()
    for _, a in ipairs({
      { "import", LAYOUT .. ":amd64" },
      { "import", LAYOUT .. ":amd64", "r@" .. support.AMD64 },
      { "import", LAYOUT .. ":amd64", "r:-bad" },
      { "import", LAYOUT .. ":amd64", "r:x", "extra" },
    }) do
      local r = berth(a, { root = root })
      assert.equal(2, r.code, table.concat(a, " "))
      assert.matches("^berth import: ", r.stderr)
    end
  end)
end)

describe("berth export", function()
  local store, root, ids

  setup(function()
    store, root, ids = support.filled_store()
  end)

  it("writes a new layout: oci-layout, blobs, index.json with ref.name",
    function()
      local dir = helpers.tmpdir() .. "/out/new"
      local r = berth({ "export", "app:multi", dir }, { root = root })
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stderr)
      assert.matches("^exported app:multi " .. ids.index .. " to .*new:multi:"
        .. " 3 manifests, 3 blobs %(3 written", r.stdout)
      assert.same({ imageLayoutVersion = "1.0.0" },
        support.read_json(dir .. "/oci-layout"))
      local index = support.read_json(dir .. "/index.json")
      assert.equal(2, index.schemaVersion)
      assert.same({ { mediaType = support.OCI_INDEX, digest = ids.index,
        size = #support.fixture("oci-index-multiplatform.json"),
        annotations = { [support.REF_NAME] = "multi" } } }, index.manifests)
      local want = {
        [ids.index] = support.fixture("oci-index-multiplatform.json"),
      }
      for _, d in ipairs({ support.AMD64, support.ARM64, support.CONFIG_AMD64,
        support.CONFIG_ARM64, support.LAYER }) do
        want[d] = support.blob(d)
      end
      assert.same(want, support.blob_files(dir))
      -- skopeo reads it
      r = support.sh("env -u LD_PRELOAD skopeo inspect --raw "
        .. q("oci:" .. dir .. ":multi"))
      assert.equal(0, r.code, r.stderr)
      assert.equal(want[ids.index], r.stdout)
    end)

  it("adds to an existing layout, replacing an entry of the same name",
    function()
      local dir = layout_copy()
      local r = berth({ "export", "app:sbom", dir, "--json" }, { root = root })
      assert.equal(0, r.code, r.stderr)
      local v = support.json(r.stdout)
      assert.equal(ids.sbom, v.digest)
      assert.equal("sbom", v.tag)
      assert.equal(2, v.written) -- the SBOM and the empty config
      local names = {}
      for _, d in ipairs(support.read_json(dir .. "/index.json").manifests) do
        names[#names + 1] = d.annotations[support.REF_NAME] .. "="
          .. d.digest
      end
      assert.same({ "amd64=" .. support.AMD64, "arm64=" .. support.ARM64,
        "sbom=" .. ids.sbom }, names)
      -- the tag amd64 of the layout now names the ARM image
      r = berth({ "export", "app:multi", dir .. ":amd64", "--json" },
        { root = root })
      assert.equal(0, r.code, r.stderr)
      v = support.json(r.stdout)
      assert.equal(0, v.written)
      assert.equal(3, v.present) -- blobs; manifests are counted apart
      assert.equal(3, v.manifests)
      assert.equal(ids.index, support.layout_ref(dir, "amd64").digest)
      assert.equal(3, #support.read_json(dir .. "/index.json").manifests)
    end)

  it("by digest: an entry without a name, unless one is given", function()
    local dir = helpers.tmpdir() .. "/bydigest"
    local r = berth({ "export", "app@" .. support.ARM64, dir },
      { root = root })
    assert.equal(0, r.code, r.stderr)
    local index = support.read_json(dir .. "/index.json")
    assert.equal(1, #index.manifests)
    assert.equal(support.ARM64, index.manifests[1].digest)
    assert.is_nil(index.manifests[1].annotations)
    r = berth({ "export", "app@" .. support.ARM64, dir .. ":arm" },
      { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.equal(support.ARM64, support.layout_ref(dir, "arm").digest)
  end)

  it("unknown image, or a directory that is not a layout: exit 1",
    function()
      local dir = helpers.tmpdir()
      local r = berth({ "export", "app:nope", dir .. "/x" }, { root = root })
      assert.equal(1, r.code)
      assert.matches("manifest unknown", r.stderr)
      assert.is_nil(helpers.read_file(dir .. "/x/index.json"))
      helpers.write_file(dir .. "/file", "x")
      r = berth({ "export", "app:amd64", dir }, { root = root })
      assert.equal(1, r.code)
      assert.matches("not empty and not an OCI image layout", r.stderr)
    end)

  it("a blob missing from the store: exit 1, no index entry", function()
    local st, broken = helpers.new_store({ fsync = "none" })
    support.fill(st)
    local hex = support.LAYER:sub(8)
    assert(os.remove(broken .. "/docker/registry/v2/blobs/sha256/"
      .. hex:sub(1, 2) .. "/" .. hex .. "/data"))
    local dir = helpers.tmpdir() .. "/l"
    local r = berth({ "export", "app:amd64", dir }, { root = broken })
    assert.equal(1, r.code)
    assert.matches("blob " .. support.LAYER, r.stderr)
    assert.is_nil(helpers.read_file(dir .. "/index.json"))
    assert.is_nil(helpers.read_file(support.blob_path(dir, support.LAYER)))
  end)

  it("usage errors: exit 2", function()
    local dir = helpers.tmpdir()
    assert.equal(2, berth({ "export", "app", dir }, { root = root }).code)
    assert.equal(2, berth({ "export", "app:amd64" }, { root = root }).code)
    assert.equal(2, berth({ "export", "app:amd64", dir .. ":-x" },
      { root = root }).code)
    assert.truthy(store)
  end)
end)

describe("berth import then export of umoci images", function()
  -- The layout's blobs, index.json's descriptor of tag, and what export
  -- gives back must be the same.
  local function round_trip(src, tag, repo)
    local root = new_root()
    local r = berth({ "import", src .. ":" .. tag, repo .. ":" .. tag },
      { root = root })
    assert.equal(0, r.code, r.stderr)
    local dst = helpers.tmpdir() .. "/exported"
    r = berth({ "export", repo .. ":" .. tag, dst }, { root = root })
    assert.equal(0, r.code, r.stderr)
    local want = support.layout_ref(src, tag)
    local got = support.layout_ref(dst, tag)
    assert.equal(want.digest, got.digest)
    assert.equal(want.size, got.size)
    assert.equal(want.mediaType, got.mediaType)
    assert.same(support.blob_files(src), support.blob_files(dst))
    -- and skopeo reads the export
    r = support.sh("env -u LD_PRELOAD skopeo inspect --raw "
      .. q("oci:" .. dst .. ":" .. tag))
    assert.equal(0, r.code, r.stderr)
    assert.equal(helpers.read_file(support.blob_path(src, want.digest)),
      r.stdout)
    return root, dst
  end

  it("#slow one image", function()
    local src = helpers.tmpdir() .. "/src"
    local desc = support.build_image(src, "v1", { arch = "amd64" })
    -- only what the tag reaches: umoci keeps the blobs it replaced
    support.umoci_gc(src)
    local files = support.blob_files(src)
    local n = 0
    for _ in pairs(files) do n = n + 1 end
    assert.equal(3, n) -- manifest, config, layer
    local root, dst = round_trip(src, "v1", "umoci/one")
    -- umoci unpacks the export (it checks every digest on the way)
    local bundle = helpers.tmpdir() .. "/bundle"
    support.must("env -u LD_PRELOAD umoci unpack --rootless --image "
      .. q(dst .. ":v1") .. " " .. q(bundle))
    assert.matches("^image v1 amd64 ",
      helpers.read_file(bundle .. "/rootfs/etc/hello"))
    local st = open(root)
    assert.equal(desc.digest, st:tag_get("umoci/one", "v1"))
    st:close()
  end)

  it("#slow a multi-platform index", function()
    local src = helpers.tmpdir() .. "/multi"
    local amd = support.build_image(src, "amd64", { arch = "amd64" })
    local arm = support.build_image(src, "arm64", { arch = "arm64" })
    support.umoci_gc(src)
    local function child(d, platform)
      return { mediaType = d.mediaType, digest = d.digest, size = d.size,
        platform = platform }
    end
    local body = assert(require("cjson").encode({
      schemaVersion = 2,
      mediaType = support.OCI_INDEX,
      manifests = {
        child(amd, { os = "linux", architecture = "amd64" }),
        child(arm, { os = "linux", architecture = "arm64", variant = "v8" }),
      },
    }))
    local dgst, size = support.layout_put(src, body)
    support.layout_tag(src, "multi", { mediaType = support.OCI_INDEX,
      digest = dgst, size = size })
    local root = round_trip(src, "multi", "umoci/multi")
    local r = berth({ "inspect", "umoci/multi", "multi", "--json" },
      { root = root })
    assert.equal(0, r.code, r.stderr)
    local v = support.json(r.stdout)
    assert.equal(dgst, v.manifest.digest)
    assert.equal(amd.digest, v.manifest.manifests[1].digest)
    assert.equal("arm64", v.manifest.manifests[2].platform.architecture)
    assert.equal(1, #v.manifest.manifests[2].layers)
    -- the two images' tags came along only as children, untagged
    local st = open(root)
    assert.same({ "multi" }, st:tag_list("umoci/multi"))
    st:close()
  end)
end)

-- berth inspect and berth cat, run as child processes against a store
-- filled through the Lua API.
local helpers = require "helpers"
local support = require "06-cli.support"

local berth = support.berth
local q = support.q

local function size_of(dgst)
  return #support.blob(dgst)
end

describe("berth inspect", function()
  local root, ids

  setup(function()
    local _
    _, root, ids = support.filled_store()
  end)

  it("an index as a tree: platforms, config and layers, referrers, totals",
    function()
      local r = berth({ "inspect", "app", "multi" }, { root = root })
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stderr)
      local out = r.stdout
      assert.matches("^app:multi  %(tags: multi%)\n", out)
      local function line(pattern)
        assert.matches("\n" .. pattern .. "\n", out)
      end
      line("index +application/vnd%.oci%.image%.index%.v1%+json +%d+ B +"
        .. ids.index)
      line("├─ linux/amd64 +application/vnd%.oci%.image%.manifest%.v1%+json"
        .. " +345 B +" .. support.AMD64)
      line("│  ├─ config +application/vnd%.oci%.image%.config%.v1%+json +"
        .. size_of(support.CONFIG_AMD64) .. " B +" .. support.CONFIG_AMD64)
      line("│  ├─ layer +application/vnd%.oci%.image%.layer%.v1%.tar%+gzip +"
        .. size_of(support.LAYER) .. " B +" .. support.LAYER)
      line("│  └─ referrer +application/vnd%.oci%.image%.manifest%.v1%+json"
        .. " %(application/spdx%+json%) +%d+ B +" .. ids.sbom)
      line("└─ linux/arm64/v8 +application/vnd%.oci%.image%.manifest%.v1%+json"
        .. " +345 B +" .. support.ARM64)
      line("   └─ layer +.* " .. support.LAYER)
      -- the layer both images share is counted once
      local total = #support.fixture("oci-index-multiplatform.json")
        + 345 + 345 + size_of(support.CONFIG_AMD64)
        + size_of(support.CONFIG_ARM64) + size_of(support.LAYER)
      assert.matches("\ntotal: 3 manifests, 3 blobs, [%d.]+ KiB %(" .. total
        .. " bytes; each blob once%)\n$", out)
    end)

  it("fits an 80-column terminal, and --no-trunc shows it all", function()
    -- script(1) gives a terminal; stty sets its width
    local function on_tty(extra)
      return support.sh("script -qec " .. support.q("stty cols 80; "
        .. support.BIN .. " inspect app multi --root " .. support.q(root)
        .. (extra or "")) .. " /dev/null")
    end
    local r = on_tty()
    assert.equal(0, r.code, r.stdout)
    local n = 0
    for line in r.stdout:gsub("\r", ""):gmatch("[^\n]+") do
      n = n + 1
      assert.is_true(require("berth.cmd.out").width(line) <= 80, line)
    end
    assert.is_true(n >= 8, r.stdout)
    -- digests shortened as docker does, enough to tell them apart
    assert.matches(support.AMD64:sub(1, 19), r.stdout, 1, true)
    assert.is_nil(r.stdout:find(support.AMD64, 1, true))
    r = on_tty(" --no-trunc")
    assert.equal(0, r.code, r.stdout)
    assert.matches(support.AMD64, r.stdout, 1, true)
  end)

  it("--json: the same tree as an object", function()
    local r = berth({ "inspect", "app", "multi", "--json" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    local v = support.json(r.stdout)
    assert.equal("app", v.repository)
    assert.equal("multi", v.reference)
    assert.same({ "multi" }, v.tags)
    local m = v.manifest
    assert.equal(ids.index, m.digest)
    assert.equal(support.OCI_INDEX, m.mediaType)
    assert.equal(#support.fixture("oci-index-multiplatform.json"), m.size)
    assert.same({ ["org.opencontainers.image.created"] =
      "2024-05-01T12:00:00Z" }, m.annotations)
    assert.same({}, m.referrers)
    assert.equal(2, #m.manifests)
    local amd, arm = m.manifests[1], m.manifests[2]
    assert.same({ os = "linux", architecture = "amd64" }, amd.platform)
    assert.same({ os = "linux", architecture = "arm64", variant = "v8" },
      arm.platform)
    assert.equal(support.AMD64, amd.digest)
    assert.equal(support.OCI_MANIFEST, amd.mediaType)
    assert.equal(345, amd.size)
    assert.same({ digest = support.CONFIG_AMD64, size =
      size_of(support.CONFIG_AMD64),
      mediaType = "application/vnd.oci.image.config.v1+json" }, amd.config)
    assert.same({ { digest = support.LAYER, size = size_of(support.LAYER),
      mediaType = "application/vnd.oci.image.layer.v1.tar+gzip" } },
      amd.layers)
    assert.equal(1, #amd.referrers)
    assert.equal(ids.sbom, amd.referrers[1].digest)
    assert.equal("application/spdx+json", amd.referrers[1].artifactType)
    assert.same({}, arm.referrers)
    assert.equal(support.CONFIG_ARM64, arm.config.digest)
    assert.same({ manifests = 3, blobs = 3,
      size = m.size + 345 + 345 + size_of(support.CONFIG_AMD64)
        + size_of(support.CONFIG_ARM64) + size_of(support.LAYER) },
      v.totals)
  end)

  it("an artifact: artifactType and subject", function()
    local r = berth({ "inspect", "app", ids.sbom, "--json" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    local v = support.json(r.stdout)
    assert.same({ "sbom" }, v.tags)
    assert.equal("application/spdx+json", v.manifest.artifactType)
    assert.equal(support.AMD64, v.manifest.subject.digest)
    assert.equal(support.EMPTY_CONFIG, v.manifest.config.digest)
    assert.equal(1, #v.manifest.layers)
    assert.is_nil(v.manifest.manifests)
    r = berth({ "inspect", "app", "sbom" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.matches("\n└─ subject +application/vnd%.oci%.image%.manifest"
      .. "%.v1%+json +345 B +" .. support.AMD64 .. "\n", r.stdout)
    assert.matches("^app:sbom  %(tags: sbom%)\n", r.stdout)
  end)

  it("by digest, in another repository", function()
    local r = berth({ "inspect", "other", support.AMD64 }, { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.matches("^other@" .. support.AMD64 .. "  %(tags: v1%)\n",
      r.stdout)
    assert.matches("\nmanifest +application", r.stdout)
    assert.matches("\ntotal: 1 manifest, 2 blobs, ", r.stdout)
  end)

  it("an unknown repository, tag or digest: exit 1", function()
    for _, a in ipairs({ { "app", "nope" }, { "nope", "amd64" },
      { "app", support.MISSING } }) do
      local r = berth({ "inspect", a[1], a[2] }, { root = root })
      assert.equal(1, r.code)
      assert.equal("", r.stdout)
      assert.matches("^berth inspect: .*unknown", r.stderr)
    end
  end)

  it("an index whose children are missing: shown, exit 1", function()
    local st, broken = helpers.new_store({ fsync = "none" })
    support.put_manifest(st, "d", support.fixture("docker-list.json"),
      { tag = "list", skip_verify = true })
    local r = berth({ "inspect", "d", "list" }, { root = broken })
    assert.equal(1, r.code)
    assert.matches("\n├─ linux/amd64 +application/vnd%.docker%.distribution"
      .. "%.manifest%.v2%+json +MISSING +sha256:", r.stdout)
    assert.matches("\ntotal: 1 manifest, 0 blobs, ", r.stdout)
    assert.matches("^berth inspect: manifest unknown: d@sha256:", r.stderr)
    r = berth({ "inspect", "d", "list", "--json" }, { root = broken })
    assert.equal(1, r.code)
    local v = support.json(r.stdout)
    assert.equal("application/vnd.docker.distribution.manifest.list.v2+json",
      v.manifest.mediaType)
    assert.is_true(v.manifest.manifests[2].missing)
    assert.equal("v8", v.manifest.manifests[2].platform.variant)
  end)

  it("usage errors: exit 2", function()
    assert.equal(2, berth({ "inspect", "app" }, { root = root }).code)
    assert.equal(2, berth({ "inspect" }, { root = root }).code)
    assert.equal(2, berth({ "inspect", "a", "b", "c" }, { root = root }).code)
  end)
end)

describe("berth cat", function()
  local store, root

  setup(function()
    store, root = support.filled_store()
  end)

  it("a manifest's exact bytes, by tag and by digest", function()
    local body = support.blob(support.AMD64)
    local r = berth({ "cat", "app", "amd64" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.equal(body, r.stdout)
    r = berth({ "cat", "app", support.AMD64 }, { root = root })
    assert.equal(body, r.stdout)
    r = berth({ "cat", "app", "multi" }, { root = root })
    assert.equal(support.fixture("oci-index-multiplatform.json"), r.stdout)
  end)

  it("--blob: a layer's and a config's bytes", function()
    for _, d in ipairs({ support.LAYER, support.CONFIG_ARM64 }) do
      local r = berth({ "cat", "app", d, "--blob" }, { root = root })
      assert.equal(0, r.code, r.stderr)
      assert.equal(support.blob(d), r.stdout)
    end
    -- a manifest of the repository, as a blob
    local r = berth({ "cat", "--blob", "other", support.AMD64 },
      { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.equal(support.blob(support.AMD64), r.stdout)
  end)

  it("--blob refuses a terminal unless --force", function()
    -- script(1) gives the command a terminal for stdout
    local function on_tty(argv)
      local cmd = { support.BIN }
      for _, a in ipairs(argv) do cmd[#cmd + 1] = support.q(a) end
      return support.sh("script -qec " .. support.q(table.concat(cmd, " "))
        .. " /dev/null")
    end
    local r = on_tty({ "cat", "app", support.LAYER, "--blob", "--root",
      root })
    assert.equal(1, r.code, r.stdout)
    assert.matches("a terminal", r.stdout, 1, true)
    assert.is_nil(r.stdout:find(support.blob(support.LAYER), 1, true))
    r = on_tty({ "cat", "app", support.LAYER, "--blob", "--force", "--root",
      root })
    assert.equal(0, r.code, r.stdout)
    -- a manifest is text: no --force needed
    r = on_tty({ "cat", "app", "amd64", "--root", root })
    assert.equal(0, r.code, r.stdout)
  end)

  it("--blob streams a large blob in chunks", function()
    local up = assert(store:blob_writer("big"))
    local parts = {}
    for i = 1, 20 do
      parts[i] = helpers.random_bytes(1000) .. string.rep(string.char(i),
        250000)
      assert(up:write(parts[i]))
    end
    local data = table.concat(parts)
    local dgst = helpers.sha256sum(data)
    assert(up:commit(dgst, #data))
    local r = berth({ "cat", "big", dgst, "--blob" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.equal(#data, #r.stdout)
    assert.equal(dgst, helpers.sha256sum(r.stdout))
  end)

  it("#slow --blob keeps memory flat: 96 MiB out, small peak RSS",
    function()
      local up = assert(store:blob_writer("huge"))
      local h = require("berth.digest").hasher()
      local chunk = helpers.random_bytes(4096):rep(256) -- 1 MiB
      for i = 1, 96 do
        local c = chunk:sub(i + 1) .. chunk:sub(1, i)
        assert(up:write(c))
        h:update(c)
      end
      local dgst = h:digest()
      assert(up:commit(dgst))
      local tfile = helpers.tmpdir() .. "/rss"
      local r = support.sh("/usr/bin/time -f %M -o " .. q(tfile) .. " "
        .. support.BIN .. " cat --root " .. q(root) .. " huge " .. dgst
        .. " --blob | sha256sum")
      assert.equal(0, r.code, r.stderr)
      assert.equal(dgst, "sha256:" .. r.stdout:match("^(%x+)"))
      local kb = tonumber(helpers.read_file(tfile):match("(%d+)%s*$"))
      -- about 5 MB here, 11 MB under ASan
      assert.is_true(kb < 32 * 1024, "peak RSS " .. kb .. " kB")
    end)

  it("unknown manifest or blob: exit 1, nothing on stdout", function()
    for _, a in ipairs({
      { "cat", "app", "nope" },
      { "cat", "nope", "amd64" },
      { "cat", "app", support.MISSING, "--blob" },
      { "cat", "other", support.CONFIG_ARM64, "--blob" }, -- not linked
    }) do
      local r = berth(a, { root = root })
      assert.equal(1, r.code)
      assert.equal("", r.stdout)
      assert.matches("^berth cat: ", r.stderr)
    end
    -- a blob asked for as a manifest: a hint
    local r = berth({ "cat", "app", support.LAYER }, { root = root })
    assert.equal(1, r.code)
    assert.matches("use %-%-blob", r.stderr)
  end)

  it("usage errors: exit 2", function()
    assert.equal(2, berth({ "cat", "app" }, { root = root }).code)
    local r = berth({ "cat", "app", "amd64", "--blob" }, { root = root })
    assert.equal(2, r.code)
    assert.matches("needs a digest", r.stderr)
  end)
end)

-- skopeo and umoci against a live `berth serve`: images built with umoci are
-- pushed, pulled back and compared digest by digest (OCI layout, Docker
-- archive, a multi-arch index); inspect, list-tags and delete.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"

local q = tools.q

local INDEX = "application/vnd.oci.image.index.v1+json"
local OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
local DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

describe("skopeo against berth serve", function()
  local srv, work, layout, v1, host

  -- copy(src, dst, extra) -> pushed digest (--digestfile) or raises
  local function copy(src, dst, extra)
    local dfile = work .. "/digest-" .. tools.counter()
    local out, ok = tools.skopeo("copy --src-tls-verify=false "
      .. "--dest-tls-verify=false --digestfile " .. q(dfile) .. " "
      .. (extra or "") .. " " .. q(src) .. " " .. q(dst))
    assert(ok, "skopeo copy " .. src .. " " .. dst .. ":\n" .. out)
    return helpers.read_file(dfile)
  end

  -- Every blob of a manifest in an OCI layout or dir: hashes to its name.
  local function check_blobs(path_of, manifest)
    for _, d in ipairs(tools.manifest_blobs(manifest)) do
      assert.equal(d, tools.sha256_file(path_of(d)))
    end
  end

  setup(function()
    srv = server.start{ delete = true }
    host = "127.0.0.1:" .. srv.port
    work = helpers.tmpdir()
    layout = work .. "/L"
    v1 = tools.build_image(layout, "v1")
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  it("pushes an OCI image and pulls it back byte for byte", function()
    local pushed = copy("oci:" .. layout .. ":v1",
      "docker://" .. host .. "/test/img:v1")
    assert.equal(v1, pushed)
    local raw = tools.inspect_raw("docker://" .. host .. "/test/img:v1")
    assert.equal(v1, helpers.sha256sum(raw))
    assert.equal(tools.layout_blob(layout, v1), raw)

    local out = work .. "/OUT1"
    copy("docker://" .. host .. "/test/img:v1", "oci:" .. out .. ":v1")
    local desc = tools.layout_ref(out, "v1")
    assert.equal(v1, desc.digest)
    assert.equal(OCI_MANIFEST, desc.mediaType)
    local manifest = tools.layout_blob(out, v1)
    assert.equal(raw, manifest)
    local blobs = tools.manifest_blobs(manifest)
    assert.equal(2, #blobs) -- config and the one layer
    check_blobs(function(d) return tools.blob_path(out, d) end, manifest)
    for _, d in ipairs(blobs) do
      assert.equal(tools.layout_blob(layout, d), tools.layout_blob(out, d))
      -- and straight from the registry
      local r = tools.curl("GET", srv.url .. "/v2/test/img/blobs/" .. d)
      assert.equal(200, r.status) -- headers: http_spec.lua
      assert.equal(d, helpers.sha256sum(r.body))
    end
  end)

  it("pushes a docker-archive (schema 2) and pulls the same digest back",
    function()
    local archive = work .. "/x.tar"
    copy("oci:" .. layout .. ":v1", "docker-archive:" .. archive
      .. ":test/img:v2")
    local src = tools.json(assert(tools.inspect_raw("docker-archive:"
      .. archive)))
    local pushed = copy("docker-archive:" .. archive,
      "docker://" .. host .. "/test/img:v2")
    assert.matches("^sha256:%x+$", pushed)

    local raw = tools.inspect_raw("docker://" .. host .. "/test/img:v2")
    assert.equal(pushed, helpers.sha256sum(raw))
    local m = tools.json(raw)
    assert.equal(DOCKER_MANIFEST, m.mediaType)
    -- the config goes through unchanged (layers may be recompressed)
    assert.equal(src.config.digest, m.config.digest)
    assert.equal(#src.layers, #m.layers)
    local r = tools.curl("HEAD", srv.url .. "/v2/test/img/manifests/v2")
    assert.equal(200, r.status)
    assert.equal(pushed, r.headers["docker-content-digest"])
    assert.equal(DOCKER_MANIFEST, r.headers["content-type"])

    -- pulled into a dir: the manifest byte for byte, no conversion
    local dir = work .. "/D2"
    local pulled = copy("docker://" .. host .. "/test/img:v2", "dir:" .. dir)
    assert.equal(pushed, pulled)
    assert.equal(raw, helpers.read_file(dir .. "/manifest.json"))
    check_blobs(function(d) return dir .. "/" .. d:match(":(%x+)") end, raw)
  end)

  it("round-trips a multi-arch OCI index with --all", function()
    local ml = work .. "/M"
    local amd = tools.build_image(ml, "amd64", { arch = "amd64",
      random = 300000 })
    local arm = tools.build_image(ml, "arm64", { arch = "arm64",
      random = 300000 })
    assert.are_not.equal(amd, arm)
    local children = {}
    for _, c in ipairs({ { amd, "amd64" }, { arm, "arm64" } }) do
      local body = tools.layout_blob(ml, c[1])
      assert.equal(2, tools.json(body).schemaVersion)
      children[#children + 1] = ('{"mediaType":"%s","digest":"%s",'
        .. '"size":%d,"platform":{"architecture":"%s","os":"linux"}}')
        :format(OCI_MANIFEST, c[1], #body, c[2])
    end
    local index = ('{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}')
      :format(INDEX, table.concat(children, ","))
    local idx, size = tools.layout_put(ml, index)
    tools.layout_tag(ml, "multi", { mediaType = INDEX, digest = idx,
      size = size })

    local ref = "docker://" .. host .. "/test/multi:v1"
    local pushed = copy("oci:" .. ml .. ":multi", ref, "--all")
    assert.equal(idx, pushed)
    assert.equal(index, tools.inspect_raw(ref))
    for _, c in ipairs({ amd, arm }) do
      assert.equal(tools.layout_blob(ml, c),
        tools.inspect_raw("docker://" .. host .. "/test/multi@" .. c))
    end

    local out = work .. "/OUTM"
    copy(ref, "oci:" .. out .. ":v1", "--all")
    local desc = tools.layout_ref(out, "v1")
    assert.equal(idx, desc.digest)
    assert.equal(INDEX, desc.mediaType)
    assert.equal(index, tools.layout_blob(out, idx))
    local got = tools.json(tools.layout_blob(out, idx))
    assert.equal(2, #got.manifests)
    assert.equal(amd, got.manifests[1].digest)
    assert.equal(arm, got.manifests[2].digest)
    for _, c in ipairs({ amd, arm }) do
      local body = tools.layout_blob(out, c)
      assert.equal(c, helpers.sha256sum(body))
      check_blobs(function(d) return tools.blob_path(out, d) end, body)
    end

    -- inspect picks a platform from the index
    local text, ok = tools.stdout(tools.SKOPEO .. " inspect --tls-verify=false"
      .. " --override-arch arm64 --override-os linux " .. q(ref))
    assert.is_true(ok, text)
    local info = tools.json(text)
    assert.equal("arm64", info.Architecture)
    assert.same({ "v1" }, info.RepoTags)
  end)

  it("inspects a tag (not raw)", function()
    copy("oci:" .. layout .. ":v1", "docker://" .. host .. "/test/insp:v1")
    local text, ok = tools.stdout(tools.SKOPEO .. " inspect --tls-verify=false "
      .. q("docker://" .. host .. "/test/insp:v1"))
    assert.is_true(ok, text)
    local info = tools.json(text)
    assert.equal(host .. "/test/insp", info.Name)
    assert.equal(v1, info.Digest)
    assert.same({ "v1" }, info.RepoTags)
    assert.equal("amd64", info.Architecture)
    assert.equal("linux", info.Os)
    local m = tools.json(tools.layout_blob(layout, v1))
    assert.same({ m.layers[1].digest }, info.Layers)
  end)

  it("lists tags", function()
    copy("oci:" .. layout .. ":v1", "docker://" .. host .. "/test/tags:v1")
    copy("oci:" .. layout .. ":v1", "docker://" .. host .. "/test/tags:v2")
    local text, ok = tools.stdout(tools.SKOPEO
      .. " list-tags --tls-verify=false " .. q("docker://" .. host
      .. "/test/tags"))
    assert.is_true(ok, text)
    local info = tools.json(text)
    table.sort(info.Tags)
    assert.same({ "v1", "v2" }, info.Tags)
  end)

  it("deletes when deletes are on", function()
    local ref = "docker://" .. host .. "/test/del:v1"
    copy("oci:" .. layout .. ":v1", ref)
    assert.equal(v1, helpers.sha256sum(tools.inspect_raw(ref)))
    local out, ok = tools.skopeo("delete --tls-verify=false " .. q(ref))
    assert.is_true(ok, out)
    local _, still = tools.inspect_raw(ref)
    assert.is_false(still)
    local r = tools.curl("GET", srv.url .. "/v2/test/del/manifests/" .. v1)
    assert.equal(404, r.status)
    assert.equal("MANIFEST_UNKNOWN", tools.json(r.body).errors[1].code)
    r = tools.curl("GET", srv.url .. "/v2/test/del/manifests/v1")
    assert.equal(404, r.status)
    assert.equal("MANIFEST_UNKNOWN", tools.json(r.body).errors[1].code)
  end)

  it("answers an error to delete when deletes are off", function()
    local ro = server.start{}
    finally(function() ro:stop() end)
    local ref = "docker://127.0.0.1:" .. ro.port .. "/test/del:v1"
    copy("oci:" .. layout .. ":v1", ref)
    local out, ok = tools.skopeo("delete --tls-verify=false " .. q(ref))
    assert.is_false(ok)
    assert.matches("405", out, 1, true)
    -- the same on the wire: status, code and message
    local r = tools.curl("DELETE", ro.url .. "/v2/test/del/manifests/" .. v1)
    assert.equal(405, r.status)
    local e = tools.json(r.body).errors[1]
    assert.equal("UNSUPPORTED", e.code)
    assert.is_string(e.message)
    assert.is_true(#e.message > 0)
    -- still there
    assert.equal(v1, helpers.sha256sum(tools.inspect_raw(ref)))
    assert.same({}, ro:error_lines())
  end)

  it("logged no errors", function()
    assert.same({}, srv:error_lines())
  end)
end)

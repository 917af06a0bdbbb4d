-- Real clients against `berth serve` with access control: skopeo pushes
-- and pulls an umoci-built image with --dest-creds/--src-creds in htpasswd
-- mode and in token mode (through the spec's token endpoint), and fails
-- cleanly with bad credentials; over HTTPS (HTTP/2) too, where curl --http2
-- uploads a blob and reads it back.
local helpers = require "helpers"
local support = require "09-auth.support"

local curl, q = support.curl, support.q
local ISSUER, SERVICE = support.ISSUER, support.SERVICE

-- copy(src, dst, flags) -> output, ok
local function copy(src, dst, flags)
  return support.skopeo("copy " .. (flags or "") .. " " .. q(src) .. " "
    .. q(dst))
end

local function must_copy(src, dst, flags)
  local out, ok = copy(src, dst, flags)
  assert(ok, "skopeo copy " .. src .. " " .. dst .. ":\n" .. out)
  return out
end

local function digest_of(ref, flags)
  local out, ok = support.skopeo("inspect --raw " .. (flags or "") .. " "
    .. q(ref))
  assert(ok, "skopeo inspect " .. ref .. ":\n" .. out)
  return helpers.sha256sum(out)
end

local PLAIN = "--src-tls-verify=false --dest-tls-verify=false"

describe("skopeo against berth serve", function()
  local work, layout, v1

  setup(function()
    work = helpers.tmpdir()
    layout = work .. "/L"
    v1 = support.build_image(layout, "v1")
  end)

  describe("in htpasswd mode", function()
    local srv

    setup(function()
      local conf = support.auth_config{ mode = "htpasswd",
        htpasswd = support.abs("htpasswd"), max_failures = 1000 }
      srv = support.serve{ auth_config = conf }
    end)

    teardown(function()
      if srv then srv:stop() end
    end)

    it("pushes and pulls with credentials", function()
      local dst = "docker://" .. srv.host .. "/alice/img:v1"
      must_copy("oci:" .. layout .. ":v1", dst, PLAIN
        .. " --dest-creds alice:alice-secret")
      assert.equal(v1, digest_of(dst, "--tls-verify=false "
        .. "--creds alice:alice-secret"))
      local out = work .. "/pulled-basic"
      must_copy(dst, "oci:" .. out .. ":v1", PLAIN
        .. " --src-creds bob:bob-secret")
      assert.equal(v1, (helpers.read_file(out .. "/index.json")
        :match('"digest":"(sha256:%x+)"')))
    end)

    it("fails cleanly with bad or no credentials", function()
      local dst = "docker://" .. srv.host .. "/alice/img:bad"
      local out, ok = copy("oci:" .. layout .. ":v1", dst, PLAIN
        .. " --dest-creds alice:wrong")
      assert.is_false(ok)
      assert.matches("unauthorized", out:lower())
      out, ok = copy("oci:" .. layout .. ":v1", dst, PLAIN)
      assert.is_false(ok)
      assert.matches("unauthorized", out:lower())
      out, ok = copy(dst:gsub(":bad$", ":v1"), "oci:" .. work .. "/nope:v1",
        PLAIN .. " --src-creds mallory:alice-secret")
      assert.is_false(ok)
      assert.matches("unauthorized", out:lower())
    end)
  end)

  describe("in token mode", function()
    local ts, srv

    setup(function()
      ts = support.token_server()
      local conf = support.auth_config{ mode = "token", realm = ts.url,
        service = SERVICE, issuer = ISSUER, keys = { support.abs("rsa.crt") },
        max_failures = 1000 }
      srv = support.serve{ auth_config = conf }
    end)

    teardown(function()
      if srv then srv:stop() end
      if ts then ts:stop() end
    end)

    it("pushes and pulls with tokens from the token endpoint", function()
      local dst = "docker://" .. srv.host .. "/alice/img:v1"
      must_copy("oci:" .. layout .. ":v1", dst, PLAIN
        .. " --dest-creds alice:alice-secret")
      assert.equal(v1, digest_of(dst, "--tls-verify=false "
        .. "--creds alice:alice-secret"))
      local out = work .. "/pulled-token"
      must_copy(dst, "oci:" .. out .. ":v1", PLAIN
        .. " --src-creds alice:alice-secret")
      assert.equal(v1, (helpers.read_file(out .. "/index.json")
        :match('"digest":"(sha256:%x+)"')))
      -- anonymous tokens pull public/ (the token endpoint's policy)
      local pub = "docker://" .. srv.host .. "/public/img:v1"
      must_copy("oci:" .. layout .. ":v1", pub, PLAIN
        .. " --dest-creds alice:alice-secret")
      must_copy(pub, "oci:" .. work .. "/pulled-anon:v1", PLAIN)
    end)

    it("fails cleanly with bad credentials or without the right",
      function()
      local dst = "docker://" .. srv.host .. "/alice/img:bad"
      local out, ok = copy("oci:" .. layout .. ":v1", dst, PLAIN
        .. " --dest-creds alice:wrong")
      assert.is_false(ok)
      assert.matches("unable to retrieve auth token: invalid "
        .. "username/password", out)
      -- bob's token grants nothing on alice/: refused
      out, ok = copy("oci:" .. layout .. ":v1", dst, PLAIN
        .. " --dest-creds bob:bob-secret")
      assert.is_false(ok)
      assert.matches("403 %(forbidden%)", out:lower())
      out, ok = copy("docker://" .. srv.host .. "/alice/img:v1",
        "oci:" .. work .. "/nope:v1", PLAIN)
      assert.is_false(ok)
      assert.matches("denied", out:lower())
    end)
  end)

  describe("over HTTPS and HTTP/2", function()
    local srv, certs

    setup(function()
      local conf = support.auth_config{ mode = "htpasswd",
        htpasswd = support.abs("htpasswd"), max_failures = 1000 }
      srv = support.serve{ auth_config = conf, tls = true }
      certs = work .. "/certs"
      support.must("mkdir -p " .. q(certs) .. " && cp "
        .. q(support.fixture("tls.crt")) .. " " .. q(certs .. "/ca.crt"))
    end)

    teardown(function()
      if srv then srv:stop() end
    end)

    it("pushes and pulls an image, verifying the server's certificate",
      function()
      local dst = "docker://" .. srv.host .. "/alice/tls:v1"
      must_copy("oci:" .. layout .. ":v1", dst, "--dest-cert-dir "
        .. q(certs) .. " --dest-creds alice:alice-secret")
      -- (skopeo 1.9 speaks HTTP/1.1 over TLS; curl does HTTP/2 below)
      local out = work .. "/pulled-tls"
      must_copy(dst, "oci:" .. out .. ":v1", "--src-cert-dir " .. q(certs)
        .. " --src-creds alice:alice-secret")
      assert.equal(v1, (helpers.read_file(out .. "/index.json")
        :match('"digest":"(sha256:%x+)"')))
      -- without the certificate the client refuses the server
      local _, ok = copy(dst, "oci:" .. work .. "/x:v1",
        "--src-creds alice:alice-secret")
      assert.is_false(ok)
    end)

    it("pushes and pulls the image with curl --http2", function()
      local tls = "--http2 --cacert " .. q(support.fixture("tls.crt"))
        .. " -u alice:alice-secret"
      local cjson = require "cjson"
      local manifest = helpers.read_file(layout .. "/blobs/sha256/"
        .. v1:match("%x+$"))
      local doc = cjson.decode(manifest)
      local mtype = "application/vnd.oci.image.manifest.v1+json"
      local blobs = { doc.config.digest }
      for _, l in ipairs(doc.layers) do blobs[#blobs + 1] = l.digest end
      for _, d in ipairs(blobs) do
        local r = curl("POST", srv.url .. "/v2/alice/h2img/blobs/uploads/"
          .. "?digest=" .. d, { args = tls, file = layout .. "/blobs/sha256/"
            .. d:match("%x+$"), headers = {
              "Content-Type: application/octet-stream" } })
        assert.equal(201, r.status)
        assert.equal("2", r.http_version)
      end
      local r = curl("PUT", srv.url .. "/v2/alice/h2img/manifests/v1",
        { args = tls, data = manifest, headers = { "Content-Type: "
          .. mtype } })
      assert.equal(201, r.status)
      assert.equal(v1, r.headers["docker-content-digest"])
      -- pulled back over HTTP/2, byte for byte
      r = curl("GET", srv.url .. "/v2/alice/h2img/manifests/v1",
        { args = tls, headers = { "Accept: " .. mtype } })
      assert.equal(200, r.status)
      assert.equal("2", r.http_version)
      assert.equal(manifest, r.body)
      for _, d in ipairs(blobs) do
        r = curl("GET", srv.url .. "/v2/alice/h2img/blobs/" .. d,
          { args = tls })
        assert.equal(200, r.status)
        assert.equal(d, helpers.sha256sum(r.body))
      end
      -- and skopeo reads what curl pushed
      assert.equal(v1, digest_of("docker://" .. srv.host .. "/alice/h2img:v1",
        "--cert-dir " .. q(certs) .. " --creds alice:alice-secret"))
    end)

    it("uploads a blob in chunks and reads it back with curl --http2",
      function()
      local tls = "--http2 --cacert " .. q(support.fixture("tls.crt"))
      local data = helpers.random_bytes(300000)
      local path = support.tmp("h2blob")
      helpers.write_file(path, data)
      local dgst = helpers.sha256sum(data)
      local r = curl("GET", srv.url .. "/v2/", { args = tls })
      assert.equal(401, r.status)
      assert.equal("2", r.http_version)
      -- POST, PATCH (a body nginx spools on HTTP/2), PUT
      r = curl("POST", srv.url .. "/v2/alice/h2/blobs/uploads/",
        { args = tls, user = "alice:alice-secret" })
      assert.equal(202, r.status)
      assert.equal("2", r.http_version)
      local loc = r.headers["location"]
      r = curl("PATCH", srv.url .. loc, { args = tls, file = path,
        user = "alice:alice-secret", headers = {
          "Content-Type: application/octet-stream" } })
      assert.equal(202, r.status)
      assert.equal("0-" .. (#data - 1), r.headers["range"])
      r = curl("PUT", srv.url .. r.headers["location"] .. "?digest=" .. dgst,
        { args = tls, user = "alice:alice-secret" })
      assert.equal(201, r.status)
      -- a single-request upload over HTTP/2
      local small = "single request over h2\n"
      r = curl("POST", srv.url .. "/v2/alice/h2/blobs/uploads/?digest="
        .. helpers.sha256sum(small), { args = tls, data = small,
          user = "alice:alice-secret" })
      assert.equal(201, r.status)
      r = curl("GET", srv.url .. "/v2/alice/h2/blobs/" .. dgst,
        { args = tls, user = "alice:alice-secret" })
      assert.equal(200, r.status)
      assert.equal("2", r.http_version)
      assert.equal(dgst, helpers.sha256sum(r.body))
      -- and refused without credentials, before the body is read
      r = curl("POST", srv.url .. "/v2/alice/h2/blobs/uploads/?digest="
        .. dgst, { args = tls, file = path })
      assert.equal(401, r.status)
    end)
  end)
end)

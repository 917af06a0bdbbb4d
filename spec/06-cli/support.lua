-- Shared by the spec/06-cli specs: run the real `berth` CLI as a child
-- process, stores filled through the Lua API from the manifest fixtures,
-- and images built with umoci.
--   local support = require "06-cli.support"
local helpers = require "helpers"
local cjson = require "cjson.safe"
local manifest = require "berth.manifest"

local _M = {}

local FX = "spec/fixtures/manifests/"
_M.FX = FX

-- The umoci layout fixture (spec/fixtures/manifests/README).
_M.AMD64 =
  "sha256:bd4c9dd55f9241ddade80bb378030c6042e4b10f377fbdb1ec1c32614d7c5f04"
_M.ARM64 =
  "sha256:6ca30a4d398a27f77953834a3f3229954b0bb064a1970801268060085894d6cd"
_M.CONFIG_AMD64 =
  "sha256:57bb8004b6d5fac37f4b8c95dfa3fcbda5557d0dac7445db5d859487f930339b"
_M.CONFIG_ARM64 =
  "sha256:dad006fd59c9ecf95d2d1c5cd7416617a8962b5e5b3b6683bd995488760d5981"
_M.LAYER =
  "sha256:47aa746b63cb3ca5d1fc5c726df220e80cf394911539d1ad47dda30e4111b83d"
_M.EMPTY_CONFIG =
  "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
_M.MISSING = "sha256:" .. string.rep("0", 64)

_M.OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_M.OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_M.REF_NAME = "org.opencontainers.image.ref.name"

-- q(s) -> s quoted for sh
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.q = q

local scratch
local function scratch_dir()
  if not scratch then
    scratch = helpers.tmpdir()
  end
  return scratch
end

local count = 0

-- bin/berth by absolute path, with an absolute BERTH_LIB, so it runs from
-- any directory.
local PWD = helpers.cwd()
local lib = os.getenv("BERTH_LIB") or "build/libberth.so"
if lib:sub(1, 1) ~= "/" then
  lib = PWD .. "/" .. lib
end
_M.BIN = "env BERTH_LIB=" .. q(lib) .. " " .. q(PWD .. "/bin/berth")
_M.SCRIPT = "env BERTH_LIB=" .. q(lib) .. " luajit "
  .. q(PWD .. "/lua/berth/cli.lua")

-- sh(cmd) -> { code =, stdout =, stderr = }
-- LuaJIT's popen close gives no exit status: the shell prints it.
local function sh(cmd)
  count = count + 1
  local base = scratch_dir() .. "/run" .. count
  local p = io.popen("( " .. cmd .. "\n) >" .. q(base .. ".out") .. " 2>"
    .. q(base .. ".err") .. " </dev/null; printf '%d' $?")
  local code = tonumber(p:read("*a"))
  p:close()
  local res = {
    code = code,
    stdout = helpers.read_file(base .. ".out") or "",
    stderr = helpers.read_file(base .. ".err") or "",
  }
  os.remove(base .. ".out")
  os.remove(base .. ".err")
  return res
end
_M.sh = sh

-- berth(args, opts?) -> { code =, stdout =, stderr = }
-- Runs bin/berth with args (a list, each quoted). opts.env = "K=V ..."
-- (prefix), opts.root = store root (--root ROOT right after the command),
-- opts.script = run lua/berth/cli.lua directly instead.
function _M.berth(argv, opts)
  opts = opts or {}
  -- opts.script: the CLI module run directly, as bin/berth does
  local parts = { opts.script and _M.SCRIPT or _M.BIN }
  for i, a in ipairs(argv) do
    parts[#parts + 1] = q(a)
    if i == 1 and opts.root then
      parts[#parts + 1] = "--root " .. q(opts.root)
    end
  end
  local cmd = table.concat(parts, " ")
  if opts.env then
    cmd = "env " .. opts.env .. " " .. cmd
  end
  return sh(cmd)
end

-- json(text) -> decoded value; raises with the text when it is not JSON
function _M.json(text)
  local v, err = cjson.decode(text)
  if v == nil then
    error("not JSON (" .. tostring(err) .. "): " .. tostring(text), 2)
  end
  return v
end

-- must(cmd) -> stdout; raises on a non-zero exit
function _M.must(cmd)
  local r = sh(cmd)
  if r.code ~= 0 then
    error(("command failed (exit %s): %s\n%s%s"):format(tostring(r.code),
      cmd, r.stdout, r.stderr), 2)
  end
  return r.stdout
end

-- fixture(name) -> content of spec/fixtures/manifests/<name>
function _M.fixture(name)
  return (assert(helpers.read_file(FX .. name), "fixture " .. name))
end

-- blob(digest) -> a blob of the layout fixture
function _M.blob(dgst)
  return _M.fixture("layout/blobs/sha256/" .. dgst:sub(8))
end

local function put_manifest(store, repo, body, opts)
  local m = assert(manifest.parse(body))
  local d = assert(store:manifest_put(repo, m, opts))
  m:close()
  return d
end
_M.put_manifest = put_manifest

-- fill(store): the fixture images in the store:
--   app    amd64 -> the amd64 image, multi -> the multi-platform index,
--          sbom -> an SBOM artifact whose subject is the amd64 image
--   other  v1 -> the amd64 image (its blobs shared with app)
-- -> { index =, sbom = } digests
function _M.fill(store)
  for _, d in ipairs({ _M.CONFIG_AMD64, _M.CONFIG_ARM64, _M.LAYER }) do
    assert(store:blob_put("app", _M.blob(d)))
  end
  put_manifest(store, "app", _M.blob(_M.AMD64), { tag = "amd64" })
  put_manifest(store, "app", _M.blob(_M.ARM64))
  local index = put_manifest(store, "app",
    _M.fixture("oci-index-multiplatform.json"), { tag = "multi" })
  assert(store:blob_put("app", _M.fixture("artifact-sbom.spdx.json")))
  assert(store:blob_put("app", "{}"))
  local sbom = put_manifest(store, "app",
    _M.fixture("oci-artifact-sbom.json"), { tag = "sbom" })
  for _, d in ipairs({ _M.CONFIG_AMD64, _M.LAYER }) do
    assert(store:blob_mount("other", "app", d))
  end
  put_manifest(store, "other", _M.blob(_M.AMD64), { tag = "v1" })
  return { index = index, sbom = sbom }
end

-- filled_store() -> store, root (fixture images, see fill), ids
function _M.filled_store()
  local store, root = helpers.new_store({ fsync = "none" })
  local ids = _M.fill(store)
  return store, root, ids
end

---------------------------------------------------------------------------
-- OCI layouts and umoci

-- umoci without the sanitizer libraries CI preloads into the specs
local UMOCI = "env -u LD_PRELOAD umoci"

function _M.blob_path(dir, dgst)
  local algo, hex = dgst:match("^(%w+):(%x+)$")
  return dir .. "/blobs/" .. algo .. "/" .. hex
end

function _M.read_json(path)
  return _M.json(assert(helpers.read_file(path), "cannot read " .. path))
end

-- layout_ref(dir, tag) -> the descriptor tagged tag in dir/index.json
function _M.layout_ref(dir, tag)
  local index = _M.read_json(dir .. "/index.json")
  for _, d in ipairs(index.manifests or {}) do
    if (d.annotations or {})[_M.REF_NAME] == tag then
      return d
    end
  end
  return nil
end

-- layout_put(dir, data) -> digest, size: a blob added to a layout
function _M.layout_put(dir, data)
  local dgst = helpers.sha256sum(data)
  helpers.write_file(_M.blob_path(dir, dgst), data)
  return dgst, #data
end

-- layout_tag(dir, tag, desc): add desc to index.json as tag
function _M.layout_tag(dir, tag, desc)
  local index = _M.read_json(dir .. "/index.json")
  local d = {}
  for k, v in pairs(desc) do d[k] = v end
  d.annotations = { [_M.REF_NAME] = tag }
  table.insert(index.manifests, d)
  helpers.write_file(dir .. "/index.json", assert(cjson.encode(index)))
end

-- blob_files(dir) -> { "sha256:<hex>" = content } of every blob of a layout
function _M.blob_files(dir)
  local out = _M.must("cd " .. q(dir) .. " && find blobs -type f | sort")
  local files = {}
  for path in out:gmatch("[^\n]+") do
    local algo, hex = path:match("^blobs/([^/]+)/(%x+)$")
    assert(algo, "unexpected file in the layout: " .. path)
    files[algo .. ":" .. hex] = assert(helpers.read_file(dir .. "/" .. path))
  end
  return files
end

-- build_image(dir, tag, opts) -> manifest descriptor
-- A one-layer image made with umoci in the layout dir (created when
-- missing): a text file naming it and opts.random bytes (default 300 kB)
-- of random data; opts.arch (and opts.variant) set the config's platform.
function _M.build_image(dir, tag, opts)
  opts = opts or {}
  local ref = q(dir .. ":" .. tag)
  if not helpers.read_file(dir .. "/index.json") then
    _M.must(UMOCI .. " init --layout " .. q(dir))
  end
  local bundle = dir .. ".bundle-" .. tag
  _M.must(UMOCI .. " new --image " .. ref)
  _M.must(UMOCI .. " unpack --rootless --image " .. ref .. " " .. q(bundle))
  local rootfs = bundle .. "/rootfs"
  _M.must("mkdir -p " .. q(rootfs .. "/etc"))
  helpers.write_file(rootfs .. "/etc/hello", "image " .. tag .. " "
    .. tostring(opts.arch or "") .. " " .. tostring(math.random()) .. "\n")
  _M.must(("head -c %d /dev/urandom > %s"):format(opts.random or 300000,
    q(rootfs .. "/big")))
  _M.must(UMOCI .. " repack --image " .. ref .. " " .. q(bundle))
  if opts.arch then
    _M.must(UMOCI .. " config --image " .. ref .. " --architecture "
      .. q(opts.arch) .. " --os linux")
  end
  _M.must("rm -rf " .. q(bundle))
  return assert(_M.layout_ref(dir, tag), "umoci made no " .. tag)
end

-- umoci_gc(dir): drop the blobs no tag of the layout reaches
function _M.umoci_gc(dir)
  _M.must(UMOCI .. " gc --layout " .. q(dir))
end

return _M

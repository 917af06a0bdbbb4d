-- An S3 store by configuration: the store section's s3 keys, and CNCF
-- Distribution's environment (REGISTRY_STORAGE=s3,
-- REGISTRY_STORAGE_S3_*), for the Lua API and the command line.
local helpers = require "helpers"
local berth = require "berth"
local registry = require "berth.registry"
local rgw = require "rgw"
local S = require "07-gc.support"

local s3 = rgw.start()
local n = 0

local function bucket()
  n = n + 1
  local name = ("config-%d-%d"):format(os.time() % 100000, n)
  s3:bucket(name)
  return name
end

-- The s3 keys of a store section (Distribution's names).
local function section(b)
  return { regionendpoint = s3.endpoint, bucket = b, region = s3.region,
    accesskey = s3.access_key, secretkey = s3.secret_key,
    rootdirectory = "/registry", forcepathstyle = true }
end

-- A command with the environment the specs run in (under the ASan pass
-- the library needs its runtime preloaded, as spec/06-cli's commands do)
-- -> output, ok
local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"exit $?\"")
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)exit (%d+)%s*$")
  return text or out, code == "0"
end

describe("an S3 store by configuration", function()
  it("opens from the store section's s3 keys", function()
    local b = bucket()
    local st = assert(berth.open{ root = helpers.tmpdir(), driver = "s3",
      s3 = section(b) })
    finally(function() st:close() end)
    local img = S.image(st, "team/app", { seed = "by config" })
    assert(st:tag_set("team/app", "v1", img.digest))
    -- the keys are Distribution's under rootdirectory
    local status = s3:request("HEAD", "/" .. b
      .. "/registry/docker/registry/v2/repositories/team/app/_manifests/"
      .. "tags/v1/current/link")
    assert.equal(200, status)
  end)

  it("says which key is missing", function()
    local keys = section(bucket())
    keys.bucket = nil
    local st, err, code = berth.open{ root = helpers.tmpdir(),
      driver = "s3", s3 = keys }
    assert.is_nil(st)
    assert.equal("EINVAL", code)
    assert.matches("store.s3.bucket", err, 1, true)
    assert.matches("REGISTRY_STORAGE_S3_BUCKET", err, 1, true)
  end)

  it("refuses virtual-hosted addressing in a configuration", function()
    local keys = section(bucket())
    keys.forcepathstyle = false
    local reg, err = registry.new{ store = { root = helpers.tmpdir(),
      driver = "s3", s3 = keys } }
    assert.is_nil(reg)
    assert.matches("forcepathstyle", err, 1, true)
  end)

  it("takes Distribution's environment over the file", function()
    local b = bucket()
    local env = {
      REGISTRY_STORAGE = "s3",
      REGISTRY_STORAGE_S3_REGIONENDPOINT = s3.endpoint,
      REGISTRY_STORAGE_S3_BUCKET = b,
      REGISTRY_STORAGE_S3_REGION = s3.region,
      REGISTRY_STORAGE_S3_ACCESSKEY = s3.access_key,
      REGISTRY_STORAGE_S3_SECRETKEY = s3.secret_key,
      REGISTRY_STORAGE_S3_ROOTDIRECTORY = "/env",
    }
    local conf = assert(registry.resolve{ root = "/tmp/x",
      getenv = function(k) return env[k] end })
    assert.equal("s3", conf.store.driver)
    assert.equal(b, conf.store.s3.bucket)
    assert.equal("/env", conf.store.s3.rootdirectory)
  end)

  it("serves the command line from the environment alone", function()
    local b = bucket()
    local st = assert(berth.open{ root = helpers.tmpdir(), driver = "s3",
      s3 = section(b) })
    local img = S.image(st, "team/app", { seed = "for the cli" })
    assert(st:tag_set("team/app", "v1", img.digest))
    st:close()
    local local_state = helpers.tmpdir()
    local env = ("REGISTRY_STORAGE=s3 REGISTRY_STORAGE_S3_REGIONENDPOINT=%s"
      .. " REGISTRY_STORAGE_S3_BUCKET=%s REGISTRY_STORAGE_S3_REGION=%s"
      .. " REGISTRY_STORAGE_S3_ACCESSKEY=%s REGISTRY_STORAGE_S3_SECRETKEY=%s"
      .. " REGISTRY_STORAGE_S3_ROOTDIRECTORY=/registry"):format(
      rgw.q(s3.endpoint), rgw.q(b), rgw.q(s3.region), rgw.q(s3.access_key),
      rgw.q(s3.secret_key))
    local out, ok = run("env " .. env .. " BERTH_LIB="
      .. rgw.q(os.getenv("BERTH_LIB") or "build/libberth.so")
      .. " bin/berth tags --json --root " .. rgw.q(local_state)
      .. " team/app")
    assert.is_true(ok, out)
    assert.matches('"v1"', out, 1, true)
    local fsck_out, fsck_ok = run("env " .. env .. " BERTH_LIB="
      .. rgw.q(os.getenv("BERTH_LIB") or "build/libberth.so")
      .. " bin/berth fsck --root " .. rgw.q(local_state))
    assert.is_true(fsck_ok, fsck_out)
    assert.matches("no problems", fsck_out, 1, true)
  end)
end)

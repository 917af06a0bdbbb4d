-- A manifest key that differs from a known one only by case, over HTTP:
-- Distribution (Go's encoding/json, which matches keys case-insensitively,
-- the last one winning) reads "Layers" as the layers and refuses the
-- missing blob; berth must not store what it did not check. Both refuse
-- with 400, and both take the same manifest without the variant.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"

local OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
local MISSING = "sha256:" .. string.rep("0", 64)

describe("a case-variant manifest key over HTTP", function()
  local berth_root, dist_root, berth, dist, cfg_digest

  setup(function()
    berth_root, dist_root = helpers.tmpdir(), helpers.tmpdir()
    berth = server.start({ root = berth_root })
    dist = tools.start_distribution({ root = dist_root })
    local cfg = tools.scratch() .. "/cfg" .. tools.counter()
    helpers.write_file(cfg, "{}")
    for _, base in ipairs({ berth.url, dist.url }) do
      local r
      r, cfg_digest = tools.push_blob(base, "case/keys", cfg)
      assert.equal(201, r.status, r.body)
    end
  end)

  teardown(function()
    if berth then berth:stop() end
    if dist then dist:stop() end
    helpers.rmrf(berth_root)
    helpers.rmrf(dist_root)
  end)

  local function config()
    return '{"mediaType":"application/vnd.oci.image.config.v1+json",'
      .. '"digest":"' .. cfg_digest .. '","size":2}'
  end
  local LAYER = '{"mediaType":"application/vnd.oci.image.layer.v1.tar",'
    .. '"digest":"' .. MISSING .. '","size":1}'

  local function image(extra, cfg)
    return '{"schemaVersion":2,"mediaType":"' .. OCI_MANIFEST .. '",'
      .. '"config":' .. (cfg or config()) .. ',"layers":[]' .. (extra or "")
      .. '}'
  end

  local function put(base, tag, body)
    return tools.curl("PUT", base .. "/v2/case/keys/manifests/" .. tag, {
      data = body, headers = { "Content-Type: " .. OCI_MANIFEST } })
  end

  it("takes the manifest without a variant on both", function()
    for _, base in ipairs({ berth.url, dist.url }) do
      local r = put(base, "plain", image())
      assert.equal(201, r.status, r.body)
    end
  end)

  local CASES = {
    { "Layers at the top", function()
      return image(',"Layers":[' .. LAYER .. ']') end, "Layers" },
    { "layer\\u017f (Go folds U+017F to s)", function()
      return image(',"layer\\u017f":[' .. LAYER .. ']') end, "layer\197\191" },
    { "Digest in the config", function()
      return image(nil, config():sub(1, -2) .. ',"Digest":"' .. MISSING
        .. '"}') end, "Digest" },
  }

  for i, case in ipairs(CASES) do
    it("refuses " .. case[1] .. " as docker-registry does", function()
      local body = case[2]()
      local d = put(dist.url, "v" .. i, body)
      local b = put(berth.url, "v" .. i, body)
      assert.equal(400, d.status, d.body)
      assert.matches('"code":"MANIFEST_BLOB_UNKNOWN"', d.body, 1, true)
      assert.equal(d.status, b.status, b.body)
      assert.matches('"code":"MANIFEST_INVALID"', b.body, 1, true)
      assert.matches(case[3], b.body, 1, true)
      assert.equal(404, tools.curl("GET", berth.url
        .. "/v2/case/keys/manifests/v" .. i).status)
    end)
  end
end)

-- berth ls and berth tags, run as child processes against a store filled
-- through the Lua API.
local helpers = require "helpers"
local support = require "06-cli.support"

local berth = support.berth

describe("berth ls", function()
  local root

  setup(function()
    local _
    _, root = support.filled_store()
  end)

  it("lists repositories with tag and manifest counts", function()
    local r = berth({ "ls" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.equal("", r.stderr)
    assert.equal(
      "REPOSITORY  TAGS  MANIFESTS\n" ..
      "app            3          4\n" ..
      "other          1          1\n", r.stdout)
  end)

  it("--json gives the same as objects", function()
    local r = berth({ "ls", "--json" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.same({ repositories = {
      { name = "app", tags = 3, manifests = 4 },
      { name = "other", tags = 1, manifests = 1 },
    } }, support.json(r.stdout))
  end)

  it("an empty store: a header only, and [] in JSON", function()
    local _, empty = helpers.new_store({ fsync = "none" })
    local r = berth({ "ls" }, { root = empty })
    assert.equal(0, r.code, r.stderr)
    assert.equal("REPOSITORY  TAGS  MANIFESTS\n", r.stdout)
    r = berth({ "ls", "--json" }, { root = empty })
    assert.equal('{"repositories":[]}\n', r.stdout)
  end)

  it("takes no arguments", function()
    local r = berth({ "ls", "app" }, { root = root })
    assert.equal(2, r.code)
    assert.equal("", r.stdout)
  end)
end)

describe("berth tags", function()
  local root

  setup(function()
    local _
    _, root = support.filled_store()
  end)

  it("lists tags with their digests, sorted", function()
    local r = berth({ "tags", "app" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do
      lines[#lines + 1] = line
    end
    assert.equal(4, #lines)
    assert.matches("^TAG +DIGEST$", lines[1])
    assert.matches("^amd64 +" .. support.AMD64 .. "$", lines[2])
    assert.matches("^multi +sha256:%x+$", lines[3])
    assert.matches("^sbom +sha256:%x+$", lines[4])
  end)

  it("--json", function()
    local store = require("berth").open({ root = root })
    local r = berth({ "tags", "app", "--json" }, { root = root })
    assert.equal(0, r.code, r.stderr)
    assert.same({ repository = "app", tags = {
      { name = "amd64", digest = support.AMD64 },
      { name = "multi", digest = store:tag_get("app", "multi") },
      { name = "sbom", digest = store:tag_get("app", "sbom") },
    } }, support.json(r.stdout))
    store:close()
  end)

  it("a repository without tags: [] in JSON", function()
    local store, empty = helpers.new_store({ fsync = "none" })
    assert(store:blob_put("notags", support.blob(support.CONFIG_AMD64)))
    assert(store:blob_put("notags", support.blob(support.LAYER)))
    support.put_manifest(store, "notags", support.blob(support.AMD64))
    local r = berth({ "tags", "notags", "--json" }, { root = empty })
    assert.equal(0, r.code, r.stderr)
    assert.equal('{"repository":"notags","tags":[]}\n', r.stdout)
  end)

  it("an unknown repository is a failure: exit 1", function()
    local r = berth({ "tags", "nope" }, { root = root })
    assert.equal(1, r.code)
    assert.equal("", r.stdout)
    assert.matches("^berth tags: .*nope", r.stderr)
  end)

  it("with --json, a failure is a JSON object on stdout too", function()
    local r = berth({ "tags", "nope", "--json" }, { root = root })
    assert.equal(1, r.code)
    local doc = support.json(r.stdout)
    assert.equal("NAME_UNKNOWN", doc.error.code)
    assert.matches("nope", doc.error.message, 1, true)
    assert.matches("^berth tags: .*nope", r.stderr)
    -- a usage error, and a store that is not there
    r = berth({ "tags", "--json" }, { root = root })
    assert.equal(2, r.code)
    assert.equal("USAGE", support.json(r.stdout).error.code)
    r = berth({ "ls", "--json" }, { root = root .. "/no/such/dir" })
    assert.equal(1, r.code)
    assert.matches("no store at", support.json(r.stdout).error.message, 1,
      true)
  end)

  it("usage errors: exit 2", function()
    assert.equal(2, berth({ "tags" }, { root = root }).code)
    assert.equal(2, berth({ "tags", "a", "b" }, { root = root }).code)
    assert.equal(2, berth({ "tags", "app", "--json=1" }, { root = root }).code)
  end)
end)

-- The README's nginx snippets are what lua/berth/serve.lua generates (and
-- spec/04-nginx/embed_spec.lua starts nginx from), so they cannot go stale.
local helpers = require "helpers"
local serve = require "berth.serve"

describe("README", function()
  local readme = helpers.read_file("README.md")
  local blocks = {}
  for block in readme:gmatch("```nginx\n(.-)```") do
    blocks[#blocks + 1] = block
  end

  it("shows the http{} snippet serve.lua generates", function()
    assert.equal(serve.http_snippet{ home = "/opt/berth",
      root = "/var/lib/berth", delete = true } .. "\n", blocks[1])
  end)

  it("shows the server{} snippet serve.lua generates", function()
    assert.equal(serve.server_snippet{ root = "/var/lib/berth" } .. "\n",
      blocks[2])
  end)
end)

-- The spec helpers themselves: what every other spec relies on.

describe("finally in a test", function()
  local ran = {}

  it("registers each function besides the earlier ones", function()
    finally(function() ran[#ran + 1] = "first" end)
    finally(function() ran[#ran + 1] = "second" end)
  end)

  it("ran them all, the last registered first", function()
    assert.same({ "second", "first" }, ran)
  end)
end)

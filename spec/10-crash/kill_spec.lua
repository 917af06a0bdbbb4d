-- kill -9 of every nginx process of `berth serve` while 16 clients push,
-- at a moment each round's seed picks (mostly while PATCHes are in flight),
-- then berth restarted on the same store: everything acknowledged is
-- served, every interrupted upload resumes (spec/10-crash/rig.lua).
local rig = require "10-crash.rig"

local ROUNDS = tonumber(os.getenv("BERTH_CRASH_ROUNDS")) or 24

describe("kill -9 of berth serve under 16 concurrent pushes", function()
  it(("loses nothing acknowledged in %d rounds"):format(ROUNDS), function()
    local run = rig.new{ rounds = ROUNDS }
    finally(function() run:close() end)
    for r = 1, ROUNDS do
      run:round(r)
    end
    assert(#run.failures == 0, run:report())
  end)
end)

-- A power cut under 16 concurrent pushes: the store on ext4 on a loop
-- device mounted commit=300,noauto_da_alloc, every nginx process killed
-- (kill -9) and the filesystem shut down at once at a moment each round's
-- seed picks, the device's image copied as it is (what was never written
-- back is lost), e2fsck -fy, the copy mounted and berth restarted on it:
-- everything acknowledged is served, every interrupted upload resumes
-- (spec/10-crash/rig.lua). Needs root (loop devices, mount); CI is root.
local rig = require "10-crash.rig"

local ROUNDS = tonumber(os.getenv("BERTH_CRASH_ROUNDS")) or 20

describe("a power cut under 16 concurrent pushes", function()
  local why = rig.power_unavailable()
  if why then
    pending("skipped: " .. why)
    return
  end
  it(("loses nothing acknowledged in %d rounds"):format(ROUNDS), function()
    local run = rig.new{ rounds = ROUNDS, power = true }
    finally(function() run:close() end)
    for r = 1, ROUNDS do
      run:round(r)
    end
    assert(#run.failures == 0, run:report())
  end)
end)

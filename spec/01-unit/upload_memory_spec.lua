-- Uploads stream: a 1 GiB blob in 1 MiB chunks stays under 32 MiB of peak
-- RSS for the whole process (LuaJIT, busted and all).
local helpers = require "helpers"

local function peak_rss_mib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmHWM:%s+(%d+)")
    if kib then return tonumber(kib) / 1024 end
  end
end

local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true)

describe("upload memory #slow", function()
  it("commits a 1 GiB blob with peak RSS under 32 MiB", function()
    if sanitized then
      pending("ASan's shadow memory makes RSS meaningless")
      return
    end
    local store = helpers.new_store({ fsync = "none" })
    local chunk = string.rep("berth", 1024 * 1024 / 5) .. "berth"
    chunk = chunk:sub(1, 1024 * 1024)
    local berth = require "berth"
    local h = berth.digest.hasher()
    local up = assert(store:blob_writer("big/blob"))
    for _ = 1, 1024 do
      assert(up:write(chunk))
      h:update(chunk)
    end
    assert(up:commit(h:digest(), 1024 * 1024 * 1024))
    assert.equal(1024 * 1024 * 1024, store:blob_stat("big/blob", h:digest()))
    local peak = peak_rss_mib()
    assert.is_true(peak < 32, ("peak RSS %.1f MiB"):format(peak))
  end)
end)

-- wrk script for bench/http.sh: one request shape, taken from the
-- environment, and a one-line summary http.sh parses.
--   WRK_METHOD   GET (default), HEAD, PUT, ...
--   WRK_HEADERS  "Name: value" lines, separated by newlines
--   WRK_BODY     path of a file sent as the body of every request
-- Prints at the end:
--   BENCH requests=N seconds=S rps=R non2xx=N errors=N p50_ms=X p99_ms=Y
-- non2xx counts responses with a status >= 400 (wrk's "Non-2xx or 3xx");
-- errors counts connect, read, write and timeout errors.
local getenv = os.getenv

wrk.method = getenv("WRK_METHOD") or "GET"
for line in (getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local k, v = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if k then
    wrk.headers[k] = v
  end
end
local body = getenv("WRK_BODY")
if body and body ~= "" then
  local f = assert(io.open(body, "rb"))
  wrk.body = f:read("*a")
  f:close()
end

function done(summary, latency)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(("BENCH requests=%d seconds=%.3f rps=%.1f non2xx=%d errors=%d"
    .. " p50_ms=%.3f p99_ms=%.3f\n"):format(summary.requests, secs,
    summary.requests / secs, e.status, e.connect + e.read + e.write
    + e.timeout, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end

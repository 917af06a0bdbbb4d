-- A throwaway Ceph RADOS Gateway (S3) for specs, started by bin/rgw in a
-- helpers.tmpdir() and stopped when the suite ends.
--   local rgw = require "rgw"
--   local s3 = rgw.start()  -- { endpoint, access_key, secret_key, region,
--                           --   dir, stop = function, ... }
--   local status, body, headers = s3:request("GET", "/bucket/key")
-- Starting costs seconds, so one busted process (one spec file) shares one
-- cluster: rgw.start() hands back the running one, or after its stop a new
-- one. Buckets and keys outlive a test: name them per test.
local helpers = require "helpers"

local _M = {}

-- q(s) -> s quoted for sh
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.q = q

-- Every command runs without the sanitizer runtime the ASan pass preloads
-- into luajit: under LD_PRELOAD=libasan.so curl, pgrep and the like
-- deadlock in setlocale at start, and the Ceph daemons bin/rgw starts
-- would inherit it.
local NO_SANITIZER = "unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS; "

-- sh(cmd) -> output (stdout and stderr), ok, exit code
local function sh(cmd)
  local p = io.popen(NO_SANITIZER .. "( " .. cmd .. "\n) 2>&1; printf '\\n%d' $?")
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)\n(%d+)$")
  code = tonumber(code)
  return text or out, code == 0, code
end
_M.sh = sh

local function must(cmd)
  local out, ok, code = sh(cmd)
  if not ok then
    error(("command failed (exit %s): %s\n%s"):format(tostring(code), cmd,
      out), 2)
  end
  return out
end

-- bin/rgw, from the repository root the specs run in
local function bin()
  return q(helpers.cwd() .. "/bin/rgw")
end

-- DIR/env's assignments -> table
local function read_env(path)
  local env = {}
  for k, v in (assert(helpers.read_file(path), "no " .. path)):gmatch(
      "([%w_]+)=\"?([^\"\n]*)\"?\n") do
    env[k] = v
  end
  return env
end

local Cluster = {}
Cluster.__index = Cluster

local current -- the cluster this process shares, while it runs

-- start() -> the running cluster, else a new one
function _M.start()
  if current then return current end
  local dir = helpers.tmpdir()
  must(bin() .. " start " .. q(dir))
  local env = read_env(dir .. "/env")
  local pids = {}
  for pid in env.BERTH_RGW_PIDS:gmatch("%d+") do
    pids[#pids + 1] = tonumber(pid)
  end
  local c = setmetatable({
    endpoint = env.BERTH_S3_ENDPOINT,
    access_key = env.BERTH_S3_ACCESS_KEY,
    secret_key = env.BERTH_S3_SECRET_KEY,
    region = env.BERTH_S3_REGION,
    dir = dir,
    pids = pids,
    running = true,
    n = 0,
  }, Cluster)
  -- a method that also works called as c.stop()
  c.stop = function() return Cluster.stop(c) end
  current = c
  -- registered after tmpdir's removal, so it runs before it; whatever
  -- still runs with the directory in its command line then (a stop that
  -- failed or missed one) is told and killed, so none outlives its spec
  helpers.at_exit(function()
    local ok, err = pcall(c.stop)
    if not ok then io.stderr:write("spec rgw: ", tostring(err), "\n") end
    local left = c:processes()
    if #left > 0 then
      io.stderr:write("spec rgw: still running at the end, killed:\n  ",
        table.concat(left, "\n  "), "\n")
      for _, line in ipairs(left) do
        sh("kill -KILL " .. line:match("^%d+"))
      end
    end
  end)
  return c
end

-- Stop every daemon of the cluster (bin/rgw stop: by PID, TERM then
-- KILL); its directory stays until the suite ends. A second stop is a
-- no-op.
function Cluster:stop()
  if not self.running then return end
  self.running = false
  if current == self then current = nil end
  must(bin() .. " stop " .. q(self.dir))
end

-- The processes whose command line names this cluster's directory:
-- { "PID ARGS", ... } (pgrep; "[/]": not the shell running it, whose
-- command line holds the pattern)
function Cluster:processes()
  local out = sh("pgrep -af -- " .. q("[/]" .. self.dir:sub(2)))
  local list = {}
  for line in out:gmatch("[^\n]+") do
    if line:match("^%d+ ") then list[#list + 1] = line end
  end
  return list
end

-- bucket(name): create it (an existing one of ours is fine)
function Cluster:bucket(name)
  must(bin() .. " bucket " .. q(self.dir) .. " " .. q(name))
end

-- gateway() -> endpoint of one more radosgw on the same cluster (its own
-- port), stopped with the cluster
function Cluster:gateway()
  local out = must(bin() .. " gateway " .. q(self.dir))
  return assert(out:match("BERTH_S3_ENDPOINT=(%S+)"), out)
end

-- The curl arguments that sign a simple request with SigV4 (curl signs
-- ?uploads wrongly: no multipart through this). RGW wants
-- x-amz-content-sha256; UNSIGNED-PAYLOAD spares hashing the body.
function Cluster:curl_args()
  return "curl -s --aws-sigv4 " .. q("aws:amz:" .. self.region .. ":s3")
    .. " --user " .. q(self.access_key .. ":" .. self.secret_key)
    .. " -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD'"
end

-- request(method, path, opts) -> status, body, headers (lower-case names)
--   path: "/bucket/key[?query]"; opts.body: string to send (PUT);
--   opts.headers: { ["Name"] = value }; opts.endpoint: another gateway's
function Cluster:request(method, path, opts)
  opts = opts or {}
  self.n = self.n + 1
  local base = self.dir .. "/req." .. self.n
  local args = { self:curl_args(), "-o", q(base .. ".out"), "-D",
    q(base .. ".hdr"), "-w", "'%{http_code}'" }
  if method == "HEAD" then
    args[#args + 1] = "-I" -- -X HEAD would wait for a body
  else
    args[#args + 1] = "-X " .. q(method)
  end
  if opts.body then
    helpers.write_file(base .. ".in", opts.body)
    args[#args + 1] = "--data-binary @" .. q(base .. ".in")
    args[#args + 1] = "-H 'Content-Type: application/octet-stream'"
  end
  for k, v in pairs(opts.headers or {}) do
    args[#args + 1] = "-H " .. q(k .. ": " .. v)
  end
  args[#args + 1] = q((opts.endpoint or self.endpoint) .. path)
  local out = must(table.concat(args, " "))
  local status = tonumber(out:match("(%d%d%d)%s*$"))
  local headers = {}
  for line in (helpers.read_file(base .. ".hdr") or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  -- (curl -I writes the headers where the body would go)
  local body = method ~= "HEAD" and helpers.read_file(base .. ".out") or ""
  for _, ext in ipairs({ ".out", ".hdr", ".in" }) do
    os.remove(base .. ext)
  end
  return status, body, headers
end

return _M

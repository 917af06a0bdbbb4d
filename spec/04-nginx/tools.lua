-- Shared helpers for the spec/04-nginx specs that drive real tools (skopeo,
-- umoci, curl, docker-registry, nginx) against a live server.
--   local tools = require "04-nginx.tools"
local helpers = require "helpers"
local cjson = require "cjson.safe"

local _M = {}

-- q(s) -> s quoted for sh
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.q = q

-- Commands run without the sanitizer runtime the ASan pass of the specs
-- preloads into luajit (curl deadlocks in setlocale at start under
-- LD_PRELOAD=libasan.so), and so with the plain library: an nginx started
-- here (embed_spec) finds build/libberth.so through lua_package_cpath.
-- (server.lua starts berth serve with both: nginx runs under ASan.)
local NO_SANITIZER = "unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS BERTH_LIB; "
_M.NO_SANITIZER = NO_SANITIZER

-- sh(cmd) -> output (stdout and stderr), ok, exit code
-- (LuaJIT's popen close gives no exit status: the shell prints it last)
local function run(cmd, stderr)
  local p = io.popen(NO_SANITIZER .. "( " .. cmd .. "\n) " .. stderr
    .. "; printf '\\n%d' $?")
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)\n(%d+)$")
  code = tonumber(code)
  return text or out, code == 0, code
end

local function sh(cmd)
  return run(cmd, "2>&1")
end
_M.sh = sh

-- must(cmd) -> output; raises with the command and its output on failure
function _M.must(cmd)
  local out, ok, code = sh(cmd)
  if not ok then
    error(("command failed (exit %s): %s\n%s"):format(tostring(code), cmd,
      out), 2)
  end
  return out
end

-- stdout(cmd) -> stdout only (stderr discarded), ok, exit code
function _M.stdout(cmd)
  return run(cmd, "2>/dev/null")
end

function _M.exists(path)
  local _, ok = sh("test -e " .. q(path))
  return ok
end

function _M.sleep(s)
  os.execute("sleep " .. s)
end

-- A TCP port no socket uses (see server.lua)
function _M.free_port()
  return require("04-nginx.server").free_port()
end

-- sha256 of a file, "sha256:<hex>", through sha256sum (not berth)
function _M.sha256_file(path)
  local out = _M.must("sha256sum " .. q(path))
  return "sha256:" .. out:match("^(%x+)")
end

function _M.sha256(data)
  return helpers.sha256sum(data)
end

function _M.json(text)
  local v, err = cjson.decode(text)
  if v == nil then
    error("not JSON (" .. tostring(err) .. "): " .. tostring(text), 2)
  end
  return v
end

function _M.read_json(path)
  return _M.json(assert(helpers.read_file(path), "cannot read " .. path))
end

-- Write n random bytes to path (from /dev/urandom).
function _M.random_file(path, n)
  _M.must(("head -c %d /dev/urandom > %s"):format(n, q(path)))
end

function _M.file_size(path)
  local f = assert(io.open(path, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end

---------------------------------------------------------------------------
-- curl

-- curl(method, url, opts) -> { status = n, headers = {lower = value},
--   body = string }
-- opts.headers = { "Name: value", ... }, opts.file = path (--data-binary @),
-- opts.data = string (written to a temp file), opts.args = extra curl args
-- (string), opts.head = true (HEAD: -I)
function _M.curl(method, url, opts)
  opts = opts or {}
  local dir = _M.scratch()
  local n = _M.counter()
  local hfile = dir .. "/h" .. n
  local bfile = dir .. "/b" .. n
  local args = { "curl -s -g -S --max-time 120", "-D", q(hfile), "-o", q(bfile),
    "-w '%{http_code}'" }
  if opts.head or method == "HEAD" then
    args[#args + 1] = "-I"
  else
    args[#args + 1] = "-X " .. q(method)
  end
  for _, h in ipairs(opts.headers or {}) do
    args[#args + 1] = "-H " .. q(h)
  end
  if opts.data then
    local dfile = dir .. "/d" .. n
    helpers.write_file(dfile, opts.data)
    opts.file = dfile
  end
  if opts.file then
    args[#args + 1] = "--data-binary @" .. q(opts.file)
  end
  if opts.args then
    args[#args + 1] = opts.args
  end
  args[#args + 1] = q(url)
  local out = sh(table.concat(args, " "))
  local resp = { status = tonumber(out:match("(%d%d%d)$")), headers = {},
    raw_headers = helpers.read_file(hfile) or "", curl_output = out }
  -- the last header block (after any 100 Continue)
  local block = resp.raw_headers:match(".*\r\n\r\n(HTTP/.-)\r\n\r\n$")
    or resp.raw_headers
  for line in block:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then
      k = k:lower()
      resp.headers[k] = resp.headers[k] and (resp.headers[k] .. ", " .. v)
        or v
    end
  end
  resp.body = helpers.read_file(bfile) or ""
  os.remove(hfile)
  os.remove(bfile)
  return resp
end

local scratch_dir
function _M.scratch()
  if not scratch_dir then
    scratch_dir = helpers.tmpdir()
  end
  return scratch_dir
end

local count = 0
function _M.counter()
  count = count + 1
  return count
end

-- raw_http(port, request) -> everything the server sent until it closed
-- (send HTTP/1.0 so that it closes)
function _M.raw_http(port, request)
  local path = _M.scratch() .. "/raw" .. _M.counter()
  helpers.write_file(path, request)
  local out = _M.stdout("bash -c " .. q(("exec 3<>/dev/tcp/127.0.0.1/%d && "
    .. "cat %s >&3 && timeout 5 cat <&3"):format(tonumber(port), q(path))))
  os.remove(path)
  return out
end

-- Location of an upload response as an absolute URL against base.
function _M.location(base, resp)
  local loc = resp.headers["location"]
  assert(loc, "no Location header in response " .. tostring(resp.status))
  if loc:match("^https?://") then
    return loc
  end
  return base .. loc
end

-- Push a blob from a file: POST, PATCH each chunk (Content-Range), PUT
-- ?digest=. Returns the final PUT response.
function _M.push_blob(base, repo, path, chunk)
  local dgst = _M.sha256_file(path)
  local size = _M.file_size(path)
  local r = _M.curl("POST", base .. "/v2/" .. repo .. "/blobs/uploads/")
  assert(r.status == 202, "POST: " .. tostring(r.status) .. " " .. r.body)
  local loc = _M.location(base, r)
  chunk = chunk or size
  local off = 0
  local dir = _M.scratch()
  while off < size do
    local n = math.min(chunk, size - off)
    local part = dir .. "/part" .. _M.counter()
    _M.must(("tail -c +%d %s | head -c %d > %s"):format(off + 1, q(path), n,
      q(part)))
    r = _M.curl("PATCH", loc, { file = part, headers = {
      "Content-Type: application/octet-stream",
      ("Content-Range: %d-%d"):format(off, off + n - 1) } })
    os.remove(part)
    assert(r.status == 202, "PATCH: " .. tostring(r.status) .. " " .. r.body)
    loc = _M.location(base, r)
    off = off + n
  end
  local sep = loc:find("?", 1, true) and "&" or "?"
  return _M.curl("PUT", loc .. sep .. "digest=" .. dgst), dgst
end

-- Wait until GET url answers want (default 200); false after ~tries/10 s.
function _M.wait_http(url, want, tries)
  want = tostring(want or 200)
  for _ = 1, tries or 100 do
    local code = sh("curl -s --max-time 2 -o /dev/null -w '%{http_code}' "
      .. q(url))
    if code == want then
      return true
    end
    _M.sleep(0.1)
  end
  return false
end

---------------------------------------------------------------------------
-- processes

-- children(pid) -> list of child pids
function _M.children(pid)
  local out = _M.stdout("pgrep -P " .. tonumber(pid))
  local pids = {}
  for p in out:gmatch("%d+") do
    pids[#pids + 1] = tonumber(p)
  end
  return pids
end

function _M.alive(pid)
  -- a zombie is not alive
  local st = helpers.read_file("/proc/" .. tonumber(pid) .. "/stat")
  return st ~= nil and not st:match("^%d+ %b() Z")
end

-- Wait until none of pids is alive (at most ~s seconds).
function _M.wait_gone(pids, s)
  for _ = 1, math.floor((s or 5) * 20) do
    local any = false
    for _, p in ipairs(pids) do
      if _M.alive(p) then any = true end
    end
    if not any then return true end
    _M.sleep(0.05)
  end
  return false
end

-- kill -s SIG to each pid
function _M.kill(pids, sig)
  for _, p in ipairs(pids) do
    os.execute("kill -" .. (sig or "TERM") .. " " .. tonumber(p)
      .. " 2>/dev/null")
  end
end

-- kill -9 a process and its children at once (an nginx master and its
-- workers); -> the pids killed
function _M.kill_tree(pid)
  if not pid then return {} end
  local pids = { pid }
  for _, p in ipairs(_M.children(pid)) do
    pids[#pids + 1] = p
  end
  os.execute("kill -9 " .. table.concat(pids, " ") .. " 2>/dev/null")
  return pids
end

-- VmHWM (peak RSS) of a process in kB, or nil when it is gone
function _M.vm_hwm(pid)
  local st = helpers.read_file("/proc/" .. tonumber(pid) .. "/status")
  return st and tonumber(st:match("VmHWM:%s*(%d+)"))
end

---------------------------------------------------------------------------
-- images (umoci) and OCI layouts

-- layout_ref(layout, tag) -> manifest descriptor of tag in layout/index.json
function _M.layout_ref(layout, tag)
  local index = _M.read_json(layout .. "/index.json")
  for _, d in ipairs(index.manifests or {}) do
    if (d.annotations or {})["org.opencontainers.image.ref.name"] == tag then
      return d
    end
  end
  return nil
end

function _M.blob_path(layout, dgst)
  local alg, hex = dgst:match("^(%w+):(%x+)$")
  return layout .. "/blobs/" .. alg .. "/" .. hex
end

function _M.layout_blob(layout, dgst)
  return assert(helpers.read_file(_M.blob_path(layout, dgst)),
    "layout has no blob " .. dgst)
end

-- build_image(layout, tag, opts) -> manifest digest
-- A one-layer image made with umoci: a small text file naming it, and
-- opts.random bytes (default 2 MB) of random data. opts.arch sets the
-- config's architecture.
function _M.build_image(layout, tag, opts)
  opts = opts or {}
  local ref = q(layout .. ":" .. tag)
  if not _M.exists(layout .. "/index.json") then
    _M.must("umoci init --layout " .. q(layout))
  end
  local bundle = layout .. ".bundle-" .. tag
  _M.must("umoci new --image " .. ref)
  _M.must("umoci unpack --rootless --image " .. ref .. " " .. q(bundle))
  local rootfs = bundle .. "/rootfs"
  _M.must("mkdir -p " .. q(rootfs .. "/etc"))
  helpers.write_file(rootfs .. "/etc/hello", "image " .. tag .. " "
    .. tostring(opts.arch or "") .. " " .. tostring(math.random()) .. "\n")
  _M.random_file(rootfs .. "/big", opts.random or 2000000)
  _M.must("umoci repack --image " .. ref .. " " .. q(bundle))
  if opts.arch then
    _M.must("umoci config --image " .. ref .. " --architecture "
      .. q(opts.arch) .. " --os linux")
  end
  _M.must("rm -rf " .. q(bundle))
  return assert(_M.layout_ref(layout, tag), "umoci made no " .. tag).digest
end

-- Add a blob to an OCI layout; -> digest, size
function _M.layout_put(layout, data)
  local dgst = helpers.sha256sum(data)
  helpers.write_file(_M.blob_path(layout, dgst), data)
  return dgst, #data
end

-- Tag a descriptor in an OCI layout's index.json.
function _M.layout_tag(layout, tag, desc)
  local index = _M.read_json(layout .. "/index.json")
  local d = {}
  for k, v in pairs(desc) do d[k] = v end
  d.annotations = { ["org.opencontainers.image.ref.name"] = tag }
  table.insert(index.manifests, d)
  helpers.write_file(layout .. "/index.json", assert(cjson.encode(index)))
end

-- Digests an image manifest refers to (config and layers).
function _M.manifest_blobs(manifest)
  local m = type(manifest) == "string" and _M.json(manifest) or manifest
  local out = { m.config.digest }
  for _, l in ipairs(m.layers or {}) do
    out[#out + 1] = l.digest
  end
  return out
end

---------------------------------------------------------------------------
-- skopeo

local SKOPEO = "skopeo --insecure-policy"
_M.SKOPEO = SKOPEO

-- skopeo copy; -> output, ok (args is the rest of the command line)
function _M.skopeo(args)
  return sh(SKOPEO .. " " .. args)
end

-- raw manifest of a registry image (docker://host/repo:ref), via skopeo
function _M.inspect_raw(ref)
  return _M.stdout(SKOPEO .. " inspect --tls-verify=false --raw " .. q(ref))
end

---------------------------------------------------------------------------
-- the store on disk

-- find(dir, args) -> list of paths
local function find(dir, args)
  local out = _M.stdout("find " .. q(dir) .. " " .. args)
  local list = {}
  for line in out:gmatch("[^\n]+") do
    list[#list + 1] = line
  end
  table.sort(list)
  return list
end
_M.find = find

-- check_store(root) -> problems (list of strings), stats
-- What must hold after any crash: every blob data file hashes to its
-- address; every layer and revision link names its own digest and points
-- at data that exists; every tag's current link points at a revision of
-- that repository whose data exists; tag index links point at data.
function _M.check_store(root)
  local v2 = root .. "/docker/registry/v2"
  local problems = {}
  local stats = { blobs = 0, layers = 0, revisions = 0, tags = 0 }
  local function bad(fmt, ...)
    problems[#problems + 1] = fmt:format(...)
  end
  local have = {}
  -- hash every data file in one sha256sum run
  local out = _M.stdout("find " .. q(v2 .. "/blobs") .. " -type f -name data"
    .. " -print0 | xargs -0 -r sha256sum")
  for hex, path in out:gmatch("(%x+)  ([^\n]+)") do
    local alg, hh, name = path:match("/blobs/(%w+)/(%x%x)/(%x+)/data$")
    stats.blobs = stats.blobs + 1
    if not alg then
      bad("blob data at an unexpected path: %s", path)
    elseif alg ~= "sha256" then
      have[alg .. ":" .. name] = true -- not checked here
    elseif name ~= hex or name:sub(1, 2) ~= hh then
      bad("blob %s hashes to %s", path, hex)
    else
      have["sha256:" .. name] = true
    end
  end
  for _, path in ipairs(find(v2 .. "/blobs", "-type f ! -name data")) do
    if not path:match("/%.tmp%-%x+~$") then
      bad("unexpected file in blobs: %s", path)
    end
  end
  local function link_of(path)
    local s = helpers.read_file(path)
    if not s then
      bad("cannot read link %s", path)
      return nil
    end
    if not s:match("^%w+:%x+$") then
      bad("link %s holds %q", path, s)
      return nil
    end
    return s
  end
  local revisions, pending = {}, {}
  for _, path in ipairs(find(v2 .. "/repositories", "-type f -name link")) do
    -- (a name component never starts with "_", a tag may)
    local repo, kind, rest = path:match(
      "/repositories/(.-)/_(%w+)/(.*)/link$")
    local target = link_of(path)
    if not repo then
      bad("link at an unexpected path: %s", path)
    elseif target then
      if kind == "layers" then
        stats.layers = stats.layers + 1
        local alg, hex = rest:match("^(%w+)/(%x+)$")
        if not alg or target ~= alg .. ":" .. hex then
          bad("layer link %s holds %s", path, target)
        elseif not have[target] then
          bad("layer link %s: no data for %s", path, target)
        end
      elseif kind == "manifests" then
        local alg, hex = rest:match("^revisions/(%w+)/(%x+)$")
        if alg then
          stats.revisions = stats.revisions + 1
          if target ~= alg .. ":" .. hex then
            bad("revision link %s holds %s", path, target)
          elseif not have[target] then
            bad("revision link %s: no data for %s", path, target)
          end
          revisions[repo .. "@" .. target] = true
        elseif rest:match("^tags/[^/]+/current$") then
          stats.tags = stats.tags + 1
          pending[#pending + 1] = { path, repo, target }
        elseif rest:match("^tags/[^/]+/index/%w+/%x+$") then
          if not have[target] then
            bad("tag index link %s: no data for %s", path, target)
          end
        else
          bad("link at an unexpected path: %s", path)
        end
      end
    end
  end
  for _, p in ipairs(pending) do
    local path, repo, target = p[1], p[2], p[3]
    if not revisions[repo .. "@" .. target] then
      bad("tag %s points at %s, not a revision of %s", path, target, repo)
    elseif not have[target] then
      bad("tag %s points at %s, which has no data", path, target)
    end
  end
  return problems, stats
end

-- tags(root) -> { "repo:tag" = digest } read from the store on disk
function _M.store_tags(root)
  local v2 = root .. "/docker/registry/v2"
  local tags = {}
  for _, path in ipairs(find(v2 .. "/repositories",
      "-type f -path '*/_manifests/tags/*/current/link'")) do
    local repo, tag = path:match(
      "/repositories/(.+)/_manifests/tags/([^/]+)/current/link$")
    tags[repo .. ":" .. tag] = helpers.read_file(path)
  end
  return tags
end

---------------------------------------------------------------------------
-- CNCF Distribution (Debian's docker-registry)

local Distribution = {}
Distribution.__index = Distribution

-- start_distribution{ root = dir, secret = s } -> registry; raises when it
-- does not answer GET /v2/ in time.
function _M.start_distribution(opts)
  local dir = helpers.tmpdir()
  local port = _M.free_port()
  local config = dir .. "/config.yml"
  helpers.write_file(config, table.concat({
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    "    rootdirectory: " .. opts.root,
    "  delete:",
    "    enabled: true",
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    "  addr: 127.0.0.1:" .. port,
    "  secret: " .. (opts.secret or "berth-spec-secret"),
    "",
  }, "\n"))
  local log = dir .. "/log"
  local pidfile = dir .. "/pid"
  os.execute(NO_SANITIZER .. "setsid sh -c " .. q("echo $$ > " .. q(pidfile)
    .. "; exec docker-registry serve " .. q(config)) .. " > " .. q(log)
    .. " 2>&1 < /dev/null &")
  local reg = setmetatable({ url = "http://127.0.0.1:" .. port, port = port,
    root = opts.root, log = log, pidfile = pidfile, dir = dir }, Distribution)
  if not _M.wait_http(reg.url .. "/v2/", 200) then
    local text = helpers.read_file(log) or ""
    reg:stop()
    error("docker-registry did not start:\n" .. text)
  end
  return reg
end

function Distribution:pid()
  local s = helpers.read_file(self.pidfile)
  return s and tonumber(s:match("%d+"))
end

function Distribution:stop()
  local pid = self:pid()
  if pid and not self.stopped then
    self.stopped = true
    _M.kill({ pid }, "TERM")
    if not _M.wait_gone({ pid }, 5) then
      _M.kill({ pid }, "KILL")
      _M.wait_gone({ pid }, 2)
    end
  end
end

function Distribution:output()
  return helpers.read_file(self.log) or ""
end

return _M

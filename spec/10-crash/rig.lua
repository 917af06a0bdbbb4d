-- The crash rig of spec/10-crash: 16 pushers talk real HTTP/1.1 (keep-alive,
-- Content-Length and chunked bodies, luasocket) to `berth serve` and journal
-- every request before they send it and every acknowledgement they get; one
-- of them kills every nginx process (kill -9 of the process group) at a
-- moment the round's seed picks (a PATCH half sent, a PATCH sent and not yet
-- answered, a closing PUT sent, ...), and for a power cut shuts the store's
-- filesystem down at once, so that what was not written back to the device
-- is lost. The spec then restarts berth on the same store and checks the
-- journals against what it serves (check_round).
--
--   local rig = require "10-crash.rig"
--   local run = rig.new{ name = "kill", rounds = 12, power = false }
--   run:round(r) ; run.failures
--
-- Pushers run as separate luajit processes: rig.pusher(conf_path).
local ffi = require "ffi"
local bit = require "bit"
local cjson = require "cjson.safe"
local socket = require "socket"

local _M = {}

-- Test code, not lua/berth: the few libc calls the rig needs (kill -9 of a
-- process group in one call, ext4's shutdown ioctl) are declared here.
ffi.cdef [[
int kill(int pid, int sig);
int open(const char *path, int flags, ...);
int ioctl(int fd, unsigned long request, ...);
int close(int fd);
]]

local SIGKILL = 9
-- EXT4_IOC_SHUTDOWN (_IOR('X', 125, __u32)) with EXT4_GOING_FLAGS_NOLOGFLUSH:
-- the filesystem stops at once; neither its journal nor dirty data is
-- written any more (xfstests' godown), as when the power goes.
local EXT4_IOC_SHUTDOWN = 0x8004587D
local NOLOGFLUSH = 2

-- kill_group(pgid): SIGKILL to every process of the group at once (nginx's
-- master is the leader of the group berth serve runs in; its workers are
-- in it too, so none can be respawned).
function _M.kill_group(pgid)
  return ffi.C.kill(-pgid, SIGKILL) == 0
end

-- cut(mountpoint) -> true | nil, err: the power cut (idempotent).
function _M.cut(mnt)
  local fd = ffi.C.open(mnt, 0)
  if fd < 0 then return nil, "open " .. mnt .. ": errno " .. ffi.errno() end
  local flags = ffi.new("uint32_t[1]", NOLOGFLUSH)
  local rc = ffi.C.ioctl(fd, EXT4_IOC_SHUTDOWN, flags)
  local errno = ffi.errno()
  ffi.C.close(fd)
  if rc ~= 0 then return nil, "shutdown " .. mnt .. ": errno " .. errno end
  return true
end

---------------------------------------------------------------------------
-- HTTP/1.1 over one keep-alive connection

local Conn = {}
Conn.__index = Conn

-- connect(url) -> conn (opens lazily, again after the server closed)
function _M.connect(url)
  local host, port = url:match("^http://([^:/]+):(%d+)")
  return setmetatable({ host = host, port = tonumber(port) }, Conn)
end

function Conn:close()
  if self.sock then self.sock:close() end
  self.sock = nil
end

local function send_all(s, data, i, j)
  i = i or 1
  j = j or #data
  while i <= j do
    local last, err, partial = s:send(data, i, j)
    if not last then
      if err ~= "timeout" then return nil, err end
      last = partial
    end
    i = last + 1
  end
  return true
end

local SLICE = 256 * 1024

-- The body: Content-Length or chunked, in pieces of at most SLICE bytes,
-- one of them ending halfway, where half() is called.
local function send_body(s, body, chunked, half)
  local mid = math.floor(#body / 2)
  local i = 1
  while i <= #body do
    local j = math.min(i + SLICE - 1, #body)
    if half and i <= mid and j > mid then j = mid end
    if chunked then
      local ok, err = send_all(s, ("%x\r\n"):format(j - i + 1))
      if not ok then return nil, err end
    end
    local ok, err = send_all(s, body, i, j)
    if not ok then return nil, err end
    if chunked then
      ok, err = send_all(s, "\r\n")
      if not ok then return nil, err end
    end
    if half and j == mid then
      half()
      half = nil
    end
    i = j + 1
  end
  if chunked then return send_all(s, "0\r\n\r\n") end
  return true
end

local function read_body(s, headers, method, status)
  if method == "HEAD" or status == 204 or status == 304 then return "" end
  if (headers["transfer-encoding"] or ""):lower():find("chunked") then
    local parts = {}
    while true do
      local line, err = s:receive("*l")
      if not line then return nil, err end
      local n = tonumber(line:match("^%x+"), 16)
      if not n then return nil, "bad chunk size " .. line end
      if n == 0 then
        repeat
          line, err = s:receive("*l")
          if not line then return nil, err end
        until line == ""
        return table.concat(parts)
      end
      local piece
      piece, err = s:receive(n)
      if not piece then return nil, err end
      parts[#parts + 1] = piece
      s:receive("*l")
    end
  end
  local n = tonumber(headers["content-length"])
  if n then
    if n == 0 then return "" end
    return s:receive(n)
  end
  return s:receive("*a")
end

-- request(method, path, opts) -> { status, headers (lower case), body }
--   | nil, err (a connection that failed or closed: the server is gone)
-- opts: headers = { Name = value }, body = string, chunked = true,
--   half = fn (half the body sent), sent = fn (request sent, before the
--   answer is read)
function Conn:request(method, path, opts)
  opts = opts or {}
  if not self.sock then
    local s = socket.tcp()
    s:settimeout(120)
    local ok, err = s:connect(self.host, self.port)
    if not ok then
      s:close()
      return nil, "connect: " .. tostring(err)
    end
    s:setoption("tcp-nodelay", true)
    self.sock = s
  end
  local s = self.sock
  local lines = { method .. " " .. path .. " HTTP/1.1",
    "Host: " .. self.host .. ":" .. self.port }
  for k, v in pairs(opts.headers or {}) do
    lines[#lines + 1] = k .. ": " .. v
  end
  local body = opts.body or ""
  if opts.chunked then
    lines[#lines + 1] = "Transfer-Encoding: chunked"
  elseif opts.body or method == "PUT" or method == "PATCH"
      or method == "POST" then
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  local ok, err = send_all(s, table.concat(lines, "\r\n") .. "\r\n\r\n")
  if ok and (#body > 0 or opts.chunked) then
    ok, err = send_body(s, body, opts.chunked, opts.half)
  end
  if not ok then
    self:close()
    return nil, "send: " .. tostring(err)
  end
  if opts.sent then opts.sent() end
  local line
  line, err = s:receive("*l")
  local status = line and tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then
    self:close()
    return nil, "status line: " .. tostring(line or err)
  end
  local headers = {}
  while true do
    line, err = s:receive("*l")
    if not line then
      self:close()
      return nil, "headers: " .. tostring(err)
    end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local rbody
  rbody, err = read_body(s, headers, method, status)
  if not rbody then
    self:close()
    return nil, "body: " .. tostring(err)
  end
  if (headers["connection"] or ""):lower() == "close" then self:close() end
  return { status = status, headers = headers, body = rbody }
end

---------------------------------------------------------------------------
-- content

-- bytes(seed, n) -> n pseudo-random bytes (xorshift64*), the same for a seed
function _M.bytes(seed, n)
  local words = math.ceil(n / 8)
  local buf = ffi.new("uint64_t[?]", words)
  local x = ffi.new("uint64_t", seed) * 2654435761ULL + 88172645463325252ULL
  for i = 0, words - 1 do
    x = bit.bxor(x, bit.rshift(x, 12))
    x = bit.bxor(x, bit.lshift(x, 25))
    x = bit.bxor(x, bit.rshift(x, 27))
    buf[i] = x * 2685821657736338717ULL
  end
  return ffi.string(buf, n)
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
_M.read_file = read_file

-- The digest of a file through sha256sum: an oracle independent of berth.
local function sha256_file(path)
  local p = assert(io.popen("sha256sum '" .. path .. "'"))
  local out = p:read("*a")
  p:close()
  return "sha256:" .. assert(out:match("^(%x+)"), "sha256sum " .. path)
end

local MiB = 1024 * 1024
local OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

---------------------------------------------------------------------------
-- a pusher (its own process)

-- Kinds of moment the killing pusher can aim at: { name, weight, first,
-- last occurrence (of that pusher) picked }. Most at PATCHes in flight
-- (from the second on, which may follow an acknowledged one) and closing
-- PUTs, where acknowledged upload bytes are at stake; all within seconds.
_M.MOMENTS = { { "patch_half", 3, 2, 3 }, { "patch_sent", 3, 2, 3 },
  { "put_sent", 4, 1, 2 }, { "mono_half", 1, 1, 2 }, { "mono_sent", 1, 1, 2 },
  { "manifest_sent", 1, 1, 2 } }

-- pusher(conf_path): push images until the server is gone (or a bound is
-- reached), journaling each step to conf.journal, one JSON object a line:
--   post {repo, id, loc, digest, size, file}  an upload session began (202)
--   send_patch {id, start, stop}              before a PATCH of [start, stop]
--   patch {id, offset}                        its 202: offset bytes acked
--   send_put {id, body}                       before the closing PUT
--   blob {repo, digest, size, file, id}       its 201
--   send_manifest {repo, ref, digest, file}   before a manifest PUT
--   manifest {repo, ref, digest}              its 201
--   bad {what, status, body}                  an answer that is no ack
--   kill {moment}                             this pusher killed the server
--   gone {what, err}                          the server is gone: the end
function _M.pusher(conf_path)
  local conf = assert(cjson.decode(assert(read_file(conf_path))))
  math.randomseed(conf.seed)
  local journal = assert(io.open(conf.journal, "ab"))
  local function note(ev)
    ev.t = socket.gettime()
    journal:write(cjson.encode(ev), "\n")
    journal:flush()
  end
  local conn = _M.connect(conf.url)
  local trigger = conf.trigger
  local seen = 0
  -- at(moment): the kill, when this is the moment the round aims at
  local function at(moment)
    if not trigger or trigger.moment ~= moment then return end
    seen = seen + 1
    if seen ~= trigger.nth then return end
    trigger = nil
    if conf.delay_ms > 0 then socket.sleep(conf.delay_ms / 1000) end
    _M.kill_group(conf.pgid)
    if conf.cut then _M.cut(conf.cut) end
    note{ k = "kill", moment = moment }
  end
  local function hook(moment)
    return function() at(moment) end
  end
  -- call(what, method, path, opts, want) -> resp | nil (gone or refused)
  local function call(what, method, path, opts, want)
    local r, err = conn:request(method, path, opts)
    if not r then
      note{ k = "gone", what = what, err = err }
      return nil
    end
    if r.status ~= want then
      note{ k = "bad", what = what, status = r.status, body = r.body:sub(1, 300) }
      return nil
    end
    return r
  end

  local repo = conf.repo
  local base = "/v2/" .. repo
  -- push_blob(data, digest, file) -> true | nil
  local function push_blob(data, digest, file)
    local r = call("POST", "POST", base .. "/blobs/uploads/", nil, 202)
    if not r then return nil end
    local loc, id = r.headers["location"], r.headers["docker-upload-uuid"]
    note{ k = "post", repo = repo, id = id, loc = loc, digest = digest,
      size = #data, file = file }
    local chunked = math.random() < 0.3
    local put_body = ""
    local put_moment
    if #data < MiB or math.random() < 0.4 then
      -- monolithic: the whole body with the closing PUT
      put_body, put_moment = data, "mono"
    else
      -- any size: a chunk that ends inside a filesystem block leaves that
      -- block half written, which a power cut treats differently
      local chunk = math.random(256 * 1024, 5 * MiB)
      local off = 0
      while off < #data do
        local n = math.min(chunk, #data - off)
        note{ k = "send_patch", id = id, start = off, stop = off + n - 1 }
        r = call("PATCH " .. off, "PATCH", loc, {
          headers = { ["Content-Type"] = "application/octet-stream",
            ["Content-Range"] = off .. "-" .. (off + n - 1) },
          body = data:sub(off + 1, off + n), chunked = chunked,
          half = hook("patch_half"), sent = hook("patch_sent") }, 202)
        if not r then return nil end
        off = off + n
        if r.headers["range"] ~= "0-" .. (off - 1) then
          note{ k = "bad", what = "PATCH " .. off, status = r.status,
            body = "Range " .. tostring(r.headers["range"]) }
          return nil
        end
        loc = r.headers["location"]
        note{ k = "patch", id = id, offset = off }
      end
      put_moment = "put"
    end
    note{ k = "send_put", id = id, body = #put_body }
    r = call("PUT", "PUT", loc .. (loc:find("?", 1, true) and "&" or "?")
      .. "digest=" .. digest, {
        headers = { ["Content-Type"] = "application/octet-stream" },
        body = put_body, chunked = chunked and #put_body > 0,
        half = put_moment == "mono" and hook("mono_half") or nil,
        sent = hook(put_moment .. "_sent") }, 201)
    if not r then return nil end
    note{ k = "blob", repo = repo, digest = digest, size = #data, file = file,
      id = id }
    return true
  end

  local function put_manifest(ref, body, digest, file)
    note{ k = "send_manifest", repo = repo, ref = ref, digest = digest,
      file = file }
    local r = call("manifest " .. ref, "PUT", base .. "/manifests/" .. ref, {
      headers = { ["Content-Type"] = OCI_MANIFEST }, body = body,
      sent = hook("manifest_sent") }, 201)
    if not r then return nil end
    note{ k = "manifest", repo = repo, ref = ref, digest = digest }
    return true
  end

  -- blob(seed, size) -> data, digest, file
  local function blob(seed, size)
    local data = _M.bytes(seed, size)
    local file = ("%s/%d"):format(conf.dir, seed)
    write_file(file, data)
    return data, sha256_file(file), file
  end

  local deadline = socket.gettime() + conf.limit
  for image = 1, 1000 do
    if socket.gettime() > deadline then
      note{ k = "gone", what = "time limit", err = "bound reached" }
      break
    end
    local layers = {}
    local function push_layer(seed, size)
      local data, digest, file = blob(seed, size)
      layers[#layers + 1] = { digest = digest, size = size }
      return push_blob(data, digest, file)
    end
    local ok = true
    -- a layer every pusher of the round pushes, to the same digest
    if math.random() < 0.3 then
      ok = push_layer(conf.round_seed, MiB)
    end
    local seed0 = (conf.seed * 1000 + image) * 10
    for l = 1, math.random(3) do
      if not ok then break end
      ok = push_layer(seed0 + l, math.random(MiB, 16 * MiB))
    end
    if not ok then break end
    local cfg = cjson.encode{ architecture = "amd64", os = "linux",
      config = { Env = { "PUSHER=" .. conf.pusher, "IMAGE=" .. image,
        "SEED=" .. conf.seed } } }
    local cfg_file = ("%s/%d"):format(conf.dir, seed0)
    write_file(cfg_file, cfg)
    local cfg_digest = sha256_file(cfg_file)
    if not push_blob(cfg, cfg_digest, cfg_file) then break end
    local ls = {}
    for i, l in ipairs(layers) do
      ls[i] = { mediaType = "application/vnd.oci.image.layer.v1.tar",
        digest = l.digest, size = l.size }
    end
    local m = cjson.encode{ schemaVersion = 2, mediaType = OCI_MANIFEST,
      config = { mediaType = "application/vnd.oci.image.config.v1+json",
        digest = cfg_digest, size = #cfg }, layers = ls }
    local m_file = cfg_file .. ".json"
    write_file(m_file, m)
    local m_digest = sha256_file(m_file)
    -- by digest, or by a tag of its own; then the pusher's moving tag
    local first = math.random() < 0.25 and m_digest
      or ("%s-%d"):format(conf.tag, image)
    if not put_manifest(first, m, m_digest, m_file)
        or not put_manifest(conf.tag, m, m_digest, m_file) then
      break
    end
  end
  journal:close()
  conn:close()
end

---------------------------------------------------------------------------
-- the spec's side: rounds, the power cut, the checker
-- (helpers and the server module are loaded here only: a pusher needs
-- neither)

local Run = {}
Run.__index = Run

local function tools() return require "04-nginx.tools" end

-- sh(cmd) -> output; raises with the output when cmd fails
local function must(cmd)
  return tools().must(cmd)
end

local q = function(s) return tools().q(s) end

-- A fresh ext4 on a loop device, mounted as the issue's method wants:
-- commit=300 (no journal commit but the ones fsync asks for) and
-- noauto_da_alloc (no implicit flush on rename or truncate), so that only
-- what was fsynced, or written back by the kernel, reaches the device.
local MOUNT_OPTS = "commit=300,noauto_da_alloc"

local function attach(img, mnt)
  local dev = must("losetup -f --show " .. q(img)):match("(/dev/%S+)")
  assert(dev, "losetup gave no device")
  must(("mount -t ext4 -o %s %s %s"):format(MOUNT_OPTS, dev, q(mnt)))
  return dev
end

local function detach(fs)
  if fs.dev then
    tools().sh("umount " .. q(fs.mnt) .. " || umount -l " .. q(fs.mnt))
    tools().sh("losetup -d " .. fs.dev)
    fs.dev = nil
  end
end

-- Wait until the loop device has no request in flight: what was sent to
-- it before the cut has reached its backing file.
local function settle(dev)
  local name = dev:match("/dev/(%S+)")
  for _ = 1, 1000 do
    local s = read_file("/sys/block/" .. name .. "/inflight") or ""
    local r, w = s:match("(%d+)%s+(%d+)")
    if r == "0" and w == "0" then return end
    socket.sleep(0.01)
  end
  error(dev .. " still has requests in flight")
end

-- power_unavailable() -> nil | why the power cut cannot run here (it needs
-- root for loop devices, mount and ext4's shutdown ioctl)
function _M.power_unavailable()
  local out, ok = tools().sh("id -u")
  if not ok or out:match("%d+") ~= "0" then
    return "not root (loop devices, mount); CI runs it as root"
  end
  for _, cmd in ipairs({ "losetup", "mkfs.ext4", "e2fsck", "mount" }) do
    if not select(2, tools().sh("command -v " .. cmd)) then
      return cmd .. " missing (bin/setup --test installs it)"
    end
  end
  if not read_file("/sys/module/loop/parameters/max_loop")
      and not tools().exists("/dev/loop-control") then
    return "no loop devices"
  end
  return nil
end

-- new{ rounds = n, power = bool, pushers = n } -> run (the store made; the
-- first round starts the server)
function _M.new(opts)
  local helpers = require "helpers"
  local run = setmetatable({ rounds = opts.rounds, pushers = opts.pushers or 16,
    failures = {}, failed_rounds = {}, seen = {},
    seed = tonumber(os.getenv("BERTH_CRASH_SEED")) or os.time() % 1000000,
    blobs = {}, manifests = {}, bodies = {}, tags = {}, repos = {} }, Run)
  run.work = helpers.tmpdir()
  if opts.power then
    local fs = { img = run.work .. "/disk0.img", mnt = run.work .. "/mnt",
      n = 0 }
    run.fs = fs
    must("mkdir -p " .. q(fs.mnt))
    must(("truncate -s 16G %s && mkfs.ext4 -q -F %s"):format(q(fs.img),
      q(fs.img)))
    fs.dev = attach(fs.img, fs.mnt)
    -- beside lost+found (berth serve takes a new store in an empty
    -- directory only); its log beside it, on the same filesystem
    run.root = fs.mnt .. "/store"
    must("mkdir -p " .. q(run.root))
  else
    run.root = run.work .. "/store"
    must("mkdir -p " .. q(run.root))
  end
  return run
end

-- close(): stop the server, unmount and detach the loop device
function Run:close()
  if self.srv then
    self.srv:stop()
    self.srv = nil
  end
  if self.fs then detach(self.fs) end
end

function Run:start()
  self.srv = require("04-nginx.server").start{ root = self.root, workers = 2 }
end

-- The power cut: the filesystem stopped (the killing pusher did it right
-- after its kill; again here in case it did not), the device's in-flight
-- writes settled, and the image copied as the device holds it: the loop
-- device writes to its backing file, so the backing file is the device,
-- and the store's dirty page cache, which never reached it, is not in the
-- copy. Then e2fsck -fy on the copy (replaying its journal), which is
-- mounted where the store was.
function Run:power_cut()
  local fs = self.fs
  assert(_M.cut(fs.mnt))
  settle(fs.dev)
  fs.n = fs.n + 1
  local copy = ("%s/disk%d.img"):format(self.work, fs.n)
  must(("cp --sparse=always %s %s"):format(q(fs.img), q(copy)))
  detach(fs)
  os.remove(fs.img)
  fs.img = copy
  local out, _, code = tools().sh("e2fsck -fy " .. q(copy))
  -- 0: clean, 1: errors fixed; more is a filesystem e2fsck cannot mend
  if code > 1 then
    error(("e2fsck -fy exited %d:\n%s"):format(code, out))
  end
  fs.dev = attach(fs.img, fs.mnt)
  return code
end

local function pick_moment()
  local total = 0
  for _, m in ipairs(_M.MOMENTS) do total = total + m[2] end
  local x = math.random(total)
  for _, m in ipairs(_M.MOMENTS) do
    x = x - m[2]
    if x <= 0 then return m[1], math.random(m[3], m[4]) end
  end
end

-- round(r): pushes, the kill (and cut) at the moment the round's seed
-- picks, a restart on the same store, and the check; failures go to
-- self.failures, each naming the round and its seed.
function Run:round(r)
  local seed = self.seed * 100 + r
  math.randomseed(seed)
  if not self.srv then self:start() end
  local pgid = assert(self.srv:pid(), "no nginx pid")
  local victims = { pgid }
  for _, p in ipairs(tools().children(pgid)) do victims[#victims + 1] = p end
  local dir = ("%s/r%d"):format(self.work, r)
  local killer = math.random(self.pushers)
  local moment, nth = pick_moment()
  -- after the moment: at once, or while the server works on the request
  -- (a PATCH's body: while it writes it, and other requests fsync)
  local delay = ({ 0, math.random(1, 10), math.random(1, 10),
    math.random(10, moment:find("^patch") and 80 or 40) })[math.random(4)]
  local cmds = {}
  for p = 1, self.pushers do
    local pdir = ("%s/p%02d"):format(dir, p)
    must("mkdir -p " .. q(pdir))
    local repo = ("crash/r%d"):format(p % 4)
    self.repos[repo] = true
    local conf = pdir .. ".json"
    local f = assert(io.open(conf, "wb"))
    f:write(cjson.encode{ url = self.srv.url, journal = pdir .. ".jsonl",
      dir = pdir, seed = seed * 100 + p, round_seed = seed, pusher = p,
      repo = repo, tag = ("p%02d-r%d"):format(p, r), pgid = pgid,
      trigger = p == killer and { moment = moment, nth = nth } or nil,
      delay_ms = delay, cut = self.fs and self.fs.mnt or nil, limit = 60 })
    f:close()
    cmds[#cmds + 1] = ("RIG_CONF=%s luajit -e %s > %s 2>&1 < /dev/null & "
      .. "echo $!"):format(q(conf), q('package.path = "spec/?.lua;" .. '
      .. 'package.path; require("10-crash.rig").pusher(os.getenv("RIG_CONF"))'),
      q(pdir .. ".out"))
  end
  local pushers = {}
  for pid in must(table.concat(cmds, "\n")):gmatch("%d+") do
    pushers[#pushers + 1] = tonumber(pid)
  end
  local t0 = socket.gettime()
  local fallback = false
  while tools().alive(pgid) do
    if socket.gettime() - t0 > 20 then
      -- the moment never came (the pushers stopped early): kill now
      fallback = true
      _M.kill_group(pgid)
      break
    end
    socket.sleep(0.005)
  end
  local killed_after = socket.gettime() - t0
  assert(tools().wait_gone(victims, 10), "nginx survived kill -9")
  if not tools().wait_gone(pushers, 30) then
    tools().kill(pushers, "KILL")
    self:fail(r, "pushers did not stop once the server was gone")
  end
  self.srv = nil
  local fsck_code
  local t1 = socket.gettime()
  if self.fs then fsck_code = self:power_cut() end
  self:start()
  local t2 = socket.gettime()
  local stats = self:check(r, dir)
  local t3 = socket.gettime()
  local spool = #tools().find(self.root .. "/.berth-spool", "-type f")
  print(("round %2d seed %d: %s %s#%d +%dms by pusher %d after %.2fs; acked "
    .. "%d blobs, %d manifests; %d sessions open, %d resumed%s; spool %d "
    .. "files%s; restart %.1fs, check %.1fs"):format(r, seed,
    self.fs and "cut" or "kill",
    fallback and "(fallback) " .. moment or moment, nth, delay, killer,
    killed_after, stats.blobs, stats.manifests, stats.sessions,
    stats.resumed, stats.failed > 0 and (", " .. stats.failed .. " NEW FAILURES")
    or "", spool, fsck_code and (", e2fsck " .. fsck_code) or "", t2 - t1,
    t3 - t2))
  require("helpers").rmrf(dir)
end

-- fail(r, msg): a failure of round r; one seen in an earlier round (what
-- a crash left and the restart did not mend) is counted there.
function Run:fail(r, msg)
  local seen = self.seen[msg]
  if seen then
    seen.last = r
    return
  end
  seen = { msg = msg, first = r, last = r }
  self.seen[msg] = seen
  self.failures[#self.failures + 1] = seen
  self.failed_rounds[r] = true
end

-- report() -> text naming every failure and how to replay the choices
function Run:report()
  local rounds = {}
  for r in pairs(self.failed_rounds) do rounds[#rounds + 1] = r end
  table.sort(rounds)
  local lines = { ("%d failures, new in %d of %d rounds (%s); "
    .. "BERTH_CRASH_SEED=%d replays these choices"):format(#self.failures,
    #rounds, self.rounds, table.concat(rounds, ", "), self.seed) }
  for i, f in ipairs(self.failures) do
    if i > 60 then
      lines[#lines + 1] = "..."
      break
    end
    lines[#lines + 1] = ("round %d (seed %d)%s: %s"):format(f.first,
      self.seed * 100 + f.first, f.last > f.first
      and (", still in round " .. f.last) or "", f.msg)
  end
  return table.concat(lines, "\n")
end

local function sorted(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- "repo@digest" -> repo, digest
local function split(key)
  return key:match("^(.-)@(.+)$")
end

-- The journals of round r -> sessions still open, and the state (acked
-- blobs, manifests, tags) brought up to date.
function Run:read_journals(r, dir)
  local sessions, order = {}, {}
  local stats = { blobs = 0, manifests = 0 }
  for p = 1, self.pushers do
    local path = ("%s/p%02d.jsonl"):format(dir, p)
    for line in (read_file(path) or ""):gmatch("[^\n]+") do
      local ev = cjson.decode(line)
      if not ev then
        self:fail(r, ("pusher %d journal line %q"):format(p, line))
      elseif ev.k == "post" then
        ev.acked = 0
        sessions[ev.id] = ev
        order[#order + 1] = ev.id
      elseif ev.k == "patch" then
        sessions[ev.id].acked = ev.offset
      elseif ev.k == "send_put" then
        sessions[ev.id].put_sent = true
      elseif ev.k == "blob" then
        sessions[ev.id].done = true
        self.blobs[ev.repo .. "@" .. ev.digest] = { size = ev.size,
          file = ev.file, round = r }
        stats.blobs = stats.blobs + 1
      elseif ev.k == "send_manifest" then
        self.bodies[ev.digest] = read_file(ev.file)
        if not ev.ref:find(":", 1, true) then
          local key = ev.repo .. ":" .. ev.ref
          local t = self.tags[key] or { inflight = {} }
          self.tags[key] = t
          t.inflight[#t.inflight + 1] = ev.digest
        end
      elseif ev.k == "manifest" then
        self.manifests[ev.repo .. "@" .. ev.digest] = true
        stats.manifests = stats.manifests + 1
        if not ev.ref:find(":", 1, true) then
          self.tags[ev.repo .. ":" .. ev.ref] = { last = ev.digest,
            inflight = {} }
        end
      elseif ev.k == "bad" then
        self:fail(r, ("pusher %d: %s answered %d: %s"):format(p, ev.what,
          ev.status, ev.body))
      end
    end
  end
  local open = {}
  for _, id in ipairs(order) do
    if not sessions[id].done then open[#open + 1] = sessions[id] end
  end
  return open, stats
end

-- read(c, method, path, opts) -> resp: a request that reads, sent again
-- on a new connection when the one it reused was closed under it
local function read(c, method, path, opts)
  local resp, err = c:request(method, path, opts)
  if not resp then
    c:close()
    resp, err = c:request(method, path, opts)
  end
  return assert(resp, err)
end

local function get_manifest(c, repo, ref, method)
  return read(c, method or "GET", "/v2/" .. repo .. "/manifests/" .. ref,
    { headers = { Accept = OCI_MANIFEST } })
end

-- Resume an upload session the crash interrupted: from where its status
-- says it stands, with the rest of the bytes, then the closing PUT. It
-- must stand at least where the last acknowledged PATCH left it.
function Run:resume(r, c, s)
  local what = ("upload %s of %s in %s (%d of %d bytes acked%s)"):format(
    s.id, s.digest, s.repo, s.acked, s.size,
    s.put_sent and ", closing PUT sent" or "")
  local st = read(c, "GET", s.loc)
  if s.put_sent then
    -- the interrupted commit may have completed: then the blob is in the
    -- repository (and what the session still says does not matter)
    local h = read(c, "HEAD", "/v2/" .. s.repo .. "/blobs/" .. s.digest)
    if h.status == 200 and tonumber(h.headers["content-length"])
        == s.size then
      self.blobs[s.repo .. "@" .. s.digest] = { size = s.size, file = s.file,
        round = r }
      return true
    end
    what = what .. ", blob HEAD " .. h.status
  end
  if st.status == 404 and s.put_sent then
    return self:fail(r, what .. ": session gone (404)")
  end
  if st.status ~= 204 then
    return self:fail(r, ("%s: session lost: status %d %s"):format(what,
      st.status, st.body:sub(1, 200)))
  end
  local last = tonumber((st.headers["range"] or ""):match("^0%-(%d+)$"))
  if not last then
    return self:fail(r, what .. ": status Range " .. tostring(
      st.headers["range"]))
  end
  -- "0-0" is 0 bytes or 1; no acknowledged chunk ends at 1
  local have = (last == 0 and s.acked <= 1) and 0 or last + 1
  if have < s.acked then
    return self:fail(r, ("%s: status Range %s, fewer bytes than acked"):format(
      what, st.headers["range"]))
  elseif have > s.size then
    return self:fail(r, ("%s: status Range %s, more bytes than the blob")
      :format(what, st.headers["range"]))
  end
  local data = assert(read_file(s.file))
  local loc = st.headers["location"] or s.loc
  if have < s.size then
    local p = c:request("PATCH", loc, { body = data:sub(have + 1),
      headers = { ["Content-Type"] = "application/octet-stream",
        ["Content-Range"] = have .. "-" .. (s.size - 1) } })
    if not p or p.status ~= 202 then
      return self:fail(r, ("%s: resuming at %d: PATCH answered %s %s"):format(
        what, have, tostring(p and p.status), p and p.body:sub(1, 200) or ""))
    end
    loc = p.headers["location"] or loc
  end
  local put = c:request("PUT", loc .. (loc:find("?", 1, true) and "&" or "?")
    .. "digest=" .. s.digest)
  if not put or put.status ~= 201 then
    return self:fail(r, ("%s: resumed at %d (status Range %s), closing PUT "
      .. "answered %s %s")
      :format(what, have, st.headers["range"], tostring(put and put.status),
        put and put.body:sub(1, 200) or ""))
  end
  self.blobs[s.repo .. "@" .. s.digest] = { size = s.size, file = s.file,
    round = r }
  return true
end

-- check(r, dir) -> stats; every failure through self:fail
function Run:check(r, dir)
  local before = #self.failures
  local open, stats = self:read_journals(r, dir)
  local c = _M.connect(self.srv.url)
  -- every blob acknowledged 201: HEAD-able, the right size; this round's
  -- also read whole (earlier rounds' were, and blob data never changes)
  for _, key in ipairs(sorted(self.blobs)) do
    local b = self.blobs[key]
    local repo, digest = split(key)
    local path = "/v2/" .. repo .. "/blobs/" .. digest
    local h = read(c, "HEAD", path)
    if h.status ~= 200 then
      self:fail(r, ("blob %s acked 201 in round %d: HEAD %d"):format(key,
        b.round, h.status))
    elseif tonumber(h.headers["content-length"]) ~= b.size then
      self:fail(r, ("blob %s: HEAD says %s bytes, acked %d"):format(key,
        tostring(h.headers["content-length"]), b.size))
    elseif b.round == r then
      local g = read(c, "GET", path)
      if g.status ~= 200 or g.body ~= read_file(b.file) then
        self:fail(r, ("blob %s: GET %d, %d bytes, not what was pushed"):format(
          key, g.status, #g.body))
      end
    end
  end
  -- every manifest acknowledged 201, byte for byte by digest
  for _, key in ipairs(sorted(self.manifests)) do
    local repo, digest = split(key)
    local g = get_manifest(c, repo, digest)
    if g.status ~= 200 or g.body ~= self.bodies[digest] then
      self:fail(r, ("manifest %s acked 201: GET by digest %d"):format(key,
        g.status))
    end
  end
  -- every tag: the manifest of its last acknowledged put, or of a put in
  -- flight after it
  for _, key in ipairs(sorted(self.tags)) do
    local t = self.tags[key]
    local repo, tag = key:match("^(.-):([^:]+)$")
    local g = get_manifest(c, repo, tag)
    local served
    if g.status == 200 then
      for _, d in ipairs(t.inflight) do
        if g.body == self.bodies[d] then served = d end
      end
      if t.last and g.body == self.bodies[t.last] then served = t.last end
    end
    if served or (g.status == 404 and not t.last) then
      self.tags[key] = { last = served, inflight = {} }
    else
      self:fail(r, ("tag %s: acked %s, in flight {%s}: GET %d %s"):format(key,
        tostring(t.last), table.concat(t.inflight, ", "), g.status,
        g.status == 200 and require("helpers").sha256sum(g.body) or g.body:sub(1, 200)))
    end
  end
  -- every interrupted upload session resumes (or its commit completed)
  stats.sessions, stats.resumed = #open, 0
  for _, s in ipairs(open) do
    if self:resume(r, c, s) then stats.resumed = stats.resumed + 1 end
  end
  -- tags/list lists no tag that answers 404
  for _, repo in ipairs(sorted(self.repos)) do
    local l = read(c, "GET", "/v2/" .. repo .. "/tags/list")
    local list = l.status == 200 and cjson.decode(l.body)
    for _, tag in ipairs(list and list.tags or {}) do
      local h = get_manifest(c, repo, tag, "HEAD")
      if h.status == 404 then
        self:fail(r, ("tags/list of %s lists %s, which answers 404"):format(
          repo, tag))
      end
    end
  end
  c:close()
  -- fsck: no damage (blobs re-hashed in the last round); what it lists as
  -- leftovers of a crash (report.leftovers) is not damage: gc removes it
  -- after its grace
  local store = assert(require("berth").open{ root = self.root })
  local report, err = require("berth.fsck").run(store,
    { verify = r == self.rounds })
  store:close()
  if not report then
    self:fail(r, "fsck: " .. tostring(err))
  else
    for _, p in ipairs(report.problems) do
      self:fail(r, ("fsck: %s: %s"):format(p.kind, p.message))
    end
  end
  stats.failed = #self.failures - before
  return stats
end

return _M

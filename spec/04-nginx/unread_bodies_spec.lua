-- Bodies berth will refuse are refused before they are read: a request to
-- a route or method berth does not serve, to the spool location from
-- outside, or without credentials gets its answer while the client is
-- still sending, and leaves no spool file, no disk space and no open file
-- behind. The client streams a 100 MiB chunked body piece by piece and
-- stops when the answer comes, as curl does.
local helpers = require "helpers"
local server = require "04-nginx.server"
local tools = require "04-nginx.tools"
local socket = require "socket"

local BODY = 100 * 1024 * 1024
local PIECE = 64 * 1024
-- What the kernel's socket buffers on both sides can hold, and a little:
-- sent beyond this, berth must have read it.
local IN_FLIGHT = 16 * 1024 * 1024

-- send(port, method, path, opts?) -> status, body bytes sent before the
-- answer. A chunked body, or with opts.length a Content-Length body of
-- that many bytes; opts.headers = { "Name: value" }.
local function send(port, method, path, opts)
  opts = opts or {}
  local c = assert(socket.tcp())
  assert(c:connect("127.0.0.1", port))
  c:settimeout(0.05)
  local length = opts.length
  local head = { ("%s %s HTTP/1.1"):format(method, path), "Host: 127.0.0.1",
    length and "Content-Length: " .. length or "Transfer-Encoding: chunked",
    "Content-Type: application/octet-stream" }
  for _, h in ipairs(opts.headers or {}) do head[#head + 1] = h end
  local piece = ("z"):rep(PIECE)
  local total = length or BODY
  if not length then
    piece = ("%x\r\n"):format(PIECE) .. piece .. "\r\n"
  end
  local pending, sent, line = table.concat(head, "\r\n") .. "\r\n\r\n", 0
  local last = false
  while true do
    local readable = socket.select({ c }, nil, 0)
    if #readable > 0 then
      line = c:receive("*l")
      break
    end
    if pending == "" then
      if last then -- all sent: the answer comes after the whole body
        c:settimeout(60)
        line = c:receive("*l")
        break
      elseif sent >= total then
        pending, last = length and "" or "0\r\n\r\n", true
      else
        pending, sent = piece, sent + PIECE
      end
    end
    local n, err, partial = c:send(pending)
    pending = pending:sub((n or partial or 0) + 1)
    if err and err ~= "timeout" then
      c:settimeout(5)
      line = c:receive("*l")
      break
    end
  end
  c:close()
  local status = line and tonumber(line:match("^HTTP/1%.1 (%d%d%d)"))
  return status, sent
end

-- Open descriptors of the server's workers that name deleted files or the
-- spool directory, and the bytes of the files in it.
local function held(srv)
  local fds = 0
  for _, pid in ipairs(tools.children(srv:pid())) do
    local out = tools.stdout("ls -l /proc/" .. pid .. "/fd 2>/dev/null")
    for line in out:gmatch("[^\n]+") do
      if line:find("(deleted)", 1, true) or line:find(".berth-spool", 1,
          true) then
        fds = fds + 1
      end
    end
  end
  local bytes = 0
  for n in tools.stdout("find " .. tools.q(srv.root .. "/.berth-spool")
      .. " -type f -printf '%s\\n' 2>/dev/null"):gmatch("%d+") do
    bytes = bytes + tonumber(n)
  end
  return fds, bytes
end

-- Whether the server is back to holding fds0 descriptors and bytes0 spooled
-- bytes. berth lets go before it answers; nginx closes its own descriptor
-- of a spool file just after the answer is written, so this waits for that
-- (bounded: a handle left to the collector stays for ever).
local function back_to(srv, fds0, bytes0)
  local fds, bytes
  for _ = 1, 100 do
    fds, bytes = held(srv)
    if fds <= fds0 and bytes <= bytes0 then return true end
    socket.sleep(0.1)
  end
  return false, ("%d descriptors held (%d before), %d bytes spooled (%d"
    .. " before)"):format(fds, fds0, bytes, bytes0)
end

-- Access control with the fixture's users.
local HTPASSWD = ([[
auth = { mode = "htpasswd", realm = "berth test", htpasswd = %q,
  max_failures = 1000 }
]]):format(helpers.cwd() .. "/spec/fixtures/auth/htpasswd")

-- Routes and methods berth does not serve, and the spool location from
-- outside.
local UNSERVED = {
  { "PUT", "/v2/alice/app/blobs/uploads/" },
  { "POST", "/v2/" },
  { "POST", "/nothing" },
  { "PATCH", "/v2/alice/app/tags/list" },
  { "POST", "/_berth_spool/v2/alice/app/blobs/uploads/" },
  { "POST", "/_berth_spoolX" },
}

local function refuses_all(srv, requests, allowed)
  local fds0, bytes0 = held(srv)
  for i = 1, 20 do
    local r = requests[(i - 1) % #requests + 1]
    local status, sent = send(srv.port, r[1], r[2])
    assert.is_truthy(allowed[status], r[1] .. " " .. r[2] .. ": "
      .. tostring(status))
    assert.is_true(sent < IN_FLIGHT, ("%s %s: %d MiB sent before the"
      .. " answer"):format(r[1], r[2], math.floor(sent / 2^20)))
  end
  assert(back_to(srv, fds0, bytes0))
end

describe("unread bodies, without access control", function()
  it("are refused before they are read, and hold nothing", function()
    local srv = server.start{}
    finally(function() srv:stop() end)
    refuses_all(srv, UNSERVED, { [404] = true, [405] = true })
  end)
end)

describe("spooled bodies", function()
  it("are let go of as soon as they are refused", function()
    local srv = server.start{}
    finally(function() srv:stop() end)
    local blob = tools.scratch() .. "/spooled-blob"
    tools.random_file(blob, 4 * 1024 * 1024)
    local fds0 = held(srv)
    local wrong = "sha256:" .. ("0"):rep(64)
    for _ = 1, 5 do
      -- read whole and spooled (chunked), then refused: wrong digest
      local r = tools.curl("POST", srv.url .. "/v2/spool/test/blobs/uploads/"
        .. "?digest=" .. wrong, { file = blob,
          headers = { "Transfer-Encoding: chunked" } })
      assert.equal(400, r.status, r.body)
      assert(back_to(srv, fds0, 0))
    end
  end)
end)

describe("unread bodies, with access control", function()
  it("are refused before they are read, and hold nothing", function()
    local srv = server.configured(finally, HTPASSWD)
    -- and a push without credentials
    local requests = { { "POST", "/v2/alice/app/blobs/uploads/?digest="
      .. "sha256:" .. ("0"):rep(64) } }
    for _, r in ipairs(UNSERVED) do requests[#requests + 1] = r end
    refuses_all(srv, requests, { [401] = true, [404] = true, [405] = true })
  end)
end)

describe("pushes the policy refuses", function()
  it("are refused before their bodies are read", function()
    local srv = server.configured(finally, HTPASSWD .. [[
plugins = { { name = "repo-permissions", config = {
  owner_namespaces = true, public = { "public/**" } } } }
]])
    local alice = { "Authorization: "
      .. require("09-auth.support").basic("alice", "alice-secret") }
    local fds0, bytes0 = held(srv)
    local digest = "sha256:" .. ("0"):rep(64)
    -- alice pushes only under alice/
    for _, r in ipairs({
      { "POST", "/v2/bob/app/blobs/uploads/?digest=" .. digest },
      { "POST", "/v2/public/base/blobs/uploads/?digest=" .. digest },
      { "PUT", "/v2/bob/app/manifests/v1" },
      { "POST", "/v2/bob/app/blobs/uploads/?digest=" .. digest,
        length = 200000000 },
      { "PUT", "/v2/bob/app/manifests/v1", length = 3 * 1024 * 1024 },
    }) do
      local status, sent = send(srv.port, r[1], r[2],
        { headers = alice, length = r.length })
      assert.equal(403, status, r[1] .. " " .. r[2])
      assert.is_true(sent < IN_FLIGHT, ("%s %s: %d MiB sent before the"
        .. " answer"):format(r[1], r[2], math.floor(sent / 2^20)))
    end
    assert(back_to(srv, fds0, bytes0))
    -- and what it may push goes through
    local data = "alice's own layer\n"
    local r = tools.curl("POST", srv.url .. "/v2/alice/app/blobs/uploads/"
      .. "?digest=" .. helpers.sha256sum(data), { data = data,
        headers = alice })
    assert.equal(201, r.status, r.body)
  end)
end)

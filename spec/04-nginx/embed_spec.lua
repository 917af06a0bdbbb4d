-- The README's way to serve berth from an operator's own nginx: the
-- http_snippet and server_snippet of berth.serve pasted into a hand-written
-- nginx.conf beside an unrelated location. Plain nginx, not `berth serve`.
local helpers = require "helpers"
local tools = require "04-nginx.tools"
local serve = require "berth.serve"

local q = tools.q

local function indent(text, pad)
  return pad .. text:gsub("\n", "\n" .. pad)
end

-- An nginx started from a hand-written nginx.conf around the snippets:
-- { run, port, base, conf, pid(), stop(), error_lines() }; raises (after
-- stopping it) when it does not answer /hello.
local Nginx = {}
Nginx.__index = Nginx

function Nginx:pid()
  local s = helpers.read_file(self.run .. "/nginx.pid")
  return s and tonumber(s:match("%d+"))
end

function Nginx:stop()
  local pid = self.master or self:pid()
  if pid then
    tools.kill({ pid }, "QUIT")
    if not tools.wait_gone({ pid }, 5) then
      tools.kill({ pid }, "KILL")
      tools.kill(tools.children(pid), "KILL")
    end
  end
end

function Nginx:error_lines()
  local lines = {}
  for line in (helpers.read_file(self.run .. "/error.log") or "")
      :gmatch("[^\n]+") do
    if line:find("%[error%]") or line:find("%[crit%]")
        or line:find("%[alert%]") or line:find("%[emerg%]") then
      lines[#lines + 1] = line
    end
  end
  return lines
end

local function start_nginx(store)
  local run = helpers.tmpdir()
  local port = tools.free_port()
  local home = tools.must("pwd"):match("[^\n]+")
  local is_root = tools.must("id -u"):match("%d+") == "0"
  local conf = table.concat({
    "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
    "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
    is_root and "user root root;" or "",
    "worker_processes 2;",
    "pid " .. run .. "/nginx.pid;",
    "error_log " .. run .. "/error.log notice;",
    "events { worker_connections 256; }",
    "http {",
    "  access_log " .. run .. "/access.log;",
    "  client_body_temp_path " .. run .. "/body;",
    "  proxy_temp_path " .. run .. "/proxy;",
    "  fastcgi_temp_path " .. run .. "/fastcgi;",
    "  uwsgi_temp_path " .. run .. "/uwsgi;",
    "  scgi_temp_path " .. run .. "/scgi;",
    indent(serve.http_snippet{ home = home, root = store, delete = true },
      "  "),
    "  server {",
    "    listen 127.0.0.1:" .. port .. ";",
    "    location /hello { return 200 \"hi\\n\"; }",
    indent(serve.server_snippet{ root = store }, "    "),
    "  }",
    "}",
    "",
  }, "\n")
  helpers.write_file(run .. "/nginx.conf", conf)
  os.execute(tools.NO_SANITIZER .. "setsid nginx -p " .. q(run) .. " -c "
    .. q(run .. "/nginx.conf") .. " -g 'daemon off;' > " .. q(run .. "/stderr")
    .. " 2>&1 < /dev/null &")
  local n = setmetatable({ run = run, port = port, conf = conf,
    base = "http://127.0.0.1:" .. port }, Nginx)
  local up
  for _ = 1, 50 do
    up = tools.wait_http(n.base .. "/hello", 200, 1)
    if up or (helpers.read_file(run .. "/stderr") or ""):find("[emerg]", 1,
        true) then
      break
    end
  end
  n.master = n:pid()
  if not up then
    n:stop()
    error("nginx did not start:\n" .. (helpers.read_file(run .. "/stderr")
      or "") .. (helpers.read_file(run .. "/error.log") or "") .. conf, 2)
  end
  return n
end

describe("berth embedded in an operator's nginx", function()
  local ngx_, store, port, base, work

  setup(function()
    store = helpers.tmpdir()
    work = helpers.tmpdir()
    -- berth serve makes <root>/.berth-tmp, where server_snippet spools
    -- request bodies; an operator has to (see the next describe)
    tools.must("mkdir -p " .. q(store .. "/.berth-tmp"))
    ngx_ = start_nginx(store)
    port, base = ngx_.port, ngx_.base
  end)

  teardown(function()
    if ngx_ then ngx_:stop() end
  end)

  it("keeps the operator's own location", function()
    local r = tools.curl("GET", base .. "/hello")
    assert.equal(200, r.status)
    assert.equal("hi\n", r.body)
  end)

  it("answers /v2/", function()
    local r = tools.curl("GET", base .. "/v2/")
    assert.equal(200, r.status)
    assert.equal("registry/2.0", r.headers["docker-distribution-api-version"])
  end)

  it("takes a push and a pull with skopeo", function()
    local layout = work .. "/L"
    local dgst = tools.build_image(layout, "v1")
    local ref = "docker://127.0.0.1:" .. port .. "/embed/img:v1"
    local dfile = work .. "/digest"
    tools.must(tools.SKOPEO .. " copy --dest-tls-verify=false --digestfile "
      .. q(dfile) .. " " .. q("oci:" .. layout .. ":v1") .. " " .. q(ref))
    assert.equal(dgst, helpers.read_file(dfile))
    assert.equal(tools.layout_blob(layout, dgst), tools.inspect_raw(ref))
    local out = work .. "/OUT"
    tools.must(tools.SKOPEO .. " copy --src-tls-verify=false " .. q(ref) .. " "
      .. q("oci:" .. out .. ":v1"))
    assert.equal(dgst, tools.layout_ref(out, "v1").digest)
    for _, d in ipairs(tools.manifest_blobs(tools.layout_blob(out, dgst))) do
      assert.equal(d, tools.sha256_file(tools.blob_path(out, d)))
      assert.equal(tools.layout_blob(layout, d), tools.layout_blob(out, d))
    end
    -- in the store the snippets were given
    assert.is_true(tools.exists(store .. "/docker/registry/v2/repositories/"
      .. "embed/img/_manifests/revisions/sha256/" .. dgst:sub(8) .. "/link"))
    -- deletes are on, as http_snippet said
    local r = tools.curl("DELETE", base .. "/v2/embed/img/manifests/" .. dgst)
    assert.equal(202, r.status)
    r = tools.curl("GET", base .. "/v2/embed/img/manifests/v1")
    assert.equal(404, r.status)
    assert.equal("MANIFEST_UNKNOWN", tools.json(r.body).errors[1].code)
  end)

  it("logged no errors", function()
    assert.same({}, ngx_:error_lines())
  end)
end)

describe("the embedding snippets", function()
  it("start nginx on a store directory that only exists", function()
    -- what the README asks of an operator: the two snippets, a store
    -- directory and a worker user that can write it
    local store = helpers.tmpdir()
    local ok, n = pcall(start_nginx, store)
    if ok then n:stop() end
    assert.is_true(ok, not ok and n or nil)
    assert.same({}, n:error_lines())
  end)
end)

-- The root an operator writes may end in "/" or hold "//" and "/./": blob
-- GETs (nginx sends the file from the internal location) still find it.
describe("a store root that is not in its canonical form", function()
  for _, form in ipairs({ "%s/", "%s//", "%s/./", "%s/../%s/" }) do
    it("serves blobs from a root written " .. form:format("/path", "path"),
        function()
      local dir = helpers.tmpdir()
      local store = form:format(dir, dir:match("[^/]+$"))
      local n = start_nginx(store)
      finally(function() n:stop() end)
      local data = ("blob bytes\n"):rep(1000)
      local file = tools.scratch() .. "/blob" .. tools.counter()
      helpers.write_file(file, data)
      local r, dgst = tools.push_blob(n.base, "slash/img", file)
      assert.equal(201, r.status, r.body)
      local url = n.base .. "/v2/slash/img/blobs/" .. dgst
      r = tools.curl("GET", url)
      assert.equal(200, r.status)
      assert.equal(data, r.body)
      assert.equal(dgst, r.headers["docker-content-digest"])
      r = tools.curl("GET", url, { headers = { "Range: bytes=5-9" } })
      assert.equal(206, r.status)
      assert.equal(data:sub(6, 10), r.body)
      assert.same({}, n:error_lines())
    end)
  end
end)

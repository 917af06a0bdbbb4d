-- Acceptance: `bin/berth repl` on a real terminal, driven through tmux
-- (Debian packages tmux, lua-readline): TAB completes a repository name and
-- a tag, values and manifests are pretty-printed, a failure shows as a red
-- error, Ctrl-C cancels, history is saved, Ctrl-D leaves with status 0.
local helpers = require "helpers"
local support = require "08-repl.support"

local ELLIPSIS = "\226\128\166"

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function have(cmd)
  local r = os.execute("command -v " .. cmd .. " >/dev/null 2>&1")
  return r == 0 or r == true
end

local function abspath(p)
  if p:sub(1, 1) == "/" then
    return p
  end
  local pwd = io.popen("pwd"):read("*l")
  return pwd .. "/" .. p
end

-- A tmux server of our own (its socket in dir, no user configuration).
local function new_tmux(dir)
  local t = {}
  -- LD_PRELOAD (sanitizer builds) is for the REPL, not for tmux itself.
  local base = "env -u LD_PRELOAD tmux -u -f /dev/null -S "
    .. sh_quote(dir .. "/tmux.sock") .. " "
  function t.run(args)
    local p = io.popen(base .. args .. " 2>&1")
    local out = p:read("*a")
    p:close()
    return out
  end
  function t.keys(...)
    for i = 1, select("#", ...) do
      local k = select(i, ...)
      if type(k) == "table" then -- a key name: { "Tab" }
        t.run("send-keys -t repl " .. k[1])
      else
        t.run("send-keys -t repl -l " .. sh_quote(k))
      end
    end
  end
  function t.pane(escapes)
    return t.run("capture-pane -p -J -t repl" .. (escapes and " -e" or ""))
  end
  -- wait(text) -> the pane once it shows text (plain), or fails
  function t.wait(text, escapes)
    local pane
    for _ = 1, 150 do
      pane = t.pane(escapes)
      if pane:find(text, 1, true) then
        return pane
      end
      os.execute("sleep 0.1")
    end
    error("pane never showed " .. string.format("%q", text) .. ":\n"
      .. tostring(pane), 2)
  end
  -- idle() -> the pane once its last line is an empty prompt: readline
  -- has the terminal, so keys typed now are its own (Ctrl-D typed ahead,
  -- while the terminal is still in cooked mode, would be lost)
  function t.idle()
    local pane
    for _ = 1, 150 do
      pane = t.pane()
      local last = pane:gsub("%s+$", ""):match("([^\n]*)$")
      if last == "berth>" then
        return pane
      end
      os.execute("sleep 0.1")
    end
    error("the REPL never went back to its prompt:\n" .. tostring(pane), 2)
  end
  function t.kill()
    t.run("kill-server")
  end
  return t
end

describe("berth repl in a terminal #slow", function()
  it("completes, pretty-prints and keeps history", function()
    assert(have("tmux"), "tmux is not installed (bin/setup installs it)")
    local okrl = pcall(require, "readline")
    assert(okrl, "lua-readline is not installed (bin/setup installs it)")

    local store, root = helpers.new_store({ fsync = "none" })
    local image = support.populate(store)
    store:close()
    local home = helpers.tmpdir()
    local hist = home .. "/history"

    local vars = {
      "BERTH_LIB=" .. sh_quote(abspath(assert(os.getenv("BERTH_LIB")))),
      "BERTH_HISTORY=" .. sh_quote(hist),
      "HOME=" .. sh_quote(home),
      "LANG=C.UTF-8",
      "TERM=screen",
    }
    for _, k in ipairs({ "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS" }) do
      if os.getenv(k) then
        vars[#vars + 1] = k .. "=" .. sh_quote(os.getenv(k))
      end
    end
    local cmd = "env " .. table.concat(vars, " ") .. " "
      .. sh_quote(abspath("bin/berth")) .. " repl --root " .. sh_quote(root)

    local t = new_tmux(home)
    finally(t.kill)
    -- bash reports the exit status (it outlives the REPL's Ctrl-C: it
    -- waits for a child that handles SIGINT); remain-on-exit keeps the pane
    cmd = "bash -c " .. sh_quote(cmd .. '; echo "repl exit status $?"')
    t.run("new-session -d -s repl -x 200 -y 50 " .. sh_quote(cmd)
      .. " \\; set-option -t repl remain-on-exit on")
    t.idle()

    -- a repository name: both are listed, then one is completed
    t.keys('store:tag_list("', { "Tab" }, { "Tab" })
    local pane = t.wait("team/tool")
    assert.truthy(pane:find("library/app", 1, true))
    t.keys("l", { "Tab" })
    t.wait('berth> store:tag_list("library/app"')
    t.keys(")", { "Enter" })
    t.wait('{ "latest", "v1.0", "v1.1" }')
    t.idle()

    -- a method name, then a tag in a second string argument
    t.keys("store:cata", { "Tab" })
    t.wait("berth> store:catalog(")
    t.keys(")", { "Enter" })
    t.wait('{ "library/app", "team/tool" }')
    t.idle()
    t.keys('store:manifest_head("library/app", "la', { "Tab" })
    t.wait('store:manifest_head("library/app", "latest"')
    t.keys(")", { "Enter" })
    t.wait(image.digest:sub(1, 19) .. ELLIPSIS .. "     " .. #image.body
      .. " B  application/vnd.oci.image.manifest.v1+json")
    t.idle()

    -- show(repo, tag): indented JSON with sizes
    t.keys('show("library/app", "v1', { "Tab" })
    t.wait('show("library/app", "v1.')
    t.keys("1", { "Tab" })
    t.wait('show("library/app", "v1.1"')
    t.keys(")", { "Enter" })
    pane = t.wait('"size": 1572864  // 1.5 MiB')
    assert.truthy(pane:find("-- library/app:v1.1  " .. image.digest, 1,
      true))
    assert.truthy(pane:find('\n  "schemaVersion": 2,\n', 1, true))
    assert.truthy(pane:find(
      '\n      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",\n',
      1, true))
    t.idle()

    -- the failure triple, in red
    t.keys(('store:blob_stat("library/app", "%s")'):format(support.MISSING),
      { "Enter" })
    t.wait("error BLOB_UNKNOWN: blob unknown to repository library/app: "
      .. support.MISSING)
    pane = t.pane(true)
    assert.truthy(pane:find("\27[31merror BLOB_UNKNOWN", 1, true))
    t.idle()

    -- multi-line input; Ctrl-C drops the unfinished chunk and a typed line
    t.keys("for i = 1, 2 do", { "Enter" })
    t.wait("berth>> ")
    t.keys({ "C-c" })
    t.idle()
    t.keys("discarded", { "C-c" })
    t.idle()
    t.keys("for i = 1, 2 do", { "Enter" }, "print('line ' .. i)",
      { "Enter" }, "end", { "Enter" })
    pane = t.wait("line 2")
    assert.truthy(pane:find("line 1\nline 2\n", 1, true))
    t.idle()
    -- Ctrl-C stops a running loop; the REPL goes on
    t.keys("while true do end", { "Enter" })
    os.execute("sleep 0.3")
    t.keys({ "C-c" })
    t.wait("interrupted!")
    t.idle()
    t.keys("6 * 7", { "Enter" })
    t.wait("\n42\n")
    t.idle()

    -- Ctrl-D leaves with status 0, and the history is saved
    t.keys({ "C-d" })
    t.wait("repl exit status 0")
    local h = helpers.read_file(hist) or ""
    assert.truthy(h:find('store:tag_list("library/app")\n', 1, true))
    assert.truthy(h:find("6 * 7\n", 1, true))
    assert.falsy(h:find("discarded", 1, true))
  end)
end)

-- berth cat: the raw bytes of a manifest (by tag or digest), or of a blob
-- (--blob), streamed to stdout.
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"
local image = require "berth.cmd.image"

local _M = { _VERSION = "0.1.0" }

_M.summary = "print a manifest's raw bytes, or a blob's (--blob)"

_M.usage = [[
usage: berth cat REPO REF [--root DIR] [--config FILE]
       berth cat REPO DIGEST --blob [--root DIR] [--config FILE]
Write the exact bytes of the manifest REF (a tag or a digest) of
repository REPO to stdout. With --blob, write the blob DIGEST linked in
REPO (a layer, a config, or a manifest of REPO by digest) instead,
streamed in chunks; not to a terminal unless --force. Exit 1 when REF or
DIGEST is unknown.
  --blob          REF is a blob digest
  --force         write a blob to a terminal all the same
]] .. args.COMMON_USAGE

local SPEC = { name = "cat", usage = _M.usage, flags = { "blob", "force" },
  args = { "REPO", "REF" } }

-- Bytes read from the store per write to stdout (see layout.CHUNK).
local CHUNK = 64 * 1024

-- stream(store, repo|nil, dgst, fh) -> bytes | nil, err, code
local function stream(store, repo, dgst, fh)
  local r, err, code = store:blob_reader(repo, dgst)
  if not r then
    return nil, err, code
  end
  local n = 0
  while true do
    local chunk
    chunk, err, code = r:read(CHUNK)
    if not chunk then
      r:close()
      return nil, err, code
    end
    if chunk == "" then
      break
    end
    local ok, werr = fh:write(chunk)
    if not ok then
      r:close()
      return nil, "write: " .. tostring(werr), "EIO"
    end
    n = n + #chunk
  end
  r:close()
  return n
end

local function cat_blob(store, repo, dgst, env)
  local size, err, code = store:blob_stat(repo, dgst)
  local from = repo
  if not size and code == "BLOB_UNKNOWN" and store:manifest_head(repo, dgst)
  then
    -- A manifest of the repository: linked as a revision, not a layer.
    from = nil
    size, err = store:blob_stat(nil, dgst)
  end
  if not size then
    return nil, err
  end
  local n
  n, err = stream(store, from, dgst, env.stdout)
  if not n then
    return nil, err
  end
  if n ~= size then
    return nil, ("blob %s: read %d bytes, expected %d"):format(dgst, n,
      size)
  end
  return true
end

-- run(argv, env) -> exit code
function _M.run(argv, env)
  local o, _, code = args.parse(argv, SPEC, env)
  if not o then
    return code
  end
  local repo, ref = o[1], o[2]
  if o.blob and not image.is_digest(ref) then
    return args.usage_error(env, "cat", _M.usage,
      "--blob needs a digest (algo:hex), got " .. ref)
  end
  if o.blob and env.isatty and not o.force then
    -- layers are binary: they would garble the terminal
    return out.fail(env, "cat", "not writing a blob to a terminal: redirect"
      .. " stdout, or give --force")
  end
  local store, err = args.open_store(o)
  if not store then
    return out.fail(env, "cat", err)
  end
  local ok
  if o.blob then
    ok, err = cat_blob(store, repo, ref, env)
  else
    local body, info, ecode = store:manifest_get(repo, ref)
    if body then
      ok, err = env.stdout:write(body)
    else
      err = info
      if ecode == "MANIFEST_UNKNOWN" and image.is_digest(ref)
        and store:blob_stat(repo, ref) then
        err = err .. " (a blob: use --blob)"
      end
    end
  end
  store:close()
  if not ok then
    return out.fail(env, "cat", err)
  end
  return 0
end

return _M

-- berth import: copy an image (or an index and all its images) from an OCI
-- image layout into a repository tag: blobs through upload sessions, in
-- chunks (the commit verifies each digest), then the manifests, children
-- first, then the tag. Through the registry, so a --config's policies
-- apply.
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"
local image = require "berth.cmd.image"
local layout = require "berth.cmd.layout"

local type = type
local ipairs = ipairs
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

_M.summary = "import an image from an OCI image layout into a repository"

_M.usage = [[
usage: berth import LAYOUT_DIR[:TAG] REPO[:TAG] [--json] [--root DIR]
                    [--config FILE]
Import the image LAYOUT_DIR:TAG (the manifest of the layout's index.json
whose org.opencontainers.image.ref.name is TAG; without TAG the only one)
into repository REPO, tagged TAG (default: the layout's TAG, else latest).
An index is imported with every manifest it lists. Blobs are streamed
through upload sessions and verified; blobs the store has already are
linked without a copy. With --config the registry's plugins and policies
apply. Exit 1 when the layout is incomplete or the registry refuses.
  --json          a summary object: repository, tag, digest, mediaType,
                  manifests, blobs, uploaded, uploaded_bytes, linked
]] .. args.COMMON_USAGE

local SPEC = { name = "import", usage = _M.usage, flags = { "json" },
  args = { "LAYOUT_DIR[:TAG]", "REPO[:TAG]" } }

-- Nested indexes deeper than this are refused.
local MAX_DEPTH = 8

-- plan(lay, desc) -> { manifests = { {digest, body, media_type, size}, ...
--   children first }, blobs = { descriptor, ... } } | nil, err
local function plan(lay, top)
  local p = { manifests = {}, blobs = {} }
  local seen_m, seen_b = {}, {}
  local function walk(desc, depth)
    if seen_m[desc.digest] then
      return true
    end
    if depth > MAX_DEPTH then
      return nil, "manifest " .. desc.digest .. ": indexes nested too deep"
    end
    local body, err = lay:read(desc.digest, desc.size)
    if not body then
      return nil, err
    end
    local doc
    doc, err = image.decode(body)
    if not doc then
      return nil, "manifest " .. desc.digest .. ": " .. err
    end
    local mt = image.media_type(doc, desc.mediaType)
    if image.is_index(doc, mt) then
      for _, child in ipairs(image.children(doc, mt)) do
        local ok
        ok, err = walk(child, depth + 1)
        if not ok then
          return nil, err
        end
      end
    else
      for _, b in ipairs(image.blobs(doc)) do
        local d = b.desc
        if not seen_b[d.digest] then
          if not lay:has(d.digest) and type(d.urls) == "table" then
            -- a foreign layer: fetched from its URLs, never pushed
            seen_b[d.digest] = true
          elseif not lay:has(d.digest) then
            return nil, lay.dir .. ": blob " .. d.digest .. " (" .. b.role
              .. " of " .. desc.digest .. ") missing"
          else
            seen_b[d.digest] = true
            p.blobs[#p.blobs + 1] = d
          end
        end
      end
    end
    seen_m[desc.digest] = true
    p.manifests[#p.manifests + 1] = { digest = desc.digest, body = body,
      media_type = mt, size = #body }
    return true
  end
  local ok, err = walk(top, 0)
  if not ok then
    return nil, err
  end
  return p
end

-- upload(reg, repo, lay, desc, progress) -> "linked" | "uploaded", bytes
--   | nil, err
local function upload(reg, repo, lay, desc, progress)
  local st = reg.store
  local dgst = desc.digest
  if st:blob_stat(repo, dgst) then
    return "linked", 0
  end
  local ok, err
  if st:blob_stat(nil, dgst) then
    ok, err = reg:mount_blob(repo, nil, dgst)
    if not ok then
      return nil, "blob " .. dgst .. ": " .. tostring(err)
    end
    return "linked", 0
  end
  local f
  f, err = lay:open_blob(dgst)
  if not f then
    return nil, err
  end
  local up
  up, err = reg:start_upload(repo)
  if not up then
    f:close()
    return nil, "blob " .. dgst .. ": " .. tostring(err)
  end
  local n = 0
  while true do
    local chunk = f:read(layout.CHUNK)
    if not chunk then
      break
    end
    ok, err = up:write(chunk)
    if not ok then
      f:close()
      up:cancel()
      return nil, "blob " .. dgst .. ": " .. tostring(err)
    end
    n = n + #chunk
    progress.update(#chunk)
  end
  f:close()
  local size = type(desc.size) == "number" and desc.size or n
  ok, err = reg:commit_upload(up, dgst, size)
  if not ok then
    up:cancel()
    return nil, "blob " .. dgst .. ": " .. tostring(err)
  end
  return "uploaded", n
end

-- put(reg, repo, m, tag|nil) -> digest | nil, err
local function put(reg, repo, m, tag)
  local ref = m.digest
  if tag and m.digest:find("^sha256:") then
    ref = tag
  end
  local dgst, info = reg:put_manifest(repo, ref, m.body, m.media_type)
  if not dgst then
    return nil, "manifest " .. m.digest .. ": " .. tostring(info)
  end
  if dgst ~= m.digest then
    return nil, "manifest " .. m.digest .. " was stored as " .. dgst
  end
  if tag and ref ~= tag then
    local ok, err = reg:set_tag(repo, tag, dgst)
    if not ok then
      return nil, "tag " .. tag .. ": " .. tostring(err)
    end
  end
  return dgst
end

local function import(env, o, src_dir, src_tag, repo, tag)
  local lay, err = layout.open(src_dir)
  if not lay then
    return nil, err
  end
  local top
  top, err = lay:find(src_tag)
  if not top then
    return nil, err
  end
  if type(top.digest) ~= "string" or not image.is_digest(top.digest) then
    return nil, src_dir .. "/index.json: bad descriptor (digest)"
  end
  local p
  p, err = plan(lay, top)
  if not p then
    return nil, err
  end
  local reg
  reg, err = args.open_registry(o, { create = true })
  if not reg then
    return nil, err
  end
  local total = 0
  for _, d in ipairs(p.blobs) do
    if type(d.size) == "number" then
      total = total + d.size
    end
  end
  local progress = out.progress(env, "import", total, "bytes")
  local res = { repository = repo, tag = tag, digest = top.digest,
    manifests = #p.manifests, blobs = #p.blobs, uploaded = 0,
    uploaded_bytes = 0, linked = 0 }
  for _, d in ipairs(p.blobs) do
    local how, n = upload(reg, repo, lay, d, progress)
    if not how then
      progress.done()
      reg:close()
      return nil, n
    end
    if how == "uploaded" then
      res.uploaded = res.uploaded + 1
      res.uploaded_bytes = res.uploaded_bytes + n
    else
      res.linked = res.linked + 1
      progress.update(type(d.size) == "number" and d.size or 0)
    end
  end
  progress.done()
  local last = #p.manifests
  for i, m in ipairs(p.manifests) do
    local dgst
    dgst, err = put(reg, repo, m, i == last and tag or nil)
    if not dgst then
      reg:close()
      return nil, err
    end
  end
  res.mediaType = p.manifests[last].media_type
  reg:close()
  return res
end

-- run(argv, env) -> exit code
function _M.run(argv, env)
  local o, _, code = args.parse(argv, SPEC, env)
  if not o then
    return code
  end
  local src_dir, src_tag = layout.split(o[1])
  local repo, tag, dgst = image.split_ref(o[2])
  if dgst then
    return args.usage_error(env, "import", _M.usage,
      "the destination is REPO[:TAG], not a digest: " .. o[2])
  end
  tag = tag or src_tag or "latest"
  if not image.valid_tag(tag) then
    return args.usage_error(env, "import", _M.usage, "invalid tag: " .. tag)
  end
  if repo == "" then
    return args.usage_error(env, "import", _M.usage, "missing repository")
  end
  local res, err = import(env, o, src_dir, src_tag, repo, tag)
  if not res then
    return out.fail(env, "import", err)
  end
  if o.json then
    out.json(env.stdout, res)
  else
    env.stdout:write(("imported %s%s as %s:%s %s: %d manifest%s, %d blob%s"
      .. " (%d uploaded, %s; %d already in the store)\n"):format(src_dir,
      src_tag and ":" .. src_tag or "", repo, tag, res.digest,
      res.manifests, res.manifests == 1 and "" or "s", res.blobs,
      res.blobs == 1 and "" or "s", res.uploaded,
      out.size(res.uploaded_bytes), res.linked))
  end
  return 0
end

return _M

-- berth export: write an image (or an index and all its images) from a
-- repository into an OCI image layout: every blob streamed out of the
-- store and verified on the way, the manifests' exact bytes, and an
-- index.json entry named by the ref.name annotation.
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"
local image = require "berth.cmd.image"
local layout = require "berth.cmd.layout"

local type = type
local ipairs = ipairs
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

_M.summary = "export a repository's image to an OCI image layout"

_M.usage = [[
usage: berth export REPO:TAG|REPO@DIGEST LAYOUT_DIR[:TAG] [--json]
                    [--root DIR] [--config FILE]
Write the image REPO:TAG (or REPO@DIGEST; an index with all the manifests
it lists) into the OCI image layout LAYOUT_DIR, tagged TAG there (the
org.opencontainers.image.ref.name annotation; default the source tag).
The directory is created if missing; an existing layout gets the image
added to its index.json (replacing the entry with the same TAG). Blobs are
streamed and checked against their digests. Exit 1 when the image or one
of its blobs is missing.
  --json          a summary object: repository, reference, digest,
                  mediaType, layout, tag, manifests, blobs, written,
                  written_bytes, present
]] .. args.COMMON_USAGE

local SPEC = { name = "export", usage = _M.usage, flags = { "json" },
  args = { "REPO:TAG", "LAYOUT_DIR[:TAG]" } }

local MAX_DEPTH = 8

-- plan(store, repo, ref) -> { manifests = { {digest, body, media_type,
--   size}, ... children first }, blobs = { descriptor, ... } } | nil, err
local function plan(store, repo, ref)
  local p = { manifests = {}, blobs = {} }
  local seen_m, seen_b = {}, {}
  local function walk(r, depth)
    if depth > MAX_DEPTH then
      return nil, "manifest " .. r .. ": indexes nested too deep"
    end
    local body, info = store:manifest_get(repo, r)
    if not body then
      return nil, tostring(info)
    end
    if seen_m[info.digest] then
      return true
    end
    local doc, err = image.decode(body)
    if not doc then
      return nil, "manifest " .. info.digest .. ": " .. err
    end
    if image.is_index(doc, info.media_type) then
      for _, child in ipairs(image.children(doc, info.media_type)) do
        local ok
        ok, err = walk(child.digest, depth + 1)
        if not ok then
          return nil, err
        end
      end
    else
      for _, b in ipairs(image.blobs(doc)) do
        local d = b.desc
        if not seen_b[d.digest] then
          seen_b[d.digest] = true
          -- a foreign layer the store does not have stays out
          if type(d.urls) ~= "table" or store:blob_stat(repo, d.digest) then
            p.blobs[#p.blobs + 1] = d
          end
        end
      end
    end
    seen_m[info.digest] = true
    p.manifests[#p.manifests + 1] = { digest = info.digest, body = body,
      media_type = info.media_type, size = info.size }
    return true
  end
  local ok, err = walk(ref, 0)
  if not ok then
    return nil, err
  end
  return p
end

-- copy(store, repo, lay, desc, progress) -> bytes | nil, err
local function copy(store, repo, lay, desc, progress)
  local dgst = desc.digest
  local r, err = store:blob_reader(repo, dgst)
  if not r then
    return nil, "blob " .. dgst .. ": " .. tostring(err)
  end
  local n
  n, err = lay:write_stream(dgst, desc.size, function()
    return r:read(layout.CHUNK)
  end, progress)
  r:close()
  return n, err
end

local function export(env, o, repo, ref, dir, tag)
  local store, err = args.open_store(o)
  if not store then
    return nil, err
  end
  local p
  p, err = plan(store, repo, ref)
  if not p then
    store:close()
    return nil, err
  end
  local lay
  lay, err = layout.create(dir)
  if not lay then
    store:close()
    return nil, err
  end
  local pending_blobs, total = {}, 0
  local res = { repository = repo, reference = ref, layout = dir,
    tag = tag, manifests = #p.manifests, blobs = #p.blobs, written = 0,
    written_bytes = 0, present = 0 }
  for _, d in ipairs(p.blobs) do
    if lay:has(d.digest, d.size) then
      res.present = res.present + 1
    else
      pending_blobs[#pending_blobs + 1] = d
      total = total + (type(d.size) == "number" and d.size or 0)
    end
  end
  local progress = out.progress(env, "export", total, "bytes")
  for _, d in ipairs(pending_blobs) do
    local n
    n, err = copy(store, repo, lay, d, progress)
    if not n then
      progress.done()
      store:close()
      return nil, err
    end
    res.written = res.written + 1
    res.written_bytes = res.written_bytes + n
  end
  progress.done()
  store:close()
  for _, m in ipairs(p.manifests) do
    if not lay:has(m.digest, m.size) then
      local ok
      ok, err = lay:write(m.digest, m.body)
      if not ok then
        return nil, err
      end
    end
  end
  local top = p.manifests[#p.manifests]
  res.digest = top.digest
  res.mediaType = top.media_type
  lay:tag({ mediaType = top.media_type, digest = top.digest,
    size = top.size }, tag)
  local ok
  ok, err = lay:save()
  if not ok then
    return nil, err
  end
  return res
end

-- run(argv, env) -> exit code
function _M.run(argv, env)
  local o, _, code = args.parse(argv, SPEC, env)
  if not o then
    return code
  end
  local repo, src_tag, dgst = image.split_ref(o[1])
  if repo == "" or not (src_tag or dgst) then
    return args.usage_error(env, "export", _M.usage,
      "the source is REPO:TAG or REPO@DIGEST, got " .. o[1])
  end
  local dir, tag = layout.split(o[2])
  tag = tag or src_tag
  if tag and not image.valid_tag(tag) then
    return args.usage_error(env, "export", _M.usage, "invalid tag: " .. tag)
  end
  local res, err = export(env, o, repo, src_tag or dgst, dir, tag)
  if not res then
    return out.fail(env, "export", err)
  end
  if o.json then
    out.json(env.stdout, res)
  else
    env.stdout:write(("exported %s%s%s %s to %s%s: %d manifest%s, %d blob%s"
      .. " (%d written, %s; %d already there)\n"):format(repo,
      src_tag and ":" or "@", src_tag or dgst, res.digest, dir,
      tag and ":" .. tag or "", res.manifests,
      res.manifests == 1 and "" or "s", res.blobs,
      res.blobs == 1 and "" or "s", res.written,
      out.size(res.written_bytes), res.present))
  end
  return 0
end

return _M

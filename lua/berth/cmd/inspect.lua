-- berth inspect: a manifest or index as a tree (media types, digests,
-- sizes; platforms, config and layers; subject and referrers; totals).
local args = require "berth.cmd.args"
local out = require "berth.cmd.out"
local image = require "berth.cmd.image"

local type = type
local ipairs = ipairs
local tostring = tostring
local concat = table.concat

local _M = { _VERSION = "0.1.0" }

_M.summary = "show a manifest or index as a tree: platforms, layers, referrers"

_M.usage = [[
usage: berth inspect REPO REF [--json] [--root DIR] [--config FILE]
Show the manifest REF (a tag or a digest) of repository REPO: its media
type, digest and size; for an image its config and layers; for an index
each child manifest with its platform (os/arch/variant) and, in turn, its
layers; the subject and the referrers of each manifest; and the totals
(each blob counted once). Exit 1 when REF is unknown or a child manifest is
missing.
  --json          the same as one JSON object (manifests nested under
                  "manifests", blobs as descriptors)
  --no-trunc      on a terminal too, whole digests and media types (else
                  they are cut to fit its width)
]] .. args.COMMON_USAGE

local SPEC = { name = "inspect", usage = _M.usage,
  flags = { "json", "no-trunc" }, args = { "REPO", "REF" } }

-- Hex digits of a digest shown on a terminal: docker's and skopeo's 12.
local SHORT_HEX = 12

-- Nested indexes deeper than this are not followed.
local MAX_DEPTH = 8

-- A descriptor as shown: the fields of the OCI descriptor that matter.
local function descriptor(d)
  local t = {
    mediaType = d.mediaType,
    digest = d.digest,
    size = d.size,
    artifactType = d.artifactType,
    annotations = d.annotations,
  }
  if type(d.urls) == "table" then
    t.urls = out.array(d.urls)
  end
  if type(d.platform) == "table" then
    t.platform = d.platform
  end
  return t
end

-- The referrers of dgst in repo, as descriptors.
local function referrers(store, repo, dgst)
  local list = out.array()
  local body, err = store:referrers(repo, dgst)
  if not body then
    return list, err
  end
  local doc = image.decode(body)
  for _, d in ipairs(doc and type(doc.manifests) == "table"
    and doc.manifests or {}) do
    list[#list + 1] = descriptor(d)
  end
  return list
end

-- node(store, repo, ref, desc, depth, problems) -> the manifest's node:
-- its descriptor fields plus config/layers or manifests, subject,
-- referrers, and missing/error when it cannot be read.
local function node(store, repo, ref, desc, depth, problems)
  local n = desc and descriptor(desc) or {}
  local body, info = store:manifest_get(repo, ref)
  if not body then
    n.missing = true
    n.error = tostring(info)
    problems[#problems + 1] = tostring(info)
    return n
  end
  n.digest = info.digest
  n.size = info.size
  n.mediaType = info.media_type
  local doc, err = image.decode(body)
  if not doc then
    n.error = "manifest " .. info.digest .. ": " .. err
    problems[#problems + 1] = n.error
    return n
  end
  n.artifactType = doc.artifactType or n.artifactType
  if type(doc.annotations) == "table" then
    n.annotations = doc.annotations
  end
  if image.is_index(doc, info.media_type) then
    n.manifests = out.array()
    for _, d in ipairs(image.children(doc, info.media_type)) do
      local child
      if depth >= MAX_DEPTH then
        child = descriptor(d)
        child.error = "nested too deep; not followed"
      else
        child = node(store, repo, d.digest, d, depth + 1, problems)
      end
      n.manifests[#n.manifests + 1] = child
    end
  else
    n.layers = out.array()
    for _, b in ipairs(image.blobs(doc)) do
      if b.role == "config" then
        n.config = descriptor(b.desc)
      else
        n.layers[#n.layers + 1] = descriptor(b.desc)
      end
    end
  end
  if type(doc.subject) == "table" then
    n.subject = descriptor(doc.subject)
  end
  n.referrers, err = referrers(store, repo, info.digest)
  if err then
    problems[#problems + 1] = "referrers of " .. info.digest .. ": " .. err
  end
  return n
end

-- totals(root) -> { manifests =, blobs =, size = }: every digest once
local function totals(root)
  local seen = {}
  local t = { manifests = 0, blobs = 0, size = 0 }
  local function add(d, kind)
    if not d.digest or seen[d.digest] then
      return
    end
    seen[d.digest] = true
    t[kind] = t[kind] + 1
    if type(d.size) == "number" then
      t.size = t.size + d.size
    end
  end
  local function walk(n)
    if n.missing then
      return
    end
    add(n, "manifests")
    if n.config then
      add(n.config, "blobs")
    end
    for _, l in ipairs(n.layers or {}) do
      add(l, "blobs")
    end
    for _, c in ipairs(n.manifests or {}) do
      walk(c)
    end
  end
  walk(root)
  return t
end

-- Human rendering ------------------------------------------------------------

local function label_of(n, default)
  local p = image.platform(n.platform)
  if p then
    return p
  end
  return default
end

local function kind_of(n)
  if n.manifests then
    return "index"
  end
  return "manifest"
end

local function rows_of(n, prefix, last, label, rows, top)
  local branch, cont = "", ""
  if not top then
    branch = last and "└─ " or "├─ "
    cont = last and "   " or "│  "
  end
  local mt = n.mediaType or "?"
  if n.artifactType then
    mt = mt .. " (" .. n.artifactType .. ")"
  end
  local size = out.size(n.size)
  if n.missing then
    size = "MISSING"
  end
  rows[#rows + 1] = { prefix .. branch .. label, mt, size,
    n.digest or "?" }
  local kids = {}
  if n.config then
    kids[#kids + 1] = { kind = "blob", label = "config", d = n.config }
  end
  for _, l in ipairs(n.layers or {}) do
    kids[#kids + 1] = { kind = "blob", label = l.urls and "layer (foreign)"
      or "layer", d = l }
  end
  for _, c in ipairs(n.manifests or {}) do
    kids[#kids + 1] = { kind = "node", label = label_of(c, kind_of(c)),
      d = c }
  end
  if n.subject then
    kids[#kids + 1] = { kind = "blob", label = "subject", d = n.subject }
  end
  for _, r in ipairs(n.referrers or {}) do
    kids[#kids + 1] = { kind = "blob", label = "referrer", d = r }
  end
  local p2 = prefix .. cont
  for i, k in ipairs(kids) do
    local is_last = i == #kids
    if k.kind == "node" then
      rows_of(k.d, p2, is_last, k.label, rows, false)
    else
      local d = k.d
      local kmt = d.mediaType or "?"
      if d.artifactType then
        kmt = kmt .. " (" .. d.artifactType .. ")"
      end
      rows[#rows + 1] = { p2 .. (is_last and "└─ " or "├─ ") .. k.label,
        kmt, out.size(d.size), d.digest }
    end
  end
end

-- Rows cut to columns: digests to SHORT_HEX, then the media type column
-- to what the others leave: without "application/vnd.", then its end
-- (where the types differ).
local function fit(rows, columns)
  local widest = { 0, 0, 0, 0 }
  for _, r in ipairs(rows) do
    r[4] = r[4]:gsub("^(%w+:" .. ("%x"):rep(SHORT_HEX) .. ")%x+$", "%1")
    for i = 1, 4 do
      widest[i] = math.max(widest[i], out.width(r[i]))
    end
  end
  local room = columns - widest[1] - widest[3] - widest[4] - 3 * 2
  room = math.max(room, #"MEDIA TYPE")
  for _, r in ipairs(rows) do
    if out.width(r[2]) > room then
      r[2] = r[2]:gsub("^application/vnd%.", ""):gsub(" %(application/",
        " (")
    end
    if out.width(r[2]) > room then
      r[2] = "…" .. r[2]:sub(-(room - 1))
    end
  end
end

local function render(env, result, whole)
  local fh = env.stdout
  local root = result.manifest
  local head = result.repository .. (image.is_digest(result.reference)
    and "@" or ":") .. result.reference
  if #result.tags > 0 then
    head = head .. "  (tags: " .. concat(result.tags, ", ") .. ")"
  end
  fh:write(head, "\n")
  local rows = {}
  rows_of(root, "", true, kind_of(root), rows, true)
  if env.columns and not whole then
    fit(rows, env.columns)
  end
  out.table(fh, { "", "MEDIA TYPE", "SIZE", "DIGEST" }, rows,
    { "l", "l", "r", "l" })
  local t = result.totals
  fh:write(("total: %d manifest%s, %d blob%s, %s (%d bytes; each blob"
    .. " once)\n"):format(t.manifests, t.manifests == 1 and "" or "s",
    t.blobs, t.blobs == 1 and "" or "s", out.size(t.size), t.size))
end

-- run(argv, env) -> exit code
function _M.run(argv, env)
  local o, _, code = args.parse(argv, SPEC, env)
  if not o then
    return code
  end
  local repo, ref = o[1], o[2]
  local store, err = args.open_store(o)
  if not store then
    return out.fail(env, "inspect", err)
  end
  local head
  head, err = store:manifest_head(repo, ref)
  if not head then
    store:close()
    return out.fail(env, "inspect", err)
  end
  local problems = {}
  local root = node(store, repo, head.digest, nil, 0, problems)
  local tags = store:tag_lookup(repo, head.digest) or {}
  store:close()
  local result = {
    repository = repo,
    reference = ref,
    tags = out.array(tags),
    manifest = root,
    totals = totals(root),
  }
  if o.json then
    out.json(env.stdout, result)
  else
    render(env, result, o.no_trunc)
  end
  for _, p in ipairs(problems) do
    out.problem(env, "inspect", p)
  end
  return #problems > 0 and 1 or 0
end

return _M

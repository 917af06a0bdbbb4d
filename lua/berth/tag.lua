-- Tags and the catalog: methods added to the store object.
--   assert(store:tag_set("library/alpine", "3.20", digest))
--   local tags = store:tag_list("library/alpine", { n = 100, last = "3.19" })
local ffi = require "ffi"
local C = require("berth.ffi").C
local errors = require "berth.errors"
local store_mod = require "berth.store"

local ffi_new = ffi.new
local ffi_cast = ffi.cast
local ffi_string = ffi.string
local fail = errors.fail
local scratch_err = errors.scratch
local parse_digest = store_mod.parse_digest
local names = store_mod.names
local live = store_mod.live
local Store = store_mod.Store
local type = type
local error = error
local tonumber = tonumber
local floor = math.floor

local _M = { _VERSION = "0.1.0" }

-- Scratch values reused across calls; FFI calls are synchronous.
local dgst_out = ffi_new("berth_digest")
local list = ffi_new("berth_strlist")
local SIZE_MAX = ffi_cast("size_t", 0) - 1

-- The { n =, last = } of a listing, n checked (last is a name); n nil
-- means all.
local function page_args(opts)
  if opts == nil then
    return nil, SIZE_MAX
  end
  if type(opts) ~= "table" then
    error("options must be a table", 3)
  end
  local n, last = opts.n, opts.last
  if n ~= nil and (type(n) ~= "number" or n < 0 or n ~= floor(n)) then
    error("n must be a non-negative integer", 3)
  end
  return last, n or SIZE_MAX
end

-- The scratch list as a Lua array; its C memory is released.
local function take_list()
  local t = {}
  for i = 0, tonumber(list.count) - 1 do
    t[i + 1] = ffi_string(list.items[i])
  end
  C.berth_strlist_dispose(list)
  return t
end

local function list_result(rc)
  if rc < 0 then
    C.berth_strlist_dispose(list)
    return fail(rc)
  end
  return take_list()
end

-- tag_get(repo, tag) -> digest | nil, err, code
function Store:tag_get(repo, tag)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository", tag, "tag")
  if not ok then return nil, nerr, ncode end
  local rc = C.berth_tag_get(dgst_out, p, repo, tag, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return ffi_string(dgst_out.str)
end

-- tag_set(repo, tag, digest) -> true | nil, err, code
function Store:tag_set(repo, tag, dgst)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository", tag, "tag")
  if not ok then return nil, nerr, ncode end
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  local rc = C.berth_tag_set(p, repo, tag, d, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- The expected digest of a compare-and-set in its own berth_digest
-- (parse_digest's scratch one may be needed next): -> cdata | nil (none
-- expected) | false, err, code
local expected_in = ffi_new("berth_digest")

local function expected_arg(expected)
  if not expected then
    return nil
  end
  local d, err, code = parse_digest(expected, 4, expected_in)
  if not d then return false, err, code end
  return d
end

-- tag_set_if(repo, tag, digest, expected) -> true | nil, err, code
-- Only if the tag points at expected (nil or false: only if it does not
-- exist), as one step; "ETAG_CHANGED" otherwise (berth_tag_set_if).
function Store:tag_set_if(repo, tag, dgst, expected)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository", tag, "tag")
  if not ok then return nil, nerr, ncode end
  local e, eerr, ecode = expected_arg(expected)
  if e == false then return nil, eerr, ecode end
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  local rc = C.berth_tag_set_if(p, repo, tag, d, e, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- tag_delete(repo, tag) -> true | nil, err, code
function Store:tag_delete(repo, tag)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository", tag, "tag")
  if not ok then return nil, nerr, ncode end
  local rc = C.berth_tag_delete(p, repo, tag, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- tag_delete_if(repo, tag, expected) -> true | nil, err, code
-- Only if the tag points at expected (nil or false: only if it has no
-- current link), as one step; "ETAG_CHANGED" otherwise.
function Store:tag_delete_if(repo, tag, expected)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository", tag, "tag")
  if not ok then return nil, nerr, ncode end
  local e, eerr, ecode = expected_arg(expected)
  if e == false then return nil, eerr, ecode end
  local rc = C.berth_tag_delete_if(p, repo, tag, e, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- Whole tag lists are kept per store object (so per nginx worker) under
-- the version of the repository's tags directory: a list of 1,000 tags
-- costs ~0.5 ms to read and sort, a version one stat. At most
-- TAG_CACHE_REPOS repositories; when full it starts again empty. A tag
-- directory without a current link (a first set under way, or cut short)
-- is not listed, and gets its link without changing the version: those
-- are looked at again on each use, one stat each.
local TAG_CACHE_REPOS = 64
local version_buf = ffi_new("char[96]")
local unset_list = ffi_new("berth_strlist")
local EMANIFEST_UNKNOWN = errors.BY_NAME.MANIFEST_UNKNOWN.value

-- Does any of the names have a current link now?
local function any_set(p, repo, unset)
  for i = 1, #unset do
    if C.berth_tag_get(dgst_out, p, repo, unset[i], scratch_err)
        ~= EMANIFEST_UNKNOWN then
      return true
    end
  end
  return false
end

local function cached_tags(self, p, repo)
  if C.berth_tag_list_version(p, repo, version_buf, scratch_err) < 0 then
    return nil -- no version now (or no tags directory): no cache
  end
  local version = ffi_string(version_buf)
  local cache = self._tag_cache
  if not cache then
    cache = { count = 0, repos = {} }
    self._tag_cache = cache
  end
  local entry = cache.repos[repo]
  if entry and entry.version == version
      and not any_set(p, repo, entry.unset) then
    return entry.tags
  end
  local rc = C.berth_tag_list_all(list, unset_list, p, repo, scratch_err)
  if rc < 0 then
    C.berth_strlist_dispose(list)
    return nil
  end
  local tags = take_list()
  local unset = {}
  for i = 0, tonumber(unset_list.count) - 1 do
    unset[i + 1] = ffi_string(unset_list.items[i])
  end
  C.berth_strlist_dispose(unset_list)
  if not entry then
    if cache.count >= TAG_CACHE_REPOS then
      cache.count, cache.repos = 0, {}
    end
    cache.count = cache.count + 1
  end
  -- The version was read before the list: the list is at least as new.
  cache.repos[repo] = { version = version, tags = tags, unset = unset }
  return tags
end

-- The page of a sorted list after last, at most n: a new table.
local function page_of(tags, last, n)
  local lo, hi = 1, #tags + 1
  if last then
    while lo < hi do -- first index whose tag sorts after last
      local mid = floor((lo + hi) / 2)
      if tags[mid] <= last then lo = mid + 1 else hi = mid end
    end
  end
  local page = {}
  for i = lo, #tags do
    if #page >= n then break end
    page[#page + 1] = tags[i]
  end
  return page
end

-- tag_list(repo, { n =, last = }?) -> { tag, ... } | nil, err, code
function Store:tag_list(repo, opts)
  local p = live(self)
  local last, n = page_args(opts)
  local ok, nerr, ncode = names(repo, "repository", last, "last?")
  if not ok then return nil, nerr, ncode end
  local tags = cached_tags(self, p, repo)
  if tags then
    return page_of(tags, last, tonumber(n))
  end
  return list_result(C.berth_tag_list(list, p, repo, last, n, scratch_err))
end

-- tag_lookup(repo, digest) -> { tag, ... } | nil, err, code
function Store:tag_lookup(repo, dgst)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository")
  if not ok then return nil, nerr, ncode end
  local d, err, code = parse_digest(dgst)
  if not d then return nil, err, code end
  return list_result(C.berth_tag_lookup(list, p, repo, d, scratch_err))
end

-- tag_reindex(repo) -> true | nil, err, code
function Store:tag_reindex(repo)
  local p = live(self)
  local ok, nerr, ncode = names(repo, "repository")
  if not ok then return nil, nerr, ncode end
  local rc = C.berth_tag_reindex(p, repo, scratch_err)
  if rc < 0 then
    return fail(rc)
  end
  return true
end

-- catalog({ n =, last = }?) -> { repository, ... } | nil, err, code
function Store:catalog(opts)
  local p = live(self)
  local last, n = page_args(opts)
  local ok, err, code = names(last, "last?")
  if not ok then return nil, err, code end
  return list_result(C.berth_catalog_list(list, p, last, n, scratch_err))
end

return _M

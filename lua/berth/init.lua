-- berth: a storage engine for OCI container registries.
--   local berth = require "berth"
--   local store = assert(berth.open{ root = "/var/lib/berth" })
local ffi_mod = require "berth.ffi"
local ffi = require "ffi"
local errors = require "berth.errors"
local digest = require "berth.digest"
local store = require "berth.store"
local manifest = require "berth.manifest"

local _M = {
  _VERSION = ffi.string(ffi_mod.C.berth_version()),
  errors = errors,
  digest = digest,
  manifest = manifest,
}

-- open{ root = dir, driver = "fs"|"mem", fsync = "none"|"data"|"full" }
--   -> store | nil, err, code
_M.open = store.open

return _M

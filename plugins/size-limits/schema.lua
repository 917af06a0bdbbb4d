-- size-limits: bytes and counts a push may not exceed. A limit left out
-- (nil) is not checked.
return {
  name = "size-limits",
  fields = {
    manifest_bytes = { type = "integer", min = 0,
      default = require("berth.manifest").MAX,
      description = "largest manifest body" },
    max_layers = { type = "integer", min = 0,
      description = "most layers in one image manifest" },
    blob_bytes = { type = "integer", min = 0,
      description = "largest blob, on upload and as named by a manifest" },
  },
}

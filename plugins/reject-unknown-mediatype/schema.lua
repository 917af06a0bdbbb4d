-- reject-unknown-mediatype: allow-lists of media types. A list left out
-- (nil) allows anything of that kind.
return {
  name = "reject-unknown-mediatype",
  fields = {
    manifest = { type = "array", of = "string",
      description = "manifest media types, also for index children" },
    config = { type = "array", of = "string",
      description = "config blob media types" },
    layer = { type = "array", of = "string",
      description = "layer (and other blob) media types" },
    artifact_type = { type = "array", of = "string",
      description = "artifact types; manifests without one pass" },
    code = { type = "string", default = "MANIFEST_INVALID",
      description = "OCI error code of a refusal" },
  },
}

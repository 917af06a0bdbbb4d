-- immutable-tags: tags matching `patterns` (and none of `exclude`) keep
-- the digest they were first set to.
return {
  name = "immutable-tags",
  fields = {
    patterns = { type = "array", of = "string", default = { "*" },
      description = "globs (*, ?) of immutable tags, e.g. v*, release-*" },
    exclude = { type = "array", of = "string", default = {},
      description = "globs of tags that stay mutable, e.g. latest" },
  },
}

-- namespace-rules: which repositories may be written. Globs: * within one
-- path segment, ** across segments, ? one character.
return {
  name = "namespace-rules",
  fields = {
    allow = { type = "array", of = "string",
      description = "repositories that may be pushed; nil: all" },
    deny = { type = "array", of = "string", default = {},
      description = "repositories that may not be pushed; wins over allow" },
  },
}

-- repo-permissions: who may do what where. Globs: * within one path
-- segment, ** across segments, ? one character.
return {
  name = "repo-permissions",
  fields = {
    owner_namespaces = { type = "boolean", default = true,
      description = "a user may push and delete under <user>/" },
    public = { type = "array", of = "string", default = {},
      description = "repositories everyone may pull" },
    admins = { type = "array", of = "string", default = {},
      description = "users who may do anything anywhere" },
  },
}

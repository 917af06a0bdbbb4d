-- A custom policy: repositories under prod/ take no "latest" tag.
return {
  PRIORITY = 500,
  VERSION = "0.1.0",
  before_tag_set = function(self, ctx, conf)
    if ctx.tag == "latest" and ctx.repo:find("^prod/") then
      return nil, "prod/ images are pulled by version, not latest", "DENIED"
    end
  end,
}

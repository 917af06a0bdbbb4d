-- luacheck (Debian package lua-check): `luacheck lua plugins spec`
std = "luajit"
globals = { "ngx" }          -- set by nginx's Lua module (status, header)
self = false                 -- plugin and handler methods share one shape
unused_args = false
max_line_length = 100
files["spec/"] = { std = "+busted" }
files["plugins/*/spec/"] = { std = "+busted" }

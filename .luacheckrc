-- luacheck (Debian package lua-check): `luacheck lua plugins spec`, a
-- ctest (CMakeLists.txt)
std = "luajit"
globals = { "ngx" }          -- set by nginx's Lua module (status, header)
self = false                 -- plugin and handler methods share one shape
unused_args = false
max_line_length = 100
ignore = { "211/_.+" }       -- a local named _x is unused on purpose
files["spec/"] = { std = "+busted" }
-- long test names (conformance_spec quotes the OCI suite's)
files["spec/05-http/"] = { std = "+busted", max_line_length = 120 }
files["plugins/*/spec/"] = { std = "+busted" }

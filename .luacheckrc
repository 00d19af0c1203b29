-- luacheck configuration for lualib/, scenarios/ and tests/.
std = "lua54"
max_line_length = 120
exclude_files = { "build*/**" }
files["tests/**"] = { globals = { "arg" } }

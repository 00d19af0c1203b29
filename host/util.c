/*
 * util.c — option-table readers, userdata class setup and buffer growth for
 * the modules.
 */
#include "util.h"

#include <stdlib.h>
#include <string.h>

bool util_reserve(char **buf, size_t *cap, size_t need, size_t first,
                  size_t max) {
  if (need <= *cap) return true;
  size_t c = *cap ? *cap : first;
  while (c < need)
    c *= 2;
  if (max && c > max) c = max < need ? need : max;
  char *b = realloc(*buf, c);
  if (!b) return false;
  *buf = b;
  *cap = c;
  return true;
}

int util_field_error(lua_State *L, const char *name, const char *what) {
  return luaL_error(L, "bad field '%s' (%s)", name, what);
}

static void field_type_error(lua_State *L, const char *name,
                             const char *expected) {
  luaL_error(L, "bad field '%s' (%s expected, got %s)", name, expected,
             luaL_typename(L, -1));
}

double util_opt_number(lua_State *L, int idx, const char *name, double def) {
  double v = def;
  lua_getfield(L, idx, name);
  if (!lua_isnil(L, -1)) {
    if (!lua_isnumber(L, -1)) field_type_error(L, name, "number");
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

const char *util_opt_string(lua_State *L, int idx, const char *name,
                            const char *def, size_t *len) {
  const char *s = def;
  if (len) *len = def ? strlen(def) : 0;
  lua_getfield(L, idx, name);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) field_type_error(L, name, "string");
    s = lua_tolstring(L, -1, len);
  }
  lua_pop(L, 1); /* the table still references the string */
  return s;
}

bool util_opt_bool(lua_State *L, int idx, const char *name, bool def) {
  bool v = def;
  lua_getfield(L, idx, name);
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1)) field_type_error(L, name, "boolean");
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

void util_new_class(lua_State *L, const char *tname, const luaL_Reg *methods) {
  luaL_newmetatable(L, tname); /* sets __name */
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 1);
}

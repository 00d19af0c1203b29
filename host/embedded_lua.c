/*
 * embedded_lua.c — makes require() find the Lua libraries embedded in the
 * binary (lualib/, see cmake/embed_lualib.cmake). With UPGRUN_LUALIB=<dir> set,
 * they are loaded from <dir> instead, so lualib/ can be edited without
 * rebuilding.
 */
#include "embedded_lua.h"

#include "runtime.h"

#include <stdlib.h>
#include <string.h>

static int search_dir(lua_State *L, const char *dir, const char *mod) {
  lua_pushstring(L, mod);
  luaL_gsub(L, lua_tostring(L, -1), ".", "/");
  const char *rel = lua_tostring(L, -1);
  const char *forms[] = {"%s/%s.lua", "%s/%s/init.lua"};
  for (int i = 0; i < 2; i++) {
    const char *path = lua_pushfstring(L, forms[i], dir, rel);
    if (luaL_loadfilex(L, path, "t") == LUA_OK) {
      lua_pushstring(L, path);
      return 2;
    }
    if (strstr(lua_tostring(L, -1), "cannot open") == NULL)
      return lua_error(L); /* syntax error in the library: say so */
    lua_pop(L, 2);
  }
  lua_pushfstring(L, "no file in UPGRUN_LUALIB=%s for '%s'", dir, mod);
  return 1;
}

static int searcher(lua_State *L) {
  const char *mod = luaL_checkstring(L, 1);
  const char *dir = getenv("UPGRUN_LUALIB");
  if (dir && *dir) return search_dir(L, dir, mod);
  for (const struct lualib_file *f = lualib_files; f->module; f++) {
    if (strcmp(f->module, mod) == 0) {
      if (luaL_loadbufferx(L, f->source, f->len, f->chunkname, "t") != LUA_OK)
        return lua_error(L);
      lua_pushstring(L, f->chunkname + 1);
      return 2;
    }
  }
  lua_pushfstring(L, "no embedded upgrun library '%s'", mod);
  return 1;
}

void lualib_install(lua_State *L) {
  /* package.searchers: preload, embedded lualib, then Lua/C paths */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  int n = (int)lua_rawlen(L, -1);
  for (int i = n; i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, searcher);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
}

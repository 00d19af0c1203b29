/*
 * mod_dir.c — upgrun.dir: what configuration loaders need to know about the
 * local file system and that plain Lua cannot tell.
 *
 *   dir.cwd()        -> the process's working directory (getcwd(), not $PWD)
 *   dir.kind(path)   -> "file" | "dir" | "other", or nil when absent
 *   dir.list(path)   -> {{name=, kind=, exec=bool}, ...} sorted by name
 *                       ("." and ".." left out), or nil, err (kind "io")
 *
 * kind and exec follow symbolic links (stat, not lstat). Synchronous: these
 * are single system calls on local configuration directories.
 */
#include "upgrun.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(const struct stat *st) {
  if (S_ISREG(st->st_mode)) return "file";
  if (S_ISDIR(st->st_mode)) return "dir";
  return "other";
}

static int l_cwd(lua_State *L) {
  char buf[PATH_MAX];
  if (!getcwd(buf, sizeof buf))
    return upgrun_push_error(L, "io", "getcwd: %s", strerror(errno));
  lua_pushstring(L, buf);
  return 1;
}

static int l_kind(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, kind_of(&st));
  return 1;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int l_list(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *dp = opendir(path);
  if (!dp)
    return upgrun_push_error(L, "io", "cannot list %s: %s", path,
                             strerror(errno));
  lua_newtable(L); /* names, to sort */
  int n = 0;
  for (struct dirent *de; (de = readdir(dp)) != NULL;) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    lua_pushstring(L, de->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(dp);
  const char **names = calloc((size_t)n + 1, sizeof *names);
  if (!names) return luaL_error(L, "out of memory");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, -1, i + 1);
    names[i] = lua_tostring(L, -1); /* kept alive by the names table */
    lua_pop(L, 1);
  }
  qsort(names, (size_t)n, sizeof *names, by_name);
  lua_createtable(L, n, 0);
  luaL_Buffer b;
  for (int i = 0; i < n; i++) {
    luaL_buffinit(L, &b);
    luaL_addstring(&b, path);
    luaL_addchar(&b, '/');
    luaL_addstring(&b, names[i]);
    luaL_pushresult(&b);
    struct stat st;
    int ok = stat(lua_tostring(L, -1), &st) == 0;
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, names[i]);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, ok ? kind_of(&st) : "other");
    lua_setfield(L, -2, "kind");
    lua_pushboolean(L, ok && (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)));
    lua_setfield(L, -2, "exec");
    lua_rawseti(L, -2, i + 1);
  }
  free(names);
  return 1;
}

int luaopen_upgrun_dir(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"cwd", l_cwd}, {"kind", l_kind}, {"list", l_list}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}

/*
 * fuzz_lua.c — one upgrun runtime for a fuzzing session and the runner of
 * each input through it (see fuzz_lua.h).
 */
#include "fuzz_lua.h"

#include "upgrun.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static upgrun_runtime *rt;
static int strict = -1;

int fuzz_lua_run(const char *code, const uint8_t *data, size_t size) {
  if (!rt) {
    rt = upgrun_new();
    if (!rt) abort();
    const char *s = getenv("UPGRUN_FUZZ_STRICT");
    strict = s && strcmp(s, "1") == 0;
  }
  lua_State *L = upgrun_lua(rt);
  lua_pushlstring(L, (const char *)data, size);
  lua_setglobal(L, "FUZZ_INPUT");
  int rc = upgrun_run_string(rt, code, "=fuzz", 0, NULL);
  lua_pushnil(L);
  lua_setglobal(L, "FUZZ_INPUT");
  lua_gc(L, LUA_GCCOLLECT);
  if (rc != 0 && strict) {
    fprintf(stderr, "fuzz: the entry point broke its nil, err contract\n");
    abort();
  }
  return 0;
}

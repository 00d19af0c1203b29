/*
 * runtime.c — creating, running and freeing an upgrun runtime: the Lua state
 * with the built-in modules, loading a script as text in its own _ENV, running
 * it as the main task, turning its outcome into an exit code, and the shutdown
 * order (cancel tasks, close Lua, module hooks, close the loop).
 */
#include "runtime.h"

#include <lua-cjson.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define UPGRUN_MODULE(name) int luaopen_upgrun_##name(lua_State *L);
#include "modules.gen.h"
#undef UPGRUN_MODULE

double upgrun_mono(void) { return (double)uv_hrtime() / 1e9; }

uint64_t upgrun_ms(double seconds) {
  if (!(seconds > 0)) return 0; /* NaN, negative, zero */
  if (seconds >= (double)UPGRUN_MS_MAX / 1000.0) return UPGRUN_MS_MAX;
  return (uint64_t)(seconds * 1000.0 + 0.5);
}

double upgrun_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long ms = ts.tv_nsec / 1000000; /* millisecond precision */
  return (double)ts.tv_sec + (double)ms / 1e3;
}

static int new_error_v(lua_State *L, const char *kind, const char *fmt,
                       va_list ap) {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushvfstring(L, fmt, ap);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, "upgrun.error");
  return 1;
}

int upgrun_new_error(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  new_error_v(L, kind, fmt, ap);
  va_end(ap);
  return 1;
}

int upgrun_push_error(lua_State *L, const char *kind, const char *fmt, ...) {
  lua_pushnil(L);
  va_list ap;
  va_start(ap, fmt);
  new_error_v(L, kind, fmt, ap);
  va_end(ap);
  return 2;
}

/* require "upgrun": versions of upgrun and the libraries it runs on. */
static int luaopen_upgrun(lua_State *L) {
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, UPGRUN_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushliteral(L, LUA_RELEASE);
  lua_setfield(L, -2, "lua");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "libuv");
  return 1;
}

int upgrun_register_module(upgrun_runtime *rt, const char *name,
                           lua_CFunction open) {
  if (!name || !*name || !open) return -1;
  lua_State *L = rt->L;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  return 0;
}

upgrun_runtime *upgrun_new(void) {
  upgrun_runtime *rt = calloc(1, sizeof *rt);
  if (!rt) return NULL;
  if (uv_loop_init(&rt->loop) != 0) {
    free(rt);
    return NULL;
  }
  rt->L = luaL_newstate();
  if (!rt->L) {
    uv_loop_close(&rt->loop);
    free(rt);
    return NULL;
  }
  rt->tag.rt = rt;
  rt->spin_limit = 60;
  const char *spin = getenv("UPGRUN_SPIN_LIMIT");
  if (spin) {
    char *end;
    double v = strtod(spin, &end);
    if (end != spin && *end == '\0' && v > 0) rt->spin_limit = v;
  }
  thread_extra_set(rt->L, &rt->tag);
  luaL_openlibs(rt->L);
  sched_init(rt);
  lualib_install(rt->L);
  luaL_requiref(rt->L, "upgrun.task", luaopen_upgrun_task, 0); /* TASK_MT */
  lua_pop(rt->L, 1);
  upgrun_register_module(rt, "cjson", luaopen_cjson);
  upgrun_register_module(rt, "upgrun", luaopen_upgrun);
#define UPGRUN_MODULE(name)                                                    \
  upgrun_register_module(rt, "upgrun." #name, luaopen_upgrun_##name);
#include "modules.gen.h"
#undef UPGRUN_MODULE
  return rt;
}

lua_State *upgrun_lua(upgrun_runtime *rt) { return rt->L; }
uv_loop_t *upgrun_loop(upgrun_runtime *rt) { return &rt->loop; }

void upgrun_on_shutdown(upgrun_runtime *rt, void (*fn)(void *), void *ud) {
  shutdown_hook *h = malloc(sizeof *h);
  if (!h) return;
  h->fn = fn;
  h->ud = ud;
  h->next = rt->hooks; /* run newest first */
  rt->hooks = h;
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void upgrun_free(upgrun_runtime *rt) {
  if (!rt) return;
  if (rt->live) sched_cancel_all(rt);
  for (int round = 0; round < 1000 && (rt->live || rt->ready_head); round++)
    uv_run(&rt->loop, UV_RUN_NOWAIT);
  lua_close(rt->L); /* __gc of handles closes them (uv_close) */
  rt->L = NULL;
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  for (shutdown_hook *h = rt->hooks, *next; h; h = next) {
    next = h->next;
    h->fn(h->ud);
    free(h);
  }
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  /* Only our own idle/signal handles should be left. */
  uv_walk(&rt->loop, close_any, NULL);
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&rt->loop) != 0)
    fprintf(stderr, "upgrun: warning: handles still open at exit\n");
  free(rt);
}

/* ---- running a chunk as the main task ---------------------------------- */

static void set_args(lua_State *L, const char *script, int argc, char **argv) {
  lua_createtable(L, argc, 1);
  lua_pushstring(L, script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
}

/* stack: chunk -> chunk (with a fresh _ENV whose __index is _G) */
static void give_own_env(lua_State *L) {
  lua_newtable(L);
  lua_newtable(L);
  lua_pushglobaltable(L);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
}

static int run_chunk(upgrun_runtime *rt, int status, const char *name, int argc,
                     char **argv) {
  lua_State *L = rt->L;
  if (status != LUA_OK) {
    fprintf(stderr, "upgrun: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return UPGRUN_EXIT_USAGE;
  }
  give_own_env(L);
  set_args(L, name, argc, argv);
  luaL_checkstack(L, argc + 2, "too many arguments");
  for (int i = 0; i < argc; i++)
    lua_pushstring(L, argv[i]);
  upgrun_task *t = sched_spawn(L, argc, name);
  rt->main_task = t;
  int main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sched_run_main(rt);

  int code = UPGRUN_EXIT_OK;
  lua_rawgeti(L, LUA_REGISTRYINDEX, main_ref);
  lua_getiuservalue(L, -1, 2);
  if (rt->aborting) {
    fprintf(stderr, "upgrun: aborted (%s)\n", rt->abort_reason);
    code = UPGRUN_EXIT_ABORTED;
  } else if (t->state == TASK_FAILED) {
    lua_getfield(L, -1, "message");
    lua_getfield(L, -2, "traceback");
    fprintf(stderr, "upgrun: %s\n%s\n", lua_tostring(L, -2),
            lua_tostring(L, -1));
    lua_pop(L, 2);
    code = UPGRUN_EXIT_USAGE;
  } else if (t->state != TASK_DONE) {
    fprintf(stderr, "upgrun: the script did not finish\n");
    code = UPGRUN_EXIT_USAGE;
  } else {
    lua_rawgeti(L, -1, 1);
    if (lua_isinteger(L, -1)) code = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  luaL_unref(L, LUA_REGISTRYINDEX, main_ref);
  rt->main_task = NULL;
  return code;
}

/* Adds "<dir of script>/?.lua" to package.path so a scenario can require
 * its own helper modules. */
static void add_script_dir(lua_State *L, const char *path) {
  const char *slash = strrchr(path, '/');
  lua_getglobal(L, "package");
  if (slash)
    lua_pushlstring(L, path, (size_t)(slash - path));
  else
    lua_pushliteral(L, ".");
  lua_getfield(L, -2, "path");
  lua_pushfstring(L, "%s/?.lua;%s", lua_tostring(L, -2), lua_tostring(L, -1));
  lua_setfield(L, -4, "path");
  lua_pop(L, 3);
}

int upgrun_run_file(upgrun_runtime *rt, const char *path, int argc,
                    char **argv) {
  add_script_dir(rt->L, path);
  /* text only; a first line starting with '#' (a shebang) is skipped and
   * line numbers are kept; errors name the file ("cannot open x.lua") */
  int status = luaL_loadfilex(rt->L, path, "t");
  return run_chunk(rt, status, path, argc, argv);
}

int upgrun_run_string(upgrun_runtime *rt, const char *code,
                      const char *chunkname, int argc, char **argv) {
  int status = luaL_loadbufferx(rt->L, code, strlen(code), chunkname, "t");
  return run_chunk(rt, status, chunkname, argc, argv);
}

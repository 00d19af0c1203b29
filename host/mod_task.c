/*
 * mod_task.c — upgrun.task: spawn([name,] fn, ...) -> task;
 * task:join([timeout])
 * -> true, results... | nil, err; task:cancel(); task:status(); task.id;
 * with_timeout(s, fn, ...) -> fn's results | nil, {kind = "timeout"} (fn's
 * errors are re-raised); current(); yield() (let other tasks run);
 * aborted() (SIGINT/SIGTERM received). The scheduling itself is in sched.c.
 * spawn_unwatched(name, fn, ...) is spawn without the count hook, for
 * upgrun's own library code that never computes for long between waits
 * (the probe loops and http probe samples: the hook costs ~10 % of a
 * sample's instructions); not for scenario code: a busy loop in such a task
 * is neither stopped at the spin limit nor interrupted by a signal.
 */
#include "runtime.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static upgrun_task *check_task(lua_State *L, int i) {
  return luaL_checkudata(L, i, TASK_MT);
}

static int l_spawn(lua_State *L) {
  const char *name = NULL;
  if (lua_type(L, 1) == LUA_TSTRING) {
    name = lua_tostring(L, 1);
    lua_pushvalue(L, 1);
    lua_remove(L, 1); /* keep name alive at the top until spawned */
    lua_insert(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    sched_spawn(L, lua_gettop(L) - 2, name); /* name, ud */
    return 1;
  }
  luaL_checktype(L, 1, LUA_TFUNCTION);
  sched_spawn(L, lua_gettop(L) - 1, NULL);
  return 1;
}

static int l_spawn_unwatched(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  lua_remove(L, 1); /* keep name alive at the top until spawned */
  lua_insert(L, 1);
  sched_spawn_unwatched(L, lua_gettop(L) - 2, lua_tostring(L, 1));
  return 1;
}

static int l_join(lua_State *L) {
  check_task(L, 1);
  double timeout = luaL_optnumber(L, 2, -1);
  lua_settop(L, 1);
  return sched_join(L, 1, timeout, false);
}

static int l_cancel(lua_State *L) {
  sched_cancel(check_task(L, 1));
  return 0;
}

static int l_status(lua_State *L) {
  static const char *const names[] = {"new",  "ready",  "running",  "waiting",
                                      "done", "failed", "cancelled"};
  lua_pushstring(L, names[check_task(L, 1)->state]);
  return 1;
}

static int l_index(lua_State *L) {
  upgrun_task *t = check_task(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "id") == 0) {
    lua_pushinteger(L, t->id);
  } else if (strcmp(k, "name") == 0) {
    lua_getiuservalue(L, 1, 3);
  } else {
    luaL_getmetatable(L, TASK_MT);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
  }
  return 1;
}

static int l_tostring(lua_State *L) {
  upgrun_task *t = check_task(L, 1);
  lua_getiuservalue(L, 1, 3);
  lua_pushfstring(L, "upgrun.task %d (%s)", (int)t->id, lua_tostring(L, -1));
  return 1;
}

static int l_with_timeout(lua_State *L) {
  upgrun_check_cancelled(L);
  double secs = luaL_checknumber(L, 1);
  luaL_argcheck(L, secs >= 0, 1, "must be >= 0");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  sched_spawn(L, lua_gettop(L) - 2, "with_timeout"); /* secs, ud */
  return sched_join(L, 2, secs, true);
}

static int l_current(lua_State *L) {
  upgrun_task *t = upgrun_current_task(L);
  if (!t) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  return 1;
}

static int l_yield(lua_State *L) {
  upgrun_task *t = upgrun_current_task(L);
  if (!t || t->co != L)
    return luaL_error(L, "upgrun.task.yield called outside a task");
  if (t->cancelled) return sched_raise_cancelled(L, t);
  return lua_yield(L, 0); /* the scheduler queues it again at the end */
}

static int l_aborted(lua_State *L) {
  lua_pushboolean(L, upgrun_from_lua(L)->aborting);
  return 1;
}

int luaopen_upgrun_task(lua_State *L) {
  static const luaL_Reg methods[] = {{"join", l_join},
                                     {"cancel", l_cancel},
                                     {"status", l_status},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__index", l_index}, {"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg fns[] = {{"spawn", l_spawn},
                                 {"spawn_unwatched", l_spawn_unwatched},
                                 {"with_timeout", l_with_timeout},
                                 {"current", l_current},
                                 {"yield", l_yield},
                                 {"aborted", l_aborted},
                                 {NULL, NULL}};
  luaL_newmetatable(L, TASK_MT);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "methods");
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  return 1;
}

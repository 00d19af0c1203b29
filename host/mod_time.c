/*
 * mod_time.c — upgrun.time: mono() (monotonic seconds, the one clock for
 * durations and ordering), now() (wall clock, UTC seconds with ms precision)
 * and sleep(s), which yields the task to the loop on a libuv timer.
 */
#include "upgrun.h"

#include <lauxlib.h>
#include <stdlib.h>

typedef struct {
  upgrun_op op;
  uv_timer_t timer;
} sleep_op;

static int l_mono(lua_State *L) {
  lua_pushnumber(L, upgrun_mono());
  return 1;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, upgrun_wall());
  return 1;
}

static void free_on_close(uv_handle_t *h) { free(h->data); }

static int sleep_push(lua_State *L, upgrun_op *op) {
  (void)L;
  sleep_op *s = (sleep_op *)op;
  uv_close((uv_handle_t *)&s->timer, free_on_close);
  return 0;
}

static void sleep_cancel(upgrun_op *op) {
  sleep_op *s = (sleep_op *)op;
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, free_on_close);
}

static void sleep_done(uv_timer_t *h) {
  sleep_op *s = h->data;
  upgrun_op_complete(&s->op);
}

static int l_sleep(lua_State *L) {
  upgrun_check_cancelled(L);
  double secs = luaL_checknumber(L, 1);
  luaL_argcheck(L, secs >= 0, 1, "must be >= 0");
  sleep_op *s = calloc(1, sizeof *s);
  if (!s) return luaL_error(L, "out of memory");
  s->op.push = sleep_push;
  s->op.cancel = sleep_cancel;
  uv_loop_t *loop = upgrun_loop(upgrun_from_lua(L));
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  uv_update_time(loop); /* the cached loop time may be stale after CPU work */
  /* whole milliseconds, rounded up (a sleep shorter than 0.5 ms rounded to
   * a 0 ms timer would return at once, and a caller sleeping until a due
   * time would spin through loop iterations until it came), plus the one
   * libuv's loop time may lose: it counts whole (coarse) milliseconds, so a
   * timer of n ms set late in a millisecond may fire up to 1 ms before n ms
   * have passed on upgrun_mono() */
  uint64_t ms = upgrun_ms(secs);
  if (secs > 0 && (double)ms < secs * 1000.0 && ms < UPGRUN_MS_MAX) ms++;
  if (secs > 0 && ms < UPGRUN_MS_MAX) ms++;
  uv_timer_start(&s->timer, sleep_done, ms, 0);
  return upgrun_wait(L, &s->op);
}

int luaopen_upgrun_time(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"mono", l_mono}, {"now", l_now}, {"sleep", l_sleep}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}

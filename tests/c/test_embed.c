/*
 * test_embed.c — the embedding API (include/upgrun.h) used the way a team
 * adding its own C primitive would: create a runtime, register a module
 * "embed.counter" whose add(n, ms) waits on a libuv timer through
 * upgrun_wait/upgrun_op_complete and whose value() returns at once, run Lua
 * that requires it (from several tasks, with a cancellation), check exit codes
 * (returned integer, syntax error, runtime error, a file with arguments) and
 * free the runtime. Uses nothing but upgrun.h (and Lua's own headers); must be
 * leak-free under ASan.
 */
#include "upgrun.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (cond) {                                                                \
      passed++;                                                                \
    } else {                                                                   \
      failed++;                                                                \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                   \
      printf(__VA_ARGS__);                                                     \
      printf("\n");                                                            \
    }                                                                          \
  } while (0)

/* ---- the module ------------------------------------------------------- */

static long counter; /* what value() returns */
static int started, pushed, cancelled, freed, shutdowns;

typedef struct {
  upgrun_op op; /* first member */
  uv_timer_t timer;
  long n;
} add_op;

static void add_free(uv_handle_t *h) {
  freed++;
  free(h->data);
}

static void add_fire(uv_timer_t *h) {
  add_op *a = h->data;
  counter += a->n;
  upgrun_op_complete(&a->op);
}

/* Resumed: the result is the counter after this add. Never raises. */
static int add_push(lua_State *L, upgrun_op *op) {
  add_op *a = (add_op *)op;
  pushed++;
  lua_pushinteger(L, counter);
  uv_close((uv_handle_t *)&a->timer, add_free);
  return 1;
}

static void add_cancel(upgrun_op *op) {
  add_op *a = (add_op *)op;
  cancelled++;
  uv_timer_stop(&a->timer);
  uv_close((uv_handle_t *)&a->timer, add_free);
}

/* counter.add(n, ms): waits ms on a timer, then adds n; returns the counter. */
static int l_add(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_Integer ms = luaL_checkinteger(L, 2);
  luaL_argcheck(L, ms >= 0, 2, "must be >= 0");
  add_op *a = calloc(1, sizeof *a);
  if (!a) return luaL_error(L, "out of memory");
  started++;
  a->n = (long)n;
  a->op.push = add_push;
  a->op.cancel = add_cancel;
  uv_timer_init(upgrun_loop(upgrun_from_lua(L)), &a->timer);
  a->timer.data = a;
  uv_timer_start(&a->timer, add_fire, (uint64_t)ms, 0);
  return upgrun_wait(L, &a->op);
}

static int l_value(lua_State *L) {
  lua_pushinteger(L, counter);
  return 1;
}

static int l_in_task(lua_State *L) {
  lua_pushboolean(L, upgrun_current_task(L) != NULL);
  return 1;
}

static int luaopen_embed_counter(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"add", l_add}, {"value", l_value}, {"in_task", l_in_task}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}

static void on_shutdown(void *ud) { shutdowns += *(int *)ud; }

/* ---- the tests -------------------------------------------------------- */

static const char *SCRIPT =
    "local c = require 'embed.counter'\n"
    "local task = require 'upgrun.task'\n"
    "local time = require 'upgrun.time'\n"
    "assert(c.in_task(), 'the main chunk is a task')\n"
    "assert(c.value() == 0)\n"
    "assert(c.add(1, 10) == 1)\n"
    "assert(c.value() == 1)\n"
    "-- three tasks wait at once: the 20 ms one finishes first\n"
    "local t0 = time.mono()\n"
    "local order = {}\n"
    "local ts = {}\n"
    "for i, ms in ipairs{60, 20, 40} do\n"
    "  ts[i] = task.spawn(function() local v = c.add(10, ms); order[#order+1] "
    "= ms; return v end)\n"
    "end\n"
    "for i = 1, 3 do assert(ts[i]:join(2)) end\n"
    "assert(table.concat(order, ',') == '20,40,60', table.concat(order, ','))\n"
    "assert(time.mono() - t0 < 0.5, 'concurrent, not sequential')\n"
    "assert(c.value() == 31)\n"
    "-- a cancelled wait never completes and is released\n"
    "local slow = task.spawn(function() return c.add(1000, 10000) end)\n"
    "time.sleep(0.01)\n"
    "slow:cancel()\n"
    "local ok, err = slow:join(1)\n"
    "assert(ok == nil and err.kind == 'cancelled', tostring(err))\n"
    "-- called from a coroutine of the script's own, it raises\n"
    "local fine, e = pcall(coroutine.wrap(function() return c.add(1, 1) end))\n"
    "assert(not fine and tostring(e):find('outside a task', 1, true), "
    "tostring(e))\n"
    "-- with_timeout cancels an add that takes too long\n"
    "local r, terr = task.with_timeout(0.02, c.add, 5, 5000)\n"
    "assert(r == nil and terr.kind == 'timeout')\n"
    "assert(c.value() == 31)\n"
    "return 0\n";

static void test_module(void) {
  upgrun_runtime *rt = upgrun_new();
  CHECK(rt != NULL, "upgrun_new");
  if (!rt) return;
  CHECK(upgrun_lua(rt) != NULL, "a Lua state");
  CHECK(upgrun_loop(rt) != NULL, "a loop");
  CHECK(upgrun_register_module(rt, "", luaopen_embed_counter) == -1,
        "empty name");
  CHECK(upgrun_register_module(rt, NULL, luaopen_embed_counter) == -1,
        "NULL name");
  CHECK(upgrun_register_module(rt, "embed.counter", luaopen_embed_counter) == 0,
        "register");
  static int one = 1;
  upgrun_on_shutdown(rt, on_shutdown, &one);
  double t0 = upgrun_mono();
  int code = upgrun_run_string(rt, SCRIPT, "=embed", 0, NULL);
  double took = upgrun_mono() - t0;
  CHECK(code == 0, "script exit code %d", code);
  CHECK(counter == 31, "counter %ld", counter);
  CHECK(took < 2.0, "the cancelled 10 s wait did not hold the run: %.3f s",
        took);
  /* add(1), three adds, the cancelled one, the one from a plain coroutine
   * (upgrun_wait cancels it at once) and the with_timeout one */
  CHECK(started == 7, "ops started %d", started);
  CHECK(pushed == 4, "ops pushed %d", pushed);
  CHECK(cancelled == 3, "ops cancelled %d", cancelled);
  CHECK(shutdowns == 0, "no shutdown hook yet");
  upgrun_free(rt);
  CHECK(shutdowns == 1, "shutdown hook ran once (%d)", shutdowns);
  CHECK(freed == started, "every op freed: %d of %d", freed, started);
  double wall = upgrun_wall();
  CHECK(wall > 1.6e9 && wall < 1e10, "wall clock %f", wall);
}

static int run_code(const char *code) {
  upgrun_runtime *rt = upgrun_new();
  if (!rt) return -1;
  upgrun_register_module(rt, "embed.counter", luaopen_embed_counter);
  int rc = upgrun_run_string(rt, code, "=exitcode", 0, NULL);
  upgrun_free(rt);
  return rc;
}

static void test_exit_codes(void) {
  int rc = run_code("return 1");
  CHECK(rc == UPGRUN_EXIT_FAILED, "return 1 -> %d", rc);
  rc = run_code("return");
  CHECK(rc == UPGRUN_EXIT_OK, "no value -> %d", rc);
  rc = run_code("local x = = 1");
  CHECK(rc == UPGRUN_EXIT_USAGE, "syntax error -> %d", rc);
  rc = run_code("error('expected runtime error (test_embed)')");
  CHECK(rc == UPGRUN_EXIT_USAGE, "runtime error -> %d", rc);
  rc = run_code("require('embed.counter').add(1, 1); error({})");
  CHECK(rc == UPGRUN_EXIT_USAGE, "runtime error after a wait -> %d", rc);
  rc = run_code("return 7");
  CHECK(rc == 7, "return 7 -> %d", rc);
}

static void test_run_file(void) {
  char path[] = "/tmp/upgrun_test_embed_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd < 0) return;
  const char *src = "#!/usr/bin/env upgrun\n"
                    "local c = require 'embed.counter'\n"
                    "assert(arg[0] and arg[1] == 'x' and arg[2] == 'y')\n"
                    "local a, b = ...\n"
                    "assert(a == 'x' and b == 'y')\n"
                    "return c.add(tonumber(#arg), 1) > 0 and 5 or 6\n";
  CHECK(write(fd, src, strlen(src)) == (ssize_t)strlen(src), "write");
  close(fd);
  upgrun_runtime *rt = upgrun_new();
  upgrun_register_module(rt, "embed.counter", luaopen_embed_counter);
  char *args[] = {"x", "y"};
  int rc = upgrun_run_file(rt, path, 2, args);
  CHECK(rc == 5, "run_file -> %d", rc);
  upgrun_free(rt);
  unlink(path);
  rt = upgrun_new();
  rc = upgrun_run_file(rt, "/nonexistent/script.lua", 0, NULL);
  CHECK(rc == UPGRUN_EXIT_USAGE, "missing file -> %d", rc);
  upgrun_free(rt);
}

int main(void) {
  test_module();
  test_exit_codes();
  test_run_file();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

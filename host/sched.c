/*
 * sched.c — the task scheduler: every script body, step and probe is a Lua
 * coroutine ("task") driven by lua_resume from this file only. A waiting
 * primitive yields through upgrun_wait(); its completion callback calls
 * upgrun_op_complete(), which queues the task; an idle handle drains the ready
 * queue and resumes tasks, so libuv/libcurl/libssh2 callbacks never run Lua.
 * Cancellation cancels the pending op and raises a "cancelled" error in the
 * task at its current (or next) wait; a task that keeps catching it is
 * abandoned. SIGINT/SIGTERM/SIGHUP abort the run, even while Lua is busy.
 */
#include "runtime.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CANCELLED_MT "upgrun.cancelled"

/* A cancelled task that catches its cancellation this many times (each
 * later wait raises it again at once) is abandoned: it is never resumed
 * again, its error and traceback are reported, its joiners get
 * {kind="cancelled", abandoned=true}. */
#define CANCEL_RAISE_LIMIT 100

static void on_ready_idle(uv_idle_t *h);

static void ready_push(upgrun_task *t) {
  upgrun_runtime *rt = t->rt;
  t->state = TASK_READY;
  t->next_ready = NULL;
  if (rt->ready_tail)
    rt->ready_tail->next_ready = t;
  else
    rt->ready_head = t;
  rt->ready_tail = t;
  if (!uv_is_active((uv_handle_t *)&rt->ready_idle))
    uv_idle_start(&rt->ready_idle, on_ready_idle);
}

static upgrun_task *ready_pop(upgrun_runtime *rt) {
  upgrun_task *t = rt->ready_head;
  if (t) {
    rt->ready_head = t->next_ready;
    if (!rt->ready_head) rt->ready_tail = NULL;
    t->next_ready = NULL;
  }
  return t;
}

static void live_unlink(upgrun_task *t) {
  upgrun_runtime *rt = t->rt;
  if (t->prev_live)
    t->prev_live->next_live = t->next_live;
  else if (rt->live == t)
    rt->live = t->next_live;
  if (t->next_live) t->next_live->prev_live = t->prev_live;
  t->prev_live = t->next_live = NULL;
}

void sched_push_cancelled(lua_State *L, upgrun_runtime *rt) {
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "cancelled");
  lua_setfield(L, -2, "kind");
  if (rt->aborting) {
    lua_pushfstring(L, "aborted by %s", rt->abort_reason);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "aborted");
  } else {
    lua_pushliteral(L, "task cancelled");
    lua_setfield(L, -2, "message");
  }
  luaL_setmetatable(L, CANCELLED_MT);
}

static bool is_cancellation(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return false;
  luaL_getmetatable(L, CANCELLED_MT);
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

static int error_tostring(lua_State *L) {
  lua_getfield(L, 1, "kind");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "%s: %s", luaL_optstring(L, -2, "error"),
                  luaL_optstring(L, -1, "?"));
  return 1;
}

/* ---- join bookkeeping ------------------------------------------------- */

typedef struct join_op {
  upgrun_op op;
  upgrun_task *target;
  int target_ref;    /* keeps the target's userdata (and results) alive */
  uv_timer_t *timer; /* NULL when no timeout */
  bool timed_out;
  bool with_timeout; /* results unpacked, errors re-raised, target cancelled
                        on timeout or when the joiner is cancelled */
  double timeout;
  struct join_op *next;
} join_op;

static void timer_free_cb(uv_handle_t *h) { free(h); }

static void join_detach(join_op *j) {
  upgrun_runtime *rt = j->target->rt;
  for (join_op **p = &rt->joiners; *p; p = &(*p)->next)
    if (*p == j) {
      *p = j->next;
      j->target->nwaiters--;
      break;
    }
  if (j->timer) {
    uv_close((uv_handle_t *)j->timer, timer_free_cb);
    j->timer = NULL;
  }
}

static void wake_joiners(upgrun_task *t) {
  for (join_op *j = t->rt->joiners, *next; j; j = next) {
    next = j->next;
    if (j->target == t) {
      join_detach(j);
      upgrun_op_complete(&j->op);
    }
  }
}

/* ---- finishing a task ------------------------------------------------- */

static void push_task_ud(upgrun_task *t) {
  lua_rawgeti(t->rt->L, LUA_REGISTRYINDEX, t->ref);
}

/* The common end of a finished task: unlink, wake joiners, unanchor. */
static void task_settled(upgrun_task *t) {
  upgrun_runtime *rt = t->rt;
  thread_extra_set(t->co, &rt->tag);
  live_unlink(t);
  wake_joiners(t);
  luaL_unref(rt->L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
  if (t == rt->main_task) uv_stop(&rt->loop);
}

static void task_finish(upgrun_task *t, int status, int nres) {
  upgrun_runtime *rt = t->rt;
  lua_State *L = rt->L, *co = t->co;
  push_task_ud(t); /* L: ud */
  if (status == LUA_OK) {
    /* co: ..., r1..rn -> L: ud, {r1..rn, n = n} */
    lua_createtable(co, nres, 1);
    lua_insert(co, -(nres + 1));
    for (int i = nres; i >= 1; i--)
      lua_rawseti(co, -(i + 1), i);
    lua_pushinteger(co, nres);
    lua_setfield(co, -2, "n");
    lua_xmove(co, L, 1);
    t->state = TASK_DONE;
  } else if (is_cancellation(co, -1)) {
    lua_xmove(co, L, 1);
    t->state = TASK_CANCELLED;
  } else {
    /* L: ud, {kind = "error", message, traceback} */
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "error");
    lua_setfield(L, -2, "kind");
    luaL_tolstring(co, -1, NULL);
    lua_xmove(co, L, 1);
    lua_setfield(L, -2, "message");
    luaL_traceback(L, co, NULL, 0);
    lua_setfield(L, -2, "traceback");
    luaL_setmetatable(L, "upgrun.error");
    lua_pop(co, 1);
    t->state = TASK_FAILED;
    if (t->nwaiters == 0 && t != rt->main_task) {
      lua_getiuservalue(L, -2, 3);
      lua_getfield(L, -2, "message");
      lua_getfield(L, -3, "traceback");
      fprintf(stderr, "upgrun: task %ld (%s) failed: %s\n%s\n", t->id,
              luaL_optstring(L, -3, "?"), lua_tostring(L, -2),
              lua_tostring(L, -1));
      lua_pop(L, 3);
    }
  }
  lua_setiuservalue(L, -2, 2); /* ud.result = results or error */
  lua_pop(L, 1);
  /* An error leaves the coroutine's stack as it was: close its pending
   * to-be-closed variables (`local x <close>`) now. */
  if (status != LUA_OK) lua_resetthread(co);
  task_settled(t);
}

/* A cancelled task that kept catching its cancellation (or kept running
 * long after it) and is now suspended for good: report it with where it
 * was, close its to-be-closed variables and finish it as cancelled. */
static void task_abandon(upgrun_task *t) {
  upgrun_runtime *rt = t->rt;
  lua_State *L = rt->L, *co = t->co;
  push_task_ud(t); /* L: ud */
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "cancelled");
  lua_setfield(L, -2, "kind");
  lua_pushfstring(L,
                  "task ignored its cancellation (caught it %d times or ran "
                  "on without waiting): abandoned",
                  t->cancel_raises);
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "abandoned");
  luaL_traceback(L, co, NULL, 0);
  lua_setfield(L, -2, "traceback");
  luaL_setmetatable(L, CANCELLED_MT);
  lua_getiuservalue(L, -2, 3);
  lua_getfield(L, -2, "traceback");
  fprintf(stderr, "upgrun: task %ld (%s) %s\n%s\n", t->id,
          luaL_optstring(L, -2, "?"),
          "ignored its cancellation and was abandoned", lua_tostring(L, -1));
  lua_pop(L, 2);
  lua_setiuservalue(L, -2, 2);
  lua_pop(L, 1);
  t->state = TASK_CANCELLED;
  lua_resetthread(co); /* closes its pending `<close>` variables */
  task_settled(t);
}

/* ---- resuming --------------------------------------------------------- */

/* ---- signals ------------------------------------------------------ */

/* SIGINT, SIGTERM and SIGHUP abort the run. The handler only records the
 * signal and wakes the loop (uv_async_send is async-signal-safe); the abort
 * itself runs either from the loop (signal_async_cb) or, when a task keeps
 * Lua busy, from the count hook below, so a signal is honoured within a few
 * milliseconds either way. A second signal exits at once. */
static const int abort_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define N_ABORT_SIGNALS (sizeof abort_signals / sizeof abort_signals[0])
static volatile sig_atomic_t pending_signal;
static _Atomic(upgrun_runtime *) signal_rt;
static struct sigaction saved_actions[N_ABORT_SIGNALS];

static const char *abort_signal_name(int sig) {
  switch (sig) {
  case SIGINT:
    return "SIGINT";
  case SIGTERM:
    return "SIGTERM";
  case SIGHUP:
    return "SIGHUP";
  default:
    return "a signal";
  }
}

static void on_abort_signal(int sig) {
  if (pending_signal) {
    static const char msg[] = "upgrun: second signal, exiting now\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(UPGRUN_EXIT_ABORTED);
  }
  pending_signal = sig;
  upgrun_runtime *rt = atomic_load(&signal_rt);
  if (rt) uv_async_send(&rt->signal_async);
}

/* Turns a recorded signal into an abort (once). */
static void take_pending_signal(upgrun_runtime *rt) {
  int sig = pending_signal;
  if (sig && !rt->aborting) upgrun_abort(rt, abort_signal_name(sig));
}

static void signal_async_cb(uv_async_t *h) { take_pending_signal(h->data); }

static void signals_install(upgrun_runtime *rt) {
  pending_signal = 0;
  atomic_store(&signal_rt, rt);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_abort_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < N_ABORT_SIGNALS; i++)
    sigaction(abort_signals[i], &sa, &saved_actions[i]);
}

static void signals_restore(void) {
  for (size_t i = 0; i < N_ABORT_SIGNALS; i++)
    sigaction(abort_signals[i], &saved_actions[i], NULL);
  atomic_store(&signal_rt, NULL);
  pending_signal = 0;
}

/* ---- the count hook ----------------------------------------------------- */

/* Count hook on every task thread (and the coroutines it creates; not on
 * the runtime's own unwatched tasks, see sched_spawn_unwatched), run every
 * SPIN_CHECK_EVERY instructions (a few ms):
 *  - a signal received while Lua is busy aborts the run now, and the
 *    running task gets its cancellation raised here (the runner can catch
 *    it like any other error);
 *  - a task that runs for too long without yielding to the loop starves
 *    every other task, probe and timer, so it is stopped with an error
 *    naming the limit; a cancelled one is abandoned instead (it would only
 *    catch the error and go on). */
#define SPIN_CHECK_EVERY 1000000 /* instructions */

static void spin_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  thread_extra *x = thread_extra_of(L);
  upgrun_runtime *rt = x->rt;
  if (pending_signal && !rt->aborting) take_pending_signal(rt);
  /* L is the task's thread, or a coroutine the script created inside it */
  upgrun_task *t = rt->running;
  if (!t || (x->task && x->task != t)) return;
  bool own = t->co == L;
  /* cancelled while busy (a signal): raise it now, once */
  if (t->cancelled && t->cancel_raises == 0) {
    t->cancel_raises++;
    sched_push_cancelled(L, rt);
    lua_error(L);
    return;
  }
  double ran = upgrun_mono() - t->resumed_at;
  if (ran > rt->spin_limit) {
    if (t->cancelled && own) {
      t->abandoned = true;
      lua_yield(L, 0);
      return;
    }
    luaL_error(L,
               "task ran %d s without yielding to the event loop (limit "
               "%d s): a busy loop starves every probe and timer",
               (int)ran, (int)rt->spin_limit);
  }
}

static void task_resume(upgrun_task *t) {
  lua_State *co = t->co;
  int nargs = 0;
  if (!t->started) {
    t->started = true;
    nargs = lua_gettop(co) - 1; /* co: fn, args... */
  } else if (t->op) {
    upgrun_op *op = t->op;
    t->op = NULL;
    t->op_ready = false;
    nargs = op->push(co, op);
  }
  t->nres = nargs;
  t->state = TASK_RUNNING;
  t->resumed_at = upgrun_mono();
  int nres = 0;
  t->rt->running = t;
  int status = lua_resume(co, t->rt->L, nargs, &nres);
  t->rt->running = NULL;
  if (status == LUA_YIELD && t->abandoned) {
    task_abandon(t);
    return;
  }
  if (status == LUA_YIELD) {
    lua_pop(co, nres);
    if (t->op && !t->op_ready)
      t->state = TASK_WAITING;
    else
      ready_push(t); /* op already complete, or a bare coroutine.yield() */
    return;
  }
  task_finish(t, status, nres);
}

/* Rounds of the ready queue run per loop iteration. A round resumes the
 * tasks queued when it starts; tasks they wake (a spawn, a join, a finished
 * with_timeout) run in the next round without going back to the loop, which
 * would cost a poll per hand-off. After READY_ROUNDS the loop gets its turn,
 * so a task that only yields cannot starve I/O callbacks and timers. */
#define READY_ROUNDS 16

static void on_ready_idle(uv_idle_t *h) {
  upgrun_runtime *rt = h->data;
  for (int round = 0; round < READY_ROUNDS && rt->ready_head; round++) {
    upgrun_task *last = rt->ready_tail;
    for (upgrun_task *t; (t = ready_pop(rt));) {
      task_resume(t);
      if (t == last) break;
    }
  }
  if (!rt->ready_head) uv_idle_stop(&rt->ready_idle);
}

/* ---- the public op API ---------------------------------------------- */

upgrun_task *upgrun_current_task(lua_State *L) {
  return thread_extra_of(L)->task;
}

upgrun_runtime *upgrun_from_lua(lua_State *L) { return thread_extra_of(L)->rt; }

int sched_raise_cancelled(lua_State *L, upgrun_task *t) {
  if (++t->cancel_raises > CANCEL_RAISE_LIMIT) {
    t->abandoned = true;
    return lua_yield(L, 0); /* task_resume sees `abandoned` */
  }
  sched_push_cancelled(L, t->rt);
  return lua_error(L);
}

int upgrun_check_cancelled(lua_State *L) {
  upgrun_task *t = thread_extra_of(L)->task;
  if (t && t->co == L && t->cancelled) return sched_raise_cancelled(L, t);
  return 0;
}

static int wait_cont(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  upgrun_task *t = thread_extra_of(L)->task;
  if (t->cancelled) return sched_raise_cancelled(L, t);
  if (t->raise_on_resume) {
    t->raise_on_resume = false;
    return lua_error(L); /* the op pushed the error value */
  }
  return t->nres;
}

int upgrun_wait(lua_State *L, upgrun_op *op) {
  upgrun_task *t = thread_extra_of(L)->task;
  if (!t || t->co != L) {
    op->cancel(op);
    return luaL_error(L, "a waiting upgrun primitive was called outside a "
                         "task (from a coroutine of the script's own?); "
                         "use upgrun.task.spawn");
  }
  if (t->cancelled) {
    op->cancel(op);
    return sched_raise_cancelled(L, t);
  }
  op->task = t;
  t->op = op;
  t->op_ready = false;
  return lua_yieldk(L, 0, 0, wait_cont);
}

void upgrun_op_complete(upgrun_op *op) {
  upgrun_task *t = op->task;
  if (!t || t->op != op || t->op_ready) return;
  t->op_ready = true;
  if (t->state == TASK_WAITING) ready_push(t);
}

void sched_raise_on_resume(upgrun_task *t) { t->raise_on_resume = true; }

/* ---- spawning and cancelling ---------------------------------------- */

static upgrun_task *spawn(lua_State *L, int nargs, const char *name,
                          bool watched) {
  upgrun_runtime *rt = upgrun_from_lua(L);
  int fn = lua_gettop(L) - nargs;
  luaL_checktype(L, fn, LUA_TFUNCTION);
  upgrun_task *t = lua_newuserdatauv(L, sizeof *t, 3); /* fn, args, ud */
  memset(t, 0, sizeof *t);
  t->rt = rt;
  t->id = ++rt->next_id;
  t->state = TASK_NEW;
  luaL_setmetatable(L, TASK_MT);
  t->co = lua_newthread(L); /* fn, args, ud, co */
  lua_setiuservalue(L, -2, 1);
  if (name)
    lua_pushstring(L, name);
  else
    lua_pushfstring(L, "task %d", (int)t->id);
  lua_setiuservalue(L, -2, 3);
  t->tag.rt = rt;
  t->tag.task = t;
  thread_extra_set(t->co, &t->tag);
  /* (the hook costs every Lua instruction of the task a check; a new thread
   * inherits its creator's hook, so an unwatched one clears it) */
  if (watched)
    lua_sethook(t->co, spin_hook, LUA_MASKCOUNT, SPIN_CHECK_EVERY);
  else
    lua_sethook(t->co, NULL, 0, 0);
  lua_insert(L, fn); /* ud, fn, args */
  lua_xmove(L, t->co, nargs + 1);
  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->next_live = rt->live;
  if (rt->live) rt->live->prev_live = t;
  rt->live = t;
  ready_push(t);
  return t;
}

upgrun_task *sched_spawn(lua_State *L, int nargs, const char *name) {
  return spawn(L, nargs, name, true);
}

upgrun_task *sched_spawn_unwatched(lua_State *L, int nargs, const char *name) {
  return spawn(L, nargs, name, false);
}

bool sched_finished(const upgrun_task *t) {
  return t->state == TASK_DONE || t->state == TASK_FAILED ||
         t->state == TASK_CANCELLED;
}

void sched_cancel(upgrun_task *t) {
  if (sched_finished(t) || t->cancelled) return;
  t->cancelled = true;
  if (t->state == TASK_WAITING && t->op) {
    upgrun_op *op = t->op;
    t->op = NULL;
    op->cancel(op);
    ready_push(t); /* wait_cont raises the cancellation */
  }
  /* NEW / READY / RUNNING: raised when it runs or at its next wait. A NEW
   * task is resumed once and raises at its first wait; a task that never
   * waits runs to its end. */
}

void sched_cancel_all(upgrun_runtime *rt) {
  for (upgrun_task *t = rt->live, *next; t; t = next) {
    next = t->next_live;
    sched_cancel(t);
  }
}

/* ---- joining ---------------------------------------------------------- */

/* Pushes the outcome of finished task `t` whose userdata is at `ud`:
 * join: true, results... | nil, err.  with_timeout: results... | raise err
 * (a cancelled target gives nil, err). */
static int push_outcome(lua_State *L, upgrun_task *t, int ud, bool unpack) {
  lua_getiuservalue(L, ud, 2);
  int res = lua_gettop(L);
  if (t->state == TASK_DONE) {
    lua_getfield(L, res, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n + 2, "too many results");
    if (!unpack) lua_pushboolean(L, 1);
    for (int i = 1; i <= n; i++)
      lua_rawgeti(L, res, i);
    lua_remove(L, res);
    return n + (unpack ? 0 : 1);
  }
  if (unpack && t->state == TASK_FAILED) return -1; /* error table on top */
  lua_pushnil(L);
  lua_insert(L, res);
  return 2;
}

static int join_push(lua_State *L, upgrun_op *op) {
  join_op *j = (join_op *)op;
  upgrun_task *t = j->target;
  upgrun_runtime *rt = t->rt;
  int n;
  if (j->timed_out) {
    if (j->with_timeout) sched_cancel(t);
    char secs[32];
    snprintf(secs, sizeof secs, "%g", j->timeout);
    n = upgrun_push_error(L, "timeout", "timed out after %ss", secs);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->target_ref);
    int ud = lua_gettop(L);
    n = push_outcome(L, t, ud, j->with_timeout);
    if (n < 0) { /* re-raise the task's error in the joiner */
      lua_getfield(L, -1, "message");
      lua_remove(L, ud);
      lua_remove(L, ud);
      sched_raise_on_resume(j->op.task);
      n = 1;
    } else {
      lua_remove(L, ud);
    }
  }
  luaL_unref(rt->L, LUA_REGISTRYINDEX, j->target_ref);
  free(j);
  return n;
}

static void join_cancel(upgrun_op *op) {
  join_op *j = (join_op *)op;
  join_detach(j);
  if (j->with_timeout) sched_cancel(j->target);
  luaL_unref(j->target->rt->L, LUA_REGISTRYINDEX, j->target_ref);
  free(j);
}

static void join_timer_cb(uv_timer_t *h) {
  join_op *j = h->data;
  j->timed_out = true;
  join_detach(j);
  upgrun_op_complete(&j->op);
}

int sched_join(lua_State *L, int ud, double timeout, bool with_timeout) {
  upgrun_task *t = luaL_checkudata(L, ud, TASK_MT);
  upgrun_runtime *rt = t->rt;
  if (t == upgrun_current_task(L))
    return luaL_error(L, "a task cannot join itself");
  if (sched_finished(t)) {
    int n = push_outcome(L, t, ud, with_timeout);
    if (n < 0) {
      lua_getfield(L, -1, "message");
      return lua_error(L);
    }
    return n;
  }
  upgrun_check_cancelled(L);
  join_op *j = calloc(1, sizeof *j);
  if (!j) return luaL_error(L, "out of memory");
  j->op.push = join_push;
  j->op.cancel = join_cancel;
  j->target = t;
  j->with_timeout = with_timeout;
  j->timeout = timeout;
  lua_pushvalue(L, ud);
  j->target_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  j->next = rt->joiners;
  rt->joiners = j;
  t->nwaiters++;
  if (timeout >= 0) {
    j->timer = malloc(sizeof *j->timer);
    if (!j->timer) {
      join_cancel(&j->op);
      return luaL_error(L, "out of memory");
    }
    uv_timer_init(&rt->loop, j->timer);
    j->timer->data = j;
    uv_update_time(&rt->loop);
    uv_timer_start(j->timer, join_timer_cb, upgrun_ms(timeout), 0);
  }
  return upgrun_wait(L, &j->op);
}

/* ---- running the loop --------------------------------------------------- */

void upgrun_abort(upgrun_runtime *rt, const char *why) {
  if (rt->aborting) return;
  rt->aborting = true;
  snprintf(rt->abort_reason, sizeof rt->abort_reason, "%s", why);
  fprintf(stderr, "upgrun: %s: cancelling every task (again to exit now)\n",
          why);
  sched_cancel_all(rt);
}

void sched_init(upgrun_runtime *rt) {
  uv_idle_init(&rt->loop, &rt->ready_idle);
  rt->ready_idle.data = rt;
  uv_async_init(&rt->loop, &rt->signal_async, signal_async_cb);
  rt->signal_async.data = rt;
  uv_unref((uv_handle_t *)&rt->signal_async);
  lua_State *L = rt->L;
  luaL_newmetatable(L, CANCELLED_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newmetatable(L, "upgrun.error");
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

void sched_run_main(upgrun_runtime *rt) {
  signals_install(rt);
  while (!sched_finished(rt->main_task)) {
    if (uv_run(&rt->loop, UV_RUN_DEFAULT) == 0 &&
        !sched_finished(rt->main_task)) {
      fprintf(stderr, "upgrun: the main task waits on nothing that can "
                      "happen (deadlock); cancelling it\n");
      sched_cancel(rt->main_task);
      if (rt->main_task->state != TASK_READY && !sched_finished(rt->main_task))
        break;
    }
  }
  /* Cancel what is left and let it unwind (bounded: a task may catch its
   * cancellation, but every further wait raises again). */
  sched_cancel_all(rt);
  for (int round = 0; round < 1000 && (rt->live || rt->ready_head); round++)
    uv_run(&rt->loop, UV_RUN_NOWAIT);
  signals_restore();
}

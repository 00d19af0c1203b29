/*
 * runtime.h — internal structures of the runtime and the task scheduler,
 * shared by runtime.c, sched.c and mod_task.c. Not part of the public API.
 */
#ifndef UPGRUN_RUNTIME_H
#define UPGRUN_RUNTIME_H

#include "upgrun.h"

#include <lauxlib.h>
#include <stdbool.h>

#define TASK_MT "upgrun.task"

typedef enum {
  TASK_NEW,      /* spawned, not yet run */
  TASK_READY,    /* in the ready queue */
  TASK_RUNNING,  /* being resumed right now */
  TASK_WAITING,  /* yielded on an op */
  TASK_DONE,     /* body returned */
  TASK_FAILED,   /* body raised */
  TASK_CANCELLED /* cancelled before it finished */
} task_state;

/* Lives in a full userdata (TASK_MT). Its user values: 1 = the thread,
 * 2 = results (table, on DONE) or error value (FAILED/CANCELLED), 3 = name.
 * While not finished it is anchored in the registry (ref). */
/* What a thread's LUA_EXTRASPACE (one pointer) points to: the tag inside its
 * task, or the runtime's own tag (task == NULL) for the main thread and for
 * coroutines the script creates itself (new threads copy the main thread's
 * pointer). */
typedef struct {
  upgrun_runtime *rt;
  upgrun_task *task;
} thread_extra;

struct upgrun_task {
  thread_extra tag; /* {rt, this task} */
  upgrun_runtime *rt;
  lua_State *co;
  int ref; /* registry ref anchoring the userdata while alive */
  long id;
  task_state state;
  bool started;         /* resumed at least once */
  bool cancelled;       /* cancel requested */
  bool abandoned;       /* ignored its cancellation: never resumed again */
  int cancel_raises;    /* times the cancellation was raised in it */
  bool reported;        /* failure already printed or handed to a joiner */
  int nwaiters;         /* joiners currently waiting */
  upgrun_op *op;        /* pending operation, if WAITING */
  bool op_ready;        /* op completed, results not yet pushed */
  bool raise_on_resume; /* op pushed an error value to raise */
  int nres;             /* values to hand back on resume */
  double resumed_at;    /* upgrun_mono() at the last resume */
  upgrun_task *next_ready;
  upgrun_task *prev_live, *next_live;
};

typedef struct shutdown_hook {
  void (*fn)(void *);
  void *ud;
  struct shutdown_hook *next;
} shutdown_hook;

struct upgrun_runtime {
  thread_extra tag; /* {this runtime, NULL} */
  uv_loop_t loop;
  lua_State *L;
  uv_idle_t ready_idle;    /* drains the ready queue */
  uv_async_t signal_async; /* woken by the SIGINT/SIGTERM/SIGHUP handler */
  upgrun_task *ready_head, *ready_tail;
  upgrun_task *live; /* every task not yet finished */
  upgrun_task *main_task;
  upgrun_task *running; /* the task being resumed, NULL between tasks */
  long next_id;
  double spin_limit; /* seconds a task may run without yielding */
  bool aborting;
  char abort_reason[64];
  shutdown_hook *hooks;
  struct join_op *joiners; /* every pending join, few at a time */
};

static inline thread_extra *thread_extra_of(lua_State *L) {
  return *(thread_extra **)lua_getextraspace(L);
}
static inline void thread_extra_set(lua_State *L, thread_extra *x) {
  *(thread_extra **)lua_getextraspace(L) = x;
}

/* sched.c */
void sched_init(upgrun_runtime *rt);
/* Creates a task running the function at the top of L's stack with nargs
 * arguments below it... stack: fn, args... (nargs); pops them, pushes the
 * task userdata. */
upgrun_task *sched_spawn(lua_State *L, int nargs, const char *name);
/* sched_spawn without the count hook (see spin_hook in sched.c): for the
 * runtime's own library code that only computes briefly between waits (the
 * probe loops and http probe samples); the spin limit and the busy-signal
 * check do not apply to it, a signal is honoured when it next waits. */
upgrun_task *sched_spawn_unwatched(lua_State *L, int nargs, const char *name);
void sched_cancel(upgrun_task *t);
void sched_cancel_all(upgrun_runtime *rt);
bool sched_finished(const upgrun_task *t);
/* t:join / with_timeout on the task userdata at index ud; timeout < 0 means
 * none. Returns like a lua_CFunction (may yield). */
int sched_join(lua_State *L, int ud, double timeout, bool with_timeout);
void sched_raise_on_resume(upgrun_task *t);
/* Pushes the cancellation error value. */
void sched_push_cancelled(lua_State *L, upgrun_runtime *rt);
/* Raises the cancellation in the current task (L must be its thread), or,
 * once the task has caught it CANCEL_RAISE_LIMIT times, abandons the task
 * (yields it for good). Call only when the task is cancelled. */
int sched_raise_cancelled(lua_State *L, upgrun_task *t);
/* Runs the loop until the main task finishes; returns nothing. */
void sched_run_main(upgrun_runtime *rt);

/* embedded_lua.c */
void lualib_install(lua_State *L);

#endif

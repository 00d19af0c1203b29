/*
 * upgrun.h — the public embedding API of the upgrun runtime.
 *
 * upgrun is one libuv loop and one Lua 5.4 state. Every script body runs as a
 * coroutine "task". A C primitive that has to wait (HTTP, SSH, a child process,
 * a timer) registers its operation with the loop and yields with upgrun_wait();
 * when the operation completes, a libuv/libcurl/libssh2 callback fills C state
 * and calls upgrun_op_complete(); the scheduler then resumes the task, asking
 * the operation to push its results. C callbacks never call into Lua.
 *
 * A team adds its own primitive with upgrun_register_module() before running a
 * script (see tests/c/test_embed.c for a complete example).
 */
#ifndef UPGRUN_H
#define UPGRUN_H

#include <lua.h>
#include <stdarg.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "upgrun_version.h" /* UPGRUN_VERSION, generated from the CMake project version */

/* Process exit codes (also returned by upgrun_run_*). */
enum {
  UPGRUN_EXIT_OK = 0,      /* the script finished and everything passed */
  UPGRUN_EXIT_FAILED = 1,  /* a check or budget failed (set by the script) */
  UPGRUN_EXIT_USAGE = 2,   /* bad invocation, config or script error */
  UPGRUN_EXIT_ABORTED = 3, /* aborted by SIGINT/SIGTERM/SIGHUP */
};

typedef struct upgrun_runtime upgrun_runtime;
typedef struct upgrun_task upgrun_task;
typedef struct upgrun_op upgrun_op;

/* ---- Creating and running a runtime ---------------------------------- */

/* Creates a runtime: a libuv loop, a Lua state with the standard libraries,
 * cjson and every built-in upgrun module available to require(). NULL on
 * allocation failure. */
upgrun_runtime *upgrun_new(void);

/* Releases everything: cancels tasks, closes handles, closes Lua and the loop.
 */
void upgrun_free(upgrun_runtime *rt);

/* Makes `require(name)` return what `open` returns (package.preload). Call it
 * before running a script. Returns 0, or -1 if name is NULL/empty. */
int upgrun_register_module(upgrun_runtime *rt, const char *name,
                           lua_CFunction open);

/* Loads a Lua file as text (never bytecode) in its own _ENV, sets the global
 * `arg` (arg[0] = path, arg[1..] = args) and runs it as the main task until it
 * ends. Returns an exit code: the integer the chunk returned (0 if none),
 * UPGRUN_EXIT_USAGE on a syntax/runtime error (printed as file:line: message
 * with a traceback), UPGRUN_EXIT_ABORTED after SIGINT/SIGTERM/SIGHUP
 * (signals are handled while the script runs; a second one exits at once). */
int upgrun_run_file(upgrun_runtime *rt, const char *path, int argc,
                    char **argv);

/* Same for a string of code; chunkname is used in messages (e.g. "=(-e)"). */
int upgrun_run_string(upgrun_runtime *rt, const char *code,
                      const char *chunkname, int argc, char **argv);

/* Requests an abort as SIGINT would: every task is cancelled. */
void upgrun_abort(upgrun_runtime *rt, const char *why);

lua_State *upgrun_lua(upgrun_runtime *rt);
uv_loop_t *upgrun_loop(upgrun_runtime *rt);

/* Registers fn(ud) to run at shutdown after Lua is closed and before the loop
 * is closed (e.g. curl_multi_cleanup). Run in reverse order of registration. */
void upgrun_on_shutdown(upgrun_runtime *rt, void (*fn)(void *ud), void *ud);

/* ---- Writing a waiting primitive ------------------------------------- */

/* The runtime a Lua state (main state or any task thread) belongs to. */
upgrun_runtime *upgrun_from_lua(lua_State *L);

/* The task running on L, or NULL when L is not a task (main state, or a
 * coroutine the script created itself). */
upgrun_task *upgrun_current_task(lua_State *L);

/* A pending operation. Embed it as the FIRST member of your own struct.
 *  - push(L, op): called on the task's thread when the task is resumed after
 *    upgrun_op_complete(); pushes the primitive's results and returns their
 *    count. After push the scheduler never touches op again: free it there
 *    (or when your handles have closed).
 *  - cancel(op): the task was cancelled while waiting. Stop the I/O, release
 *    resources; never call upgrun_op_complete() afterwards. After cancel the
 *    scheduler never touches op again: free it (possibly later, from a close
 *    callback).
 * `task` is set by upgrun_wait(). */
struct upgrun_op {
  int (*push)(lua_State *L, upgrun_op *op);
  void (*cancel)(upgrun_op *op);
  upgrun_task *task;
};

/* Suspends the current task until upgrun_op_complete(op). Use as
 *     return upgrun_wait(L, &my->op);
 * at the end of a lua_CFunction: the values op->push() pushes become the
 * function's results. Raises a Lua error if L is not a task ("called outside
 * a task"); if the task is already cancelled, op->cancel() is called and the
 * cancellation error is raised. */
int upgrun_wait(lua_State *L, upgrun_op *op);

/* Raises the cancellation error if the current task is cancelled; returns 0
 * otherwise (also outside a task). Call it first thing in a waiting
 * primitive, before allocating anything: a cancelled task must not queue
 * work. A task that keeps catching its cancellation is abandoned here (it is
 * suspended for good and reported, with its traceback). */
int upgrun_check_cancelled(lua_State *L);

/* Marks op's results ready and queues its task to be resumed by the
 * scheduler. Safe to call from any libuv/libcurl/libssh2 callback. */
void upgrun_op_complete(upgrun_op *op);

/* The error kinds upgrun's primitives return (err.kind). Lua libraries add
 * their own (docs/runtime.md lists every kind a scenario can see).
 *   timeout    a deadline passed (the operation was stopped or abandoned)
 *   cancelled  the task was cancelled (task:cancel, a with_timeout, an
 *              abort by SIGINT/SIGTERM/SIGHUP: then err.aborted = true; a
 *              task that ignored it: err.abandoned = true)
 *   error      a joined task raised (err.traceback)
 *   connect    resolving, TCP connect or the SSH handshake failed
 *   tls        TLS handshake or certificate verification failed (http)
 *   closed     the peer closed the connection / the session is closed / no
 *              more lines (proc read_line)
 *   protocol   any other transfer failure (http)
 *   too_large  a body or captured output went past its limit (http
 *              max_body, ssh max_output)
 *   http       an HTTP status the caller asked to treat as an error
 *   auth       SSH authentication refused
 *   hostkey    SSH host key unknown (strict) or changed
 *   channel    an SSH channel/SCP failure
 *   spawn      a process could not be started (proc)
 *   exited     signalling a process that has already exited (proc.kill)
 *   exit       a non-zero exit with check = true (proc.run)
 *   signal     a death by signal with check = true (proc.run)
 *   yaml       text that is not valid YAML (upgrun.yaml)
 *   io         a file or system call failed (err.code may name the errno) */

/* Pushes nil and an error table {kind = kind, message = formatted} and
 * returns 2, for `return upgrun_push_error(L, "timeout", "...")`, kind one
 * of the list above. */
int upgrun_push_error(lua_State *L, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like upgrun_push_error but leaves only the error table on the stack (no
 * nil) and returns 1, so callers can add fields (status, request_id, ...). */
int upgrun_new_error(lua_State *L, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Seconds (a Lua number: maybe fractional, huge, inf or NaN) to whole
 * milliseconds for a libuv timer or a libcurl option, rounded to nearest:
 * the one place this conversion is done. NaN and negatives give 0; values
 * past UPGRUN_MS_MAX (about 31 years, "for ever") give UPGRUN_MS_MAX, so
 * `inf` never reaches an integer cast. */
#define UPGRUN_MS_MAX ((uint64_t)1000000000000ULL)
uint64_t upgrun_ms(double seconds);

/* Monotonic time in seconds (the one clock for durations and ordering). */
double upgrun_mono(void);
/* Wall time, seconds since the epoch (UTC), with millisecond precision. */
double upgrun_wall(void);

#ifdef __cplusplus
}
#endif
#endif /* UPGRUN_H */

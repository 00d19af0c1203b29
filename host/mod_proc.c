/*
 * mod_proc.c — upgrun.proc: local child processes on libuv (uv_spawn with
 * pipes). spawn{...} -> process userdata ("upgrun.proc.process") with
 * proc.pid, proc:wait([timeout]), proc:read_line([timeout]), proc:kill(sig),
 * proc:close(); upgrun.proc.kill(pid, sig). upgrun.proc.run(argv, opts) (spawn,
 * wait with a timeout, then the TERM -> grace -> KILL policy) is written in
 * Lua on these primitives (lualib/upgrun/proc_run.lua) and installed here.
 *
 * Ownership: the C state (proc_t) is malloc'd and outlives the Lua userdata,
 * because libuv handles close asynchronously. It is freed when the userdata is
 * gone (__gc/__close), the child has been reaped
 * and every handle's close callback has run. A userdata collected or closed
 * while its child still runs SIGKILLs it; the exit callback then reaps it.
 * Cancelling a task waiting on a child SIGKILLs the child and closes its pipes.
 * With group = true the child starts in its own session and process group
 * (setsid) and every signal (kill, the SIGKILL of a cancel or close) goes to
 * that whole group: a tool that forks workers (ansible-playbook) is stopped
 * with them.
 *
 * Output is captured per stream in a growing C buffer (up to max_output bytes;
 * the rest is read and discarded so the child never blocks, and the result
 * says stdout_truncated/stderr_truncated). A child counts as finished when it
 * has exited and its captured pipes reached EOF, or DRAIN_MS after its exit
 * (a grandchild may hold the pipes open forever).
 */
#include "upgrun.h"
#include "util.h"

#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROC_MT "upgrun.proc.process"
#define DEFAULT_MAX_OUTPUT ((size_t)64 << 20)
#define READ_CHUNK 65536
#define DRAIN_MS 500

extern char **environ;

enum { OUT_CAPTURE, OUT_INHERIT, OUT_NULL };

typedef struct proc proc_t;

typedef struct {
  char *data;
  size_t len, cap;
  bool captured;
  bool truncated;
} obuf;

/* A pending wait or read_line. Embedded in proc_t: push/cancel never free it.
 */
typedef struct {
  upgrun_op op; /* first member */
  proc_t *p;
  bool pending;
  bool timed_out;
  double timeout;
} proc_op;

struct proc {
  uv_process_t process;
  uv_pipe_t pipes[3]; /* child's stdin, stdout, stderr (by fd) */
  bool pipe_open[3];  /* initialised and not yet uv_close'd */
  uv_timer_t wait_timer, line_timer, drain_timer;
  uv_write_t wreq;
  char *in_data; /* stdin bytes being written */
  obuf o[3];     /* o[1] stdout, o[2] stderr */
  size_t max_output;
  size_t line_pos; /* read_line position in o[1] */
  char *discard;   /* scratch buffer for output past max_output */
  char name[64];   /* argv[0], for messages */
  int pid;
  double t_start, t_exit;
  bool exited, done, ud_gone, closing, killed;
  bool group; /* own process group: signals go to -pid */
  int64_t status;
  int term_signal;
  int nhandles; /* handles whose close callback is still due */
  proc_op wait, line;
  /* run() */
};

typedef struct {
  proc_t *p; /* NULL once closed */
  int pid;
} proc_ud;

/* ---- signals ------------------------------------------------------------ */

static const struct {
  const char *name;
  int num;
} SIGNALS[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},
    {"ILL", SIGILL},       {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},
    {"BUS", SIGBUS},       {"FPE", SIGFPE},   {"KILL", SIGKILL},
    {"USR1", SIGUSR1},     {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"CHLD", SIGCHLD},     {"CONT", SIGCONT}, {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},
    {"URG", SIGURG},       {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
    {"IO", SIGIO},         {"SYS", SIGSYS},
};

/* "SIGKILL" for 9; "SIG<n>" for numbers without a name. */
static const char *signal_name(int sig, char *buf, size_t n) {
  for (size_t i = 0; i < sizeof SIGNALS / sizeof SIGNALS[0]; i++)
    if (SIGNALS[i].num == sig) {
      snprintf(buf, n, "SIG%s", SIGNALS[i].name);
      return buf;
    }
  snprintf(buf, n, "SIG%d", sig);
  return buf;
}

/* Argument idx: a signal name ("TERM", "SIGTERM", "kill") or number; def
 * when absent. Raises on an unknown name. */
static int check_signal(lua_State *L, int idx, int def) {
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 0 && n < 65, idx, "signal number out of range");
    return (int)n;
  }
  const char *s = luaL_checkstring(L, idx);
  const char *bare = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;
  for (size_t i = 0; i < sizeof SIGNALS / sizeof SIGNALS[0]; i++)
    if (strcasecmp(bare, SIGNALS[i].name) == 0) return SIGNALS[i].num;
  return luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", s));
}

static const char *errno_name(int uverr) {
  return uv_err_name(uverr); /* "ESRCH", "EPERM", ... */
}

/* ---- lifetime ----------------------------------------------------------- */

static void proc_free(proc_t *p) {
  free(p->o[1].data);
  free(p->o[2].data);
  free(p->discard);
  free(p->in_data);
  free(p);
}

static void on_handle_closed(uv_handle_t *h) {
  proc_t *p = h->data;
  if (--p->nhandles == 0) proc_free(p);
}

static void close_handle(proc_t *p, uv_handle_t *h) {
  (void)p;
  if (!uv_is_closing(h)) uv_close(h, on_handle_closed);
}

static void close_pipe(proc_t *p, int fd) {
  if (!p->pipe_open[fd]) return;
  p->pipe_open[fd] = false;
  close_handle(p, (uv_handle_t *)&p->pipes[fd]);
  if (fd == 1 && p->line.pending) upgrun_op_complete(&p->line.op);
}

static void close_all(proc_t *p) {
  if (p->closing) return;
  p->closing = true;
  for (int fd = 0; fd < 3; fd++)
    close_pipe(p, fd);
  close_handle(p, (uv_handle_t *)&p->wait_timer);
  close_handle(p, (uv_handle_t *)&p->line_timer);
  close_handle(p, (uv_handle_t *)&p->drain_timer);
  close_handle(p, (uv_handle_t *)&p->process);
}

/* Frees p (through the close callbacks) once nothing can use it any more. */
static void maybe_release(proc_t *p) {
  if (p->ud_gone && p->exited && !p->wait.pending && !p->line.pending)
    close_all(p);
}

/* Signals the child, or its whole process group with group = true. */
static int send_signal(proc_t *p, int sig) {
  if (p->group) return uv_kill(-p->pid, sig);
  return uv_process_kill(&p->process, sig);
}

/* SIGKILL a running child (and with group = true the rest of its group,
 * which may outlive it while its pipes drain) and stop reading its output. */
static void kill_hard(proc_t *p) {
  if (!p->exited && !p->killed) {
    p->killed = true;
    send_signal(p, SIGKILL);
  } else if (p->group && !p->done && p->pid > 0) {
    uv_kill(-p->pid, SIGKILL); /* the leader is gone; members hold the pipes */
  }
  for (int fd = 0; fd < 3; fd++)
    close_pipe(p, fd);
  uv_timer_stop(&p->wait_timer);
  uv_timer_stop(&p->line_timer);
}

static void check_done(proc_t *p) {
  if (p->done || !p->exited || p->pipe_open[1] || p->pipe_open[2]) return;
  p->done = true;
  uv_timer_stop(&p->drain_timer);
  uv_timer_stop(&p->wait_timer);
  close_pipe(p, 0);
  if (p->wait.pending) upgrun_op_complete(&p->wait.op);
  if (p->line.pending) upgrun_op_complete(&p->line.op);
}

/* ---- libuv callbacks (C state only) ------------------------------------- */

static void on_drain(uv_timer_t *h) {
  proc_t *p = h->data;
  close_pipe(p, 1);
  close_pipe(p, 2);
  check_done(p);
}

static void on_child_exit(uv_process_t *h, int64_t status, int term_signal) {
  proc_t *p = h->data;
  p->exited = true;
  p->t_exit = upgrun_mono();
  p->status = status;
  p->term_signal = term_signal;
  if (p->pipe_open[1] || p->pipe_open[2])
    uv_timer_start(&p->drain_timer, on_drain, DRAIN_MS, 0);
  check_done(p);
  maybe_release(p);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  proc_t *p = h->data;
  obuf *o = &p->o[(uv_pipe_t *)h == &p->pipes[1] ? 1 : 2];
  if (o->len >= p->max_output) {
    if (!p->discard) p->discard = malloc(READ_CHUNK);
    *buf = uv_buf_init(p->discard, p->discard ? READ_CHUNK : 0);
    return;
  }
  size_t want = p->max_output - o->len;
  if (want > READ_CHUNK) want = READ_CHUNK;
  if (!util_reserve(&o->data, &o->cap, o->len + want, READ_CHUNK, 0)) {
    *buf = uv_buf_init(NULL, 0); /* read callback gets UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init(o->data + o->len, (unsigned)want);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  proc_t *p = s->data;
  int fd = (uv_pipe_t *)s == &p->pipes[1] ? 1 : 2;
  obuf *o = &p->o[fd];
  if (nread > 0) {
    if (buf->base == p->discard) {
      o->truncated = true;
    } else {
      o->len += (size_t)nread;
      if (fd == 1 && p->line.pending && memchr(buf->base, '\n', (size_t)nread))
        upgrun_op_complete(&p->line.op);
    }
  } else if (nread < 0) { /* EOF or error: this stream is finished */
    close_pipe(p, fd);
    check_done(p);
  }
}

static void on_written(uv_write_t *req, int status) {
  (void)status; /* EPIPE when the child does not read stdin: not our error */
  proc_t *p = req->data;
  free(p->in_data);
  p->in_data = NULL;
  close_pipe(p, 0); /* EOF for the child */
}

static void on_wait_timer(uv_timer_t *h) {
  proc_t *p = h->data;
  if (p->wait.pending) {
    p->wait.timed_out = true;
    upgrun_op_complete(&p->wait.op);
  }
}

static void on_line_timer(uv_timer_t *h) {
  proc_t *p = h->data;
  if (p->line.pending) {
    p->line.timed_out = true;
    upgrun_op_complete(&p->line.op);
  }
}

/* ---- spawning ----------------------------------------------------------- */

typedef struct {
  char **argv; /* in a Lua userdata on the stack; strings owned by Lua */
  char **env;  /* same, or NULL to inherit */
  const char *cwd;
  const char *in;
  size_t in_len;
  bool has_in;
  int mode[3];
  size_t max_output;
  bool group;
} spawn_opts;

static int out_mode(lua_State *L, int t, const char *field) {
  const char *m = util_opt_string(L, t, field, "capture", NULL);
  if (strcmp(m, "capture") == 0) return OUT_CAPTURE;
  if (strcmp(m, "inherit") == 0) return OUT_INHERIT;
  if (strcmp(m, "null") == 0) return OUT_NULL;
  return util_field_error(L, field,
                          "\"capture\", \"inherit\" or \"null\" expected");
}

/* Pushes a userdata holding a NULL-terminated char*[n + 1]. */
static char **push_ptr_array(lua_State *L, size_t n) {
  char **a = lua_newuserdatauv(L, (n + 1) * sizeof *a, 0);
  memset(a, 0, (n + 1) * sizeof *a);
  return a;
}

/* Builds the environment from opts.env (replaces) or opts.env_add (added
 * to the inherited one). stack: ... -> ..., strings table, ptr array (or
 * nothing when inheriting unchanged). */
static char **build_env(lua_State *L, int t) {
  lua_getfield(L, t, "env");
  lua_getfield(L, t, "env_add");
  int env = lua_gettop(L) - 1, add = lua_gettop(L);
  if (lua_isnil(L, env) && lua_isnil(L, add)) {
    lua_pop(L, 2);
    return NULL;
  }
  if (!lua_isnil(L, env) && !lua_istable(L, env))
    util_field_error(L, "env", "table expected");
  if (!lua_isnil(L, add) && !lua_istable(L, add))
    util_field_error(L, "env_add", "table expected");
  lua_newtable(L); /* strings: keeps "K=V" alive */
  int strs = lua_gettop(L);
  size_t n = 0;
  if (lua_isnil(L, env)) { /* inherited, minus the keys env_add sets */
    for (char **e = environ; *e; e++) {
      const char *eq = strchr(*e, '=');
      if (!eq) continue;
      lua_pushlstring(L, *e, (size_t)(eq - *e));
      bool overridden = lua_rawget(L, add) != LUA_TNIL;
      lua_pop(L, 1);
      if (overridden) continue;
      lua_pushstring(L, *e);
      lua_rawseti(L, strs, (lua_Integer)++n);
    }
  }
  for (int src = env; src <= add; src++) {
    if (lua_isnil(L, src)) continue;
    for (lua_pushnil(L); lua_next(L, src);) { /* ..., key, value */
      const char *field = src == env ? "env" : "env_add";
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
        util_field_error(L, field, "string keys and string values expected");
      const char *k = lua_tostring(L, -2);
      if (!*k || strchr(k, '='))
        util_field_error(L, field, "a variable name is empty or contains '='");
      lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -1));
      lua_rawseti(L, strs, (lua_Integer)++n);
      lua_pop(L, 1);
    }
  }
  char **a = push_ptr_array(L, n); /* env, add, strs, a */
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, strs, (lua_Integer)i + 1);
    a[i] = (char *)lua_tostring(L, -1); /* anchored by strs */
    lua_pop(L, 1);
  }
  lua_remove(L, env);
  lua_remove(L, env); /* strs, a */
  return a;
}

/* Reads argv (array of strings at index av, or a string run by /bin/sh -c)
 * and the options table t (0 = none). Pushes anchors for the strings. */
static void parse_opts(lua_State *L, int av, int t, spawn_opts *o) {
  memset(o, 0, sizeof *o);
  if (lua_type(L, av) == LUA_TSTRING) {
    o->argv = push_ptr_array(L, 3);
    o->argv[0] = "/bin/sh";
    o->argv[1] = "-c";
    o->argv[2] = (char *)lua_tostring(L, av);
  } else {
    if (!lua_istable(L, av))
      util_field_error(L, "argv", "table of strings expected");
    size_t n = (size_t)luaL_len(L, av);
    if (n == 0) util_field_error(L, "argv", "must not be empty");
    lua_createtable(L, (int)n, 0); /* anchors the strings (numbers converted) */
    int strs = lua_gettop(L);
    o->argv = push_ptr_array(L, n);
    for (size_t i = 0; i < n; i++) {
      lua_rawgeti(L, av, (lua_Integer)i + 1);
      if (!lua_isstring(L, -1))
        util_field_error(L, "argv", "table of strings expected");
      o->argv[i] = (char *)lua_tostring(L, -1);
      lua_rawseti(L, strs, (lua_Integer)i + 1);
    }
  }
  o->mode[0] = OUT_NULL;
  o->mode[1] = o->mode[2] = OUT_CAPTURE;
  o->max_output = DEFAULT_MAX_OUTPUT;
  if (!t) return;
  o->env = build_env(L, t);
  o->cwd = util_opt_string(L, t, "cwd", NULL, NULL);
  lua_getfield(L, t, "stdin");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      util_field_error(L, "stdin", "string expected");
    o->in = lua_tolstring(L, -1, &o->in_len);
    o->has_in = true;
    o->mode[0] = OUT_CAPTURE;
  }
  lua_pop(L, 1); /* t still references the string */
  o->mode[1] = out_mode(L, t, "stdout");
  o->mode[2] = out_mode(L, t, "stderr");
  double mo = util_opt_number(L, t, "max_output", (double)DEFAULT_MAX_OUTPUT);
  if (!(mo >= 0 && mo < 1e15))
    util_field_error(L, "max_output", "must be >= 0");
  o->max_output = (size_t)mo;
  o->group = util_opt_bool(L, t, "group", false);
}

/* Starts the child. Returns p, or NULL with nil, err pushed (and p freed). */
static proc_t *start(lua_State *L, const spawn_opts *so) {
  uv_loop_t *loop = upgrun_loop(upgrun_from_lua(L));
  proc_t *p = calloc(1, sizeof *p);
  if (!p) {
    luaL_error(L, "out of memory");
    return NULL;
  }
  snprintf(p->name, sizeof p->name, "%s", so->argv[0]);
  p->max_output = so->max_output;
  p->group = so->group;
  p->wait.p = p->line.p = p;
  uv_timer_t *timers[] = {&p->wait_timer, &p->line_timer, &p->drain_timer};
  for (int i = 0; i < 3; i++) {
    uv_timer_init(loop, timers[i]);
    timers[i]->data = p;
    p->nhandles++;
  }
  uv_stdio_container_t stdio[3];
  for (int fd = 0; fd < 3; fd++) {
    if (so->mode[fd] == OUT_CAPTURE) {
      uv_pipe_init(loop, &p->pipes[fd], 0);
      p->pipes[fd].data = p;
      p->pipe_open[fd] = true;
      p->nhandles++;
      stdio[fd].flags =
          UV_CREATE_PIPE | (fd == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
      stdio[fd].data.stream = (uv_stream_t *)&p->pipes[fd];
      if (fd) p->o[fd].captured = true;
    } else if (so->mode[fd] == OUT_INHERIT) {
      stdio[fd].flags = UV_INHERIT_FD;
      stdio[fd].data.fd = fd;
    } else {
      stdio[fd].flags = UV_IGNORE; /* /dev/null */
    }
  }
  uv_process_options_t opts = {
      .exit_cb = on_child_exit,
      .file = so->argv[0],
      .args = so->argv,
      .env = so->env,
      .cwd = so->cwd,
      .stdio_count = 3,
      .stdio = stdio,
      .flags = so->group ? UV_PROCESS_DETACHED : 0,
  };
  p->process.data = p;
  p->t_start = upgrun_mono();
  int rc = uv_spawn(loop, &p->process, &opts);
  p->nhandles++; /* the process handle must be closed even after a failure */
  if (rc != 0) {
    p->exited = p->ud_gone = true;
    close_all(p);
    upgrun_push_error(L, "spawn", "cannot run '%s'%s%s%s: %s", so->argv[0],
                      so->cwd ? " (in " : "", so->cwd ? so->cwd : "",
                      so->cwd ? ")" : "", uv_strerror(rc));
    return NULL;
  }
  p->pid = p->process.pid;
  for (int fd = 1; fd < 3; fd++)
    if (p->pipe_open[fd])
      uv_read_start((uv_stream_t *)&p->pipes[fd], on_alloc, on_read);
  if (p->pipe_open[0]) {
    if (so->in_len > 0 && (p->in_data = malloc(so->in_len))) {
      memcpy(p->in_data, so->in, so->in_len);
      uv_buf_t b = uv_buf_init(p->in_data, (unsigned)so->in_len);
      p->wreq.data = p;
      if (uv_write(&p->wreq, (uv_stream_t *)&p->pipes[0], &b, 1, on_written) !=
          0) {
        free(p->in_data);
        p->in_data = NULL;
        close_pipe(p, 0);
      }
    } else {
      close_pipe(p, 0); /* empty stdin: EOF at once */
    }
  }
  return p;
}

/* ---- results ------------------------------------------------------------ */

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

/* Adds status, signal, stdout, stderr, pid, duration to the table on top. */
static void fill_result(lua_State *L, proc_t *p) {
  char sb[24];
  if (p->term_signal)
    set_str(L, "signal", signal_name(p->term_signal, sb, sizeof sb));
  else {
    lua_pushinteger(L, (lua_Integer)p->status);
    lua_setfield(L, -2, "status");
  }
  static const char *const names[] = {NULL, "stdout", "stderr"};
  static const char *const trunc[] = {NULL, "stdout_truncated",
                                      "stderr_truncated"};
  for (int fd = 1; fd < 3; fd++) {
    if (!p->o[fd].captured) continue;
    lua_pushlstring(L, p->o[fd].data ? p->o[fd].data : "", p->o[fd].len);
    lua_setfield(L, -2, names[fd]);
    if (p->o[fd].truncated) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, trunc[fd]);
    }
  }
  lua_pushinteger(L, p->pid);
  lua_setfield(L, -2, "pid");
  set_num(L, "duration", (p->exited ? p->t_exit : upgrun_mono()) - p->t_start);
}

static void fmt_secs(char *buf, size_t n, double s) {
  snprintf(buf, n, "%g", s);
}

/* push for wait(). Never raises (runs outside a protected call). */
static int wait_push(lua_State *L, upgrun_op *op) {
  proc_t *p = ((proc_op *)op)->p;
  p->wait.pending = false;
  uv_timer_stop(&p->wait_timer);
  int n;
  if (p->wait.timed_out && !p->done) {
    char secs[32];
    fmt_secs(secs, sizeof secs, p->wait.timeout);
    n = upgrun_push_error(L, "timeout",
                          "process %d (%s) still running after %ss", p->pid,
                          p->name, secs);
  } else {
    lua_createtable(L, 0, 6);
    fill_result(L, p);
    n = 1;
  }
  maybe_release(p);
  return n;
}

static void op_cancel(upgrun_op *op) {
  proc_t *p = ((proc_op *)op)->p;
  ((proc_op *)op)->pending = false;
  kill_hard(p); /* completes a pending read_line of another task */
  maybe_release(p);
}

/* Pushes the next line of stdout (without "\n" / "\r\n") and returns 1, the
 * last unterminated line at EOF, or 0 when there is none yet. */
static int take_line(lua_State *L, proc_t *p) {
  obuf *o = &p->o[1];
  size_t avail = o->len - p->line_pos;
  const char *start = o->data ? o->data + p->line_pos : "";
  const char *nl = avail ? memchr(start, '\n', avail) : NULL;
  size_t len;
  if (nl) {
    len = (size_t)(nl - start);
    p->line_pos += len + 1;
  } else if (!p->pipe_open[1] && avail > 0) {
    len = avail;
    p->line_pos += len;
  } else {
    return 0;
  }
  if (len && start[len - 1] == '\r') len--;
  lua_pushlstring(L, start, len);
  return 1;
}

static int push_no_line(lua_State *L, proc_t *p) {
  return upgrun_push_error(L, "closed", "process %d (%s): end of output",
                           p->pid, p->name);
}

static int line_push(lua_State *L, upgrun_op *op) {
  proc_t *p = ((proc_op *)op)->p;
  p->line.pending = false;
  uv_timer_stop(&p->line_timer);
  int n = take_line(L, p);
  if (!n) {
    if (!p->pipe_open[1]) {
      n = push_no_line(L, p);
    } else {
      char secs[32];
      fmt_secs(secs, sizeof secs, p->line.timeout);
      n = upgrun_push_error(L, "timeout", "process %d (%s): no line within %ss",
                            p->pid, p->name, secs);
    }
  }
  maybe_release(p);
  return n;
}

/* ---- Lua API ------------------------------------------------------------ */

static proc_t *check_proc(lua_State *L) {
  proc_ud *u = luaL_checkudata(L, 1, PROC_MT);
  if (!u->p) luaL_error(L, "process %d is closed", u->pid);
  return u->p;
}

static void need_task(lua_State *L) {
  if (!upgrun_current_task(L))
    luaL_error(
        L, "a waiting upgrun primitive was called outside a task "
           "(from a coroutine of the script's own?); use upgrun.task.spawn");
}

/* Optional timeout argument in seconds; < 0 means none. */
static double opt_timeout(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return -1;
  double t = luaL_checknumber(L, idx);
  luaL_argcheck(L, t >= 0, idx, "timeout must be >= 0");
  return t;
}

static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "argv"); /* 2 */
  spawn_opts so;
  parse_opts(L, 2, 1, &so);
  proc_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->p = NULL;
  u->pid = 0;
  luaL_setmetatable(L, PROC_MT);
  proc_t *p = start(L, &so);
  if (!p) return 2;
  u->p = p;
  u->pid = p->pid;
  return 1;
}

static int l_wait(lua_State *L) {
  proc_t *p = check_proc(L);
  double timeout = opt_timeout(L, 2);
  if (p->done) {
    lua_createtable(L, 0, 6);
    fill_result(L, p);
    return 1;
  }
  if (p->wait.pending)
    return luaL_error(L, "process %d is already being waited for", p->pid);
  need_task(L);
  upgrun_check_cancelled(L);
  p->wait.op.push = wait_push;
  p->wait.op.cancel = op_cancel;
  p->wait.pending = true;
  p->wait.timed_out = false;
  p->wait.timeout = timeout;
  if (timeout >= 0) {
    uv_update_time(p->wait_timer.loop); /* stale after CPU work */
    uv_timer_start(&p->wait_timer, on_wait_timer, upgrun_ms(timeout), 0);
  }
  return upgrun_wait(L, &p->wait.op);
}

static int l_read_line(lua_State *L) {
  proc_t *p = check_proc(L);
  double timeout = opt_timeout(L, 2);
  if (!p->o[1].captured)
    return luaL_error(L, "read_line needs stdout = \"capture\"");
  if (take_line(L, p)) return 1;
  if (!p->pipe_open[1]) return push_no_line(L, p);
  if (p->line.pending)
    return luaL_error(L, "process %d: read_line already pending", p->pid);
  need_task(L);
  upgrun_check_cancelled(L);
  p->line.op.push = line_push;
  p->line.op.cancel = op_cancel;
  p->line.pending = true;
  p->line.timed_out = false;
  p->line.timeout = timeout;
  if (timeout >= 0) {
    uv_update_time(p->wait_timer.loop); /* stale after CPU work */
    uv_timer_start(&p->line_timer, on_line_timer, upgrun_ms(timeout), 0);
  }
  return upgrun_wait(L, &p->line.op);
}

static int push_kill_error(lua_State *L, int pid, int rc) {
  lua_pushnil(L);
  upgrun_new_error(L, rc == UV_ESRCH ? "exited" : "io",
                   "cannot signal process %d: %s", pid, uv_strerror(rc));
  lua_pushstring(L, errno_name(rc));
  lua_setfield(L, -2, "code");
  return 2;
}

static int l_proc_kill(lua_State *L) {
  proc_t *p = check_proc(L);
  int sig = check_signal(L, 2, SIGTERM);
  if (p->exited) return push_kill_error(L, p->pid, UV_ESRCH);
  int rc = send_signal(p, sig);
  if (rc != 0) return push_kill_error(L, p->pid, rc);
  if (sig == SIGKILL) p->killed = true;
  lua_pushboolean(L, 1);
  return 1;
}

static void release_ud(proc_ud *u) {
  proc_t *p = u->p;
  if (!p) return;
  u->p = NULL;
  p->ud_gone = true;
  if (!p->exited || (p->group && !p->done)) kill_hard(p);
  maybe_release(p);
}

static int l_close(lua_State *L) {
  proc_ud *u = luaL_checkudata(L, 1, PROC_MT);
  if (u->p && (u->p->wait.pending || u->p->line.pending))
    return luaL_error(
        L, "process %d is being waited for; cancel that task first", u->pid);
  release_ud(u);
  return 0;
}

static int l_gc(lua_State *L) {
  proc_ud *u = luaL_checkudata(L, 1, PROC_MT);
  if (u->p) { /* a task waiting on it would hold a reference: none pending */
    u->p->wait.pending = u->p->line.pending = false;
  }
  release_ud(u);
  return 0;
}

static int l_index(lua_State *L) {
  proc_ud *u = luaL_checkudata(L, 1, PROC_MT);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "pid") == 0) {
    lua_pushinteger(L, u->pid);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1)); /* methods */
  return 1;
}

static int l_tostring(lua_State *L) {
  proc_ud *u = luaL_checkudata(L, 1, PROC_MT);
  lua_pushfstring(L, PROC_MT ": pid %d%s", u->pid, u->p ? "" : " (closed)");
  return 1;
}

static int l_kill(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  /* pid < -1: the process group -pid (as kill(2)); 0 and -1 are refused */
  luaL_argcheck(
      L, (pid > 0 && pid <= 0x7fffffff) || (pid < -1 && pid >= -0x7fffffff), 1,
      "pid must be > 0 (or < -1 for a process group)");
  int sig = check_signal(L, 2, SIGTERM);
  int rc = uv_kill((int)pid, sig);
  if (rc != 0) return push_kill_error(L, (int)pid, rc);
  lua_pushboolean(L, 1);
  return 1;
}

int luaopen_upgrun_proc(lua_State *L) {
  /* Writing to the stdin of a child that exited must give EPIPE, not kill
   * upgrun (a child's own dispositions are reset by libuv). */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);

  static const luaL_Reg methods[] = {{"wait", l_wait},
                                     {"read_line", l_read_line},
                                     {"kill", l_proc_kill},
                                     {"close", l_close},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", l_gc},
                                  {"__close", l_close},
                                  {"__tostring", l_tostring},
                                  {NULL, NULL}};
  if (luaL_newmetatable(L, PROC_MT)) {
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_pushcclosure(L, l_index, 1);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
      {"spawn", l_spawn}, {"kill", l_kill}, {NULL, NULL}};
  luaL_newlib(L, fns);
  /* proc.run: require("upgrun.proc_run")(proc) adds it to this table */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "upgrun.proc_run");
  lua_call(L, 1, 1);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);
  return 1;
}

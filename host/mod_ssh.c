/*
 * mod_ssh.c — upgrun.ssh: SSH sessions on libssh2 in non-blocking mode, driven
 * by the runtime's libuv loop.
 *
 *   ssh.connect{host=, port=22, user=, known_hosts=, agent=, keys=|key=,
 *               passphrase=, password=,
 *               host_key_policy="strict"|"accept-new",
 *               timeout=10, connect_timeout=timeout, keepalive=0,
 *               netns=} -> session | nil, err
 *       Every identity is explicit (a plain mechanism): `user` and
 *       `known_hosts` are required; tried in order: the agent at the socket
 *       path `agent`, each private key file of `keys` (or the one `key`),
 *       then `password`. Which ones a node uses by default (the local user,
 *       ~/.ssh/known_hosts, SSH_AUTH_SOCK, ~/.ssh/id_*) is policy, in
 *       lualib/upgrun/ssh_identity.lua.
 *       `netns` (a name under /run/netns, as `ip netns` makes them): the TCP
 *       socket is created inside that network namespace (setns(2) to it,
 *       socket(), setns(2) back to the thread's saved namespace, restored on
 *       every path) and then used from the root namespace like any other:
 *       a socket stays in the namespace it was created in. `host` must then
 *       be an address (names would resolve in the root namespace). Failures
 *       are kind "connect" with a message "netns NAME: ...". Needs
 *       CAP_SYS_ADMIN (upgrun runs as root where guests are probed).
 *       `connect_timeout` (<= timeout) bounds the TCP connect alone; the
 *       handshake and authentication then have what is left of `timeout`.
 *       A data-plane probe sets it short: on a LAN a connect that hangs means
 *       nobody answers ARP for the address (the guest is gone).
 *   ssh.local_account() -> {user=, home=}   (getpwuid(getuid()))
 *   session:exec(cmd, {timeout=3600, stdin=, max_output=64 MiB})
 *       (a remote environment is part of cmd: upgrun.shell.env_prefix)
 *       -> {status=, signal=, stdout=, stderr=, duration=} | nil, err
 *       (output past max_output bytes on a stream: the command is read to
 *       its end keeping the last max_output bytes, then fails too_large)
 *   session:upload(data | {path=local} | {data=...}, remote_path, mode=0644)
 *       -> true | nil, err            (SCP)
 *   session:close(), session:info() -> {host, port, user, fingerprint, open,
 *       netns (when given),
 *       identity = "agent SOCKET" | "key PATH" | "password" (what
 * authenticated)}
 *
 * One TCP connection per session; each exec/upload is a channel. All of a
 * session's channels share one socket, so one uv_poll_t per session drives
 * every pending operation of that session (sess_drive). libssh2 refuses a new
 * packet while a partly sent one is pending, so the operation whose call
 * blocked on OUTBOUND "owns" the socket until that call completes.
 * A timed-out or cancelled operation becomes a "zombie": its Lua side is done,
 * and the session keeps driving it until its channel is closed and freed.
 */
#include "ssh_hostkey.h"
#include "upgrun.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libssh2.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SESSION_MT "upgrun.ssh.session"
#define WINDOW_SIZE (4u * 1024 * 1024)
#define PACKET_SIZE 32768
#define READ_CHUNK 65536
#define STEP_BUDGET ((size_t)4 * 1024 * 1024) /* bytes read per op per step */
#define DEFAULT_MAX_OUTPUT ((size_t)64 << 20) /* bytes kept per stream */

typedef struct ssh_sess ssh_sess;
typedef struct ssh_op ssh_op;

enum { OP_CONNECT, OP_EXEC, OP_UPLOAD };
enum { ST_NEW, ST_RESOLVING, ST_TCP, ST_HANDSHAKE, ST_AUTH, ST_READY, ST_DEAD };
/* exec/upload phases */
enum { P_OPEN, P_EXEC, P_WRITE, P_EOF, P_READ, P_CLOSE, P_FREE, P_DONE };
enum { C_AGENT, C_KEY, C_PASSWORD };

/* Captured output of one stream. Up to `max` bytes it grows; past it, it
 * is a ring of `max` bytes (`wrapped`, next write at `pos`) keeping the
 * tail, and `total` counts every byte received. */
typedef struct {
  char *data;
  size_t len, cap;
  size_t max, total, pos;
  bool wrapped;
} buf_t;

struct ssh_op {
  upgrun_op op; /* first member */
  int type;
  ssh_sess *sess;  /* NULL once the session let go of it */
  ssh_sess *owner; /* connect op only: the session handed to Lua */
  ssh_op *next;    /* in sess->ops */
  uv_timer_t timer;
  double timeout, t0, t1;
  double tcp_timeout; /* connect op: the TCP connect's own bound (0: none) */
  int phase;
  LIBSSH2_CHANNEL *ch;
  bool in_sess;   /* linked in sess->ops (or sess->conn) */
  bool task_done; /* push or cancel happened */
  bool finished;  /* result (or error) recorded, completion signalled */
  bool zombie;    /* Lua side gone: close the channel and drop it */
  bool freeing;
  /* request */
  char *cmd;
  size_t cmd_len;
  char *in; /* stdin / upload data */
  size_t in_len, in_off;
  size_t file_size; /* upload: in_len - 1 (SCP wants a '\0' after the data) */
  int mode;
  char *remote_path;
  /* result */
  buf_t out, err;
  int exit_status;
  bool has_status;
  char signame[32];
  const char *err_kind; /* NULL on success */
  char err_msg[1024];
};

typedef struct {
  int type;
  char *path;
} auth_cand;

struct ssh_sess {
  uv_loop_t *loop;
  int state;
  int fd;
  uv_poll_t poll;
  uv_timer_t kick, keepalive;
  uv_getaddrinfo_t gai;
  int handles; /* open uv handles/requests; freed at 0 */
  bool poll_init, poll_on, destroying;
  int poll_events;
  LIBSSH2_SESSION *s;
  ssh_op *conn;      /* the connect op while connecting */
  ssh_op *ops;       /* pending exec/upload ops, zombies included */
  ssh_op *out_owner; /* op whose call blocked on a partly sent packet */
  bool conn_out;     /* connect step blocked on OUTBOUND */
  char *host, *user, *known_hosts, *passphrase, *password;
  char *netns; /* network namespace name under /run/netns, or NULL */
  int port;
  bool accept_new;
  double keepalive_s;
  char fingerprint[64];
  char dead_msg[256];
  /* authentication */
  auth_cand cands[8];
  int ncand, cur;
  char *methods;
  bool auth_listed;
  LIBSSH2_AGENT *agent;
  struct libssh2_agent_publickey *ident;
  bool agent_ready;
  char tried[768];
  char identity[300]; /* what authenticated: "agent", "key PATH", "password" */
  struct sockaddr_storage addr;
  socklen_t addrlen;
};

typedef struct {
  ssh_sess *S;
} sess_ud;

/* ---- small helpers ---------------------------------------------------- */

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

static void wipe_free(char *s) {
  if (!s) return;
  volatile char *p = s;
  while (*p)
    *p++ = 0;
  free(s);
}

static int buf_reserve(buf_t *b, size_t extra) {
  if (b->len + extra > b->max) extra = b->max - b->len; /* never past max */
  return util_reserve(&b->data, &b->cap, b->len + extra, 65536, b->max) ? 0
                                                                        : -1;
}

/* Where the next read goes and how much fits there (the buffer has been
 * reserved). Once full, the buffer becomes a ring keeping the tail. */
static char *buf_slot(buf_t *b, size_t *room) {
  if (!b->wrapped && b->len == b->max) {
    b->wrapped = true;
    b->pos = 0;
  }
  if (b->wrapped) {
    *room = b->max - b->pos < READ_CHUNK ? b->max - b->pos : READ_CHUNK;
    return b->data + b->pos;
  }
  *room = b->max - b->len < READ_CHUNK ? b->max - b->len : READ_CHUNK;
  return b->data + b->len;
}

static void buf_advance(buf_t *b, size_t n) {
  b->total += n;
  if (b->wrapped)
    b->pos = (b->pos + n) % b->max;
  else
    b->len += n;
}

/* Puts a wrapped ring back in order (oldest byte first). -1 out of memory. */
static int buf_unwrap(buf_t *b) {
  if (!b->wrapped) return 0;
  char *d = malloc(b->max);
  if (!d) return -1;
  memcpy(d, b->data + b->pos, b->max - b->pos);
  memcpy(d + (b->max - b->pos), b->data, b->pos);
  free(b->data);
  b->data = d;
  b->cap = b->len = b->max;
  b->wrapped = false;
  return 0;
}

static const char *last_error(LIBSSH2_SESSION *s) {
  char *m = NULL;
  if (!s) return "no session";
  libssh2_session_last_error(s, &m, NULL, 0);
  return m && *m ? m : "unknown libssh2 error";
}

/* Errors after which the connection is unusable. */
static bool fatal_rc(int rc) {
  return rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_SOCKET_RECV ||
         rc == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
         rc == LIBSSH2_ERROR_SOCKET_NONE ||
         rc == LIBSSH2_ERROR_SOCKET_TIMEOUT || rc == LIBSSH2_ERROR_TIMEOUT ||
         rc == LIBSSH2_ERROR_DECRYPT || rc == LIBSSH2_ERROR_KEX_FAILURE ||
         rc == LIBSSH2_ERROR_BAD_USE;
}

/* True when the peer has closed the TCP connection (and nothing is left to
 * read). libssh2 1.10 reports exit status 0 for a channel that never got
 * one, so a channel closing on a dead connection must be caught here. */
static bool socket_eof(int fd) {
  char c;
  if (fd < 0) return true;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 ||
         (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void sess_update_poll(ssh_sess *S);
static void sess_drive(ssh_sess *S);
static void sess_kick(ssh_sess *S);
static void sess_dead(ssh_sess *S, const char *why);

/* ---- op lifetime ------------------------------------------------------ */

static void op_free_cb(uv_handle_t *h) {
  ssh_op *o = h->data;
  free(o->out.data);
  free(o->err.data);
  free(o->cmd);
  if (o->in) {
    memset(o->in, 0, o->in_len); /* stdin may carry secrets */
    free(o->in);
  }
  free(o->remote_path);
  free(o);
}

/* Frees o once both the task and the session are done with it. */
static void op_release(ssh_op *o) {
  if (o->task_done && !o->in_sess && !o->freeing) {
    o->freeing = true;
    uv_timer_stop(&o->timer);
    uv_close((uv_handle_t *)&o->timer, op_free_cb);
  }
}

static void op_unlink(ssh_op *o) {
  ssh_sess *S = o->sess;
  if (S && o->in_sess) {
    if (S->conn == o) S->conn = NULL;
    for (ssh_op **p = &S->ops; *p; p = &(*p)->next)
      if (*p == o) {
        *p = o->next;
        break;
      }
    if (S->out_owner == o) S->out_owner = NULL;
  }
  o->in_sess = false;
  o->sess = NULL;
  o->ch = NULL;
}

/* Records the outcome and wakes the task (once). */
static void op_finish(ssh_op *o, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void op_finish(ssh_op *o, const char *kind, const char *fmt, ...) {
  if (o->finished) return;
  o->finished = true;
  o->t1 = upgrun_mono();
  o->err_kind = kind;
  if (kind && fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->err_msg, sizeof o->err_msg, fmt, ap);
    va_end(ap);
  }
  uv_timer_stop(&o->timer);
  if (!o->task_done) upgrun_op_complete(&o->op);
}

static void op_timer_cb(uv_timer_t *h) {
  ssh_op *o = h->data;
  ssh_sess *S = o->sess;
  char secs[32];
  bool in_tcp = o->type == OP_CONNECT && (!S || S->state <= ST_TCP);
  snprintf(secs, sizeof secs, "%g",
           in_tcp && o->tcp_timeout > 0 ? o->tcp_timeout : o->timeout);
  if (o->type == OP_CONNECT) {
    const char *phase = !S                         ? "?"
                        : S->state <= ST_TCP       ? "TCP connect"
                        : S->state == ST_HANDSHAKE ? "SSH handshake"
                                                   : "authentication";
    op_finish(o, "timeout", "connecting to %s:%d timed out after %ss (in %s)",
              S ? S->host : "?", S ? S->port : 0, secs, phase);
    if (S) sess_dead(S, "connect timed out");
    return;
  }
  op_finish(o, "timeout", "%s timed out after %ss (channel closed)",
            o->type == OP_EXEC ? "command" : "upload", secs);
  o->zombie = true;
  if (S) sess_kick(S);
}

static ssh_op *op_new(ssh_sess *S, int type, double timeout) {
  ssh_op *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->type = type;
  o->sess = S;
  o->timeout = timeout;
  o->t0 = upgrun_mono();
  o->out.max = o->err.max = DEFAULT_MAX_OUTPUT;
  uv_timer_init(S->loop, &o->timer);
  o->timer.data = o;
  uv_update_time(S->loop); /* stale after Lua's CPU work */
  uv_timer_start(&o->timer, op_timer_cb, upgrun_ms(timeout), 0);
  return o;
}

/* ---- session lifetime ------------------------------------------------- */

static void sess_handle_closed(uv_handle_t *h) {
  ssh_sess *S = h->data;
  if (--S->handles == 0) free(S);
}

static void sess_free_auth(ssh_sess *S) {
  for (int i = 0; i < S->ncand; i++)
    free(S->cands[i].path);
  S->ncand = 0;
  free(S->methods);
  S->methods = NULL;
  if (S->agent) {
    libssh2_agent_disconnect(S->agent);
    libssh2_agent_free(S->agent);
    S->agent = NULL;
  }
  wipe_free(S->password);
  S->password = NULL;
  wipe_free(S->passphrase);
  S->passphrase = NULL;
}

/* Tears down libssh2 and the socket; the session can do nothing afterwards.
 * Pending ops get a "closed" error; zombies are dropped. */
static void sess_dead(ssh_sess *S, const char *why) {
  if (S->state == ST_DEAD) return;
  S->state = ST_DEAD;
  snprintf(S->dead_msg, sizeof S->dead_msg, "%s", why);
  for (ssh_op *o = S->ops, *next; o; o = next) {
    next = o->next;
    op_finish(o, "closed", "connection to %s:%d lost: %s", S->host, S->port,
              why);
    op_unlink(o);
    op_release(o);
  }
  sess_free_auth(S);
  if (S->s) {
    if (S->fd >= 0) shutdown(S->fd, SHUT_RDWR); /* no libssh2 call may block */
    for (int i = 0; i < 8 && libssh2_session_free(S->s) == LIBSSH2_ERROR_EAGAIN;
         i++) {
    }
    S->s = NULL;
  }
  if (S->poll_on) {
    uv_poll_stop(&S->poll);
    S->poll_on = false;
  }
  uv_timer_stop(&S->keepalive);
  uv_timer_stop(&S->kick);
}

static void poll_closed(uv_handle_t *h) {
  ssh_sess *S = h->data;
  if (S->fd >= 0) close(S->fd);
  S->fd = -1;
  sess_handle_closed(h);
}

/* Closes the session for good; S is freed when its handles have closed. */
static void sess_destroy(ssh_sess *S) {
  if (S->destroying) return;
  if (S->state != ST_DEAD && S->s && S->state == ST_READY)
    libssh2_session_disconnect(S->s, "closed by upgrun"); /* best effort */
  sess_dead(S, "session closed");
  S->destroying = true;
  free(S->host);
  free(S->user);
  free(S->known_hosts);
  free(S->netns);
  S->host = S->user = S->known_hosts = S->netns = NULL;
  uv_close((uv_handle_t *)&S->kick, sess_handle_closed);
  uv_close((uv_handle_t *)&S->keepalive, sess_handle_closed);
  if (S->poll_init) {
    uv_close((uv_handle_t *)&S->poll, poll_closed);
  } else if (S->fd >= 0) {
    close(S->fd);
    S->fd = -1;
  }
  if (S->state == ST_RESOLVING) uv_cancel((uv_req_t *)&S->gai);
  /* handles counts kick+keepalive(+poll)(+gai): free in the last callback */
}

static void kick_cb(uv_timer_t *h) { sess_drive(h->data); }

static void sess_kick(ssh_sess *S) {
  if (!S->destroying) uv_timer_start(&S->kick, kick_cb, 0, 0);
}

static void keepalive_cb(uv_timer_t *h) {
  ssh_sess *S = h->data;
  /* Only on an idle session: its send buffer is empty, so the tiny packet
   * goes out whole (a partly sent one would block other channels' sends).
   * A busy session has traffic, or a command that bounds it by a timeout. */
  if (S->state != ST_READY || S->ops) return;
  int next = 0;
  int rc = libssh2_keepalive_send(S->s, &next);
  if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN && fatal_rc(rc))
    sess_dead(S, "keepalive failed");
}

/* ---- connecting ------------------------------------------------------- */

static void conn_fail(ssh_sess *S, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_fail(ssh_sess *S, const char *kind, const char *fmt, ...) {
  ssh_op *o = S->conn;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (o) op_finish(o, kind, "%s", msg);
  sess_dead(S, msg);
}

static void add_cand(ssh_sess *S, int type, const char *path) {
  if (S->ncand >= (int)(sizeof S->cands / sizeof S->cands[0])) return;
  S->cands[S->ncand].type = type;
  S->cands[S->ncand].path = xstrdup(path);
  S->ncand++;
}

static void tried_add(ssh_sess *S, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void tried_add(ssh_sess *S, const char *fmt, ...) {
  size_t l = strlen(S->tried);
  if (l + 4 >= sizeof S->tried) return;
  if (l) {
    memcpy(S->tried + l, "; ", 3);
    l += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(S->tried + l, sizeof S->tried - l, fmt, ap);
  va_end(ap);
}

/* Returns 1 authenticated, 0 waiting (EAGAIN), -1 failed (conn_fail done). */
static int auth_step(ssh_sess *S) {
  unsigned ulen = (unsigned)strlen(S->user);
  if (!S->auth_listed) {
    char *m = libssh2_userauth_list(S->s, S->user, ulen);
    if (!m) {
      if (libssh2_userauth_authenticated(S->s)) {
        snprintf(S->identity, sizeof S->identity, "none");
        return 1;
      }
      int rc = libssh2_session_last_errno(S->s);
      if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
      conn_fail(S, fatal_rc(rc) ? "connect" : "auth",
                "%s@%s:%d: cannot list authentication methods: %s", S->user,
                S->host, S->port, last_error(S->s));
      return -1;
    }
    S->methods = strdup(m);
    S->auth_listed = true;
  }
  const char *methods = S->methods ? S->methods : "";
  while (S->cur < S->ncand) {
    auth_cand *c = &S->cands[S->cur];
    int rc;
    if (c->type == C_AGENT) {
      if (!strstr(methods, "publickey")) {
        S->cur++;
        continue;
      }
      if (!S->agent_ready) {
        S->agent_ready = true;
        S->agent = libssh2_agent_init(S->s);
        if (S->agent) libssh2_agent_set_identity_path(S->agent, c->path);
        if (!S->agent || libssh2_agent_connect(S->agent) ||
            libssh2_agent_list_identities(S->agent)) {
          tried_add(S, "agent at %s unavailable", c->path);
          S->cur++;
          continue;
        }
        S->ident = NULL;
        if (libssh2_agent_get_identity(S->agent, &S->ident, NULL)) {
          tried_add(S, "agent at %s has no keys", c->path);
          S->cur++;
          continue;
        }
      }
      rc = libssh2_agent_userauth(S->agent, S->user, S->ident);
      if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
      if (rc == 0) {
        snprintf(S->identity, sizeof S->identity, "agent %s", c->path);
        return 1;
      }
      if (fatal_rc(rc)) goto lost;
      struct libssh2_agent_publickey *prev = S->ident;
      if (libssh2_agent_get_identity(S->agent, &S->ident, prev)) {
        tried_add(S, "agent at %s: keys refused", c->path);
        S->cur++;
      }
      continue;
    }
    if (c->type == C_KEY) {
      if (!strstr(methods, "publickey")) {
        tried_add(S, "key %s: server does not accept publickey", c->path);
        S->cur++;
        continue;
      }
      if (access(c->path, R_OK) != 0) {
        tried_add(S, "key %s: %s", c->path, strerror(errno));
        S->cur++;
        continue;
      }
      rc = libssh2_userauth_publickey_fromfile_ex(S->s, S->user, ulen, NULL,
                                                  c->path, S->passphrase);
      if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
      if (rc == 0) {
        snprintf(S->identity, sizeof S->identity, "key %s", c->path);
        return 1;
      }
      if (fatal_rc(rc)) goto lost;
      tried_add(S, "key %s: %s", c->path,
                rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED ||
                        rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED
                    ? "refused by the server"
                    : last_error(S->s));
      S->cur++;
      continue;
    }
    /* password */
    if (!strstr(methods, "password")) {
      tried_add(S, "password: server does not accept password authentication");
      S->cur++;
      continue;
    }
    rc = libssh2_userauth_password_ex(S->s, S->user, ulen, S->password,
                                      (unsigned)strlen(S->password), NULL);
    if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
    if (rc == 0) {
      snprintf(S->identity, sizeof S->identity, "password");
      return 1;
    }
    if (fatal_rc(rc)) goto lost;
    tried_add(S, "password: refused");
    S->cur++;
  }
  conn_fail(S, "auth",
            "authentication failed for %s@%s:%d (server offers: %s; tried: %s)",
            S->user, S->host, S->port, methods,
            S->tried[0] ? S->tried : "nothing to try");
  return -1;
lost:
  conn_fail(S, "connect", "%s:%d: connection lost during authentication: %s",
            S->host, S->port, last_error(S->s));
  return -1;
}

static void connect_step(ssh_sess *S, int events) {
  S->conn_out = false;
  if (S->state == ST_TCP) {
    if (!(events & (UV_WRITABLE | UV_DISCONNECT))) return;
    int soerr = 0;
    socklen_t l = sizeof soerr;
    getsockopt(S->fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
    if (soerr) {
      conn_fail(S, "connect", "connect to %s:%d: %s", S->host, S->port,
                strerror(soerr));
      return;
    }
    ssh_op *c = S->conn;
    if (c && c->tcp_timeout > 0) { /* connected: the rest has what is left */
      double left = c->timeout - (upgrun_mono() - c->t0);
      c->tcp_timeout = 0;
      uv_update_time(S->loop);
      uv_timer_start(&c->timer, op_timer_cb,
                     upgrun_ms(left > 0.001 ? left : 0.001), 0);
    }
    S->s = libssh2_session_init();
    if (!S->s) {
      conn_fail(S, "connect", "out of memory");
      return;
    }
    libssh2_session_set_blocking(S->s, 0);
    S->state = ST_HANDSHAKE;
  }
  if (S->state == ST_HANDSHAKE) {
    int rc = libssh2_session_handshake(S->s, S->fd);
    if (rc == LIBSSH2_ERROR_EAGAIN) goto again;
    if (rc) {
      conn_fail(S, "connect", "SSH handshake with %s:%d failed: %s", S->host,
                S->port, last_error(S->s));
      return;
    }
    char msg[1024];
    int hk = sshk_check(S->s, S->host, S->port, S->known_hosts, S->accept_new,
                        msg, sizeof msg, S->fingerprint, sizeof S->fingerprint);
    if (hk != SSHK_OK) {
      conn_fail(S, "hostkey", "%s", msg);
      return;
    }
    S->state = ST_AUTH;
  }
  if (S->state == ST_AUTH) {
    int r = auth_step(S);
    if (r == 0) goto again;
    if (r < 0) return;
    sess_free_auth(S); /* the password/passphrase are wiped now */
    S->state = ST_READY;
    if (S->keepalive_s > 0) {
      /* libssh2 counts whole seconds (0 would disable it) */
      unsigned secs = S->keepalive_s < 1 ? 1 : (unsigned)(S->keepalive_s + 0.5);
      libssh2_keepalive_config(S->s, 1, secs);
      uint64_t ms = (uint64_t)secs * 1000;
      uv_timer_start(&S->keepalive, keepalive_cb, ms, ms);
    }
    ssh_op *o = S->conn;
    op_finish(o, NULL, NULL);
    op_unlink(o); /* the session no longer refers to the op */
    op_release(o);
  }
  return;
again:
  if (libssh2_session_block_directions(S->s) & LIBSSH2_SESSION_BLOCK_OUTBOUND)
    S->conn_out = true;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  ssh_sess *S = h->data;
  if (status < 0) events = UV_READABLE | UV_WRITABLE; /* let libssh2 see it */
  if (S->state < ST_READY) {
    connect_step(S, events);
    sess_update_poll(S);
  } else {
    sess_drive(S);
  }
}

/* A TCP socket created inside /run/netns/NAME: the calling thread enters
 * that namespace, creates the socket and returns to the namespace it was in
 * (saved first). Returns the fd, or -1 with `err` set. If returning fails the
 * process would keep running in the wrong namespace, so that aborts. */
static int socket_in_netns(const char *name, int family, char *err,
                           size_t errlen) {
  char path[300];
  snprintf(path, sizeof path, "/run/netns/%s", name);
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) {
    snprintf(err, errlen, "netns %s: cannot open this thread's namespace: %s",
             name, strerror(errno));
    return -1;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    snprintf(err, errlen, "netns %s: cannot open %s: %s", name, path,
             strerror(errno));
    close(self);
    return -1;
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    snprintf(err, errlen, "netns %s: setns: %s", name, strerror(errno));
    close(target);
    close(self);
    return -1;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int saved = errno;
  if (setns(self, CLONE_NEWNET) != 0) {
    fprintf(stderr,
            "upgrun: netns %s: cannot return to the saved network "
            "namespace: %s\n",
            name, strerror(errno));
    abort();
  }
  close(target);
  close(self);
  if (fd < 0)
    snprintf(err, errlen, "netns %s: socket: %s", name, strerror(saved));
  return fd;
}

static void start_tcp(ssh_sess *S) {
  if (S->netns) {
    char err[512];
    S->fd = socket_in_netns(S->netns, S->addr.ss_family, err, sizeof err);
    if (S->fd < 0) {
      conn_fail(S, "connect", "%s", err);
      return;
    }
  } else {
    S->fd = socket(S->addr.ss_family,
                   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (S->fd < 0) {
      conn_fail(S, "connect", "socket: %s", strerror(errno));
      return;
    }
  }
  int one = 1;
  setsockopt(S->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  S->state = ST_TCP;
  if (connect(S->fd, (struct sockaddr *)&S->addr, S->addrlen) != 0 &&
      errno != EINPROGRESS) {
    conn_fail(S, "connect", "connect to %s:%d: %s", S->host, S->port,
              strerror(errno));
    return;
  }
  if (uv_poll_init(S->loop, &S->poll, S->fd) != 0) {
    conn_fail(S, "connect", "cannot watch the socket");
    return;
  }
  S->poll.data = S;
  S->poll_init = true;
  S->handles++;
  sess_update_poll(S);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  ssh_sess *S = req->data;
  S->handles--;
  if (S->destroying) {
    if (res) uv_freeaddrinfo(res);
    if (S->handles == 0) free(S);
    return;
  }
  if (status != 0 || !res) {
    conn_fail(S, "connect", "cannot resolve %s: %s", S->host,
              uv_strerror(status));
    if (res) uv_freeaddrinfo(res);
    return;
  }
  memcpy(&S->addr, res->ai_addr, res->ai_addrlen);
  S->addrlen = res->ai_addrlen;
  uv_freeaddrinfo(res);
  start_tcp(S);
}

/* Starts the connection (from the kick timer, so completion never happens
 * before the task waits). */
static void connect_begin(ssh_sess *S) {
  struct sockaddr_in *a4 = (struct sockaddr_in *)&S->addr;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&S->addr;
  memset(&S->addr, 0, sizeof S->addr);
  if (inet_pton(AF_INET, S->host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)S->port);
    S->addrlen = sizeof *a4;
    start_tcp(S);
  } else if (inet_pton(AF_INET6, S->host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)S->port);
    S->addrlen = sizeof *a6;
    start_tcp(S);
  } else {
    char port[16];
    snprintf(port, sizeof port, "%d", S->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    S->state = ST_RESOLVING;
    S->gai.data = S;
    if (uv_getaddrinfo(S->loop, &S->gai, on_resolved, S->host, port, &hints) !=
        0) {
      conn_fail(S, "connect", "cannot resolve %s", S->host);
      return;
    }
    S->handles++;
  }
}

/* ---- exec / upload steps --------------------------------------------- */

/* After a libssh2 call returned EAGAIN: true if it left a partly sent
 * packet, so this op must own the socket until the same call completes. */
static bool blocked_out(ssh_sess *S, ssh_op *o) {
  if (libssh2_session_block_directions(S->s) & LIBSSH2_SESSION_BLOCK_OUTBOUND) {
    S->out_owner = o;
    return true;
  }
  return false;
}

static void op_error_rc(ssh_op *o, int rc, const char *what) {
  ssh_sess *S = o->sess;
  if (fatal_rc(rc)) {
    char why[300];
    snprintf(why, sizeof why, "%s: %s", what, last_error(S->s));
    sess_dead(S, why); /* finishes o with "closed" */
    return;
  }
  op_finish(o, "channel", "%s on %s:%d: %s", what, S->host, S->port,
            last_error(S->s));
  o->zombie = true;
}

/* Drains stdout/stderr. Returns 1 progress, 0 nothing, -1 EAGAIN-outbound
 * (stop stepping), -2 error (recorded). */
static int read_streams(ssh_op *o, bool *eof) {
  ssh_sess *S = o->sess;
  int progress = 0;
  size_t budget = STEP_BUDGET;
  for (int stream = 0; stream < 2; stream++) {
    buf_t *b = stream ? &o->err : &o->out;
    for (;;) {
      if (buf_reserve(b, READ_CHUNK)) {
        op_finish(o, "channel", "out of memory reading output");
        o->zombie = true;
        return -2;
      }
      size_t room;
      char *slot = buf_slot(b, &room);
      ssize_t n = libssh2_channel_read_ex(o->ch, stream, slot, room);
      if (n > 0) {
        buf_advance(b, (size_t)n);
        progress = 1;
        if ((size_t)n >= budget) return 1; /* come back: fairness */
        budget -= (size_t)n;
        continue;
      }
      if (n == LIBSSH2_ERROR_EAGAIN) {
        if (blocked_out(S, o)) return -1;
        break;
      }
      if (n < 0) {
        op_error_rc(o, (int)n, "reading command output");
        return -2;
      }
      break; /* 0: nothing more on this stream */
    }
  }
  *eof = libssh2_channel_eof(o->ch) == 1;
  return progress;
}

/* Steps a zombie: finish a channel open in flight, then close and free. */
static bool zombie_step(ssh_op *o) {
  ssh_sess *S = o->sess;
  if (!o->ch) {
    if (o->phase != P_OPEN) goto drop;
    /* An open in progress must complete before anything else is sent. */
    if (o->type == OP_EXEC)
      o->ch = libssh2_channel_open_ex(S->s, "session", 7, WINDOW_SIZE,
                                      PACKET_SIZE, NULL, 0);
    else
      o->ch = libssh2_scp_send64(S->s, o->remote_path, o->mode & 0777,
                                 (libssh2_int64_t)o->file_size, 0, 0);
    if (!o->ch) {
      int rc = libssh2_session_last_errno(S->s);
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        blocked_out(S, o);
        return false;
      }
      if (fatal_rc(rc)) {
        sess_dead(S, "channel open failed");
        return true;
      }
      goto drop;
    }
    o->phase = P_CLOSE;
    return true;
  }
  if (S->out_owner == o) {
    /* a partly sent packet of the last call: let the normal path resend */
    return false;
  }
  int rc = libssh2_channel_close(o->ch);
  if (rc == LIBSSH2_ERROR_EAGAIN) {
    blocked_out(S, o);
    return false;
  }
  rc = libssh2_channel_free(o->ch);
  if (rc == LIBSSH2_ERROR_EAGAIN) {
    blocked_out(S, o);
    return false;
  }
drop:
  op_unlink(o);
  op_release(o);
  return true;
}

/* The command ended but its output went past max_output: a failure of kind
 * too_large keeping the tail of each stream. */
static void finish_too_large(ssh_op *o) {
  bool out = o->out.wrapped;
  buf_t *b = out ? &o->out : &o->err;
  size_t total = b->total, max = b->max;
  if (buf_unwrap(&o->out) || buf_unwrap(&o->err)) {
    op_finish(o, "channel", "out of memory reading output");
    return;
  }
  op_finish(o, "too_large",
            "the command wrote %zu bytes on %s, more than max_output (%zu "
            "bytes): only the last %zu bytes are kept",
            total, out ? "stdout" : "stderr", max, max);
}

/* One step of an exec/upload op. Returns true if it made progress. */
static bool op_step(ssh_op *o) {
  ssh_sess *S = o->sess;
  int rc;
  if (o->zombie && !(S->out_owner == o)) return zombie_step(o);
  if (S->out_owner == o) S->out_owner = NULL; /* retrying the same call */
  bool progress = false;
  for (;;) {
    switch (o->phase) {
    case P_OPEN:
      if (o->type == OP_EXEC)
        o->ch = libssh2_channel_open_ex(S->s, "session", 7, WINDOW_SIZE,
                                        PACKET_SIZE, NULL, 0);
      else
        o->ch = libssh2_scp_send64(S->s, o->remote_path, o->mode & 0777,
                                   (libssh2_int64_t)o->file_size, 0, 0);
      if (!o->ch) {
        rc = libssh2_session_last_errno(S->s);
        if (rc == LIBSSH2_ERROR_EAGAIN) {
          blocked_out(S, o);
          return progress;
        }
        if (fatal_rc(rc)) {
          op_error_rc(o, rc, "opening a channel");
          return true;
        }
        op_finish(o, "channel", "%s on %s:%d: %s",
                  o->type == OP_EXEC ? "cannot open a channel"
                                     : "SCP upload refused",
                  S->host, S->port, last_error(S->s));
        op_unlink(o);
        op_release(o);
        return true;
      }
      o->phase = o->type == OP_EXEC ? P_EXEC : P_WRITE;
      progress = true;
      break;
    case P_EXEC:
      rc = libssh2_channel_process_startup(o->ch, "exec", 4, o->cmd,
                                           (unsigned)o->cmd_len);
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        blocked_out(S, o);
        return progress;
      }
      if (rc) {
        op_error_rc(o, rc, "starting the command");
        return true;
      }
      o->phase = P_WRITE;
      progress = true;
      break;
    case P_WRITE:
      while (o->in_off < o->in_len) {
        size_t n = o->in_len - o->in_off;
        if (n > PACKET_SIZE) n = PACKET_SIZE;
        ssize_t w = libssh2_channel_write(o->ch, o->in + o->in_off, n);
        if (w == LIBSSH2_ERROR_EAGAIN) {
          if (blocked_out(S, o)) return progress;
          break;
        }
        if (w < 0) {
          op_error_rc(o, (int)w, "sending input");
          return true;
        }
        o->in_off += (size_t)w;
        progress = true;
      }
      if (o->in_off < o->in_len) {
        /* window full: read output meanwhile so the command can go on */
        if (o->type == OP_EXEC) {
          bool eof = false;
          int r = read_streams(o, &eof);
          if (r < 0) return true;
          if (r > 0) progress = true;
        }
        return progress;
      }
      o->phase = P_EOF;
      break;
    case P_EOF:
      rc = libssh2_channel_send_eof(o->ch);
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        blocked_out(S, o);
        return progress;
      }
      if (rc && fatal_rc(rc)) {
        op_error_rc(o, rc, "sending end of input");
        return true;
      }
      o->phase = P_READ;
      progress = true;
      break;
    case P_READ: {
      bool eof = false;
      int r = read_streams(o, &eof);
      if (r < 0) return true;
      if (r > 0) progress = true;
      if (!eof) return progress;
      o->phase = P_CLOSE;
      break;
    }
    case P_CLOSE:
      rc = libssh2_channel_close(o->ch);
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        blocked_out(S, o);
        return progress;
      }
      if (rc && fatal_rc(rc)) {
        op_error_rc(o, rc, "closing the channel");
        return true;
      }
      if (socket_eof(S->fd)) { /* closed by a dying connection */
        sess_dead(S, "the server closed the connection");
        return true;
      }
      {
        char *sig = NULL;
        size_t siglen = 0;
        libssh2_channel_get_exit_signal(o->ch, &sig, &siglen, NULL, NULL, NULL,
                                        NULL);
        if (sig && siglen) {
          snprintf(o->signame, sizeof o->signame, "%.*s", (int)siglen, sig);
        } else {
          o->exit_status = libssh2_channel_get_exit_status(o->ch);
          o->has_status = true;
        }
        if (sig) libssh2_free(S->s, sig);
      }
      o->phase = P_FREE;
      progress = true;
      break;
    case P_FREE:
      rc = libssh2_channel_free(o->ch);
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        blocked_out(S, o);
        return progress;
      }
      o->ch = NULL;
      o->phase = P_DONE;
      if (o->type == OP_UPLOAD && o->has_status && o->exit_status != 0)
        op_finish(o, "channel", "SCP upload to %s:%d:%s failed (scp exited %d)",
                  S->host, S->port, o->remote_path, o->exit_status);
      else if (o->out.wrapped || o->err.wrapped)
        finish_too_large(o);
      else
        op_finish(o, NULL, NULL);
      op_unlink(o);
      op_release(o);
      return true;
    default:
      return progress;
    }
    if (o->zombie) return true; /* finished by timeout/cancel meanwhile */
  }
}

static void sess_update_poll(ssh_sess *S) {
  if (S->destroying || S->state == ST_DEAD || !S->poll_init) return;
  int ev = 0;
  if (S->state == ST_TCP)
    ev = UV_WRITABLE;
  else if (S->state < ST_READY)
    ev = UV_READABLE | (S->conn_out ? UV_WRITABLE : 0);
  else if (S->ops)
    ev = UV_READABLE | (S->out_owner ? UV_WRITABLE : 0);
  if (ev == 0) {
    if (S->poll_on) uv_poll_stop(&S->poll);
    S->poll_on = false;
  } else if (!S->poll_on || ev != S->poll_events) {
    uv_poll_start(&S->poll, ev, on_poll);
    S->poll_on = true;
    S->poll_events = ev;
  }
}

/* Services every pending op of the session until none makes progress (data
 * for one channel may have been queued by another channel's read). */
static void sess_drive(ssh_sess *S) {
  if (S->destroying) return;
  if (S->state == ST_NEW) {
    connect_begin(S);
    return;
  }
  if (S->state < ST_READY) {
    connect_step(S, UV_READABLE | UV_WRITABLE);
    sess_update_poll(S);
    return;
  }
  if (S->state == ST_DEAD) return;
  int pass;
  for (pass = 0; pass < 32; pass++) {
    bool progress = false;
    if (S->out_owner) {
      ssh_op *o = S->out_owner;
      progress |= op_step(o);
      if (S->state == ST_DEAD) return;
      if (S->out_owner) break; /* still blocked on sending */
    }
    for (ssh_op *o = S->ops, *next; o; o = next) {
      next = o->next;
      progress |= op_step(o);
      if (S->state == ST_DEAD) return;
      if (S->out_owner) break;
    }
    if (!progress || S->out_owner) break;
  }
  if (S->ops && pass < 32 && socket_eof(S->fd)) {
    sess_dead(S, "the server closed the connection");
    return;
  }
  if (pass == 32) sess_kick(S); /* still busy: come back after other I/O */
  sess_update_poll(S);
}

/* ---- Lua: results ----------------------------------------------------- */

static int connect_push(lua_State *L, upgrun_op *op) {
  ssh_op *o = (ssh_op *)op;
  ssh_sess *sess = o->owner;
  int n = 1;
  o->task_done = true;
  if (o->err_kind) {
    n = upgrun_push_error(L, o->err_kind, "%s", o->err_msg);
    op_unlink(o);
    sess_destroy(sess);
  } else {
    sess_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->S = sess;
    luaL_setmetatable(L, SESSION_MT);
  }
  op_release(o);
  return n;
}

static void connect_cancel(upgrun_op *op) {
  ssh_op *o = (ssh_op *)op;
  o->task_done = true;
  op_unlink(o);
  sess_destroy(o->owner);
  op_release(o);
}

static void push_buf(lua_State *L, buf_t *b, const char *field) {
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  lua_setfield(L, -2, field);
}

static int exec_push(lua_State *L, upgrun_op *op) {
  ssh_op *o = (ssh_op *)op;
  o->task_done = true;
  int n;
  char dur[32];
  snprintf(dur, sizeof dur, "%.6f", o->t1 - o->t0);
  if (o->err_kind) {
    lua_pushnil(L);
    upgrun_new_error(L, o->err_kind, "%s", o->err_msg);
    if (o->type == OP_EXEC) { /* partial output helps diagnose a timeout */
      if (buf_unwrap(&o->out) == 0) push_buf(L, &o->out, "stdout");
      if (buf_unwrap(&o->err) == 0) push_buf(L, &o->err, "stderr");
      if (o->has_status) {
        lua_pushinteger(L, o->exit_status);
        lua_setfield(L, -2, "status");
      }
      if (o->out.total > o->out.len || o->err.total > o->err.len) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2,
                     o->out.total > o->out.len ? "stdout_truncated"
                                               : "stderr_truncated");
      }
    }
    n = 2;
  } else if (o->type == OP_UPLOAD) {
    lua_pushboolean(L, 1);
    n = 1;
  } else {
    lua_createtable(L, 0, 5);
    if (o->has_status) {
      lua_pushinteger(L, o->exit_status);
      lua_setfield(L, -2, "status");
    }
    if (o->signame[0]) {
      lua_pushstring(L, o->signame);
      lua_setfield(L, -2, "signal");
    }
    push_buf(L, &o->out, "stdout");
    push_buf(L, &o->err, "stderr");
    lua_pushnumber(L, strtod(dur, NULL));
    lua_setfield(L, -2, "duration");
    n = 1;
  }
  op_release(o);
  return n;
}

static void exec_cancel(upgrun_op *op) {
  ssh_op *o = (ssh_op *)op;
  o->task_done = true;
  uv_timer_stop(&o->timer);
  if (o->in_sess) {
    o->zombie = true;
    sess_kick(o->sess);
  }
  op_release(o);
}

/* ---- Lua: functions --------------------------------------------------- */

static ssh_sess *check_open(lua_State *L) {
  sess_ud *u = luaL_checkudata(L, 1, SESSION_MT);
  return u->S;
}

/* ssh.local_account() -> {user=, home=}: the local account from the
 * password database (the defaults themselves are chosen in Lua). */
static int l_local_account(lua_State *L) {
  struct passwd *pw = getpwuid(getuid());
  lua_createtable(L, 0, 2);
  if (pw) {
    lua_pushstring(L, pw->pw_name);
    lua_setfield(L, -2, "user");
    lua_pushstring(L, pw->pw_dir);
    lua_setfield(L, -2, "home");
  }
  return 1;
}

/* The private key files of `keys` (an array) or `key` (one path), checked
 * before anything is allocated; pushes nothing. Returns the count. */
static int check_keys(lua_State *L) {
  int n = 0;
  lua_getfield(L, 1, "key");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      util_field_error(L, "key", "a private key file path expected");
    n = 1;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "keys") != LUA_TNIL) {
    if (n) util_field_error(L, "keys", "give key or keys, not both");
    if (!lua_istable(L, -1))
      util_field_error(L, "keys", "an array of private key file paths");
    n = (int)luaL_len(L, -1);
    for (int i = 1; i <= n; i++) {
      if (lua_geti(L, -1, i) != LUA_TSTRING)
        util_field_error(L, "keys", "an array of private key file paths");
      lua_pop(L, 1);
    }
    if (n > 6) util_field_error(L, "keys", "at most 6 key files");
  }
  lua_pop(L, 1);
  return n;
}

static int l_connect(lua_State *L) {
  upgrun_check_cancelled(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *host = util_opt_string(L, 1, "host", NULL, NULL);
  if (!host || !*host)
    return util_field_error(L, "host", "a host name or address is required");
  double port = util_opt_number(L, 1, "port", 22);
  if (port < 1 || port > 65535 || port != (int)port)
    return util_field_error(L, "port", "must be an integer 1-65535");
  const char *user = util_opt_string(L, 1, "user", NULL, NULL);
  if (!user || !*user)
    return util_field_error(
        L, "user", "required (upgrun.ssh_identity chooses the default)");
  const char *passphrase = util_opt_string(L, 1, "passphrase", NULL, NULL);
  const char *password = util_opt_string(L, 1, "password", NULL, NULL);
  const char *kh = util_opt_string(L, 1, "known_hosts", NULL, NULL);
  if (!kh || !*kh)
    return util_field_error(
        L, "known_hosts", "required (upgrun.ssh_identity chooses the default)");
  const char *policy = util_opt_string(L, 1, "host_key_policy", "strict", NULL);
  double timeout = util_opt_number(L, 1, "timeout", 10);
  double connect_timeout = util_opt_number(L, 1, "connect_timeout", timeout);
  double keepalive = util_opt_number(L, 1, "keepalive", 0);
  lua_getfield(L, 1, "agent");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING &&
      !(lua_isboolean(L, -1) && !lua_toboolean(L, -1)))
    return util_field_error(L, "agent",
                            "the agent's socket path (or nil/false: none)");
  const char *agent =
      lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the string stays alive in the options table */
  int nkeys = check_keys(L);
  bool accept_new;
  if (!strcmp(policy, "strict"))
    accept_new = false;
  else if (!strcmp(policy, "accept-new"))
    accept_new = true;
  else
    return util_field_error(L, "host_key_policy",
                            "\"strict\" or \"accept-new\"");
  if (timeout <= 0) return util_field_error(L, "timeout", "must be > 0");
  if (connect_timeout <= 0)
    return util_field_error(L, "connect_timeout", "must be > 0");
  if (keepalive < 0) return util_field_error(L, "keepalive", "must be >= 0");
  const char *netns = util_opt_string(L, 1, "netns", NULL, NULL);
  if (netns && !*netns) netns = NULL; /* "" is the root namespace */
  if (netns) {
    unsigned char a[16];
    if (strchr(netns, '/') || !strcmp(netns, ".") || !strcmp(netns, ".."))
      return util_field_error(L, "netns", "a name under /run/netns");
    if (inet_pton(AF_INET, host, a) != 1 && inet_pton(AF_INET6, host, a) != 1)
      return util_field_error(
          L, "host", "must be an address with netns (names resolve outside)");
  }

  upgrun_runtime *rt = upgrun_from_lua(L);
  ssh_sess *S = calloc(1, sizeof *S);
  if (!S) return luaL_error(L, "out of memory");
  S->loop = upgrun_loop(rt);
  S->fd = -1;
  S->port = (int)port;
  S->accept_new = accept_new;
  S->keepalive_s = keepalive;
  S->host = strdup(host);
  S->user = strdup(user);
  S->known_hosts = strdup(kh);
  S->netns = xstrdup(netns);
  S->passphrase = xstrdup(passphrase);
  S->password = xstrdup(password);
  /* Identities in the order given: agent, keys, password. */
  if (agent && *agent) add_cand(S, C_AGENT, agent);
  if (nkeys > 0) {
    if (lua_getfield(L, 1, "key") == LUA_TSTRING) {
      add_cand(S, C_KEY, lua_tostring(L, -1));
    } else {
      lua_getfield(L, 1, "keys");
      for (int i = 1; i <= nkeys; i++) {
        lua_geti(L, -1, i);
        add_cand(S, C_KEY, lua_tostring(L, -1));
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (password) add_cand(S, C_PASSWORD, NULL);

  uv_timer_init(S->loop, &S->kick);
  uv_timer_init(S->loop, &S->keepalive);
  S->kick.data = S->keepalive.data = S;
  S->handles = 2;
  ssh_op *o = op_new(S, OP_CONNECT, timeout);
  if (!o) {
    sess_destroy(S);
    return luaL_error(L, "out of memory");
  }
  if (connect_timeout < timeout) { /* the TCP connect alone, bounded shorter */
    o->tcp_timeout = connect_timeout;
    uv_timer_start(&o->timer, op_timer_cb, upgrun_ms(connect_timeout), 0);
  }
  o->owner = S; /* connect_push hands S to Lua */
  o->in_sess = true;
  S->conn = o;
  o->op.push = connect_push;
  o->op.cancel = connect_cancel;
  sess_kick(S);
  return upgrun_wait(L, &o->op);
}

static int l_exec(lua_State *L) {
  upgrun_check_cancelled(L);
  ssh_sess *S = check_open(L);
  size_t len;
  const char *cmd = luaL_checklstring(L, 2, &len);
  int opts = lua_istable(L, 3) ? 3 : 0;
  if (!opts) luaL_opt(L, luaL_checkinteger, 3, 0); /* nil or a table */
  double timeout = opts ? util_opt_number(L, 3, "timeout", 3600) : 3600;
  if (timeout <= 0) return util_field_error(L, "timeout", "must be > 0");
  double max_output =
      opts ? util_opt_number(L, 3, "max_output", (double)DEFAULT_MAX_OUTPUT)
           : (double)DEFAULT_MAX_OUTPUT;
  if (!(max_output >= 1 && max_output <= (double)SIZE_MAX / 2))
    return util_field_error(L, "max_output", "must be a byte count >= 1");
  size_t inlen = 0;
  const char *in = opts ? util_opt_string(L, 3, "stdin", NULL, &inlen) : NULL;
  if (opts && lua_getfield(L, 3, "env") != LUA_TNIL)
    return util_field_error(L, "env",
                            "not an exec option: prefix the command with "
                            "upgrun.shell.env_prefix(env)");
  if (opts) lua_pop(L, 1);
  if (!S || S->state != ST_READY)
    return upgrun_push_error(L, "closed", "the SSH session is closed%s%s",
                             S && S->dead_msg[0] ? ": " : "",
                             S ? S->dead_msg : "");
  ssh_op *o = op_new(S, OP_EXEC, timeout);
  if (!o) return luaL_error(L, "out of memory");
  o->cmd = malloc(len + 1);
  if (in && inlen) o->in = malloc(inlen);
  if (!o->cmd || (inlen && in && !o->in)) {
    o->task_done = true;
    op_release(o);
    return luaL_error(L, "out of memory");
  }
  memcpy(o->cmd, cmd, len + 1);
  o->cmd_len = len;
  o->out.max = o->err.max = (size_t)max_output;
  if (o->in && in) {
    memcpy(o->in, in, inlen);
    o->in_len = inlen;
  }
  o->op.push = exec_push;
  o->op.cancel = exec_cancel;
  o->next = S->ops;
  S->ops = o;
  o->in_sess = true;
  sess_kick(S);
  return upgrun_wait(L, &o->op);
}

static int l_upload(lua_State *L) {
  upgrun_check_cancelled(L);
  ssh_sess *S = check_open(L);
  size_t dlen = 0;
  const char *data = NULL, *lpath = NULL;
  if (lua_type(L, 2) == LUA_TSTRING) {
    data = lua_tolstring(L, 2, &dlen);
  } else if (lua_istable(L, 2)) {
    lpath = util_opt_string(L, 2, "path", NULL, NULL);
    data = util_opt_string(L, 2, "data", NULL, &dlen);
    if (!lpath == !data)
      return luaL_argerror(L, 2, "give exactly one of path= or data=");
  } else {
    return luaL_argerror(L, 2, "string data or {path=} / {data=} expected");
  }
  const char *rpath = luaL_checkstring(L, 3);
  lua_Integer mode = luaL_optinteger(L, 4, 0644);
  double timeout = 600;
  if (lua_istable(L, 5)) timeout = util_opt_number(L, 5, "timeout", 600);
  char *copy = NULL;
  if (lpath) {
    FILE *f = fopen(lpath, "rb");
    if (!f)
      return upgrun_push_error(L, "io", "cannot open %s: %s", lpath,
                               strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
      fclose(f);
      return upgrun_push_error(L, "io", "%s is not a regular file", lpath);
    }
    dlen = (size_t)st.st_size;
    copy = calloc(1, dlen + 1);
    if (!copy || fread(copy, 1, dlen, f) != dlen) {
      fclose(f);
      free(copy);
      return upgrun_push_error(L, "io", "cannot read %s", lpath);
    }
    fclose(f);
  }
  if (!S || S->state != ST_READY) {
    free(copy);
    return upgrun_push_error(L, "closed", "the SSH session is closed");
  }
  ssh_op *o = op_new(S, OP_UPLOAD, timeout);
  if (!o) {
    free(copy);
    return luaL_error(L, "out of memory");
  }
  if (!copy) {
    copy = calloc(1, dlen + 1);
    if (copy) memcpy(copy, data, dlen);
  }
  o->in = copy; /* data + the '\0' that ends an SCP file transfer */
  o->in_len = dlen + 1;
  o->file_size = dlen;
  o->mode = (int)mode;
  o->remote_path = strdup(rpath);
  if (!o->in || !o->remote_path) {
    o->task_done = true;
    op_release(o);
    return luaL_error(L, "out of memory");
  }
  o->op.push = exec_push;
  o->op.cancel = exec_cancel;
  o->next = S->ops;
  S->ops = o;
  o->in_sess = true;
  sess_kick(S);
  return upgrun_wait(L, &o->op);
}

static int l_close(lua_State *L) {
  sess_ud *u = luaL_checkudata(L, 1, SESSION_MT);
  if (u->S) {
    ssh_sess *S = u->S;
    u->S = NULL;
    sess_destroy(S);
  }
  return 0;
}

static int l_info(lua_State *L) {
  ssh_sess *S = check_open(L);
  lua_createtable(L, 0, 5);
  lua_pushboolean(L, S && S->state == ST_READY);
  lua_setfield(L, -2, "open");
  if (S) {
    lua_pushstring(L, S->host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, S->port);
    lua_setfield(L, -2, "port");
    lua_pushstring(L, S->user);
    lua_setfield(L, -2, "user");
    lua_pushstring(L, S->fingerprint);
    lua_setfield(L, -2, "fingerprint");
    lua_pushstring(L, S->identity);
    lua_setfield(L, -2, "identity");
    if (S->netns) {
      lua_pushstring(L, S->netns);
      lua_setfield(L, -2, "netns");
    }
    int pending = 0;
    for (ssh_op *o = S->ops; o; o = o->next)
      pending++;
    lua_pushinteger(L, pending);
    lua_setfield(L, -2, "channels");
    if (S->dead_msg[0]) {
      lua_pushstring(L, S->dead_msg);
      lua_setfield(L, -2, "closed_reason");
    }
  }
  return 1;
}

static int l_is_open(lua_State *L) {
  ssh_sess *S = check_open(L);
  lua_pushboolean(L, S && S->state == ST_READY);
  return 1;
}

static int l_tostring(lua_State *L) {
  ssh_sess *S = check_open(L);
  if (S)
    lua_pushfstring(L, "ssh session %s@%s:%d%s", S->user, S->host, S->port,
                    S->state == ST_READY ? "" : " (closed)");
  else
    lua_pushliteral(L, "ssh session (closed)");
  return 1;
}

static void ssh_shutdown(void *ud) {
  (void)ud;
  libssh2_exit();
}

int luaopen_upgrun_ssh(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"exec", l_exec},     {"upload", l_upload},       {"close", l_close},
      {"info", l_info},     {"is_open", l_is_open},     {"__gc", l_close},
      {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"connect", l_connect}, {"local_account", l_local_account}, {NULL, NULL}};
  if (libssh2_init(0) != 0) return luaL_error(L, "libssh2_init failed");
  upgrun_on_shutdown(upgrun_from_lua(L), ssh_shutdown, NULL);
  util_new_class(L, SESSION_MT, methods);
  luaL_newlib(L, fns);
  return 1;
}

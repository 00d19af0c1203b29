/*
 * mod_http.c — upgrun.http: HTTP(S) requests on libcurl's multi interface,
 * driven by the runtime's libuv loop (the curl "multi-uv" pattern: curl tells
 * us which sockets to watch through CURLMOPT_SOCKETFUNCTION, we watch them
 * with one uv_poll_t each, and its timeout through CURLMOPT_TIMERFUNCTION,
 * which we arm on one uv_timer_t).
 *
 *   request{method="GET", url=, headers={name=value}, body=, timeout=30,
 *           connect_timeout=, verify=true, cacert=, cert=, key=,
 *           max_body=64 MiB, proxy=, noproxy=}
 *     -> {status=, headers={lowercased name=value}, body=, url=, reused=,
 *         timing={connect=, ttfb=, total=}}          (seconds)
 *     |  nil, {kind=timeout|connect|tls|closed|too_large|cancelled|protocol,
 *              message=, curl_code=}
 *   get(url [, opts]) — request with method GET.
 *
 * `status_only=true` (a probe needs nothing else) returns {status=} alone:
 * the headers and body are read and counted (max_body still applies) but
 * not kept, and no headers/timing tables are built.
 *
 * `timeout` bounds the whole request; `reused` is true when the request went
 * over an already open connection; `url` has any user:password removed (as
 * have error messages). Environment proxies (http_proxy...) are ignored;
 * `proxy=` sets one explicitly and `noproxy=` ("host,.domain", as no_proxy)
 * lists hosts that bypass it. `cert`/`key` are the client certificate and
 * its private key (PEM files) for mutual TLS. Redirects are not followed.
 * A 4xx/5xx is a response, not an error: the client libraries decide.
 * One CURLM per runtime, created on first use and cleaned up at shutdown; it
 * owns the connection cache, so keep-alive connections are reused across
 * requests and tasks. curl callbacks only fill C buffers and call
 * upgrun_op_complete(); curl_multi_socket_action() is only called from libuv
 * callbacks, never from inside a curl callback. Header values are never
 * logged (tokens travel in X-Auth-Token).
 */
#include "http_internal.h"
#include "util.h"

#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HTTP_CTX_KEY "upgrun.http.ctx"
#define DEFAULT_MAX_BODY (64.0 * 1024 * 1024)
#define DEFAULT_TIMEOUT 30.0
#define MAX_TIMEOUT 1e6                /* seconds */
#define MAX_BODY_LIMIT 1099511627776.0 /* 2^40 bytes */
/* ---- per-runtime state ------------------------------------------------ */

/* One per socket curl asked us to watch; freed in the close callback. */
struct sock_watch {
  uv_poll_t poll;
  curl_socket_t fd;
  int events; /* UV_READABLE/UV_WRITABLE being watched, 0 when stopped */
  bool idle;  /* curl removed it: its connection idles in curl's cache */
  http_ctx *h;
  sock_watch *prev, *next;
};

typedef struct {
  char *data;
  size_t len, cap;
} buf;

typedef struct http_op {
  upgrun_op op; /* first: the scheduler sees an upgrun_op */
  http_xfer xfer;
  http_ctx *h;
  CURL *easy;
  struct curl_slist *req_headers;
  buf body;    /* response body */
  buf headers; /* response headers: "name\0value\0" pairs, name lowercased */
  size_t max_body;
  size_t body_seen; /* bytes of body received (kept or not) */
  bool status_only; /* keep neither headers nor body (see the top) */
  bool too_large;
  bool done;
  CURLcode result;
  long status;
  double t_connect, t_ttfb, t_total;
  long new_conns; /* 0 when an existing connection was reused */
  char method[16];
  char *url_safe; /* the URL without user:password, for messages */
  char errbuf[CURL_ERROR_SIZE];
} http_op;

static int global_refs; /* curl_global_init/cleanup pairing */

static bool buf_append(buf *b, const char *p, size_t n) {
  if (!util_reserve(&b->data, &b->cap, b->len + n + 1, 1024, 0)) return false;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return true;
}

/* ---- curl <-> libuv glue --------------------------------------------- */

static void check_multi_info(http_ctx *h);

static void update_timer_ref(http_ctx *h) {
  /* The loop is kept alive by curl's timer only while transfers are in
   * flight: idle keep-alive connections must not hide a deadlock. */
  if (h->inflight > 0)
    uv_ref((uv_handle_t *)&h->timer);
  else
    uv_unref((uv_handle_t *)&h->timer);
}

static void on_timer(uv_timer_t *t) {
  http_ctx *h = t->data;
  int running;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi_info(h);
}

/* CURLMOPT_TIMERFUNCTION: never acts directly (no re-entrancy); a 0 ms
 * timeout fires on the next loop iteration. */
static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  http_ctx *h = userp;
  if (timeout_ms < 0)
    uv_timer_stop(&h->timer);
  else
    uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

static void on_poll(uv_poll_t *p, int status, int events) {
  sock_watch *w = p->data;
  http_ctx *h = w->h;
  int flags = 0, running;
  if (w->idle) { /* EOF or stray data on an idle connection: curl's check
                    finds it when it next picks the connection */
    uv_poll_stop(&w->poll);
    w->events = 0;
    return;
  }
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  /* w may be closed (not yet freed) by curl during this call */
  curl_multi_socket_action(h->multi, w->fd, flags, &running);
  check_multi_info(h);
}

static void watch_free_cb(uv_handle_t *hd) { free(hd->data); }

static void watch_close(sock_watch *w) {
  if (w->prev)
    w->prev->next = w->next;
  else
    w->h->watches = w->next;
  if (w->next) w->next->prev = w->prev;
  uv_poll_stop(&w->poll);
  /* uv_close drops the fd from libuv's watcher table at once, so a new
   * socket may reuse the fd number right away. */
  uv_close((uv_handle_t *)&w->poll, watch_free_cb);
}

static sock_watch *watch_find(http_ctx *h, curl_socket_t s) {
  for (sock_watch *w = h->watches; w; w = w->next)
    if (w->fd == s) return w;
  return NULL;
}

/* CURLOPT_CLOSESOCKETFUNCTION: curl closes a socket (a connection it drops,
 * or the cache at shutdown). The socket's watch, kept while the connection
 * idles in curl's cache, is closed first, then the fd. */
static int curl_closesocket_cb(void *userp, curl_socket_t s) {
  http_ctx *h = userp;
  sock_watch *w = watch_find(h, s);
  if (w) watch_close(w);
  return close(s);
}

/* CURLMOPT_SOCKETFUNCTION. A kept-alive connection is removed after each
 * transfer and added again by the next one: its uv_poll_t is kept (creating
 * one costs five syscalls, restarting it two) and marked idle, still
 * watching what it watched (an event while idle stops it, see on_poll); it
 * is closed when curl closes the socket (curl_closesocket_cb). */
static int curl_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
                          void *socketp) {
  (void)easy;
  http_ctx *h = userp;
  sock_watch *w = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (w) {
      curl_multi_assign(h->multi, s, NULL);
      w->idle = true;
    }
    return 0;
  }
  if (!w) w = watch_find(h, s);
  if (!w) {
    w = calloc(1, sizeof *w);
    if (!w) return -1;
    if (uv_poll_init_socket(h->loop, &w->poll, s) != 0) {
      free(w);
      return -1;
    }
    uv_unref((uv_handle_t *)&w->poll); /* see update_timer_ref */
    w->poll.data = w;
    w->fd = s;
    w->h = h;
    w->next = h->watches;
    if (h->watches) h->watches->prev = w;
    h->watches = w;
  }
  curl_multi_assign(h->multi, s, w);
  w->idle = false;
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
  if (events != w->events) {
    uv_poll_start(&w->poll, events, on_poll);
    w->events = events;
  }
  return 0;
}

void http_easy_release(http_ctx *h, CURL *e) {
  if (h && h->npool < HTTP_EASY_POOL_MAX) {
    curl_easy_reset(e);
    h->pool[h->npool++] = e;
  } else {
    curl_easy_cleanup(e);
  }
}

static void op_free(http_op *o) {
  if (o->easy) http_easy_release(o->h, o->easy);
  curl_slist_free_all(o->req_headers);
  free(o->body.data);
  free(o->headers.data);
  free(o->url_safe);
  free(o);
}

/* Collects finished transfers: detaches each easy handle from the multi and
 * hands it to its owner (http_xfer.done). */
static void check_multi_info(http_ctx *h) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(h->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *e = msg->easy_handle;
    CURLcode rc = msg->data.result;
    http_xfer *x = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    curl_multi_remove_handle(h->multi, e);
    h->inflight--;
    x->done(x, e, rc);
  }
  update_timer_ref(h);
}

bool http_start(http_ctx *h, CURL *e) {
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK) return false;
  h->inflight++;
  update_timer_ref(h);
  /* Start the transfer now rather than on curl's 0 ms timer at the next
   * loop iteration (a probe sample then costs one loop iteration less).
   * This is not inside a curl callback; the transfers it completes only
   * queue their tasks or records. */
  int running;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi_info(h);
  return true;
}

void http_abandon(http_ctx *h, CURL *e) {
  curl_multi_remove_handle(h->multi, e);
  h->inflight--;
  update_timer_ref(h);
}

/* A request's transfer finished: records result and timings, wakes the task. */
static void op_done(http_xfer *x, CURL *e, CURLcode rc) {
  http_op *o = (http_op *)((char *)x - offsetof(http_op, xfer));
  curl_off_t us = 0;
  o->result = rc;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &o->status);
  curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &us);
  o->t_connect = (double)us / 1e6;
  curl_easy_getinfo(e, CURLINFO_STARTTRANSFER_TIME_T, &us);
  o->t_ttfb = (double)us / 1e6;
  curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &us);
  o->t_total = (double)us / 1e6;
  curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &o->new_conns);
  o->done = true;
  upgrun_op_complete(&o->op);
}

/* ---- the per-runtime context ----------------------------------------- */

static void ctx_free_cb(uv_handle_t *hd) { free(hd->data); }

/* Shutdown hook: runs after lua_close, when every request has been
 * cancelled (their easy handles removed). */
static void ctx_shutdown(void *ud) {
  http_ctx *h = ud;
  for (int i = 0; i < h->npool; i++)
    curl_easy_cleanup(h->pool[i]);
  h->npool = 0;
  curl_multi_cleanup(h->multi); /* closes cached connections */
  while (h->watches)
    watch_close(h->watches);
  uv_timer_stop(&h->timer);
  uv_close((uv_handle_t *)&h->timer, ctx_free_cb);
  if (--global_refs == 0) curl_global_cleanup();
}

http_ctx *http_ctx_get(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, HTTP_CTX_KEY);
  http_ctx *h = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (h) return h;
  if (global_refs++ == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
    global_refs--;
    return NULL;
  }
  h = calloc(1, sizeof *h);
  if (h) h->multi = curl_multi_init();
  if (!h || !h->multi) {
    free(h);
    if (--global_refs == 0) curl_global_cleanup();
    return NULL;
  }
  h->rt = upgrun_from_lua(L);
  h->loop = upgrun_loop(h->rt);
  uv_timer_init(h->loop, &h->timer);
  h->timer.data = h;
  uv_unref((uv_handle_t *)&h->timer);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
  upgrun_on_shutdown(h->rt, ctx_shutdown, h);
  lua_pushlightuserdata(L, h);
  lua_setfield(L, LUA_REGISTRYINDEX, HTTP_CTX_KEY);
  return h;
}

/* ---- curl easy callbacks (C state only) ------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  http_op *o = ud;
  size_t len = size * n;
  if (o->body_seen + len > o->max_body) {
    o->too_large = true;
    return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
  }
  o->body_seen += len;
  if (o->status_only) return len;
  return buf_append(&o->body, p, len) ? len : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  http_op *o = ud;
  size_t len = size * n;
  if (o->status_only) return len;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    o->headers.len = 0; /* a new response (after 100 Continue): start over */
    return len;
  }
  const char *colon = memchr(p, ':', len);
  if (!colon || colon == p) return len; /* blank line, folded line */
  size_t nlen = (size_t)(colon - p);
  const char *v = colon + 1, *end = p + len;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
                     end[-1] == '\t'))
    end--;
  size_t at = o->headers.len;
  if (!buf_append(&o->headers, p, nlen) || !buf_append(&o->headers, "", 1) ||
      !buf_append(&o->headers, v, (size_t)(end - v)) ||
      !buf_append(&o->headers, "", 1))
    return 0;
  for (size_t i = at; i < at + nlen; i++)
    o->headers.data[i] = (char)tolower((unsigned char)o->headers.data[i]);
  return len;
}

/* ---- results ---------------------------------------------------------- */

const char *http_error_kind(bool too_large, CURLcode rc) {
  if (too_large) return "too_large";
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT:
    return "timeout";
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return "connect";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_USE_SSL_FAILED:
    return "tls";
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
    return "closed";
  case CURLE_FILESIZE_EXCEEDED:
    return "too_large";
  case CURLE_ABORTED_BY_CALLBACK:
    return "cancelled";
  default:
    return "protocol";
  }
}

static void set_number(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

/* Pushes the response table or nil, err; frees the op. Must not raise
 * (apart from memory errors). */
static int http_push(lua_State *L, upgrun_op *op) {
  http_op *o = (http_op *)op;
  int n;
  if (o->result != CURLE_OK || o->too_large) {
    const char *kind = http_error_kind(o->too_large, o->result);
    char detail[CURL_ERROR_SIZE + 64];
    if (strcmp(kind, "too_large") == 0)
      snprintf(detail, sizeof detail,
               "response body larger than max_body (%zu bytes)", o->max_body);
    else
      snprintf(detail, sizeof detail, "%s",
               o->errbuf[0] ? o->errbuf : curl_easy_strerror(o->result));
    n = upgrun_push_error(L, kind, "%s (%s %s)", detail, o->method,
                          o->url_safe);
    lua_pushinteger(L, (lua_Integer)o->result);
    lua_setfield(L, -2, "curl_code");
  } else if (o->status_only) {
    lua_createtable(L, 0, 1);
    lua_pushinteger(L, o->status);
    lua_setfield(L, -2, "status");
    n = 1;
  } else {
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, o->status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, o->body.data ? o->body.data : "", o->body.len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, o->url_safe);
    lua_setfield(L, -2, "url");
    lua_pushboolean(L, o->new_conns == 0);
    lua_setfield(L, -2, "reused");
    lua_createtable(L, 0, 3);
    set_number(L, "connect", o->t_connect);
    set_number(L, "ttfb", o->t_ttfb);
    set_number(L, "total", o->t_total);
    lua_setfield(L, -2, "timing");
    /* headers: repeated names are joined with ", " (RFC 9110 5.3) */
    lua_createtable(L, 0, 8);
    for (size_t i = 0; i < o->headers.len;) {
      const char *name = o->headers.data + i;
      size_t nlen = strlen(name);
      const char *val = name + nlen + 1;
      size_t vlen = strlen(val);
      i += nlen + vlen + 2;
      if (lua_getfield(L, -1, name) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, val, vlen);
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, val, vlen);
      }
      lua_setfield(L, -2, name);
    }
    lua_setfield(L, -2, "headers");
    n = 1;
  }
  op_free(o);
  return n;
}

/* The task was cancelled: detach and free the transfer. curl closes a
 * connection whose response was not read to the end. */
static void http_cancel(upgrun_op *op) {
  http_op *o = (http_op *)op;
  if (o->easy && !o->done) http_abandon(o->h, o->easy);
  op_free(o);
}

/* ---- building a request ----------------------------------------------- */

/* The URL with user and password removed (NULL if it does not parse). */
static char *url_without_credentials(const char *url) {
  const char *auth = strstr(url, "://");
  if (auth) { /* fast path: no '@' before the path, nothing to remove */
    auth += 3;
    size_t n = strcspn(auth, "/?#");
    if (!memchr(auth, '@', n) && n > 0 && !strpbrk(url, " \r\n\t"))
      return strdup(url);
  }
  CURLU *u = curl_url();
  char *out = NULL;
  if (!u) return NULL;
  if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
    curl_url_set(u, CURLUPART_USER, NULL, 0);
    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    char *s = NULL;
    if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) {
      out = strdup(s);
      curl_free(s);
    }
  }
  curl_url_cleanup(u);
  return out;
}

static bool has_ctl(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return true;
  return false;
}

/* Builds the curl header list from opts.headers (stack: opts at idx).
 * Raises on misuse; the op is not yet allocated. */
static struct curl_slist *build_headers(lua_State *L, int idx, bool has_body) {
  struct curl_slist *list = NULL;
  bool user_expect = false;
  luaL_Buffer b;
  lua_getfield(L, idx, "headers");
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      util_field_error(L, "headers", "table expected");
    }
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) { /* stack: headers, name, value */
      size_t nlen, vlen;
      if (lua_type(L, -2) != LUA_TSTRING ||
          (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)) {
        curl_slist_free_all(list);
        util_field_error(L, "headers", "name = string value expected");
      }
      const char *name = lua_tolstring(L, -2, &nlen);
      lua_pushvalue(L, -1); /* tolstring on a copy: keeps lua_next sane */
      const char *val = lua_tolstring(L, -1, &vlen);
      if (nlen == 0 || memchr(name, ':', nlen) || has_ctl(name, nlen) ||
          has_ctl(val, vlen)) {
        curl_slist_free_all(list);
        util_field_error(L, "headers", "invalid header name or value");
      }
      if (strcasecmp(name, "expect") == 0) user_expect = true;
      luaL_buffinit(L, &b);
      luaL_addlstring(&b, name, nlen);
      /* "Name;" is curl's way to send a header with an empty value */
      luaL_addstring(&b, vlen ? ": " : ";");
      luaL_addlstring(&b, val, vlen);
      luaL_pushresult(&b);
      struct curl_slist *nl = curl_slist_append(list, lua_tostring(L, -1));
      if (!nl) {
        curl_slist_free_all(list);
        luaL_error(L, "out of memory");
      }
      list = nl;
      lua_pop(L, 3); /* result, value copy, value: the key stays for next */
    }
  }
  lua_pop(L, 1);
  if (has_body && !user_expect) {
    /* no "Expect: 100-continue" round trip for larger bodies */
    struct curl_slist *nl = curl_slist_append(list, "Expect:");
    if (nl) list = nl;
  }
  return list;
}

static CURL *easy_get(http_ctx *h) {
  if (h->npool > 0) return h->pool[--h->npool];
  return curl_easy_init();
}

CURL *http_easy_new(lua_State *L, int idx, http_ctx *h, http_conf *c) {
  luaL_checktype(L, idx, LUA_TTABLE);
  size_t url_len, body_len = 0;
  const char *url = util_opt_string(L, idx, "url", NULL, &url_len);
  if (!url) {
    util_field_error(L, "url", "string expected");
    return NULL; /* (not reached: it raises) */
  }
  const char *method = util_opt_string(L, idx, "method", "GET", NULL);
  const char *body = util_opt_string(L, idx, "body", NULL, &body_len);
  double timeout = util_opt_number(L, idx, "timeout", DEFAULT_TIMEOUT);
  double ctimeout = util_opt_number(L, idx, "connect_timeout", -1);
  bool verify = util_opt_bool(L, idx, "verify", true);
  bool status_only = util_opt_bool(L, idx, "status_only", false);
  const char *cacert = util_opt_string(L, idx, "cacert", NULL, NULL);
  const char *proxy = util_opt_string(L, idx, "proxy", NULL, NULL);
  const char *noproxy = util_opt_string(L, idx, "noproxy", NULL, NULL);
  const char *cert = util_opt_string(L, idx, "cert", NULL, NULL);
  const char *key = util_opt_string(L, idx, "key", NULL, NULL);
  double max_body = util_opt_number(L, idx, "max_body", DEFAULT_MAX_BODY);
  /* upper bounds keep the conversions to long/size_t defined */
  if (!(timeout > 0 && timeout <= MAX_TIMEOUT))
    util_field_error(L, "timeout", "must be > 0 and <= 1e6");
  if (ctimeout != -1 && !(ctimeout > 0 && ctimeout <= MAX_TIMEOUT))
    util_field_error(L, "connect_timeout", "must be > 0 and <= 1e6");
  if (!(max_body >= 0 && max_body <= MAX_BODY_LIMIT))
    util_field_error(L, "max_body", "must be >= 0 and <= 2^40");
  size_t mlen = strlen(method);
  if (mlen == 0 || mlen >= sizeof c->method)
    util_field_error(L, "method", "invalid method");
  for (size_t i = 0; i < mlen; i++)
    if (!isupper((unsigned char)method[i]))
      util_field_error(L, "method", "expected an upper-case token like GET");
  struct curl_slist *hdrs = build_headers(L, idx, body != NULL);
  char *url_safe = url_without_credentials(url);
  if (!url_safe) {
    curl_slist_free_all(hdrs);
    util_field_error(L, "url", "not a valid absolute URL");
    return NULL;
  }
  CURL *e = easy_get(h);
  if (!e) {
    free(url_safe);
    curl_slist_free_all(hdrs);
    luaL_error(L, "out of memory");
    return NULL;
  }
  c->headers = hdrs;
  c->url_safe = url_safe;
  c->max_body = (size_t)max_body;
  c->timeout = timeout;
  c->status_only = status_only;
  memcpy(c->method, method, mlen + 1);

  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, curl_closesocket_cb);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
  /* No proxy from the environment (http_proxy would also catch test traffic
   * to 127.0.0.1); a proxy is only used when asked for. */
  curl_easy_setopt(e, CURLOPT_PROXY, proxy ? proxy : "");
  curl_easy_setopt(e, CURLOPT_NOPROXY, noproxy);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "upgrun/" UPGRUN_VERSION);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)upgrun_ms(timeout));
  if (ctimeout > 0)
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)upgrun_ms(ctimeout));
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_body);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
  if (cacert) curl_easy_setopt(e, CURLOPT_CAINFO, cacert);
  curl_easy_setopt(e, CURLOPT_SSLCERT, cert);
  curl_easy_setopt(e, CURLOPT_SSLKEY, key);
  if (hdrs) curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
  if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    if (strcmp(method, "POST") != 0)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "GET") != 0) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  }
  return e;
}

/* stack: opts table at idx. Starts the transfer and yields. */
static int do_request(lua_State *L, int idx) {
  upgrun_check_cancelled(L);
  http_ctx *h = http_ctx_get(L);
  if (!h) return luaL_error(L, "upgrun.http: cannot initialise libcurl");
  http_conf c = {0};
  CURL *e = http_easy_new(L, idx, h, &c);
  http_op *o = e ? calloc(1, sizeof *o) : NULL;
  if (!o) {
    if (e) http_easy_release(h, e);
    free(c.url_safe);
    curl_slist_free_all(c.headers);
    return luaL_error(L, "out of memory");
  }
  o->op.push = http_push;
  o->op.cancel = http_cancel;
  o->xfer.done = op_done;
  o->h = h;
  o->easy = e;
  o->req_headers = c.headers;
  o->url_safe = c.url_safe;
  o->max_body = c.max_body;
  o->status_only = c.status_only;
  memcpy(o->method, c.method, sizeof o->method);
  curl_easy_setopt(e, CURLOPT_PRIVATE, &o->xfer);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, o->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, o);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, o);
  if (!http_start(h, e)) {
    o->easy = NULL;
    curl_easy_cleanup(e);
    op_free(o);
    return luaL_error(L, "curl_multi_add_handle failed");
  }
  /* One that completed at once (refused) is handed back without waiting:
   * its op has no task yet. */
  if (o->done) return http_push(L, &o->op);
  /* If the task is already cancelled, upgrun_wait cancels o. */
  return upgrun_wait(L, &o->op);
}

static int l_request(lua_State *L) { return do_request(L, 1); }

/* get(url [, opts]): a copy of opts with url and method = "GET". */
static int l_get(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_settop(L, 2);
  lua_newtable(L); /* stack: url, opts, req */
  if (!lua_isnil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, 3);
    }
  }
  lua_pushvalue(L, 1);
  lua_setfield(L, 3, "url");
  lua_pushliteral(L, "GET");
  lua_setfield(L, 3, "method");
  return do_request(L, 3);
}

int luaopen_upgrun_http(lua_State *L) {
  static const luaL_Reg fns[] = {{"request", l_request},
                                 {"get", l_get},
                                 {"sampler", http_sampler_open},
                                 {NULL, NULL}};
  http_sampler_register(L);
  luaL_newlib(L, fns);
  return 1;
}

/*
 * http_sampler.c — upgrun.http.sampler: an open-loop HTTP probe sampled in C.
 * A libuv timer sends one request every `interval` seconds (over http_lite,
 * or the runtime's libcurl multi whose keep-alive connections upgrun.http
 * shares; see engine() below), at most `max_in_flight` outstanding (a slot
 * that finds them all busy is recorded as skipped, nothing is sent), and
 * records each finished sample in a C array; Lua takes them in batches
 * (upgrun.probe_run). No Lua runs per sample: a probe at 100 Hz costs one Lua
 * resume per batch instead of a task, two resumes and a response table per
 * sample.
 *
 *   local s = http.sampler{<upgrun.http.request fields>, interval =,
 *                          max_in_flight = 16 (at most 1024), batch = 0.1}
 *   s:start(mark)    first slot now, then every interval (if running: only
 *                    the mark changes)
 *   s:mark(m)        the integer recorded with the samples sent from now on
 *                    (the runner's stage and step at send time)
 *   s:stop()         no new samples; those in flight finish on their own
 *   n = s:take(timeout)  waits until finished samples are ready (the oldest
 *                    `batch` s old), or `timeout` s, or nothing more can come
 *                    (stopped, nothing in flight); n samples, maybe 0
 *   seq, mark, t_send, wall, t_end, status, kind, message = s:get(i)
 *                    sample i (1..n) of the last take: t_send/t_end
 *                    monotonic, wall epoch seconds at send; status the HTTP
 *                    status (0 if none); kind nil for a response, "skipped"
 *                    for a slot not sent, else the error kind (timeout,
 *                    connect, tls, closed, protocol, too_large) with message
 *   s:in_flight()    how many are outstanding
 *   s:engine()       "lite" (http_lite.c: plain http://, no proxy, no
 *                    connect_timeout, no user:password; lite = false
 *                    turns it off) or "curl" (the shared libcurl multi)
 *   list = s:cut()   ends the transfers in flight now: {{seq, mark, t_send,
 *                    wall}, ...} in send order, for the caller to record
 *   s:close()        stops, cuts, frees (also at garbage collection)
 *
 * Headers and body are counted (max_body holds) but not kept: the response
 * is its status alone, as with request{status_only = true}. Every sample is
 * bounded by the request's timeout. Each slot keeps its own connection
 * (http_lite) or shares curl's connection cache. Send stamps are taken when the
 * request is handed to its engine; a slot less than 1 ms away when the timer
 * fires is due (libuv's loop clock counts whole milliseconds).
 */
#include "http_internal.h"
#include "http_lite.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLER_MT "upgrun.http.sampler"
#define MAX_SLOTS 1024 /* max_in_flight */
#define EARLY 0.001    /* seconds: a slot this close is due */

typedef struct sampler sampler;

typedef struct {
  uint64_t seq;
  lua_Integer mark;
  double t_send, wall, t_end;
  long status;
  const char *kind; /* NULL: a response; static strings otherwise */
  char *message;    /* malloc'd, failures only */
} rec;

typedef struct {
  rec *v;
  size_t n, cap;
} recs;

typedef struct {
  http_xfer xfer;
  sampler *s;
  CURL *easy;      /* curl's way */
  lite_conn *lite; /* or http_lite's */
  bool busy;
  bool too_large;
  uint64_t seq;
  lua_Integer mark;
  double t_send, wall;
  size_t body_seen;
  char errbuf[CURL_ERROR_SIZE];
} slot;

/* The task waiting in take(): s->waiter until its results are pushed (or
 * it is cancelled), even once woken; `s` is NULL once the sampler closed. */
typedef struct {
  upgrun_op op;
  sampler *s;
  bool woken;
} take_op;

struct sampler {
  http_ctx *h;
  http_conf conf;
  CURL *tmpl;   /* configured once; slots are duplicates of it */
  lite_req *rq; /* non-NULL: the slots use http_lite instead */
  uv_timer_t tick, wake;
  double interval, batch, start;
  uint64_t k, seq;
  lua_Integer mark;
  bool running, closed;
  int nslots, in_flight;
  slot *slots; /* nslots */
  recs ready, taken;
  double first_ready; /* mono time the oldest ready record came */
  take_op *waiter;
  int handles_open; /* uv handles not yet closed (tick, wake) */
};

static void recs_clear(recs *r) {
  for (size_t i = 0; i < r->n; i++)
    free(r->v[i].message);
  r->n = 0;
}

static rec *recs_push(recs *r) {
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 64;
    rec *v = realloc(r->v, cap * sizeof *v);
    if (!v) return NULL;
    r->v = v;
    r->cap = cap;
  }
  rec *x = &r->v[r->n++];
  memset(x, 0, sizeof *x);
  return x;
}

/* ---- waking the task in take() ----------------------------------------- */

static bool nothing_more(const sampler *s) {
  return !s->running && s->in_flight == 0;
}

static void wake_waiter(sampler *s) {
  uv_timer_stop(&s->wake);
  take_op *w = s->waiter;
  if (!w || w->woken) return;
  w->woken = true;
  upgrun_op_complete(&w->op);
}

static void on_wake(uv_timer_t *t) { wake_waiter(t->data); }

/* A record became ready (or the sampler can produce no more): the waiter is
 * woken when the oldest ready record is `batch` old. */
static void ready_changed(sampler *s) {
  if (!s->waiter || s->waiter->woken) return;
  if (nothing_more(s)) {
    wake_waiter(s);
    return;
  }
  if (s->ready.n == 1) {
    uv_update_time(s->h->loop);
    uv_timer_start(&s->wake, on_wake, upgrun_ms(s->batch), 0);
  }
}

/* ---- sending ----------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  slot *sl = ud;
  size_t len = size * n;
  if (sl->body_seen + len > sl->s->conf.max_body) {
    sl->too_large = true;
    return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
  }
  sl->body_seen += len;
  return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

static void add_record(sampler *s, rec *from) {
  rec *r = recs_push(&s->ready);
  if (!r) { /* out of memory: the sample is lost, its message freed */
    free(from->message);
    return;
  }
  *r = *from;
  if (s->ready.n == 1) s->first_ready = upgrun_mono();
  ready_changed(s);
}

/* A slot's request ended: its record (message: malloc'd or NULL). */
static void slot_finished(slot *sl, long status, const char *kind,
                          char *message) {
  sampler *s = sl->s;
  rec r = {.seq = sl->seq,
           .mark = sl->mark,
           .t_send = sl->t_send,
           .wall = sl->wall,
           .t_end = upgrun_mono(),
           .status = status,
           .kind = kind,
           .message = message};
  sl->busy = false;
  s->in_flight--;
  add_record(s, &r);
}

static void slot_done(http_xfer *x, CURL *e, CURLcode rc) {
  slot *sl = (slot *)x;
  sampler *s = sl->s;
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (rc == CURLE_OK && !sl->too_large) {
    slot_finished(sl, status, NULL, NULL);
    return;
  }
  const char *detail = sl->errbuf[0] ? sl->errbuf : curl_easy_strerror(rc);
  char buf[CURL_ERROR_SIZE + 512];
  if (sl->too_large)
    snprintf(buf, sizeof buf,
             "response body larger than max_body (%zu bytes) (%s %s)",
             s->conf.max_body, s->conf.method, s->conf.url_safe);
  else
    snprintf(buf, sizeof buf, "%s (%s %s)", detail, s->conf.method,
             s->conf.url_safe);
  slot_finished(sl, status, http_error_kind(sl->too_large, rc), strdup(buf));
}

static void lite_done(void *ud, long status, const char *kind,
                      const char *message) {
  slot_finished(ud, status, kind, message ? strdup(message) : NULL);
}

/* Starts the slot's request; false if it could not be started. */
static bool slot_start(sampler *s, slot *sl) {
  if (s->rq) {
    if (!sl->lite) sl->lite = lite_conn_new(s->h->loop, s->rq, lite_done, sl);
    if (!sl->lite) return false;
    lite_send(sl->lite);
    return true;
  }
  if (!sl->easy) {
    sl->easy = curl_easy_duphandle(s->tmpl);
    if (!sl->easy) return false;
    curl_easy_setopt(sl->easy, CURLOPT_PRIVATE, &sl->xfer);
    curl_easy_setopt(sl->easy, CURLOPT_ERRORBUFFER, sl->errbuf);
    curl_easy_setopt(sl->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(sl->easy, CURLOPT_WRITEDATA, sl);
    curl_easy_setopt(sl->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(sl->easy, CURLOPT_HEADERDATA, sl);
  }
  sl->too_large = false;
  sl->body_seen = 0;
  sl->errbuf[0] = '\0';
  return http_start(s->h, sl->easy);
}

static void send_one(sampler *s) {
  s->seq++;
  slot *sl = NULL;
  for (int i = 0; i < s->nslots && !sl; i++)
    if (!s->slots[i].busy) sl = &s->slots[i];
  double now = upgrun_mono();
  if (!sl) {
    rec r = {.seq = s->seq,
             .mark = s->mark,
             .t_send = now,
             .wall = upgrun_wall(),
             .t_end = now,
             .kind = "skipped"};
    add_record(s, &r);
    return;
  }
  sl->busy = true;
  sl->seq = s->seq;
  sl->mark = s->mark;
  sl->t_send = now;
  sl->wall = upgrun_wall();
  s->in_flight++;
  /* (it may end at once: a refused connection) */
  if (!slot_start(s, sl))
    slot_finished(sl, 0, "protocol", strdup("cannot start a transfer"));
}

static void on_tick(uv_timer_t *t);

/* Arms the timer for the next slot. */
static void arm(sampler *s) {
  double wait = s->start + (double)s->k * s->interval - upgrun_mono();
  uv_update_time(s->h->loop);
  uv_timer_start(&s->tick, on_tick, wait > 0 ? upgrun_ms(wait) : 0, 0);
}

static void on_tick(uv_timer_t *t) {
  sampler *s = t->data;
  if (!s->running) return;
  double due = s->start + (double)s->k * s->interval;
  if (due - upgrun_mono() <= EARLY) {
    send_one(s);
    s->k++;
    /* Fell behind (the loop was starved)? Resynchronise, no burst. */
    double late = upgrun_mono() - (s->start + (double)s->k * s->interval);
    if (late > s->interval) s->k += (uint64_t)floor(late / s->interval);
  }
  if (s->running) arm(s);
}

/* ---- the Lua object ----------------------------------------------------- */

static sampler *check_sampler(lua_State *L) {
  sampler **ud = luaL_checkudata(L, 1, SAMPLER_MT);
  if (!*ud || (*ud)->closed) luaL_error(L, "http sampler: closed");
  return *ud;
}

static void stop_sending(sampler *s) {
  s->running = false;
  uv_timer_stop(&s->tick);
  ready_changed(s);
}

static int by_seq(const void *a, const void *b) {
  uint64_t x = (*(slot *const *)a)->seq, y = (*(slot *const *)b)->seq;
  return (x > y) - (x < y);
}

/* Ends the transfers in flight; returns them in send order through `out`
 * (may be NULL; room for nslots). */
static int cut_in_flight(sampler *s, slot **out) {
  int n = 0;
  for (int i = 0; i < s->nslots; i++) {
    slot *sl = &s->slots[i];
    if (!sl->busy) continue;
    if (sl->lite)
      lite_abandon(sl->lite);
    else
      http_abandon(s->h, sl->easy);
    sl->busy = false;
    s->in_flight--;
    if (out) out[n++] = sl;
  }
  if (out) qsort(out, (size_t)n, sizeof(slot *), by_seq);
  return n;
}

static void handle_closed(uv_handle_t *hd) {
  sampler *s = hd->data;
  if (--s->handles_open == 0) free(s);
}

static void sampler_close(sampler *s) {
  if (s->closed) return;
  s->closed = true;
  s->running = false;
  uv_timer_stop(&s->tick);
  cut_in_flight(s, NULL);
  if (s->waiter) { /* its task gets 0; s may be freed before it resumes */
    take_op *w = s->waiter;
    wake_waiter(s);
    w->s = NULL;
    s->waiter = NULL;
  }
  for (int i = 0; i < s->nslots; i++) {
    if (s->slots[i].easy) curl_easy_cleanup(s->slots[i].easy);
    lite_conn_free(s->slots[i].lite);
  }
  lite_req_free(s->rq); /* (its connections are closed: nothing reads it) */
  free(s->slots);
  s->slots = NULL;
  curl_easy_cleanup(s->tmpl);
  curl_slist_free_all(s->conf.headers);
  free(s->conf.url_safe);
  recs_clear(&s->ready);
  recs_clear(&s->taken);
  free(s->ready.v);
  free(s->taken.v);
  uv_close((uv_handle_t *)&s->tick, handle_closed);
  uv_close((uv_handle_t *)&s->wake, handle_closed);
}

/* http.sampler{...}: request fields plus interval, max_in_flight, batch. */
int http_sampler_open(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  double interval = util_opt_number(L, 1, "interval", -1);
  if (!(interval > 0 && interval <= 1e6))
    util_field_error(L, "interval", "must be > 0 and <= 1e6");
  double mif = util_opt_number(L, 1, "max_in_flight", 16);
  if (!(mif >= 1 && mif <= MAX_SLOTS && mif == floor(mif)))
    util_field_error(L, "max_in_flight", "must be an integer from 1 to 1024");
  double batch = util_opt_number(L, 1, "batch", 0.1);
  if (!(batch >= 0 && batch <= 60))
    util_field_error(L, "batch", "must be >= 0 and <= 60");
  /* http_lite where it means what curl would do (see http_lite.c) */
  bool lite = util_opt_bool(L, 1, "lite", true) &&
              lua_getfield(L, 1, "proxy") == LUA_TNIL &&
              lua_getfield(L, 1, "noproxy") == LUA_TNIL &&
              lua_getfield(L, 1, "connect_timeout") == LUA_TNIL;
  lua_settop(L, 1);
  size_t body_len = 0;
  const char *url = util_opt_string(L, 1, "url", NULL, NULL);
  const char *body = util_opt_string(L, 1, "body", NULL, &body_len);
  http_ctx *h = http_ctx_get(L);
  if (!h) return luaL_error(L, "upgrun.http: cannot initialise libcurl");
  sampler **ud = lua_newuserdatauv(L, sizeof(sampler *), 0);
  *ud = NULL;
  luaL_setmetatable(L, SAMPLER_MT);
  http_conf c = {0};
  CURL *tmpl = http_easy_new(L, 1, h, &c);
  sampler *s = tmpl ? calloc(1, sizeof *s) : NULL;
  slot *slots = s ? calloc((size_t)mif, sizeof *slots) : NULL;
  if (!slots) {
    free(s);
    if (tmpl) http_easy_release(h, tmpl);
    curl_slist_free_all(c.headers);
    free(c.url_safe);
    return luaL_error(L, "out of memory");
  }
  s->h = h;
  s->conf = c;
  s->tmpl = tmpl;
  s->interval = interval;
  s->batch = batch;
  s->nslots = (int)mif;
  s->slots = slots;
  if (lite)
    s->rq = lite_req_new(url, c.method, c.headers, body, body_len, c.timeout,
                         c.max_body, "upgrun/" UPGRUN_VERSION);
  for (int i = 0; i < s->nslots; i++) {
    s->slots[i].s = s;
    s->slots[i].xfer.done = slot_done;
  }
  uv_timer_init(h->loop, &s->tick);
  uv_timer_init(h->loop, &s->wake);
  s->tick.data = s->wake.data = s;
  s->handles_open = 2;
  *ud = s;
  return 1;
}

static int l_start(lua_State *L) {
  sampler *s = check_sampler(L);
  s->mark = luaL_optinteger(L, 2, s->mark);
  if (s->running) return 0;
  s->running = true;
  s->start = upgrun_mono();
  s->k = 0;
  on_tick(&s->tick); /* the first slot is now */
  return 0;
}

static int l_mark(lua_State *L) {
  sampler *s = check_sampler(L);
  s->mark = luaL_checkinteger(L, 2);
  return 0;
}

static int l_stop(lua_State *L) {
  stop_sending(check_sampler(L));
  return 0;
}

static int l_engine(lua_State *L) {
  lua_pushstring(L, check_sampler(L)->rq ? "lite" : "curl");
  return 1;
}

static int l_in_flight(lua_State *L) {
  lua_pushinteger(L, check_sampler(L)->in_flight);
  return 1;
}

/* Moves the ready records to `taken` (the previous batch is dropped). */
static int push_take(lua_State *L, sampler *s) {
  recs_clear(&s->taken);
  recs t = s->taken;
  s->taken = s->ready;
  s->ready = t;
  lua_pushinteger(L, (lua_Integer)s->taken.n);
  return 1;
}

static int take_push(lua_State *L, upgrun_op *op) {
  take_op *w = (take_op *)op;
  sampler *s = w->s;
  free(w);
  if (s) s->waiter = NULL;
  if (!s) { /* closed while waiting */
    lua_pushinteger(L, 0);
    return 1;
  }
  return push_take(L, s);
}

static void take_cancel(upgrun_op *op) {
  take_op *w = (take_op *)op;
  if (w->s && w->s->waiter == w) {
    w->s->waiter = NULL;
    uv_timer_stop(&w->s->wake);
  }
  free(w);
}

static int l_take(lua_State *L) {
  sampler *s = check_sampler(L);
  double timeout = luaL_checknumber(L, 2);
  luaL_argcheck(L, timeout >= 0, 2, "must be >= 0");
  double now = upgrun_mono();
  if (nothing_more(s) || timeout == 0 ||
      (s->ready.n > 0 && now - s->first_ready >= s->batch))
    return push_take(L, s); /* no wait: also from a cancelled task */
  upgrun_check_cancelled(L);
  if (s->waiter) return luaL_error(L, "http sampler: a task already waits");
  take_op *w = calloc(1, sizeof *w);
  if (!w) return luaL_error(L, "out of memory");
  w->op.push = take_push;
  w->op.cancel = take_cancel;
  w->s = s;
  s->waiter = w;
  double wait = timeout;
  if (s->ready.n > 0 && s->first_ready + s->batch - now < wait)
    wait = s->first_ready + s->batch - now;
  uv_update_time(s->h->loop);
  uv_timer_start(&s->wake, on_wake, upgrun_ms(wait), 0);
  return upgrun_wait(L, &w->op);
}

static int l_get(lua_State *L) {
  sampler **ud = luaL_checkudata(L, 1, SAMPLER_MT);
  sampler *s = *ud;
  lua_Integer i = luaL_checkinteger(L, 2);
  if (!s || s->closed || i < 1 || (size_t)i > s->taken.n)
    return luaL_argerror(L, 2, "no such sample in the last take");
  const rec *r = &s->taken.v[i - 1];
  lua_pushinteger(L, (lua_Integer)r->seq);
  lua_pushinteger(L, r->mark);
  lua_pushnumber(L, r->t_send);
  lua_pushnumber(L, r->wall);
  lua_pushnumber(L, r->t_end);
  lua_pushinteger(L, r->status);
  if (r->kind)
    lua_pushstring(L, r->kind);
  else
    lua_pushnil(L);
  if (r->message)
    lua_pushstring(L, r->message);
  else
    lua_pushnil(L);
  return 8;
}

static int l_cut(lua_State *L) {
  sampler *s = check_sampler(L);
  /* (scratch memory Lua owns: nothing leaks if a table below cannot be
   * allocated) */
  slot **cut = lua_newuserdatauv(L, (size_t)s->nslots * sizeof(slot *), 0);
  int n = cut_in_flight(s, cut);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 4, 0);
    lua_pushinteger(L, (lua_Integer)cut[i]->seq);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, cut[i]->mark);
    lua_rawseti(L, -2, 2);
    lua_pushnumber(L, cut[i]->t_send);
    lua_rawseti(L, -2, 3);
    lua_pushnumber(L, cut[i]->wall);
    lua_rawseti(L, -2, 4);
    lua_rawseti(L, -2, i + 1);
  }
  lua_remove(L, -2); /* the scratch */
  ready_changed(s);
  return 1;
}

static int l_close(lua_State *L) {
  sampler **ud = luaL_checkudata(L, 1, SAMPLER_MT);
  if (*ud) sampler_close(*ud);
  *ud = NULL;
  return 0;
}

void http_sampler_register(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"start", l_start},   {"mark", l_mark},
      {"stop", l_stop},     {"take", l_take},
      {"get", l_get},       {"cut", l_cut},
      {"close", l_close},   {"in_flight", l_in_flight},
      {"engine", l_engine}, {"__gc", l_close},
      {"__close", l_close}, {NULL, NULL}};
  util_new_class(L, SAMPLER_MT, methods);
}

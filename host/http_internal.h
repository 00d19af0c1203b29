/*
 * http_internal.h — what mod_http.c (upgrun.http requests) shares with
 * http_sampler.c (the C-side probe sampler): the per-runtime libcurl multi
 * context driven by libuv, a transfer's completion hook, building a
 * configured easy handle from a request's options table, and the error
 * kinds of a failed transfer. Not a public API.
 */
#ifndef UPGRUN_HTTP_INTERNAL_H
#define UPGRUN_HTTP_INTERNAL_H

#include "upgrun.h"

#include <curl/curl.h>
#include <stdbool.h>

#define HTTP_EASY_POOL_MAX 64

typedef struct sock_watch sock_watch;

/* One per runtime: the CURLM, its timer and socket watches, idle easies. */
typedef struct http_ctx {
  upgrun_runtime *rt;
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;               /* curl's single timeout */
  int inflight;                   /* easy handles in the multi */
  sock_watch *watches;            /* every live uv_poll_t, for shutdown */
  CURL *pool[HTTP_EASY_POOL_MAX]; /* idle easy handles, reset, for reuse */
  int npool;
} http_ctx;

/* Every transfer's CURLOPT_PRIVATE points to one of these: `done` is called
 * from the libuv callback that saw the transfer finish, after the easy handle
 * was removed from the multi (it may be added again from there). */
typedef struct http_xfer {
  void (*done)(struct http_xfer *x, CURL *easy, CURLcode rc);
} http_xfer;

/* What http_easy_new() read from the options table besides the easy's own
 * options. The strings are malloc'd: free them (and the list) when done. */
typedef struct http_conf {
  struct curl_slist *headers; /* CURLOPT_HTTPHEADER: must outlive the easy */
  char *url_safe;             /* the URL without user:password */
  char method[16];
  size_t max_body;
  double timeout; /* seconds (the request's whole bound) */
  bool status_only;
} http_conf;

/* The runtime's context, created on first use; NULL if libcurl cannot be
 * initialised or memory is out. */
http_ctx *http_ctx_get(lua_State *L);

/* An easy handle configured from the request options table at idx
 * (upgrun.http.request's fields; see mod_http.c), without a PRIVATE,
 * ERRORBUFFER or WRITE/HEADER callbacks: the caller sets those. Raises a
 * Lua error naming the field on misuse (nothing is leaked then). */
CURL *http_easy_new(lua_State *L, int idx, http_ctx *h, http_conf *c);

/* Hands an easy handle back to the pool (reset) or frees it. */
void http_easy_release(http_ctx *h, CURL *e);

/* Adds a configured easy (its PRIVATE an http_xfer) to the multi and starts
 * it at once. Its `done` may run before this returns (a refused connection).
 * Returns false if curl would not add it. Never call from a curl callback. */
bool http_start(http_ctx *h, CURL *e);

/* Removes an unfinished transfer from the multi (cancellation); curl closes a
 * connection whose response was not read to the end. */
void http_abandon(http_ctx *h, CURL *e);

/* err.kind of a failed transfer (see include/upgrun.h's list). */
const char *http_error_kind(bool too_large, CURLcode rc);

/* upgrun.http.sampler (http_sampler.c): the constructor, and its class,
 * registered once when upgrun.http is opened. */
int http_sampler_open(lua_State *L);
void http_sampler_register(lua_State *L);

#endif

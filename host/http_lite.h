/*
 * http_lite.h — the sampler's minimal HTTP/1.1 client (http_lite.c): a
 * fixed request sent again and again over one kept-alive connection per
 * lite_conn, keeping only the answer's status. Not a public API.
 */
#ifndef UPGRUN_HTTP_LITE_H
#define UPGRUN_HTTP_LITE_H

#include "upgrun.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct lite_req lite_req;
typedef struct lite_conn lite_conn;

/* Called once per lite_send, never from inside lite_send's caller's stack
 * unless the request failed at once: status (0 if none), kind NULL for an
 * answer, else an error kind with its message. */
typedef void (*lite_done_fn)(void *ud, long status, const char *kind,
                             const char *message);

/* The request (headers in curl's slist forms, as http_easy_new built them),
 * or NULL when this client does not do what curl would for it (not http://,
 * user:password in the URL, a URL it cannot parse) or memory is out. */
lite_req *lite_req_new(const char *url, const char *method,
                       const struct curl_slist *headers, const char *body,
                       size_t body_len, double timeout, size_t max_body,
                       const char *user_agent);
/* Frees the request; after every lite_conn using it was freed. */
void lite_req_free(lite_req *rq);

/* A connection slot for rq (no connection is opened until lite_send). */
lite_conn *lite_conn_new(uv_loop_t *loop, lite_req *rq, lite_done_fn done,
                         void *ud);
/* Sends rq (one request at a time per lite_conn); `done` follows. */
void lite_send(lite_conn *c);
/* Ends the request on, without calling `done`; closes its connection. */
void lite_abandon(lite_conn *c);
/* Abandons, closes and frees (once its libuv handles have closed). */
void lite_conn_free(lite_conn *c);

/* The answer parser alone, for fuzzing and tests: feeds `answer` as if read
 * from the socket in pieces of `piece` bytes, then the end of the stream.
 * Returns how many times the request ended (1, always), with the status and
 * error kind (NULL: an answer) through the pointers; -1 if out of memory. */
int lite_parse_answer(const char *answer, size_t n, size_t piece,
                      bool head_request, size_t max_body, long *status,
                      const char **kind);

#endif

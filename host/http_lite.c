/*
 * http_lite.c — a minimal HTTP/1.1 client on libuv for the probe sampler
 * (http_sampler.c): one fixed request, sent again and again over one
 * kept-alive connection per sampler slot, of which only the status is kept.
 * libcurl does the same in ~4x the instructions (URL parsing, header
 * generation, connection matching and liveness polls per request), which
 * was most of a sample's CPU. Used only where it means the same as curl:
 * plain http://, no user:password, no proxy (the sampler asks curl
 * otherwise).
 *
 * What it does, as curl does: resolves the host (libuv's thread pool; the
 * addresses kept 60 s, or until a connection to them fails) and tries its
 * addresses in turn, TCP_NODELAY, sends "METHOD path HTTP/1.1" with Host,
 * User-Agent, Accept and the caller's headers (a header of the same name
 * replaces the default; curl's "Name:" removal form drops it, "Name;" sends
 * it empty); reads the status line, skips 1xx interim answers, and reads the
 * body to its end by Content-Length, chunked encoding or the close of the
 * connection (none for HEAD, 204, 304); a body past max_body or a header
 * section past 100 KiB ends the transfer. The connection is kept unless
 * either side says close or the answer ended by EOF. A request that finds its
 * kept-alive connection closed before any byte of the answer is sent again
 * once on a new connection (a server drops idle connections; curl retries
 * the same way). Every request is bounded by `timeout` (resolve, connect,
 * send, answer); a timed-out or failed transfer closes its connection.
 *
 * Error kinds (as http_error_kind for curl's codes): connect (resolve or TCP
 * connect failed), timeout, closed (EOF or reset before the answer ended),
 * too_large, protocol (an answer that is not HTTP/1.x).
 */
#include "http_lite.h"
#include "util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_HEAD                                                               \
  ((size_t)1024 * 1024) /* a header section past this is refused */
#define READ_BUF ((size_t)16 * 1024)
/* seconds a resolved address is reused, as curl's DNS cache */
#define DNS_TTL 60.0
#define MAX_ADDRS 8 /* addresses of a host tried in turn */

struct lite_req {
  char *host, *port; /* for getaddrinfo */
  char *bytes;       /* the request, ready to send */
  size_t len;
  bool head;   /* HEAD: no body in the answer */
  char *label; /* "METHOD url" for messages */
  double timeout;
  size_t max_body;
  struct sockaddr_storage addrs[MAX_ADDRS]; /* the host's, in order */
  int naddrs;
  bool numeric;   /* the URL's host is an IP address: never resolved */
  double addr_at; /* when resolved (mono); 0: not yet or no more valid */
};

typedef enum {
  ST_IDLE,      /* no request (connection open or not) */
  ST_RESOLVING, /* getaddrinfo in the pool */
  ST_CONNECTING,
  ST_STATUS, /* reading the status line and headers */
  ST_BODY,
} lite_state;

typedef enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_EOF } body_mode;

typedef enum {
  CH_SIZE,     /* reading a chunk-size line */
  CH_DATA,     /* skipping chunk data */
  CH_DATA_END, /* the CRLF after the data */
  CH_TRAILER,  /* trailer lines up to the empty one */
} chunk_state;

struct lite_conn {
  uv_loop_t *loop;
  lite_req *rq;
  lite_done_fn done;
  void *ud;
  uv_tcp_t *tcp; /* NULL: no connection */
  bool connected, reused, retried;
  int ai; /* the address being tried (rq->addrs) */
  lite_state st;
  uv_timer_t *timer;
  uv_getaddrinfo_t *gai; /* in flight (its callback frees it) */
  uv_connect_t *creq;    /* in flight (its callback frees it) */
  uint64_t gen;          /* request number: stale callbacks are ignored */
  /* the answer being read */
  char *head; /* the header section so far (grown as needed, freed idle) */
  size_t head_len, head_cap;
  long status;
  bool keep_alive, interim;
  body_mode mode;
  uint64_t left; /* BODY_LENGTH: bytes to skip; CH_DATA: of the chunk */
  uint64_t body_seen;
  chunk_state ch;
  char line[64]; /* a chunk-size or trailer line (trailers: only counted) */
  size_t line_len;
  size_t got; /* bytes of the answer received */
  char rbuf[READ_BUF];
  bool closing; /* lite_conn_free: freed once its handles have closed */
  int open_handles;
};

/* ---- the request ------------------------------------------------------- */

static bool has_name(const struct curl_slist *h, const char *name) {
  size_t n = strlen(name);
  for (; h; h = h->next)
    if (strncasecmp(h->data, name, n) == 0 &&
        (h->data[n] == ':' || h->data[n] == ';'))
      return true;
  return false;
}

static bool append(char **buf, size_t *len, size_t *cap, const char *s,
                   size_t n) {
  if (!util_reserve(buf, cap, *len + n + 1, 256, 0)) return false;
  memcpy(*buf + *len, s, n);
  *len += n;
  (*buf)[*len] = '\0';
  return true;
}

#define APPEND(s, n)                                                           \
  do {                                                                         \
    if (!append(&b, &len, &cap, (s), (n))) goto oom;                           \
  } while (0)
#define APPENDZ(s) APPEND((s), strlen(s))

lite_req *lite_req_new(const char *url, const char *method,
                       const struct curl_slist *headers, const char *body,
                       size_t body_len, double timeout, size_t max_body,
                       const char *user_agent) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL;
  char *b = NULL;
  size_t len = 0, cap = 0;
  lite_req *rq = NULL;
  if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) goto out;
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      strcmp(scheme, "http") != 0)
    goto out;
  if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) goto out;
  if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
    goto out;
  char *query = NULL;
  rq = calloc(1, sizeof *rq);
  if (!rq) goto out;
  /* "[::1]" in the URL, "::1" for getaddrinfo */
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']')
    rq->host = strndup(host + 1, hl - 2);
  else
    rq->host = strdup(host);
  rq->port = strdup(port);
  if (!rq->host || !rq->port) goto oom;
  APPENDZ(method);
  APPENDZ(" ");
  APPENDZ(path);
  if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
    APPENDZ("?");
    APPENDZ(query);
    curl_free(query);
  }
  APPENDZ(" HTTP/1.1\r\n");
  if (!has_name(headers, "Host")) {
    APPENDZ("Host: ");
    APPENDZ(host);
    if (strcmp(port, "80") != 0) {
      APPENDZ(":");
      APPENDZ(port);
    }
    APPENDZ("\r\n");
  }
  if (!has_name(headers, "User-Agent")) {
    APPENDZ("User-Agent: ");
    APPENDZ(user_agent);
    APPENDZ("\r\n");
  }
  if (!has_name(headers, "Accept")) APPENDZ("Accept: */*\r\n");
  for (const struct curl_slist *h = headers; h; h = h->next) {
    const char *d = h->data;
    size_t n = strlen(d);
    const char *colon = strchr(d, ':');
    if (colon && colon[1] == '\0') continue;  /* "Name:": curl's removal */
    if (!colon && n > 0 && d[n - 1] == ';') { /* "Name;": sent empty */
      APPEND(d, n - 1);
      APPENDZ(":\r\n");
      continue;
    }
    APPEND(d, n);
    APPENDZ("\r\n");
  }
  if (body) {
    char cl[48];
    snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", body_len);
    if (!has_name(headers, "Content-Length")) APPENDZ(cl);
    if (!has_name(headers, "Content-Type")) /* (curl's for any body) */
      APPENDZ("Content-Type: application/x-www-form-urlencoded\r\n");
  }
  APPENDZ("\r\n");
  if (body) APPEND(body, body_len);
  rq->bytes = b;
  rq->len = len;
  b = NULL;
  rq->head = strcmp(method, "HEAD") == 0;
  rq->timeout = timeout;
  rq->max_body = max_body;
  size_t ll = strlen(method) + strlen(url) + 2;
  rq->label = malloc(ll);
  if (!rq->label) goto oom;
  snprintf(rq->label, ll, "%s %s", method, url);
  goto out;
oom:
  lite_req_free(rq);
  rq = NULL;
out:
  free(b);
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_free(user);
  curl_url_cleanup(u);
  return rq;
}

void lite_req_free(lite_req *rq) {
  if (!rq) return;
  free(rq->host);
  free(rq->port);
  free(rq->bytes);
  free(rq->label);
  free(rq);
}

/* ---- the connection ---------------------------------------------------- */

static void on_timeout(uv_timer_t *t);
static void start_connect(lite_conn *c);
static void do_connect(lite_conn *c);

static void handle_closed(uv_handle_t *h) {
  lite_conn *c = h->data;
  free(h);
  if (--c->open_handles == 0 && c->closing) {
    free(c->head);
    free(c);
  }
}

static void close_tcp(lite_conn *c) {
  if (!c->tcp) return;
  if (c->creq) { /* its callback (UV_ECANCELED) finds no connection */
    c->creq->data = NULL;
    c->creq = NULL;
  }
  uv_read_stop((uv_stream_t *)c->tcp);
  uv_close((uv_handle_t *)c->tcp, handle_closed);
  c->tcp = NULL;
  c->connected = false;
}

static void stop_resolving(lite_conn *c) {
  if (!c->gai) return;
  c->gai->data = NULL; /* its callback only frees it */
  uv_cancel((uv_req_t *)c->gai);
  c->gai = NULL;
}

/* The request ended: hands the result over (once per request). */
static void report(lite_conn *c, long status, const char *kind,
                   const char *message) {
  c->st = ST_IDLE;
  uv_timer_stop(c->timer);
  c->done(c->ud, status, kind, message);
}

/* The request failed: its connection is closed (its state is unknown). */
static void fail(lite_conn *c, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(lite_conn *c, const char *kind, const char *fmt, ...) {
  char detail[256], msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  snprintf(msg, sizeof msg, "%s (%s)", detail, c->rq->label);
  stop_resolving(c);
  close_tcp(c);
  report(c, c->status, kind, msg);
}

static void complete(lite_conn *c, bool extra) {
  if (extra) c->keep_alive = false; /* bytes past the answer: not trusted */
  if (!c->keep_alive) close_tcp(c);
  report(c, c->status, NULL, NULL);
}

/* Whether the start of the answer can still be "HTTP/" (else it is not
 * HTTP/1.x: curl calls it HTTP/0.9 and refuses it). */
static bool http_prefix(const char *h, size_t n) {
  return strncmp(h, "HTTP/", n < 5 ? n : 5) == 0;
}

/* The status line's code when h starts with a complete "HTTP/1.x NNN" line. */
static long status_line(const char *h, size_t n) {
  if (n < 13 || strncmp(h, "HTTP/1.", 7) != 0 ||
      !isdigit((unsigned char)h[7]) || h[8] != ' ' ||
      !isdigit((unsigned char)h[9]) || !isdigit((unsigned char)h[10]) ||
      !isdigit((unsigned char)h[11]) ||
      (h[12] != ' ' && h[12] != '\r' && h[12] != '\n'))
    return -1;
  if (!memchr(h, '\n', n)) return -1;
  return (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
}

/* Parses the header section c->head[0..n) (lines ended by LF or CRLF, the
 * empty line excluded). Returns false (after fail()) if it is not an
 * HTTP/1.x answer. */
static bool parse_head(lite_conn *c, size_t n) {
  const char *h = c->head, *end_all = h + n;
  c->status = status_line(h, n);
  if (c->status < 0) {
    fail(c, "protocol", "Unsupported answer: not HTTP/1.x");
    return false;
  }
  c->keep_alive = h[7] != '0'; /* HTTP/1.0: close unless asked */
  bool chunked = false, has_length = false;
  uint64_t length = 0;
  const char *l = memchr(h, '\n', n) + 1;
  while (l < end_all) {
    const char *nl = memchr(l, '\n', (size_t)(end_all - l));
    const char *end = nl ? nl : end_all;
    const char *next = nl ? nl + 1 : end_all;
    if (end > l && end[-1] == '\r') end--;
    const char *colon = memchr(l, ':', (size_t)(end - l));
    if (colon) {
      size_t nlen = (size_t)(colon - l);
      const char *v = colon + 1;
      while (v < end && (*v == ' ' || *v == '\t'))
        v++;
      const char *ve = end;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
      size_t vlen = (size_t)(ve - v);
      if (nlen == 14 && strncasecmp(l, "Content-Length", 14) == 0) {
        uint64_t x = 0;
        bool ok = vlen > 0 && vlen <= 19;
        for (const char *p = v; ok && p < ve; p++) {
          if (!isdigit((unsigned char)*p)) ok = false;
          x = x * 10 + (uint64_t)(*p - '0');
        }
        if (!ok) {
          fail(c, "protocol", "Invalid Content-Length");
          return false;
        }
        has_length = true;
        length = x;
      } else if (nlen == 17 && strncasecmp(l, "Transfer-Encoding", 17) == 0) {
        for (const char *p = v; p + 7 <= ve; p++)
          if (strncasecmp(p, "chunked", 7) == 0) chunked = true;
      } else if (nlen == 10 && strncasecmp(l, "Connection", 10) == 0) {
        for (const char *p = v; p + 5 <= ve; p++) {
          if (strncasecmp(p, "close", 5) == 0) c->keep_alive = false;
          if (p + 10 <= ve && strncasecmp(p, "keep-alive", 10) == 0)
            c->keep_alive = true;
        }
      }
    }
    l = next;
  }
  c->interim = c->status >= 100 && c->status < 200;
  if (c->status == 101) {
    fail(c, "protocol", "Unexpected 101 Switching Protocols");
    return false;
  }
  c->body_seen = 0;
  if (c->interim || c->rq->head || c->status == 204 || c->status == 304) {
    c->mode = BODY_NONE;
  } else if (chunked) {
    c->mode = BODY_CHUNKED;
    c->ch = CH_SIZE;
    c->line_len = 0;
  } else if (has_length) {
    if (length > c->rq->max_body) {
      fail(c, "too_large", "Maximum file size exceeded");
      return false;
    }
    c->mode = length ? BODY_LENGTH : BODY_NONE;
    c->left = length;
  } else {
    c->mode = BODY_EOF;
    c->keep_alive = false;
  }
  return true;
}

/* Counts n body bytes against max_body. */
static bool body_bytes(lite_conn *c, uint64_t n) {
  c->body_seen += n;
  if (c->body_seen <= c->rq->max_body) return true;
  fail(c, "too_large", "response body larger than max_body (%zu bytes)",
       c->rq->max_body);
  return false;
}

/* Reads a line of a chunked body into c->line (bounded): true once it
 * ended; *used = bytes consumed. */
static bool chunk_line(lite_conn *c, const char *p, size_t n, size_t *used,
                       bool keep) {
  const char *nl = memchr(p, '\n', n);
  size_t take = nl ? (size_t)(nl - p) + 1 : n;
  if (keep) {
    size_t room = sizeof c->line - 1 - c->line_len;
    size_t k = take < room ? take : room;
    memcpy(c->line + c->line_len, p, k);
    c->line_len += k;
    c->line[c->line_len] = '\0';
  } else {
    c->line_len += take; /* a trailer: only whether it is empty matters */
  }
  *used = take;
  return nl != NULL;
}

/* Consumes body bytes; returns bytes used, or SIZE_MAX once the request
 * ended (completed or failed). */
static size_t feed_body(lite_conn *c, const char *p, size_t n) {
  size_t used = 0;
  switch (c->mode) {
  case BODY_NONE:
    return 0;
  case BODY_EOF:
    return body_bytes(c, n) ? n : SIZE_MAX;
  case BODY_LENGTH: {
    size_t take = n < c->left ? n : (size_t)c->left;
    c->left -= take;
    if (!body_bytes(c, take)) return SIZE_MAX;
    if (c->left == 0) {
      complete(c, take < n);
      return SIZE_MAX;
    }
    return take;
  }
  case BODY_CHUNKED:
    break;
  }
  switch (c->ch) {
  case CH_SIZE:
    if (!chunk_line(c, p, n, &used, true)) {
      if (c->line_len >= sizeof c->line - 1) {
        fail(c, "closed", "Bad chunk size line"); /* (curl: a recv error) */
        return SIZE_MAX;
      }
      return used;
    }
    {
      char *e;
      unsigned long long size = strtoull(c->line, &e, 16);
      if (e == c->line ||
          (*e != '\r' && *e != '\n' && *e != ';' && *e != ' ' && *e != '\t')) {
        fail(c, "closed", "Bad chunk size line"); /* (curl: a recv error) */
        return SIZE_MAX;
      }
      c->line_len = 0;
      c->left = size;
      c->ch = size ? CH_DATA : CH_TRAILER;
    }
    return used;
  case CH_DATA: {
    size_t take = n < c->left ? n : (size_t)c->left;
    c->left -= take;
    if (!body_bytes(c, take)) return SIZE_MAX;
    if (c->left == 0) {
      c->ch = CH_DATA_END;
      c->line_len = 0;
    }
    return take;
  }
  case CH_DATA_END:
    if (chunk_line(c, p, n, &used, false)) {
      c->ch = CH_SIZE;
      c->line_len = 0;
    }
    return used;
  case CH_TRAILER:
    if (chunk_line(c, p, n, &used, false)) {
      /* "\r\n" alone (2 bytes, or "\n") ends the body */
      bool empty = c->line_len <= 2;
      c->line_len = 0;
      if (empty) {
        complete(c, used < n);
        return SIZE_MAX;
      }
    }
    return used;
  }
  return n;
}

/* Consumes answer bytes while the request is on. */
static void feed(lite_conn *c, const char *p, size_t n) {
  while (n > 0 && c->st >= ST_STATUS) {
    if (c->st == ST_STATUS) {
      size_t from = c->head_len > 2 ? c->head_len - 2 : 0;
      size_t take = n;
      if (c->head_len + take > MAX_HEAD) take = MAX_HEAD - c->head_len;
      if (!util_reserve(&c->head, &c->head_cap, c->head_len + take, 1024, 0)) {
        fail(c, "protocol", "out of memory");
        return;
      }
      memcpy(c->head + c->head_len, p, take);
      c->head_len += take;
      if (!http_prefix(c->head, c->head_len)) {
        fail(c, "protocol", "Unsupported answer: not HTTP/1.x");
        return;
      }
      /* the empty line: LF (CR) LF */
      size_t endh = 0;
      for (size_t i = from; i < c->head_len && !endh; i++) {
        if (c->head[i] != '\n') continue;
        if (i + 1 < c->head_len && c->head[i + 1] == '\n') endh = i + 2;
        if (i + 2 < c->head_len && c->head[i + 1] == '\r' &&
            c->head[i + 2] == '\n')
          endh = i + 3;
      }
      if (!endh) {
        if (c->head_len >= MAX_HEAD) {
          fail(c, "protocol", "Header section larger than %zu bytes", MAX_HEAD);
          return;
        }
        return; /* all of p was kept */
      }
      size_t head_used = endh - (c->head_len - take);
      p += head_used;
      n -= head_used;
      c->head_len = 0;
      if (!parse_head(c, endh)) return;
      if (c->interim) continue; /* the real answer follows */
      if (c->mode == BODY_NONE) {
        complete(c, n > 0);
        return;
      }
      c->st = ST_BODY;
      continue;
    }
    size_t used = feed_body(c, p, n);
    if (used == SIZE_MAX) return;
    p += used;
    n -= used;
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  lite_conn *c = h->data;
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

/* The answer's stream ended (EOF, or an error) while the request is on. */
static void read_ended(lite_conn *c, ssize_t nread) {
  if (c->st == ST_BODY && c->mode == BODY_EOF && nread == UV_EOF) {
    complete(c, false);
  } else if (c->st == ST_STATUS && nread == UV_EOF &&
             status_line(c->head, c->head_len) >= 0) {
    /* a header section cut short after its status line: the answer is
     * what came (as curl takes it), unless it announced a body */
    size_t n = c->head_len;
    c->head_len = 0;
    if (!parse_head(c, n)) return;
    if (c->mode == BODY_NONE || c->mode == BODY_EOF)
      complete(c, false);
    else
      fail(c, "closed", "Connection closed in the header section");
  } else if (c->reused && c->got == 0 && !c->retried) {
    /* the kept-alive connection was gone: once more on a new one */
    c->retried = true;
    start_connect(c);
  } else if (nread == UV_EOF) {
    fail(c, "closed", "Connection closed with %zu bytes of the answer", c->got);
  } else {
    fail(c, "closed", "Recv failure: %s", uv_strerror((int)nread));
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  lite_conn *c = s->data;
  if (nread == 0) return;
  if (c->st < ST_STATUS) { /* idle: EOF or stray bytes end the connection */
    close_tcp(c);
    return;
  }
  if (nread < 0) {
    read_ended(c, nread);
    return;
  }
  c->got += (size_t)nread;
  feed(c, buf->base, (size_t)nread);
}

static void on_write(uv_write_t *w, int status) {
  lite_conn *c = w->data;
  uv_stream_t *s = w->handle;
  free(w);
  if (status == 0 || status == UV_ECANCELED) return;
  if ((uv_stream_t *)c->tcp == s && c->st >= ST_STATUS)
    fail(c, "closed", "Send failure: %s", uv_strerror(status));
}

/* Sends the request on the connected socket and reads the answer. */
static void write_request(lite_conn *c) {
  lite_req *rq = c->rq;
  c->st = ST_STATUS;
  c->head_len = 0;
  c->got = 0;
  uv_buf_t b = uv_buf_init(rq->bytes, (unsigned)rq->len);
  int n = uv_try_write((uv_stream_t *)c->tcp, &b, 1);
  if (n == (int)rq->len) return;
  if (n < 0 && n != UV_EAGAIN) {
    if (c->reused && !c->retried) { /* a dead kept-alive connection */
      c->retried = true;
      start_connect(c);
      return;
    }
    fail(c, "closed", "Send failure: %s", uv_strerror(n));
    return;
  }
  if (n < 0) n = 0;
  uv_write_t *w = malloc(sizeof *w);
  if (!w) {
    fail(c, "protocol", "out of memory");
    return;
  }
  w->data = c;
  b = uv_buf_init(rq->bytes + n, (unsigned)(rq->len - (size_t)n));
  int rc = uv_write(w, (uv_stream_t *)c->tcp, &b, 1, on_write);
  if (rc < 0) {
    free(w);
    fail(c, "closed", "Send failure: %s", uv_strerror(rc));
  }
}

static void on_connect(uv_connect_t *req, int status) {
  lite_conn *c = req->data;
  free(req);
  if (!c) return; /* its connection was closed meanwhile */
  c->creq = NULL;
  if (status < 0) {
    lite_req *rq = c->rq;
    if (++c->ai < rq->naddrs) { /* the host's next address */
      close_tcp(c);
      do_connect(c);
      return;
    }
    /* resolve again at the next connection (the name may have moved) */
    rq->addr_at = 0;
    fail(c, "connect", "Failed to connect to %s port %s: %s", rq->host,
         rq->port, uv_strerror(status));
    return;
  }
  c->connected = true;
  uv_tcp_nodelay(c->tcp, 1);
  int rc = uv_read_start((uv_stream_t *)c->tcp, on_alloc, on_read);
  if (rc < 0) {
    fail(c, "connect", "Failed to read from %s port %s: %s", c->rq->host,
         c->rq->port, uv_strerror(rc));
    return;
  }
  write_request(c);
}

static void do_connect(lite_conn *c) {
  c->tcp = malloc(sizeof *c->tcp);
  c->creq = malloc(sizeof *c->creq);
  if (!c->tcp || !c->creq) {
    free(c->tcp);
    free(c->creq);
    c->tcp = NULL;
    c->creq = NULL;
    fail(c, "connect", "out of memory");
    return;
  }
  uv_tcp_init(c->loop, c->tcp);
  c->tcp->data = c;
  c->open_handles++;
  c->creq->data = c;
  c->st = ST_CONNECTING;
  int rc =
      uv_tcp_connect(c->creq, c->tcp,
                     (const struct sockaddr *)&c->rq->addrs[c->ai], on_connect);
  if (rc < 0) {
    free(c->creq);
    c->creq = NULL;
    fail(c, "connect", "Failed to connect to %s port %s: %s", c->rq->host,
         c->rq->port, uv_strerror(rc));
  }
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  lite_conn *c = req->data;
  free(req);
  if (!c) { /* timed out or abandoned meanwhile */
    if (res) uv_freeaddrinfo(res);
    return;
  }
  c->gai = NULL;
  if (status < 0 || !res) {
    if (res) uv_freeaddrinfo(res);
    fail(c, "connect", "Could not resolve host: %s (%s)", c->rq->host,
         uv_strerror(status));
    return;
  }
  lite_req *rq = c->rq;
  rq->naddrs = 0;
  for (struct addrinfo *a = res; a && rq->naddrs < MAX_ADDRS; a = a->ai_next)
    if (a->ai_addrlen <= sizeof rq->addrs[0])
      memcpy(&rq->addrs[rq->naddrs++], a->ai_addr, a->ai_addrlen);
  rq->addr_at = upgrun_mono();
  uv_freeaddrinfo(res);
  c->ai = 0;
  do_connect(c);
}

/* A new connection for the request on: resolve (unless the address is
 * fresh or numeric), then connect. */
static void start_connect(lite_conn *c) {
  close_tcp(c);
  c->reused = false;
  c->got = 0;
  lite_req *rq = c->rq;
  c->ai = 0;
  if (rq->numeric ||
      (rq->addr_at > 0 && upgrun_mono() - rq->addr_at < DNS_TTL)) {
    do_connect(c);
    return;
  }
  union {
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
  } a;
  int port = (int)strtol(rq->port, NULL, 10); /* (curl_url's: digits) */
  if (uv_ip4_addr(rq->host, port, &a.a4) == 0 ||
      uv_ip6_addr(rq->host, port, &a.a6) == 0) {
    memcpy(&rq->addrs[0], &a, sizeof a);
    rq->naddrs = 1;
    rq->numeric = true;
    do_connect(c);
    return;
  }
  c->gai = malloc(sizeof *c->gai);
  if (!c->gai) {
    fail(c, "connect", "out of memory");
    return;
  }
  c->gai->data = c;
  c->st = ST_RESOLVING;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int rc =
      uv_getaddrinfo(c->loop, c->gai, on_resolved, rq->host, rq->port, &hints);
  if (rc < 0) {
    free(c->gai);
    c->gai = NULL;
    fail(c, "connect", "Could not resolve host: %s (%s)", rq->host,
         uv_strerror(rc));
  }
}

static void on_timeout(uv_timer_t *t) {
  lite_conn *c = t->data;
  if (c->st == ST_IDLE) return;
  fail(c, "timeout",
       "Operation timed out after %llu milliseconds with %zu "
       "bytes received",
       (unsigned long long)upgrun_ms(c->rq->timeout), c->got);
}

/* ---- the API ------------------------------------------------------------ */

lite_conn *lite_conn_new(uv_loop_t *loop, lite_req *rq, lite_done_fn done,
                         void *ud) {
  lite_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->timer = malloc(sizeof *c->timer);
  if (!c->timer) {
    free(c);
    return NULL;
  }
  c->loop = loop;
  c->rq = rq;
  c->done = done;
  c->ud = ud;
  uv_timer_init(loop, c->timer);
  c->timer->data = c;
  c->open_handles = 1;
  return c;
}

void lite_send(lite_conn *c) {
  c->retried = false;
  c->status = 0;
  uv_update_time(c->loop);
  uv_timer_start(c->timer, on_timeout, upgrun_ms(c->rq->timeout), 0);
  if (c->tcp && c->connected) {
    c->reused = true;
    write_request(c);
  } else {
    start_connect(c);
  }
}

void lite_abandon(lite_conn *c) {
  if (c->st == ST_IDLE) return;
  uv_timer_stop(c->timer);
  stop_resolving(c);
  close_tcp(c); /* an answer half read cannot be resumed */
  c->st = ST_IDLE;
}

void lite_conn_free(lite_conn *c) {
  if (!c) return;
  lite_abandon(c);
  close_tcp(c);
  c->closing = true;
  uv_close((uv_handle_t *)c->timer, handle_closed);
}

/* ---- the parser alone (tests/fuzz/fuzz_http_lite.c) -------------------- */

typedef struct {
  long status;
  const char *kind;
  int calls;
} parse_result;

static void parse_done(void *ud, long status, const char *kind,
                       const char *message) {
  (void)message;
  parse_result *r = ud;
  r->status = status;
  r->kind = kind;
  r->calls++;
}

int lite_parse_answer(const char *answer, size_t n, size_t piece,
                      bool head_request, size_t max_body, long *status,
                      const char **kind) {
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) return -1;
  lite_req rq = {.label = (char *)"fuzz",
                 .timeout = 1,
                 .max_body = max_body,
                 .head = head_request};
  parse_result r = {0};
  lite_conn *c = lite_conn_new(&loop, &rq, parse_done, &r);
  if (!c) {
    uv_loop_close(&loop);
    return -1;
  }
  c->st = ST_STATUS; /* as write_request leaves it */
  if (piece == 0) piece = 1;
  for (size_t at = 0; at < n && c->st >= ST_STATUS; at += piece) {
    size_t k = n - at < piece ? n - at : piece;
    c->got += k;
    feed(c, answer + at, k);
  }
  if (c->st >= ST_STATUS) read_ended(c, UV_EOF);
  lite_conn_free(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  *status = r.status;
  *kind = r.kind;
  return r.calls;
}

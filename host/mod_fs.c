/*
 * mod_fs.c — upgrun.fs: output files whose every write is checked, and
 * whether a descriptor is a terminal (and its size).
 *
 *   fs.write_file(path, data) -> true | nil, err
 *       writes data to a temporary file beside path, fsyncs and closes it,
 *       and only then renames it over path (and fsyncs the directory): path
 *       holds either its previous content or the complete new one.
 *   fs.open(path) -> file | nil, err      (created or truncated)
 *   file:write(s, ...) -> true | nil, err buffered (flushed past 64 KiB)
 *   file:write_json(t, fields) -> true | nil, err
 *       appends one JSON object and a newline: fields = {name1, key1, name2,
 *       key2, ...} writes t[key] as "name" in that order, skipping nil;
 *       strings escaped, integers as integers, floats as %.10g (null if not
 *       finite), booleans; anything else raises. A line of samples.jsonl
 *       without building a table or a string per line in Lua.
 *   file:flush()  -> true | nil, err      write(2) of the buffer
 *   file:sync()   -> true | nil, err      flush + fsync(2)
 *   file:close()  -> true | nil, err      sync + close(2); the file is closed
 *                                          even when an error is returned
 *   fs.isatty(fd) -> bool        fd (0, 1, 2...) is a terminal (isatty(3))
 *   fs.term_size(fd) -> cols, rows | nil
 *       the size of the terminal on fd (ioctl TIOCGWINSZ); nil when fd is
 *       not a terminal or its size is not set (0 columns)
 * err is a string naming the file and the failed call ("write out/x: No space
 * left on device"). The first error sticks: later calls return it again.
 * These are blocking calls on local files (small and rare: a report, a
 * buffered append once a second).
 */
#include "upgrun.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define FILE_MT "upgrun.fs.file"
#define FLUSH_AT ((size_t)64 * 1024)

typedef struct {
  int fd;
  char *buf;
  size_t len, cap;
  char *path;
  char *err; /* the first error, sticky */
} fs_file;

/* Pushes nil, "<what> <path>: <strerror(errnum)>". */
static int push_errno(lua_State *L, const char *what, const char *path,
                      int errnum) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: %s", what, path, strerror(errnum));
  return 2;
}

/* Writes all of data to fd; returns 0 or an errno value. */
static int write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/* fsync of the directory holding path, so a rename survives a crash. */
static int sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) {
    snprintf(dir, sizeof dir, ".");
  } else if (slash == path) {
    snprintf(dir, sizeof dir, "/");
  } else {
    int n = (int)(slash - path);
    if (n >= (int)sizeof dir) return 0;
    snprintf(dir, sizeof dir, "%.*s", n, path);
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int rc = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return rc == EINVAL ? 0 : rc; /* some file systems cannot sync a dir */
}

static int l_write_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_pushfstring(L, "%s.tmp.%d", path, (int)getpid());
  const char *tmp = lua_tostring(L, -1);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return push_errno(L, "open", tmp, errno);
  int rc = write_all(fd, data, len);
  const char *what = "write";
  if (rc == 0 && fsync(fd) != 0) {
    rc = errno;
    what = "fsync";
  }
  if (close(fd) != 0 && rc == 0) {
    rc = errno;
    what = "close";
  }
  if (rc == 0 && rename(tmp, path) != 0) {
    rc = errno;
    what = "rename";
  }
  if (rc != 0) {
    unlink(tmp);
    return push_errno(L, what, tmp, rc);
  }
  rc = sync_dir(path);
  if (rc != 0) return push_errno(L, "fsync directory of", path, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static fs_file *check_file(lua_State *L) {
  return luaL_checkudata(L, 1, FILE_MT);
}

/* Records the first error of f; returns nil, err (the sticky one). */
static int file_fail(lua_State *L, fs_file *f, const char *what, int errnum) {
  if (!f->err) {
    size_t n = strlen(what) + strlen(f->path) + strlen(strerror(errnum)) + 4;
    f->err = malloc(n);
    if (f->err)
      snprintf(f->err, n, "%s %s: %s", what, f->path, strerror(errnum));
  }
  lua_pushnil(L);
  lua_pushstring(L, f->err ? f->err : "out of memory");
  return 2;
}

static int file_sticky(lua_State *L, fs_file *f) {
  lua_pushnil(L);
  lua_pushstring(L, f->err);
  return 2;
}

/* Writes the buffer out; 0 or an errno value. */
static int file_drain(fs_file *f) {
  if (f->fd < 0) return EBADF;
  int rc = write_all(f->fd, f->buf, f->len);
  f->len = 0; /* what could not be written is dropped with the error */
  return rc;
}

/* Appends len bytes to the buffer; false when out of memory. */
static bool file_append(fs_file *f, const char *s, size_t len) {
  if (!util_reserve(&f->buf, &f->cap, f->len + len, 4096, 0)) return false;
  memcpy(f->buf + f->len, s, len);
  f->len += len;
  return true;
}

/* Writes the buffer out once it holds FLUSH_AT bytes; pushes true. */
static int file_wrote(lua_State *L, fs_file *f) {
  if (f->len >= FLUSH_AT) {
    int rc = file_drain(f);
    if (rc != 0) return file_fail(L, f, "write", rc);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_file_write(lua_State *L) {
  fs_file *f = check_file(L);
  int n = lua_gettop(L);
  for (int i = 2; i <= n; i++)
    luaL_checkstring(L, i);
  if (f->err) return file_sticky(L, f);
  if (f->fd < 0) return file_fail(L, f, "write (closed)", EBADF);
  for (int i = 2; i <= n; i++) {
    size_t len;
    const char *s = lua_tolstring(L, i, &len);
    if (!file_append(f, s, len)) return luaL_error(L, "out of memory");
  }
  return file_wrote(L, f);
}

/* A JSON string literal of s appended to the buffer; false if out of
 * memory. */
static bool json_string(fs_file *f, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  bool ok = file_append(f, "\"", 1);
  size_t run = 0; /* bytes before s[i] that need no escape, not yet added */
  for (size_t i = 0; ok && i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != 0x7f && c != '"' && c != '\\') {
      run++;
      continue;
    }
    ok = file_append(f, s + i - run, run);
    run = 0;
    char e[6] = {'\\', (char)c, 0, 0, 0, 0};
    size_t elen = 2;
    if (c == '\n')
      e[1] = 'n';
    else if (c == '\r')
      e[1] = 'r';
    else if (c == '\t')
      e[1] = 't';
    else if (c != '"' && c != '\\') {
      e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[c >> 4],
      e[5] = hex[c & 15];
      elen = 6;
    }
    ok = ok && file_append(f, e, elen);
  }
  return ok && file_append(f, s + len - run, run) && file_append(f, "\"", 1);
}

/* stack: file, t, fields. See the top of the file. A failure leaves no
 * partial line in the buffer. */
static int l_file_write_json(lua_State *L) {
  fs_file *f = check_file(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  if (f->err) return file_sticky(L, f);
  if (f->fd < 0) return file_fail(L, f, "write (closed)", EBADF);
  lua_Integer n = luaL_len(L, 3);
  size_t start = f->len;
  bool ok = true, first = true;
  for (lua_Integer i = 1; ok && i + 1 <= n; i += 2) {
    lua_geti(L, 3, i + 1); /* the key in t */
    lua_gettable(L, 2);    /* its value */
    lua_geti(L, 3, i);     /* the JSON name; stack: ..., value, name */
    int type = lua_type(L, -2);
    size_t nlen;
    const char *name = lua_tolstring(L, -1, &nlen);
    if (!name) {
      f->len = start;
      return luaL_error(L, "write_json: field %d is not a string", (int)i);
    }
    char num[64];
    size_t tlen = 0;
    switch (type) {
    case LUA_TNIL:
      lua_pop(L, 2);
      continue;
    case LUA_TSTRING:
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, -2)) {
        tlen = (size_t)snprintf(num, sizeof num, LUA_INTEGER_FMT,
                                (LUAI_UACINT)lua_tointeger(L, -2));
      } else {
        double d = (double)lua_tonumber(L, -2);
        tlen = (size_t)(d - d == 0 ? snprintf(num, sizeof num, "%.10g", d)
                                   : snprintf(num, sizeof num, "null"));
      }
      break;
    case LUA_TBOOLEAN:
      tlen = (size_t)snprintf(num, sizeof num, "%s",
                              lua_toboolean(L, -2) ? "true" : "false");
      break;
    default:
      f->len = start;
      return luaL_error(L, "write_json: %s: cannot encode a %s", name,
                        lua_typename(L, type));
    }
    ok = file_append(f, first ? "{" : ",", 1) && json_string(f, name, nlen) &&
         file_append(f, ":", 1);
    first = false;
    if (ok && type == LUA_TSTRING) {
      size_t vlen;
      const char *v = lua_tolstring(L, -2, &vlen);
      ok = json_string(f, v, vlen);
    } else if (ok) {
      ok = file_append(f, num, tlen);
    }
    lua_pop(L, 2);
  }
  ok = ok && (first ? file_append(f, "{}\n", 3) : file_append(f, "}\n", 2));
  if (!ok) {
    f->len = start;
    return luaL_error(L, "out of memory");
  }
  return file_wrote(L, f);
}

static int l_file_flush(lua_State *L) {
  fs_file *f = check_file(L);
  if (f->err) return file_sticky(L, f);
  int rc = file_drain(f);
  if (rc != 0) return file_fail(L, f, "write", rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_file_sync(lua_State *L) {
  fs_file *f = check_file(L);
  if (f->err) return file_sticky(L, f);
  int rc = file_drain(f);
  if (rc != 0) return file_fail(L, f, "write", rc);
  if (fsync(f->fd) != 0) return file_fail(L, f, "fsync", errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_file_close(lua_State *L) {
  fs_file *f = check_file(L);
  if (f->fd < 0) {
    if (f->err) return file_sticky(L, f);
    lua_pushboolean(L, 1);
    return 1;
  }
  int rc = f->err ? 0 : file_drain(f);
  const char *what = "write";
  if (rc == 0 && !f->err && fsync(f->fd) != 0) {
    rc = errno;
    what = "fsync";
  }
  if (close(f->fd) != 0 && rc == 0 && !f->err) {
    rc = errno;
    what = "close";
  }
  f->fd = -1;
  if (rc != 0) return file_fail(L, f, what, rc);
  if (f->err) return file_sticky(L, f);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_file_gc(lua_State *L) {
  fs_file *f = check_file(L);
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
  free(f->buf);
  free(f->path);
  free(f->err);
  f->buf = f->path = f->err = NULL;
  return 0;
}

static int l_file_tostring(lua_State *L) {
  fs_file *f = check_file(L);
  lua_pushfstring(L, "upgrun.fs.file (%s%s)", f->path ? f->path : "?",
                  f->fd < 0 ? ", closed" : "");
  return 1;
}

static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  fs_file *f = lua_newuserdatauv(L, sizeof *f, 0);
  memset(f, 0, sizeof *f);
  f->fd = -1;
  luaL_setmetatable(L, FILE_MT);
  f->path = strdup(path);
  if (!f->path) return luaL_error(L, "out of memory");
  f->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f->fd < 0) return push_errno(L, "open", path, errno);
  return 1;
}

static int check_fd(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= 1024, 1, "not a file descriptor number");
  return (int)fd;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty(check_fd(L)) == 1);
  return 1;
}

static int l_term_size(lua_State *L) {
  struct winsize ws;
  int fd = check_fd(L);
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, ws.ws_col);
  lua_pushinteger(L, ws.ws_row);
  return 2;
}

int luaopen_upgrun_fs(lua_State *L) {
  static const luaL_Reg file_methods[] = {
      {"write", l_file_write}, {"write_json", l_file_write_json},
      {"flush", l_file_flush}, {"sync", l_file_sync},
      {"close", l_file_close}, {NULL, NULL}};
  static const luaL_Reg file_meta[] = {{"__gc", l_file_gc},
                                       {"__close", l_file_gc},
                                       {"__tostring", l_file_tostring},
                                       {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"write_file", l_write_file},
                                   {"open", l_open},
                                   {"isatty", l_isatty},
                                   {"term_size", l_term_size},
                                   {NULL, NULL}};
  if (luaL_newmetatable(L, FILE_MT)) {
    luaL_setfuncs(L, file_meta, 0);
    luaL_newlib(L, file_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}

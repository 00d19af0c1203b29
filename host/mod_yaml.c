/*
 * mod_yaml.c — upgrun.yaml: decode(text [, name]), decode_all(text [, name]),
 * decode_file(path) and the null sentinel, on libyaml's event parser.
 *
 * Mappings become tables, sequences arrays (1-based). Plain scalars are typed
 * by YAML 1.1 rules as Ansible sees them (host/yaml_scalar.c): true/false/yes/
 * no/on/off, integers (incl. 0x, 0b, 0-octal), floats, null (~, null, empty).
 * Quoted and block (| >) scalars, and anything tagged !!str, are strings;
 * other explicit tags (!vault, !unsafe) keep the scalar's text as a string.
 *
 * null: a null inside a mapping or sequence is the lightuserdata sentinel
 * upgrun.yaml.null, so `hosts: {ctl1: }` still lists ctl1 and arrays stay
 * dense; a document that is null as a whole (or an empty text) decodes to nil.
 * Anchors and aliases are resolved: an alias to a collection is the SAME Lua
 * table (so "billion laughs" costs nothing, and recursive aliases make cyclic
 * tables). Merge keys (<<: *defaults, or a list of them) are applied with
 * explicit keys taking precedence. Nesting deeper than MAX_DEPTH is an error.
 * Positions: decode(text, name, {positions = true}) (and decode_all,
 * decode_file(path, all, opts)) also returns a table keyed by each decoded
 * mapping: {line=, column=, keys = {k1, k2, ...} in document order (a merged
 * key placed at its mapping), lines = {key = line}, cols = {key = column}}.
 * Errors: nil, {kind="yaml", message="name:line:col: problem", line, column}
 * (1-based); decode_file gives kind "io" when the file cannot be read.
 */
#include "upgrun.h"
#include "yaml_scalar.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#define DECODER_MT "upgrun.yaml.decoder"
#define MAX_DEPTH 200
#define TAG_PREFIX "tag:yaml.org,2002:"

static char null_sentinel; /* its address is upgrun.yaml.null */

typedef struct {
  yaml_parser_t parser;
  yaml_event_t ev;
  bool parser_ok, have_ev;
  const char *name;
  const char *text; /* the input, to place reader errors (byte offsets) */
  size_t text_len;
  int anchors;   /* stack index of the anchors table of the current document */
  int positions; /* stack index of the positions table, 0 when not asked */
  int depth;
  /* error, when a step returns false */
  char msg[256];
  size_t line, column; /* 1-based */
} decoder;

static int decoder_gc(lua_State *L) {
  decoder *d = luaL_checkudata(L, 1, DECODER_MT);
  if (d->have_ev) yaml_event_delete(&d->ev);
  if (d->parser_ok) yaml_parser_delete(&d->parser);
  d->have_ev = d->parser_ok = false;
  return 0;
}

static bool fail_at(decoder *d, yaml_mark_t m, const char *fmt,
                    const char *arg) {
  d->line = m.line + 1;
  d->column = m.column + 1;
  snprintf(d->msg, sizeof d->msg, fmt, arg);
  return false;
}

static bool next_event(decoder *d) {
  if (d->have_ev) yaml_event_delete(&d->ev);
  d->have_ev = false;
  if (yaml_parser_parse(&d->parser, &d->ev)) {
    d->have_ev = true;
    return true;
  }
  yaml_parser_t *p = &d->parser;
  if (p->error == YAML_MEMORY_ERROR)
    return fail_at(d, p->mark, "%s", "out of memory");
  yaml_mark_t m = p->problem_mark;
  if (p->error == YAML_READER_ERROR) { /* only a byte offset is known */
    memset(&m, 0, sizeof m);
    for (size_t i = 0; i < p->problem_offset && i < d->text_len; i++) {
      if (d->text[i] == '\n') {
        m.line++;
        m.column = 0;
      } else {
        m.column++;
      }
    }
  }
  if (p->context && p->error != YAML_READER_ERROR) {
    char ctx[200];
    snprintf(ctx, sizeof ctx, "%s (%s, line %zu)",
             p->problem ? p->problem : "error", p->context,
             p->context_mark.line + 1);
    return fail_at(d, m, "%s", ctx);
  }
  return fail_at(d, m, "%s", p->problem ? p->problem : "invalid YAML");
}

static void push_null(lua_State *L) {
  lua_pushlightuserdata(L, &null_sentinel);
}

/* Pushes the scalar of the current event. Returns true if it is the plain
 * merge key "<<". */
static bool push_scalar(lua_State *L, decoder *d) {
  yaml_event_t *e = &d->ev;
  const char *s = (const char *)e->data.scalar.value;
  size_t len = e->data.scalar.length;
  const char *tag = (const char *)e->data.scalar.tag;
  bool plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  bool typed = false; /* resolve as null/bool/number */
  bool want_float = false;
  if (tag) {
    if (strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0) {
      const char *t = tag + strlen(TAG_PREFIX);
      typed = strcmp(t, "int") == 0 || strcmp(t, "float") == 0 ||
              strcmp(t, "bool") == 0 || strcmp(t, "null") == 0;
      want_float = strcmp(t, "float") == 0;
    }
  } else {
    typed = plain;
  }
  if (!typed) {
    lua_pushlstring(L, s, len);
    return false;
  }
  if (plain && !tag && len == 2 && s[0] == '<' && s[1] == '<') {
    lua_pushlstring(L, s, len);
    return true;
  }
  ys_value v;
  switch (yaml_scalar_resolve(s, len, &v)) {
  case YS_NULL:
    push_null(L);
    break;
  case YS_BOOL:
    lua_pushboolean(L, v.b);
    break;
  case YS_INT:
    if (want_float)
      lua_pushnumber(L, (lua_Number)v.i);
    else
      lua_pushinteger(L, (lua_Integer)v.i);
    break;
  case YS_FLOAT:
    lua_pushnumber(L, v.d);
    break;
  default:
    lua_pushlstring(L, s, len);
  }
  return false;
}

static void set_anchor(lua_State *L, decoder *d, const yaml_char_t *anchor) {
  if (!anchor) return;
  lua_pushvalue(L, -1);
  lua_setfield(L, d->anchors, (const char *)anchor);
}

static bool parse_value(lua_State *L, decoder *d, bool *is_merge);
static void note_key(lua_State *L, int keys, int lines, int cols,
                     yaml_mark_t m);

/* Applies the merge sources in the array at index `merges` to the mapping
 * at index `map`, never overriding a key already there. */
static bool apply_merges(lua_State *L, decoder *d, int map, int merges,
                         yaml_mark_t m) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, merges);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, merges, i); /* a mapping, or a list of mappings */
    int src = lua_gettop(L);
    if (!lua_istable(L, src))
      return fail_at(d, m, "%s",
                     "merge key '<<' expects a mapping or a list of mappings");
    lua_Integer k = (lua_Integer)lua_rawlen(L, src);
    bool list = k > 0;
    for (lua_Integer j = 1; j <= (list ? k : 1); j++) {
      if (list) {
        lua_rawgeti(L, src, j);
        if (!lua_istable(L, -1))
          return fail_at(
              d, m, "%s",
              "merge key '<<' expects a mapping or a list of mappings");
      } else {
        lua_pushvalue(L, src);
      }
      int from = lua_gettop(L);
      for (lua_pushnil(L); lua_next(L, from);) { /* ..., from, key, value */
        lua_pushvalue(L, -2);
        if (lua_rawget(L, map) == LUA_TNIL) {
          lua_pop(L, 1);
          if (d->positions) { /* a merged key is placed at its '<<' */
            lua_pushvalue(L, -2);
            note_key(L, map + 2, map + 3, map + 4, m);
            lua_pop(L, 1);
          }
          lua_pushvalue(L, -2);
          lua_insert(L, -2); /* key, key, value */
          lua_rawset(L, map);
        } else {
          lua_pop(L, 2);
        }
      }
      lua_pop(L, 1); /* from */
    }
    lua_pop(L, 1); /* src */
  }
  return true;
}

/* Records where key (at the stack top) is: keys[#keys+1] = key (first time
 * only: a repeated key keeps its first place, as Python's dict does) and
 * lines[key], cols[key] = m. keys/lines/cols are stack indices. */
static void note_key(lua_State *L, int keys, int lines, int cols,
                     yaml_mark_t m) {
  lua_pushvalue(L, -1);
  if (lua_rawget(L, lines) == LUA_TNIL) {
    lua_pushvalue(L, -2);
    lua_rawseti(L, keys, (lua_Integer)lua_rawlen(L, keys) + 1);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushinteger(L, (lua_Integer)m.line + 1);
  lua_rawset(L, lines);
  lua_pushvalue(L, -1);
  lua_pushinteger(L, (lua_Integer)m.column + 1);
  lua_rawset(L, cols);
}

/* With positions: positions[map] = {line=, column=, keys={k1, k2, ...},
 * lines={k=line}, cols={k=col}}; leaves keys, lines, cols at map+2..map+4
 * (map+1 is the merge list slot). Without: three nils. */
static void push_position_tables(lua_State *L, decoder *d, int map,
                                 yaml_mark_t start) {
  if (!d->positions) {
    lua_settop(L, map + 4);
    return;
  }
  lua_createtable(L, 0, 5); /* entry */
  lua_pushinteger(L, (lua_Integer)start.line + 1);
  lua_setfield(L, -2, "line");
  lua_pushinteger(L, (lua_Integer)start.column + 1);
  lua_setfield(L, -2, "column");
  const char *names[] = {"keys", "lines", "cols"};
  for (int i = 0; i < 3; i++) {
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, names[i]);
    lua_insert(L, -2); /* keep the new table below the entry */
  }
  lua_pushvalue(L, map);
  lua_insert(L, -2);
  lua_rawset(L, d->positions); /* positions[map] = entry */
}

static bool parse_mapping(lua_State *L, decoder *d) {
  yaml_mark_t start = d->ev.start_mark;
  lua_newtable(L);
  int map = lua_gettop(L);
  set_anchor(L, d, d->ev.data.mapping_start.anchor);
  lua_pushnil(L); /* map+1: the merge list, made when a '<<' is seen */
  int merges = map + 1;
  push_position_tables(L, d, map, start);
  int keys = map + 2, lines = map + 3, cols = map + 4;
  bool any_merge = false;
  for (;;) {
    if (!next_event(d)) return false;
    if (d->ev.type == YAML_MAPPING_END_EVENT) break;
    yaml_mark_t km = d->ev.start_mark;
    bool is_merge = false;
    if (!parse_value(L, d, &is_merge)) return false;              /* key */
    if (!next_event(d) || !parse_value(L, d, NULL)) return false; /* value */
    if (is_merge) {
      if (!any_merge) {
        lua_newtable(L);
        lua_replace(L, merges);
        any_merge = true;
      }
      lua_rawseti(L, merges, (lua_Integer)lua_rawlen(L, merges) + 1);
      lua_pop(L, 1); /* the "<<" key */
      continue;
    }
    if (lua_type(L, -2) == LUA_TNUMBER &&
        lua_tonumber(L, -2) != lua_tonumber(L, -2))
      return fail_at(d, km, "%s", "a mapping key is NaN");
    if (d->positions) {
      lua_pushvalue(L, -2);
      note_key(L, keys, lines, cols, km);
      lua_pop(L, 1);
    }
    lua_rawset(L, map);
  }
  if (any_merge && !apply_merges(L, d, map, merges, start)) return false;
  lua_settop(L, map);
  return true;
}

static bool parse_sequence(lua_State *L, decoder *d) {
  lua_newtable(L);
  int seq = lua_gettop(L);
  set_anchor(L, d, d->ev.data.sequence_start.anchor);
  for (lua_Integer i = 1;; i++) {
    if (!next_event(d)) return false;
    if (d->ev.type == YAML_SEQUENCE_END_EVENT) break;
    if (!parse_value(L, d, NULL)) return false;
    lua_rawseti(L, seq, i);
  }
  return true;
}

/* Pushes the node starting at the current event. */
static bool parse_value(lua_State *L, decoder *d, bool *is_merge) {
  if (is_merge) *is_merge = false;
  yaml_event_t *e = &d->ev;
  switch (e->type) {
  case YAML_SCALAR_EVENT: {
    bool m = push_scalar(L, d);
    if (is_merge) *is_merge = m;
    set_anchor(L, d, e->data.scalar.anchor);
    return true;
  }
  case YAML_ALIAS_EVENT:
    lua_getfield(L, d->anchors, (const char *)e->data.alias.anchor);
    if (lua_isnil(L, -1))
      return fail_at(d, e->start_mark, "found undefined alias '%s'",
                     (const char *)e->data.alias.anchor);
    return true;
  case YAML_SEQUENCE_START_EVENT:
  case YAML_MAPPING_START_EVENT: {
    if (d->depth >= MAX_DEPTH || !lua_checkstack(L, 20)) {
      char lim[64];
      snprintf(lim, sizeof lim, "%d", MAX_DEPTH);
      return fail_at(d, e->start_mark, "nesting deeper than %s levels", lim);
    }
    d->depth++;
    bool ok = e->type == YAML_MAPPING_START_EVENT ? parse_mapping(L, d)
                                                  : parse_sequence(L, d);
    d->depth--;
    return ok;
  }
  default:
    return fail_at(d, e->start_mark, "%s", "unexpected YAML event");
  }
}

/* Decodes text. all=false: pushes the first document (nil if none or null);
 * all=true: pushes an array of every document (null ones as the sentinel).
 * On failure pushes nil, err. Returns the number of values pushed. */
static int decode(lua_State *L, const char *text, size_t len, const char *name,
                  bool all, bool positions) {
  int base = lua_gettop(L);
  decoder *d = lua_newuserdatauv(L, sizeof *d, 0);
  memset(d, 0, sizeof *d);
  luaL_setmetatable(L, DECODER_MT);
  if (!yaml_parser_initialize(&d->parser))
    return luaL_error(L, "out of memory");
  d->parser_ok = true;
  d->name = name;
  d->text = text;
  d->text_len = len;
  yaml_parser_set_input_string(&d->parser, (const unsigned char *)text, len);
  if (positions) {
    lua_newtable(L);
    d->positions = lua_gettop(L);
  }
  lua_newtable(L); /* results */
  int results = lua_gettop(L);
  lua_Integer ndocs = 0;
  bool ok = next_event(d); /* STREAM-START */
  while (ok) {
    if (!next_event(d)) {
      ok = false;
      break;
    }
    if (d->ev.type == YAML_STREAM_END_EVENT) break;
    /* DOCUMENT-START */
    lua_newtable(L);
    d->anchors = lua_gettop(L);
    if (!next_event(d) || !parse_value(L, d, NULL) || !next_event(d)) {
      ok = false;
      break;
    }
    lua_rawseti(L, results, ++ndocs); /* DOCUMENT-END consumed */
    lua_pop(L, 1);                    /* anchors */
    if (!all) break;
  }
  if (!ok) {
    char full[512];
    snprintf(full, sizeof full, "%s:%zu:%zu: %s", name, d->line, d->column,
             d->msg);
    lua_settop(L, base);
    lua_pushnil(L);
    upgrun_new_error(L, "yaml", "%s", full);
    lua_pushinteger(L, (lua_Integer)d->line);
    lua_setfield(L, -2, "line");
    lua_pushinteger(L, (lua_Integer)d->column);
    lua_setfield(L, -2, "column");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    return 2;
  }
  if (d->have_ev) yaml_event_delete(&d->ev);
  d->have_ev = false;
  yaml_parser_delete(&d->parser);
  d->parser_ok = false;
  if (!all) {
    lua_rawgeti(L, results, 1);
    if (lua_touserdata(L, -1) == &null_sentinel) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
  }
  /* stack: base+1 decoder, base+2 positions (if asked), then results */
  lua_replace(L, base + 1); /* the decoder is done with */
  lua_settop(L, base + (positions ? 2 : 1));
  return positions ? 2 : 1;
}

/* opts at index i: {positions = true} asks for the positions table. */
static bool want_positions(lua_State *L, int i) {
  if (!lua_istable(L, i)) return false;
  lua_getfield(L, i, "positions");
  bool on = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return on;
}

static int l_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "<string>");
  return decode(L, text, len, name, false, want_positions(L, 3));
}

static int l_decode_all(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "<string>");
  return decode(L, text, len, name, true, want_positions(L, 3));
}

/* Reads the whole file into a Lua string on the stack, or pushes nil, err. */
static bool read_file(lua_State *L, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    upgrun_push_error(L, "io", "cannot open %s: %s", path, strerror(errno));
    return false;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t n;
  char chunk[8192];
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    luaL_addlstring(&b, chunk, n);
  int failed = ferror(f) ? errno : 0;
  fclose(f);
  luaL_pushresult(&b);
  if (failed) {
    lua_pop(L, 1);
    upgrun_push_error(L, "io", "cannot read %s: %s", path, strerror(failed));
    return false;
  }
  return true;
}

static int l_decode_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  bool all = lua_toboolean(L, 2);
  bool positions = want_positions(L, 3);
  if (!read_file(L, path)) return 2;
  size_t len;
  const char *text = lua_tolstring(L, -1, &len);
  return decode(L, text, len, path, all, positions);
}

int luaopen_upgrun_yaml(lua_State *L) {
  if (luaL_newmetatable(L, DECODER_MT)) {
    lua_pushcfunction(L, decoder_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"decode", l_decode},
                                 {"decode_all", l_decode_all},
                                 {"decode_file", l_decode_file},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  push_null(L);
  lua_setfield(L, -2, "null");
  return 1;
}

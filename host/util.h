/*
 * util.h — small helpers shared by the primitive modules: reading optional
 * fields of an options table, declaring a namespaced userdata type, and
 * growing a byte buffer.
 * Misuse (a field of the wrong type) raises a Lua error naming the field.
 */
#ifndef UPGRUN_UTIL_H
#define UPGRUN_UTIL_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

/* Field `name` of the table at idx: a number, or def when nil. Raises when
 * present with another type: "bad field 'timeout' (number expected, got
 * string)". */
double util_opt_number(lua_State *L, int idx, const char *name, double def);
/* A string (pointer valid while the table holds it), or def when nil. */
const char *util_opt_string(lua_State *L, int idx, const char *name,
                            const char *def, size_t *len);
/* A boolean, or def when nil. */
bool util_opt_bool(lua_State *L, int idx, const char *name, bool def);

/* Creates metatable `tname` with __name, __index = itself, the given
 * methods and metamethods (entries whose name starts with "__" are
 * metamethods). Leaves nothing on the stack. */
void util_new_class(lua_State *L, const char *tname, const luaL_Reg *methods);

/* Makes *buf (its capacity *cap bytes) hold at least `need` bytes: the
 * capacity doubles, from `first`, until it does, but never past `max` (0: no
 * limit). Returns false, changing nothing, when memory is out. */
bool util_reserve(char **buf, size_t *cap, size_t need, size_t first,
                  size_t max);

/* Raises "bad field 'name' (what)". */
int util_field_error(lua_State *L, const char *name, const char *what);

#endif

/*
 * fuzz_lua.h — the shared part of the libFuzzer targets that reach Lua entry
 * points (upgrun.yaml, the inventory parser, the clouds.yaml resolver)
 * through an embedded upgrun runtime.
 */
#ifndef UPGRUN_FUZZ_LUA_H
#define UPGRUN_FUZZ_LUA_H

#include <stddef.h>
#include <stdint.h>

/* Runs `code` as the main task of one runtime kept for the whole fuzzing
 * session, with the input bytes in the global FUZZ_INPUT (a Lua string).
 * `code` must return 0 when the entry point kept its contract (a result or
 * `nil, err`) and 1 when it raised a raw Lua error. A crash, a sanitizer
 * report or a hang is what libFuzzer catches; a broken contract aborts only
 * when UPGRUN_FUZZ_STRICT=1 (the Lua-level fuzz test asserts it). */
int fuzz_lua_run(const char *code, const uint8_t *data, size_t size);

#endif

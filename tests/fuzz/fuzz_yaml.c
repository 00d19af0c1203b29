/*
 * fuzz_yaml.c — libFuzzer target over upgrun.yaml.decode_all (host/mod_yaml.c
 * on libyaml): any text decodes to documents or gives nil, err, without a
 * memory error, undefined behaviour, a stack overflow or a hang.
 */
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_lua_run(
      "local yaml = require 'upgrun.yaml'\n"
      "local ok, r, err = pcall(yaml.decode_all, FUZZ_INPUT, 'fuzz.yml')\n"
      "if not ok then io.stderr:write('raw error: ', tostring(r), '\\n') "
      "return 1 end\n"
      "return (r ~= nil or type(err) == 'table') and 0 or 1\n",
      data, size);
}

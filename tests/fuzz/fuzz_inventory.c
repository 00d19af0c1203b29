/*
 * fuzz_inventory.c — libFuzzer target over the inventory parser
 * (upgrun.inventory.parse, YAML or JSON text as Ansible writes it): any text
 * gives an inventory or nil, err, without a crash, a stack overflow or a hang.
 */
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_lua_run(
      "local inv = require 'upgrun.inventory'\n"
      "local ok, r, err = pcall(inv.parse, FUZZ_INPUT, 'fuzz.yml')\n"
      "if not ok then io.stderr:write('raw error: ', tostring(r), '\\n') "
      "return 1 end\n"
      "return (r ~= nil or type(err) == 'table') and 0 or 1\n",
      data, size);
}

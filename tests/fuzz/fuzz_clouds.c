/*
 * fuzz_clouds.c — libFuzzer target over the clouds.yaml resolver
 * (upgrun.openstack.config.resolve): the input is written as the only
 * clouds.yaml and cloud "c" is resolved with an empty environment; any text
 * gives a cloud or nil, err, without a crash or a hang.
 */
#include "fuzz_lua.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void remove_input(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/upgrun-fuzz-clouds-%d.yaml",
             (int)getpid());
    atexit(remove_input);
  }
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  if (fclose(f) != 0) abort();
  char code[768];
  snprintf(code, sizeof code,
           "local config = require 'upgrun.openstack.config'\n"
           "local ok, r, err = pcall(config.resolve, {cloud = 'c', env = {},"
           " files = {'%s'}, secure_files = {}})\n"
           "if not ok then io.stderr:write('raw error: ', tostring(r), '\\n') "
           "return 1 end\n"
           "return (r ~= nil or type(err) == 'table') and 0 or 1\n",
           path);
  return fuzz_lua_run(code, data, size);
}

/*
 * fuzz_yaml_scalar.c — libFuzzer target over the plain-scalar typing of
 * upgrun.yaml (host/yaml_scalar.c): any bytes must be typed without a memory
 * error or undefined behaviour, and a typed value must be consistent (a bool
 * is 0/1, a string is only returned for text that is not a number, ...).
 */
#include "yaml_scalar.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ys_value v = {0};
  ys_type t = yaml_scalar_resolve((const char *)data, size, &v);
  if (t != v.type) abort();
  if (t == YS_BOOL && v.b != 0 && v.b != 1) abort();
  return 0;
}

/*
 * fuzz_http_lite.c — libFuzzer target over http_lite's answer parser (the
 * bytes a server sends back: status line, headers, bodies by length, chunks
 * or EOF, interim 1xx). The first input byte chooses the read size (1-64
 * bytes at a time), HEAD or not and max_body; the rest is the answer. Any
 * bytes end the request exactly once, without a crash, a leak or a hang.
 */
#include "http_lite.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t piece = (size_t)(data[0] & 63) + 1;
  bool head = (data[0] & 64) != 0;
  size_t max_body = (data[0] & 128) ? 64 : 1 << 20;
  long status = 0;
  const char *kind = NULL;
  int calls = lite_parse_answer((const char *)data + 1, size - 1, piece, head,
                                max_body, &status, &kind);
  if (calls != 1) abort(); /* (-1: out of memory, not expected here) */
  if (!kind && (status < 0 || status > 999)) abort(); /* 3 digits */
  return 0;
}

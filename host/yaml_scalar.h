/*
 * yaml_scalar.h — how upgrun.yaml types a plain (unquoted, untagged) YAML
 * scalar, following YAML 1.1 as PyYAML (and so Ansible) does: null (~, null,
 * empty), booleans (true/false/yes/no/on/off in three casings), integers
 * (decimal, 0x hex, 0b binary, leading-0 octal, '_' separators), floats
 * (a '.' is required, an exponent needs its sign; .inf/.nan), sexagesimal
 * numbers (1:30 = 90, 1:30.5 = 90.5) and otherwise strings. An integer beyond
 * +-2^53 stays a string of its exact text (a 32-digit project id must not
 * become a rounded float). Pure C, no Lua: unit-tested in
 * tests/c/test_yaml.c.
 */
#ifndef UPGRUN_YAML_SCALAR_H
#define UPGRUN_YAML_SCALAR_H

#include <stddef.h>

typedef enum { YS_NULL, YS_BOOL, YS_INT, YS_FLOAT, YS_STRING } ys_type;

typedef struct {
  ys_type type;
  int b;       /* YS_BOOL */
  long long i; /* YS_INT */
  double d;    /* YS_FLOAT */
} ys_value;

/* Types the plain scalar s[0..len) and returns out->type. */
ys_type yaml_scalar_resolve(const char *s, size_t len, ys_value *out);

#endif

/*
 * yaml_scalar.c — typing of plain YAML scalars (YAML 1.1 rules as PyYAML and
 * Ansible apply them); see yaml_scalar.h.
 */
#include "yaml_scalar.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EXACT_INT_MAX 9007199254740992LL /* 2^53 */

static int is_one_of(const char *s, size_t len, const char *const *words) {
  for (; *words; words++)
    if (strlen(*words) == len && memcmp(*words, s, len) == 0) return 1;
  return 0;
}

static int digit_value(char c, int base) {
  int v;
  if (c >= '0' && c <= '9')
    v = c - '0';
  else if (c >= 'a' && c <= 'f')
    v = c - 'a' + 10;
  else if (c >= 'A' && c <= 'F')
    v = c - 'A' + 10;
  else
    return -1;
  return v < base ? v : -1;
}

/* Integers: [-+]? then 0b[01_]+ | 0x[0-9a-fA-F_]+ | 0[0-7_]+ | 0 |
 * [1-9][0-9_]*. Returns 1 with *out set, 0 if not an integer, 2 if a decimal
 * integer that does not fit in 64 bits (the caller makes it a float). */
static int parse_int(const char *s, size_t len, long long *out) {
  size_t i = 0;
  int neg = 0;
  if (i < len && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  if (i >= len) return 0;
  int base = 10;
  if (s[i] == '0' && i + 1 < len) {
    if (s[i + 1] == 'x') {
      base = 16;
      i += 2;
    } else if (s[i + 1] == 'b') {
      base = 2;
      i += 2;
    } else {
      base = 8;
      i += 1;
    }
    if (i >= len) return 0;
  } else if (s[i] == '_') {
    return 0;
  }
  unsigned long long v = 0;
  int overflow = 0, ndigits = 0;
  for (; i < len; i++) {
    if (s[i] == '_') continue;
    int d = digit_value(s[i], base);
    if (d < 0) return 0;
    ndigits++;
    if (v > (ULLONG_MAX - (unsigned)d) / (unsigned)base) overflow = 1;
    v = v * (unsigned)base + (unsigned)d;
  }
  if (ndigits == 0) return 0;
  if (!overflow &&
      (neg ? v <= (unsigned long long)LLONG_MAX + 1 : v <= LLONG_MAX)) {
    *out = neg ? (long long)(0 - v) : (long long)v;
    return 1;
  }
  return base == 10 ? 2 : 0;
}

/* Sexagesimal numbers (YAML 1.1, as PyYAML): [-+]? [1-9][0-9_]* (':'
 * [0-5]?[0-9])+ is an integer (1:30 = 90); [-+]? [0-9][0-9_]* (':'
 * [0-5]?[0-9])+ '.' [0-9_]* a float (1:30.5 = 90.5). Returns 1 (int), 2
 * (float) or 0. */
static int parse_sexagesimal(const char *s, size_t len, long long *iv,
                             double *dv) {
  size_t i = 0;
  int neg = 0;
  if (i < len && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  if (i >= len || s[i] < '0' || s[i] > '9') return 0;
  int first_zero = s[i] == '0';
  double v = 0;
  for (; i < len && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_'); i++)
    if (s[i] != '_') v = v * 10 + (s[i] - '0');
  int parts = 0;
  while (i < len && s[i] == ':') {
    i++;
    size_t start = i;
    int d = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9' && i - start < 2; i++)
      d = d * 10 + (s[i] - '0');
    size_t n = i - start;
    if (n == 0 || (n == 2 && s[start] > '5')) return 0;
    v = v * 60 + d;
    parts++;
  }
  if (parts == 0) return 0;
  double frac = 0, scale = 1;
  int is_float = 0;
  if (i < len && s[i] == '.') {
    is_float = 1;
    for (i++; i < len && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_'); i++)
      if (s[i] != '_') frac += (s[i] - '0') * (scale /= 10);
  }
  if (i != len) return 0;
  if (!is_float && first_zero) return 0; /* an integer starts with 1-9 */
  v += frac;
  if (neg) v = -v;
  if (is_float) {
    *dv = v;
    return 2;
  }
  if (v > 9007199254740992.0 || v < -9007199254740992.0) return 0;
  *iv = (long long)v;
  return 1;
}

/* Floats (YAML 1.1 as PyYAML): [-+]? [0-9][0-9_]* '.' [0-9_]* ([eE][-+][0-9]+)?
 * or '.' [0-9_]+ ([eE][-+][0-9]+)? (no sign), and [-+]?.inf / .nan in three
 * casings. The exponent's sign is required (1.0e3 is a string). */
static int parse_float(const char *s, size_t len, double *out) {
  static const char *const inf[] = {".inf", ".Inf", ".INF", NULL};
  static const char *const nan[] = {".nan", ".NaN", ".NAN", NULL};
  size_t i = 0;
  int neg = 0;
  if (is_one_of(s, len, nan)) {
    *out = NAN;
    return 1;
  }
  if (i < len && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  if (is_one_of(s + i, len - i, inf)) {
    *out = neg ? -INFINITY : INFINITY;
    return 1;
  }
  char buf[128];
  size_t n = 0;
  int int_digits = 0, frac_digits = 0, dot = 0;
  if (neg) buf[n++] = '-';
  if (i < len && s[i] == '_') return 0;
  int signed_ = i > 0;
  for (; i < len && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_'); i++) {
    if (s[i] == '_') continue;
    if (n >= sizeof buf - 16) return 0;
    buf[n++] = s[i];
    int_digits++;
  }
  if (i < len && s[i] == '.') {
    dot = 1;
    buf[n++] = s[i++];
    for (; i < len && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_'); i++) {
      if (s[i] == '_') continue;
      if (n >= sizeof buf - 16) return 0;
      buf[n++] = s[i];
      frac_digits++;
    }
  }
  if (!dot || (int_digits == 0 && frac_digits == 0)) return 0;
  if (int_digits == 0 && (signed_ || frac_digits == 0)) return 0; /* -.5 */
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    buf[n++] = 'e';
    i++;
    if (i >= len || (s[i] != '-' && s[i] != '+')) return 0;
    buf[n++] = s[i++];
    int exp_digits = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
      if (n >= sizeof buf - 1) return 0;
      buf[n++] = s[i];
      exp_digits++;
    }
    if (!exp_digits) return 0;
  }
  if (i != len) return 0;
  buf[n] = '\0';
  errno = 0;
  *out = strtod(buf, NULL);
  return 1;
}

ys_type yaml_scalar_resolve(const char *s, size_t len, ys_value *out) {
  static const char *const nulls[] = {"~", "null", "Null", "NULL", NULL};
  static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON",  NULL};
  static const char *const falses[] = {"false", "False", "FALSE", "no",  "No",
                                       "NO",    "off",   "Off",   "OFF", NULL};
  memset(out, 0, sizeof *out);
  if (len == 0 || is_one_of(s, len, nulls)) return out->type = YS_NULL;
  if (is_one_of(s, len, trues)) {
    out->b = 1;
    return out->type = YS_BOOL;
  }
  if (is_one_of(s, len, falses)) return out->type = YS_BOOL;
  char c = s[0];
  if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.'))
    return out->type = YS_STRING;
  switch (parse_sexagesimal(s, len, &out->i, &out->d)) {
  case 1:
    return out->type = YS_INT;
  case 2:
    return out->type = YS_FLOAT;
  default:
    break;
  }
  switch (parse_int(s, len, &out->i)) {
  case 1: /* beyond 2^53 a double (and JSON) would round it: keep the text */
    if (out->i > EXACT_INT_MAX || out->i < -EXACT_INT_MAX) {
      out->i = 0;
      return out->type = YS_STRING;
    }
    return out->type = YS_INT;
  case 2: /* beyond 64 bits: likewise the exact text */
    return out->type = YS_STRING;
  default:
    break;
  }
  if (parse_float(s, len, &out->d)) return out->type = YS_FLOAT;
  return out->type = YS_STRING;
}

/*
 * test_yaml.c — unit tests of host/yaml_scalar.c, the YAML 1.1 typing of
 * plain scalars (what Ansible/PyYAML would make of each).
 */
#include "yaml_scalar.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int passed, failed;

static void check(const char *s, ys_type type, double num) {
  ys_value v;
  ys_type got = yaml_scalar_resolve(s, strlen(s), &v);
  int ok = got == type;
  if (ok && type == YS_BOOL) ok = v.b == (int)num;
  if (ok && type == YS_INT) ok = (double)v.i == num;
  if (ok && type == YS_FLOAT) ok = isnan(num) ? isnan(v.d) : (v.d == num);
  if (ok) {
    passed++;
  } else {
    failed++;
    printf("FAIL '%s': type %d (want %d), b=%d i=%lld d=%g (want %g)\n", s, got,
           type, v.b, v.i, v.d, num);
  }
}

int main(void) {
  /* null */
  check("", YS_NULL, 0);
  check("~", YS_NULL, 0);
  check("null", YS_NULL, 0);
  check("Null", YS_NULL, 0);
  check("NULL", YS_NULL, 0);
  check("nULL", YS_STRING, 0);
  /* booleans, YAML 1.1 */
  check("true", YS_BOOL, 1);
  check("True", YS_BOOL, 1);
  check("yes", YS_BOOL, 1);
  check("ON", YS_BOOL, 1);
  check("no", YS_BOOL, 0);
  check("Off", YS_BOOL, 0);
  check("FALSE", YS_BOOL, 0);
  check("y", YS_STRING, 0);
  check("n", YS_STRING, 0);
  check("tRUE", YS_STRING, 0);
  /* integers */
  check("0", YS_INT, 0);
  check("42", YS_INT, 42);
  check("-42", YS_INT, -42);
  check("+42", YS_INT, 42);
  check("1_000_000", YS_INT, 1000000);
  check("0x1F", YS_INT, 31);
  check("0xff", YS_INT, 255);
  check("-0x10", YS_INT, -16);
  check("0b1010", YS_INT, 10);
  check("0755", YS_INT, 493);
  check("00", YS_INT, 0);
  check("9007199254740992", YS_INT, 9007199254740992.0);
  check("-9007199254740992", YS_INT, -9007199254740992.0);
  check("9007199254740993", YS_STRING, 0);
  check("9223372036854775807", YS_STRING, 0);
  check("-9223372036854775808", YS_STRING, 0);
  check("12345678901234567890123456789012", YS_STRING, 0);
  check("0x", YS_STRING, 0);
  check("0b", YS_STRING, 0);
  check("08", YS_STRING, 0);
  check("0o17", YS_STRING, 0);
  check("_1", YS_STRING, 0);
  check("-", YS_STRING, 0);
  check("+", YS_STRING, 0);
  /* sexagesimal, as PyYAML (and so Ansible) */
  check("1:30", YS_INT, 90);
  check("190:20:30", YS_INT, 685230);
  check("-1:30", YS_INT, -90);
  check("1:30.5", YS_FLOAT, 90.5);
  check("0:30.5", YS_FLOAT, 30.5);
  check("01:30", YS_STRING, 0);
  check("1:60", YS_STRING, 0);
  check("1:123", YS_STRING, 0);
  check("11:22:33:44:55:66", YS_STRING, 0);
  check("2001:db8::1", YS_STRING, 0);
  check("1:", YS_STRING, 0);
  check("12abc", YS_STRING, 0);
  check("0xFFFFFFFFFFFFFFFFF", YS_STRING, 0);
  /* floats */
  check("1.5", YS_FLOAT, 1.5);
  check("-0.25", YS_FLOAT, -0.25);
  check("1.", YS_FLOAT, 1.0);
  check(".5", YS_FLOAT, 0.5);
  check("1.0e+3", YS_FLOAT, 1000.0);
  check("1.5E-2", YS_FLOAT, 0.015);
  check("1_0.5", YS_FLOAT, 10.5);
  check("1.10", YS_FLOAT, 1.1);
  check(".inf", YS_FLOAT, INFINITY);
  check("-.Inf", YS_FLOAT, -INFINITY);
  check(".NaN", YS_FLOAT, NAN);
  check("1e3", YS_STRING, 0);
  check("1.0e3", YS_STRING, 0); /* the exponent needs its sign */
  check("-.5", YS_STRING, 0);
  check("+.5", YS_STRING, 0);
  check(".", YS_STRING, 0);
  check("1.2.3", YS_STRING, 0);
  check("10.0.0.1", YS_STRING, 0);
  check("1.0e", YS_STRING, 0);
  check("inf", YS_STRING, 0);
  check("26.2.2~deb12u4", YS_STRING, 0);
  /* strings */
  check("ctl1", YS_STRING, 0);
  check("<<", YS_STRING, 0);
  check("null ", YS_STRING, 0);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

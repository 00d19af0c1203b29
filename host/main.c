/*
 * main.c — the upgrun command line: `upgrun SCRIPT [args...]` runs a script
 * (or a scenario, through lualib/upgrun/cli.lua) as the main task;
 * `upgrun -e CODE [args...]` runs a string; --version, --help.
 */
#include "upgrun.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: upgrun SCRIPT.lua [options...]   run a scenario or script\n"
      "       upgrun -e 'lua code' [args...]    run a string of Lua\n"
      "       upgrun --version | --help\n"
      "\n"
      "A scenario takes: -i/--inventory FILE, --cloud NAME, -o/--output DIR,\n"
      "--set key=value (repeatable), --plan. See docs/scenarios.md.\n"
      "Exit codes: 0 passed, 1 a check or budget failed, 2 bad invocation,\n"
      "config or script, 3 aborted by a signal.\n"
      "Environment: UPGRUN_LUALIB=DIR loads lualib/ from DIR instead of the\n"
      "copy built into the binary.\n");
}

int main(int argc, char **argv) {
  /* A closed stdout or a peer gone away gives EPIPE on that write, never a
   * silent death: the run goes on and writes its outputs. */
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    usage(stderr);
    return UPGRUN_EXIT_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(stdout);
    return UPGRUN_EXIT_OK;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("upgrun %s (%s, libuv %s)\n", UPGRUN_VERSION, LUA_RELEASE,
           uv_version_string());
    return UPGRUN_EXIT_OK;
  }
  if (argv[1][0] == '-' && strcmp(argv[1], "-e") != 0) {
    fprintf(stderr, "upgrun: unknown option %s\n", argv[1]);
    usage(stderr);
    return UPGRUN_EXIT_USAGE;
  }
  upgrun_runtime *rt = upgrun_new();
  if (!rt) {
    fprintf(stderr, "upgrun: cannot create the runtime (out of memory?)\n");
    return UPGRUN_EXIT_USAGE;
  }
  int code;
  if (strcmp(argv[1], "-e") == 0) {
    if (argc < 3) {
      fprintf(stderr, "upgrun: -e needs an argument\n");
      upgrun_free(rt);
      return UPGRUN_EXIT_USAGE;
    }
    code = upgrun_run_string(rt, argv[2], "=(-e)", argc - 3, argv + 3);
  } else {
    code = upgrun_run_string(rt, "return require('upgrun.cli').main(...)",
                             "=upgrun", argc - 1, argv + 1);
  }
  upgrun_free(rt);
  return code;
}

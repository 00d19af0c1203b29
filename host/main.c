/*
 * main.c — the upgrun command line: `upgrun -e CODE [args...]` runs a string
 * and --version prints the version; everything else (options, a script or a
 * scenario, subcommands, --help) is parsed by lualib/upgrun/cli.lua, run as
 * the main task.
 */
#include "upgrun.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  /* A closed stdout or a peer gone away gives EPIPE on that write, never a
   * silent death: the run goes on and writes its outputs. */
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
    printf("upgrun %s (%s, libuv %s)\n", UPGRUN_VERSION, LUA_RELEASE,
           uv_version_string());
    return UPGRUN_EXIT_OK;
  }
  upgrun_runtime *rt = upgrun_new();
  if (!rt) {
    fprintf(stderr, "upgrun: cannot create the runtime (out of memory?)\n");
    return UPGRUN_EXIT_USAGE;
  }
  int code;
  if (argc >= 2 && strcmp(argv[1], "-e") == 0) {
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

/* cli_plot.c: `netrun plot LOG [-o curves.png]`: runs python/tools/netrun_plot.py with
 * Debian's python3 (matplotlib comes from python3-matplotlib). netrun itself never embeds
 * Python for this: the plot is a separate process. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "locate.h"

#ifndef NR_PYTHON_EXE
#define NR_PYTHON_EXE "/usr/bin/python3"
#endif
#ifndef NR_SOURCE_PYTHON_DIR
#define NR_SOURCE_PYTHON_DIR ""
#endif

int nr_cmd_plot(int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-help") || !strcmp(argv[i], "-h")) {
      printf("usage: netrun plot LOG [-o curves.png] [--test-output accuracy]\n\n"
             "Draws the training loss and a test net output against iterations from a\n"
             "training log (netrun's or Caffe's). Needs python3-matplotlib.\n");
      return 3;
    }
  if (argc < 1) {
    nr_cli_error("plot: give the training log (netrun plot LOG [-o curves.png])");
    return 2;
  }
  /* The tool script: in the executable's install tree, else the source tree. */
  const char *const where[] = {"$EXE/../share/netrun/python/tools/netrun_plot.py",
                               NR_SOURCE_PYTHON_DIR "/tools/netrun_plot.py"};
  char *script = nr__locate(where, 2, R_OK);
  if (!script) {
    nr_cli_error("plot: cannot find netrun_plot.py (looked next to the executable and in %s)",
                 NR_SOURCE_PYTHON_DIR);
    return 1;
  }
  char **args = calloc((size_t)argc + 3, sizeof *args);
  if (!args) {
    free(script);
    return 1;
  }
  args[0] = (char *)NR_PYTHON_EXE;
  args[1] = script;
  for (int i = 0; i < argc; i++) args[i + 2] = argv[i];
  fflush(stdout);
  execv(NR_PYTHON_EXE, args);
  nr_cli_error("plot: cannot run %s: %s", NR_PYTHON_EXE, strerror(errno));
  free(args);
  free(script);
  return 1;
}

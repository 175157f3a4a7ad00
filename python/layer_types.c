/* layer_types.c: a build-time tool that writes caffe/_layer_types.py, the engine's layer
 * types as a Python tuple, so caffe.layer_type_list() in a user's Python (no worker, no
 * C extension yet) reports the same list that netrun's workers are handed at start.
 *
 * Usage: nr_py_layer_types OUT.py. Exit 0 on success, 1 when OUT.py cannot be written. */
#include <stdio.h>
#include <string.h>

#include "layer.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUT.py\n", argv[0]);
    return 2;
  }
  char list[8192]; /* "AbsVal, Accuracy, ..." sorted; 40 names fill under 1 KiB */
  nr_layer_type_list(list, sizeof list);
  FILE *f = fopen(argv[1], "w");
  if (!f) {
    perror(argv[1]);
    return 1;
  }
  fputs(
      "\"\"\"The engine's layer types (generated at build time by python/layer_types.c).\"\"\"\n\n"
      "LAYER_TYPES = (\n",
      f);
  for (char *name = strtok(list, ", "); name; name = strtok(NULL, ", "))
    fprintf(f, "    '%s',\n", name);
  fputs(")\n", f);
  if (fclose(f) != 0) {
    perror(argv[1]);
    return 1;
  }
  return 0;
}

/* image_bench: netrun's side of bench/images. Reads the images named in LIST (one path a
 * line) in batches of BATCH as the ImageData layer's prefetch thread does: nr_image_read as
 * color, then (unless NH is 0) nr_image_resize to NH x NW; after WARMUP batches, prints the
 * milliseconds of each of N batches, one "ms X" line each.
 *
 * usage: image_bench LIST BATCH WARMUP N NH NW */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image_io.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: image_bench LIST BATCH WARMUP N NH NW\n");
    return 2;
  }
  const int batch = atoi(argv[2]), warmup = atoi(argv[3]), n = atoi(argv[4]);
  const int nh = atoi(argv[5]), nw = atoi(argv[6]);
  FILE *f = fopen(argv[1], "r");
  if (!f) {
    perror(argv[1]);
    return 1;
  }
  char **paths = NULL, line[4096];
  int npaths = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (!*line) continue;
    char **np = realloc(paths, sizeof *np * (size_t)(npaths + 1));
    if (!np || !(np[npaths] = strdup(line))) return 1;
    paths = np;
    npaths++;
  }
  fclose(f);
  uint8_t *out = nh ? malloc((size_t)nh * nw * 3) : NULL;
  if (!npaths || (nh && !out)) return 1;
  int next = 0;
  for (int b = 0; b < warmup + n; b++) {
    const double t0 = now_ms();
    for (int i = 0; i < batch; i++, next = (next + 1) % npaths) {
      nr_error err;
      uint8_t *pix = NULL;
      int h, w;
      if (nr_image_read(paths[next], true, &pix, &h, &w, &err) != NR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
      }
      if (nh) nr_image_resize(pix, h, w, 3, out, nh, nw);
      free(pix);
    }
    if (b >= warmup) printf("ms %.3f\n", now_ms() - t0);
  }
  for (int i = 0; i < npaths; i++) free(paths[i]);
  free(paths);
  free(out);
  return 0;
}

/* cli_device.c: `netrun device_query`: Caffe's `caffe device_query`, for the processor netrun
 * computes on (netrun has no GPU path: -gpu is accepted and ignored everywhere). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

char *openblas_get_config(void);
int openblas_get_num_threads(void);

static void cpu_model(char *out, size_t len) {
  snprintf(out, len, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[512];
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) != 0) continue;
    const char *v = strchr(line, ':');
    if (v) {
      snprintf(out, len, "%s", v + 2);
      out[strcspn(out, "\n")] = '\0';
    }
    break;
  }
  if (f) fclose(f);
}

/* The widest vector instructions this processor has, as the GEMMs and layers can use them. */
static const char *simd_level(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "AVX-512";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "AVX2 + FMA";
  if (__builtin_cpu_supports("avx")) return "AVX";
  if (__builtin_cpu_supports("sse4.2")) return "SSE4.2";
  return "SSE2";
#elif defined(__aarch64__)
  return "NEON";
#else
  return "scalar";
#endif
}

int nr_cmd_device_query(int argc, char **argv) {
  const nr_flag flags[] = {{NULL, 0, NULL, NULL}};
  const char *pos[1];
  int npos;
  int r = nr_cli_parse("device_query", "netrun device_query [-gpu ID]", flags, argc, argv,
                       pos, &npos, 0);
  if (r) return r;
  char model[256];
  cpu_model(model, sizeof model);
  FILE *log = nr_cli_log();
  fprintf(log, "netrun computes on the CPU only (there is no GPU device to query)\n");
  fprintf(log, "Processor: %s\n", model);
  fprintf(log, "Cores online: %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
  fprintf(log, "SIMD: %s\n", simd_level());
  fprintf(log, "BLAS: %s (%d threads)\n", openblas_get_config(), openblas_get_num_threads());
  return 0;
}

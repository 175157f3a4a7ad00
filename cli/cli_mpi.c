/* cli_mpi.c: `mpirun -np K netrun train`: the engine's data-parallel hooks (core/dist.h)
 * over MPI (Open MPI's libmpi; compiled when CMake finds MPI, NR_HAVE_MPI).
 *
 * Decision: MPI is initialised only when an MPI launcher started this process. A singleton
 * MPI_Init (netrun run by hand) costs 0.6 s on Open MPI 4.1 and starts its runtime's
 * machinery for a job of one, and every plain `netrun train` (the tests, the sanitizer
 * builds, which would see Open MPI's never-freed startup allocations as leaks) would pay
 * for it. Launchers announce themselves in the environment (Open MPI's mpirun sets
 * OMPI_COMM_WORLD_SIZE, PMIx launchers PMIX_RANK, MPICH's hydra and Slurm's PMI PMI_RANK);
 * netrun only looks at whether one of these is present. The rank and the number of ranks
 * always come from MPI itself (MPI_Comm_rank / MPI_Comm_size of MPI_COMM_WORLD).
 * NETRUN_MPI=0 keeps MPI off under a launcher; NETRUN_MPI=1 forces a singleton MPI_Init.
 *
 * Errors: the communicator returns error codes (MPI_ERRORS_RETURN), turned into nr_status
 * with MPI's text. A failed rank ends the whole job with MPI_Abort (nr_cli_dist_abort).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dist.h"

#ifdef NR_HAVE_MPI
#include <mpi.h>

static bool mpi_up;

static nr_status mpi_fail(int rc, const char *what, nr_error *err) {
  char text[MPI_MAX_ERROR_STRING] = "";
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return nr_err_set(err, NR_ERR_IO, "MPI: %s failed: %s", what, text);
}

static nr_status mpi_iallreduce(void *ctx, float *buf, int64_t n, void **req, nr_error *err) {
  (void)ctx;
  if (n > INT_MAX)
    return nr_err_set(err, NR_ERR_INPUT, "MPI: a gradient bucket of %lld floats is too large",
                      (long long)n);
  MPI_Request *r = malloc(sizeof *r);
  if (!r) return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, r);
  if (rc != MPI_SUCCESS) {
    free(r);
    return mpi_fail(rc, "MPI_Iallreduce", err);
  }
  *req = r;
  return NR_OK;
}

static nr_status mpi_test(void *ctx, void *req, int *done, nr_error *err) {
  (void)ctx;
  MPI_Request *r = req;
  int rc = MPI_Test(r, done, MPI_STATUS_IGNORE);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Test", err);
  if (*done) free(r);
  return NR_OK;
}

static nr_status mpi_wait(void *ctx, void *req, nr_error *err) {
  (void)ctx;
  MPI_Request *r = req;
  int rc = MPI_Wait(r, MPI_STATUS_IGNORE);
  free(r);
  return rc == MPI_SUCCESS ? NR_OK : mpi_fail(rc, "MPI_Wait", err);
}

static nr_status mpi_allreduce_f64(void *ctx, double *buf, int64_t n, nr_dist_op op,
                                   nr_error *err) {
  (void)ctx;
  MPI_Op mop = op == NR_DIST_MAX ? MPI_MAX : op == NR_DIST_MIN ? MPI_MIN : MPI_SUM;
  for (int64_t off = 0; off < n; off += INT_MAX) {
    int c = n - off > INT_MAX ? INT_MAX : (int)(n - off);
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, c, MPI_DOUBLE, mop, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce", err);
  }
  return NR_OK;
}

static nr_status mpi_bcast(void *ctx, void *buf, int64_t bytes, nr_error *err) {
  (void)ctx;
  for (int64_t off = 0; off < bytes; off += INT_MAX) {
    int c = bytes - off > INT_MAX ? INT_MAX : (int)(bytes - off);
    int rc = MPI_Bcast((char *)buf + off, c, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast", err);
  }
  return NR_OK;
}

static bool launched_by_mpi(void) {
  const char *force = getenv("NETRUN_MPI");
  if (force && *force) return strcmp(force, "0") != 0;
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                     "PMI_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
    if (getenv(vars[i])) return true;
  return false;
}

nr_status nr_cli_dist_start(nr_dist *out, nr_error *err) {
  memset(out, 0, sizeof *out);
  out->size = 1;
  if (!launched_by_mpi()) return NR_OK;
  int provided = 0;
  /* Only the solver's thread calls MPI (prefetch and worker threads never do). */
  int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init_thread", err);
  mpi_up = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &out->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &out->size);
  out->iallreduce = mpi_iallreduce;
  out->test = mpi_test;
  out->wait = mpi_wait;
  out->allreduce_f64 = mpi_allreduce_f64;
  out->bcast = mpi_bcast;
  return NR_OK;
}

void nr_cli_dist_end(void) {
  if (!mpi_up) return;
  mpi_up = false;
  MPI_Finalize();
}

void nr_cli_dist_abort(int code) {
  if (!mpi_up) return;
  fflush(NULL);
  MPI_Abort(MPI_COMM_WORLD, code);
}

#else /* built without MPI: one process, whatever the launcher */

nr_status nr_cli_dist_start(nr_dist *out, nr_error *err) {
  memset(out, 0, sizeof *out);
  out->size = 1;
  /* K copies each training the whole model alone would be a silent waste: refuse. */
  const char *k = getenv("OMPI_COMM_WORLD_SIZE");
  if (k && strcmp(k, "1") != 0)
    return nr_err_set(err, NR_ERR_INPUT, "this netrun was built without MPI, but mpirun "
                      "started %s copies of it (install libopenmpi-dev and rebuild)", k);
  return NR_OK;
}
void nr_cli_dist_end(void) {}
void nr_cli_dist_abort(int code) { (void)code; }

#endif

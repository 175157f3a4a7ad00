/* db_lmdb.c: read cursor and batched writer over liblmdb (see db_lmdb.h). */
#include "db_lmdb.h"

#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Caffe's map size: 1 TiB of address space. The file grows only as data is written. */
#define NR_LMDB_MAP_SIZE ((size_t)1 << 40)
#define NR_LMDB_COMMIT_EVERY 1000

struct nr_lmdb_reader {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_cursor *cur;
  MDB_val key, val;
  char *path;
};

struct nr_lmdb_writer {
  MDB_env *env;
  MDB_txn *txn; /* open transaction, NULL when nothing is pending */
  MDB_dbi dbi;
  int pending;
  char *path;
};

static nr_status lmdb_err(nr_error *err, int rc, const char *what, const char *path) {
  /* LMDB returns errno values for system failures; mdb_strerror covers both kinds. */
  return nr_err_set(err, rc == MDB_MAP_FULL || rc == MDB_CORRUPTED || rc == MDB_INVALID
                             ? NR_ERR_INPUT
                             : NR_ERR_IO,
                    "%s LMDB '%s': %s", what, path, mdb_strerror(rc));
}

nr_status nr_lmdb_reader_open(const char *path, nr_lmdb_reader **out, nr_error *err) {
  nr_lmdb_reader *r = calloc(1, sizeof *r);
  if (!r || !(r->path = strdup(path))) {
    free(r);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  }
  nr_status s = NR_OK;
  int rc = mdb_env_create(&r->env);
  if (rc) goto fail_rc;
  if ((rc = mdb_env_set_mapsize(r->env, NR_LMDB_MAP_SIZE))) goto fail_rc;
  /* mdb_env_open on a missing directory says ENOENT; on a plain file ENOTDIR. */
  if ((rc = mdb_env_open(r->env, path, MDB_RDONLY | MDB_NOTLS, 0664))) goto fail_rc;
  if ((rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &r->txn))) goto fail_rc;
  if ((rc = mdb_dbi_open(r->txn, NULL, 0, &r->dbi))) goto fail_rc;
  if ((rc = mdb_cursor_open(r->txn, r->dbi, &r->cur))) goto fail_rc;
  rc = mdb_cursor_get(r->cur, &r->key, &r->val, MDB_FIRST);
  if (rc == MDB_NOTFOUND) {
    s = nr_err_set(err, NR_ERR_INPUT, "LMDB '%s' is empty", path);
    goto fail;
  }
  if (rc) goto fail_rc;
  *out = r;
  return NR_OK;
fail_rc:
  s = lmdb_err(err, rc, "cannot open", path);
fail:
  nr_lmdb_reader_close(r);
  return s;
}

void nr_lmdb_reader_close(nr_lmdb_reader *r) {
  if (!r) return;
  if (r->cur) mdb_cursor_close(r->cur);
  if (r->txn) mdb_txn_abort(r->txn);
  if (r->env) mdb_env_close(r->env);
  free(r->path);
  free(r);
}

void nr_lmdb_reader_get(const nr_lmdb_reader *r, const void **key, size_t *klen,
                        const void **val, size_t *vlen) {
  *key = r->key.mv_data;
  *klen = r->key.mv_size;
  *val = r->val.mv_data;
  *vlen = r->val.mv_size;
}

nr_status nr_lmdb_reader_next(nr_lmdb_reader *r, bool *wrapped, nr_error *err) {
  *wrapped = false;
  int rc = mdb_cursor_get(r->cur, &r->key, &r->val, MDB_NEXT);
  if (rc == MDB_NOTFOUND) {
    *wrapped = true;
    rc = mdb_cursor_get(r->cur, &r->key, &r->val, MDB_FIRST);
  }
  return rc ? lmdb_err(err, rc, "cannot read", r->path) : NR_OK;
}

nr_status nr_lmdb_reader_rewind(nr_lmdb_reader *r, nr_error *err) {
  int rc = mdb_cursor_get(r->cur, &r->key, &r->val, MDB_FIRST);
  return rc ? lmdb_err(err, rc, "cannot read", r->path) : NR_OK;
}

nr_status nr_lmdb_writer_create(const char *path, nr_lmdb_writer **out, nr_error *err) {
  if (mkdir(path, 0755) != 0) {
    if (errno == EEXIST)
      return nr_err_set(err, NR_ERR_IO,
                        "LMDB '%s' already exists; remove it or choose another path", path);
    return nr_err_set(err, NR_ERR_IO, "cannot create LMDB directory '%s': %s", path,
                      strerror(errno));
  }
  nr_lmdb_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->path = strdup(path))) {
    free(w);
    return nr_err_set(err, NR_ERR_NOMEM, "out of memory");
  }
  int rc = mdb_env_create(&w->env);
  if (rc) goto fail;
  if ((rc = mdb_env_set_mapsize(w->env, NR_LMDB_MAP_SIZE))) goto fail;
  if ((rc = mdb_env_open(w->env, path, 0, 0664))) goto fail;
  *out = w;
  return NR_OK;
fail:;
  nr_status s = lmdb_err(err, rc, "cannot create", path);
  nr_lmdb_writer_close(w);
  return s;
}

nr_status nr_lmdb_writer_put(nr_lmdb_writer *w, const void *key, size_t klen, const void *val,
                             size_t vlen, nr_error *err) {
  int rc;
  if (!w->txn) {
    if ((rc = mdb_txn_begin(w->env, NULL, 0, &w->txn))) {
      w->txn = NULL;
      return lmdb_err(err, rc, "cannot write", w->path);
    }
    if ((rc = mdb_dbi_open(w->txn, NULL, 0, &w->dbi)))
      return lmdb_err(err, rc, "cannot write", w->path);
  }
  MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
  if ((rc = mdb_put(w->txn, w->dbi, &k, &v, 0))) return lmdb_err(err, rc, "cannot write", w->path);
  if (++w->pending >= NR_LMDB_COMMIT_EVERY) return nr_lmdb_writer_commit(w, err);
  return NR_OK;
}

nr_status nr_lmdb_writer_commit(nr_lmdb_writer *w, nr_error *err) {
  if (!w->txn) return NR_OK;
  int rc = mdb_txn_commit(w->txn); /* frees the transaction even on failure */
  w->txn = NULL;
  w->pending = 0;
  return rc ? lmdb_err(err, rc, "cannot commit to", w->path) : NR_OK;
}

void nr_lmdb_writer_close(nr_lmdb_writer *w) {
  if (!w) return;
  if (w->txn) mdb_txn_abort(w->txn);
  if (w->env) mdb_env_close(w->env);
  free(w->path);
  free(w);
}

void nr_lmdb_remove(const char *path) {
  const char *files[] = {"data.mdb", "lock.mdb"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", path, files[i]) < (int)sizeof p) unlink(p);
  }
  rmdir(path);
}

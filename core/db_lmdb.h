/* db_lmdb.h: the small part of LMDB netrun needs — a read cursor that walks a database in
 * key order (the Data layer) and a writer that appends records in batched transactions
 * (convert-mnist). A database is a directory holding data.mdb and lock.mdb, as Caffe's.
 *
 * Ownership: each handle owns its environment, transaction and cursor; close(NULL) does
 * nothing. Values returned by nr_lmdb_reader_get are borrowed from the memory map and stay
 * valid until the next call on the same reader.
 * Thread safety: a handle is used by one thread at a time (readers are opened with
 * MDB_NOTLS, so a reader may be created on one thread and used on another).
 */
#ifndef NR_DB_LMDB_H
#define NR_DB_LMDB_H

#include <stdbool.h>
#include <stddef.h>

#include "nr_status.h"

typedef struct nr_lmdb_reader nr_lmdb_reader;
typedef struct nr_lmdb_writer nr_lmdb_writer;

/* Opens the database read-only and places the cursor on the first record. Errors:
 * NR_ERR_IO "cannot open LMDB '<path>': <reason>"; NR_ERR_INPUT "LMDB '<path>' is empty". */
nr_status nr_lmdb_reader_open(const char *path, nr_lmdb_reader **out, nr_error *err);
void nr_lmdb_reader_close(nr_lmdb_reader *r);
/* The current record (borrowed). */
void nr_lmdb_reader_get(const nr_lmdb_reader *r, const void **key, size_t *klen,
                        const void **val, size_t *vlen);
/* Moves to the next record; *wrapped is set true when it went past the last record and
 * back to the first. Errors: NR_ERR_IO from LMDB. */
nr_status nr_lmdb_reader_next(nr_lmdb_reader *r, bool *wrapped, nr_error *err);
/* Back to the first record. */
nr_status nr_lmdb_reader_rewind(nr_lmdb_reader *r, nr_error *err);

/* Creates a new database directory (mode 0755); NR_ERR_IO if it already exists ("LMDB
 * '<path>' already exists; remove it or choose another path") or cannot be created. */
nr_status nr_lmdb_writer_create(const char *path, nr_lmdb_writer **out, nr_error *err);
/* Adds one record; records are committed every 1000 puts and at commit. */
nr_status nr_lmdb_writer_put(nr_lmdb_writer *w, const void *key, size_t klen, const void *val,
                             size_t vlen, nr_error *err);
/* Commits what is pending. */
nr_status nr_lmdb_writer_commit(nr_lmdb_writer *w, nr_error *err);
/* Closes, dropping anything not committed. */
void nr_lmdb_writer_close(nr_lmdb_writer *w);
/* Removes a database directory this process created (its two files, then the directory);
 * what cannot be removed stays. For writers that fail half-way. */
void nr_lmdb_remove(const char *path);

#endif

/* The node store: one LMDB environment in <home>/store/ holding the process
 * table, process state, the file handle table and file records, with
 * durable writes batched by a committer thread (group commit). Layout,
 * formats and the durability argument: docs/PERSISTENCE.md. */
#ifndef UQ_STORE_H
#define UQ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uqbar/err.h"

#define UQS_FORMAT_VERSION 1u       /* on-disk format written by this code */
#define UQS_KEY_MAX 511             /* LMDB's default key limit */

typedef struct uqs_store uqs_store;

/* The named databases of a store. */
typedef enum uqs_db {
    UQS_DB_PROCS = 0,   /* process id -> process record (opaque; the kernel serializes) */
    UQS_DB_STATE,       /* process id -> state bytes */
    UQS_DB_HANDLES,     /* 16-byte handle id -> handle record (files.c) */
    UQS_DB_FILES,       /* "app/name" -> file record (files.c) */
    UQS_DB_BACKUP,      /* encrypted backups: held for other nodes, and what our peers hold (backup.c) */
    UQS_DB_N
} uqs_db;

typedef struct uqs_options {
    size_t map_size;    /* LMDB map size in bytes: the store's size limit (0: 1 GiB) */
    unsigned batch_max; /* most write requests per transaction (0: 4096) */
} uqs_options;

/* One write of a batch: put key=val, or delete key (del; absent is fine). */
typedef struct uqs_op {
    uqs_db db;
    bool del;
    const void *key;
    size_t klen;        /* 1..UQS_KEY_MAX */
    const void *val;
    size_t vlen;
} uqs_op;

/* Completion of an asynchronous write, called once on the committer thread
 * after the write is durable (err == UQ_OK) or has failed (em says why; em
 * is valid during the call only). It must be quick and must not call the
 * blocking writes of this store (they would wait for this very thread). */
typedef void (*uqs_done_fn)(void *arg, uq_err err, const uq_errmsg *em);

/* ---- open / close ----------------------------------------------------- */
/* Open (creating if needed) the store of the node whose home is `home`.
 * opt may be NULL. Errors, each naming the path:
 *   UQ_ECORRUPT  data.mdb is not an LMDB file, or an LMDB file that is not a
 *                uqbar store (no or wrong magic), or is damaged; nothing is
 *                written to it
 *   UQ_ELIMIT    the format version is newer than this code reads
 *   UQ_EBUSY     another node (process) has this store open
 *   UQ_EPERM     permission denied; other system errors as UQ_ESYSERR|errno
 * On success *out is owned by the caller (uqs_close). */
uq_err uqs_open(const char *home, const uqs_options *opt, uqs_store **out, uq_errmsg *em);
/* Finish the queued writes (their callbacks run), stop the committer and
 * close. NULL is a no-op. No other call may be in progress or follow. */
void uqs_close(uqs_store *s);
/* <home>/store */
const char *uqs_path(const uqs_store *s);

/* ---- generic access (used by files.c, and by the kernel if it likes) --- */
/* Apply ops[0..n) in order, atomically, and return once they are durable
 * (committed and fsync'ed), batched with concurrent writers in one
 * transaction. Blocks the calling thread for about one fsync. Errors:
 * UQ_EINVAL (bad op), UQ_ELIMIT (store full: map size reached, or the disk
 * or file size limit is full), UQ_ECLOSED, UQ_EIO/UQ_ESYSERR. Nothing of a
 * failed call is applied; the store stays usable. The buffers are only read
 * during the call. */
uq_err uqs_write(uqs_store *s, const uqs_op *ops, size_t n, uq_errmsg *em);
/* The same without waiting: ops are copied, done(arg, ...) is called once
 * later on the committer thread. If this returns an error (bad op, closed),
 * done is never called. */
uq_err uqs_write_async(uqs_store *s, const uqs_op *ops, size_t n, uqs_done_fn done, void *arg, uq_errmsg *em);
/* Wait until every write queued before this call (async ones included)
 * is durable. Errors: UQ_ECLOSED, or UQ_EIO when one of them (or another
 * write that failed meanwhile) could not be committed. Blocks for about one
 * fsync when writes are queued, and for almost nothing when none are. */
uq_err uqs_flush(uqs_store *s, uq_errmsg *em);
/* uqs_flush without waiting: done(arg, err, em) is called once on the
 * committer thread when every write queued before this call is durable
 * (err UQ_EIO if one of them failed meanwhile). If this returns an error
 * (closing), done is never called. */
uq_err uqs_flush_async(uqs_store *s, uqs_done_fn done, void *arg, uq_errmsg *em);
/* Read one value: *out (malloc'ed, owned by the caller; NUL-terminated
 * for convenience, not counted in *out_len). UQ_ENOENT if absent. Any
 * thread; sees every write acknowledged before the call. */
uq_err uqs_get(uqs_store *s, uqs_db db, const void *key, size_t klen, uint8_t **out, size_t *out_len, uq_errmsg *em);
/* Call fn for each record whose key starts with prefix (plen 0: all), in
 * key order, on one consistent snapshot; fn returns non-zero to stop. The
 * pointers given to fn are valid during the call only; fn must not write to
 * the store (reading is fine). */
typedef int (*uqs_each_fn)(void *arg, const void *key, size_t klen, const void *val, size_t vlen);
uq_err uqs_each(uqs_store *s, uqs_db db, const void *prefix, size_t plen, uqs_each_fn fn, void *arg, uq_errmsg *em);

/* ---- process state ---------------------------------------------------- */
/* Durable on return (see uqs_write). pid: a process id, 1..UQS_KEY_MAX bytes. */
uq_err uqs_state_set(uqs_store *s, const char *pid, const void *data, size_t len, uq_errmsg *em);
/* For the kernel's workers, which must not wait on an fsync: data copied,
 * done called after the durable commit (see uqs_done_fn). */
uq_err uqs_state_set_async(uqs_store *s, const char *pid, const void *data, size_t len, uqs_done_fn done, void *arg,
                           uq_errmsg *em);
/* UQ_ENOENT when the process has no state. *out as for uqs_get. */
uq_err uqs_state_get(uqs_store *s, const char *pid, uint8_t **out, size_t *out_len, uq_errmsg *em);
/* Durable on return; clearing absent state is not an error. */
uq_err uqs_state_clear(uqs_store *s, const char *pid, uq_errmsg *em);

/* ---- process table ---------------------------------------------------- */
/* The record is opaque bytes the kernel serializes. Durable on return. */
uq_err uqs_proc_put(uqs_store *s, const char *pid, const void *rec, size_t len, uq_errmsg *em);
uq_err uqs_proc_get(uqs_store *s, const char *pid, uint8_t **out, size_t *out_len, uq_errmsg *em);
/* Deletes the record and the state of the process, in one transaction. */
uq_err uqs_proc_del(uqs_store *s, const char *pid, uq_errmsg *em);
/* Every record, in process id order (pid is not NUL-terminated: plen). */
typedef int (*uqs_proc_fn)(void *arg, const char *pid, size_t plen, const void *rec, size_t len);
uq_err uqs_proc_each(uqs_store *s, uqs_proc_fn fn, void *arg, uq_errmsg *em);

/* ---- watching committed writes (the backup module) -------------------- */
/* fn is called on the committer thread, under the store's queue lock, for
 * each op of every request once its transaction is durable (puts and
 * deletes alike). It must be quick and must not call this store or take a
 * lock held around a call of it. fn NULL: no watcher; once this returns,
 * the previous fn is not called any more. */
typedef void (*uqs_watch_fn)(void *arg, uqs_db db, const void *key, size_t klen);
void uqs_set_watch(uqs_store *s, uqs_watch_fn fn, void *arg);

/* ---- statistics ------------------------------------------------------- */
typedef struct uqs_stats {
    uint64_t commits;   /* transactions committed */
    uint64_t writes;    /* write requests acknowledged */
    uint64_t failures;  /* write requests that failed */
} uqs_stats;
void uqs_get_stats(uqs_store *s, uqs_stats *out);

#endif

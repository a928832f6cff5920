/* The node's filesystem: each app has its own space, <home>/files/<app>/,
 * and a file is reached only through a handle, an unguessable 128-bit id
 * with rights (read, write) recorded in the store. Handles can be cloned,
 * split into a handle with fewer rights, and revoked (with or without what
 * was derived from them). This layer knows nothing of the kernel's
 * capability format: the kernel wraps a handle id into a capability.
 * Every write is durable when it returns (docs/PERSISTENCE.md). */
#ifndef UQ_STORE_FILES_H
#define UQ_STORE_FILES_H

#include "store/store.h"

#define UQS_RIGHT_READ 1u
#define UQS_RIGHT_WRITE 2u
#define UQS_RIGHTS_ALL (UQS_RIGHT_READ | UQS_RIGHT_WRITE)
#define UQS_NAME_MAX 200   /* bytes of a file name (the data file adds ".v<gen>") */
#define UQS_APP_MAX 128    /* bytes of an app name */
#define UQS_HANDLE_HEX 32  /* characters of a handle in text */

typedef struct uqs_files uqs_files;

/* A handle id, passed by value; in text it is 32 lowercase hex digits. */
typedef struct uqs_handle {
    uint8_t id[16];
} uqs_handle;

/* What a handle gives access to. */
typedef struct uqs_handle_info {
    char app[UQS_APP_MAX + 1];
    char name[UQS_NAME_MAX + 1];
    unsigned rights;        /* UQS_RIGHT_* */
    bool derived;           /* made by clone or split (has a parent) */
    uqs_handle parent;      /* valid when derived */
} uqs_handle_info;

/* ---- handles in text ----------------------------------------------------- */
/* UQ_EINVAL unless hex is exactly 32 hex digits. */
uq_err uqs_handle_parse(const char *hex, uqs_handle *out, uq_errmsg *em);
/* out: 33 bytes (32 digits and a NUL). Returns out. */
char *uqs_handle_format(uqs_handle h, char *out);
/* "read", "write", "read,write" or "none" (static strings). */
const char *uqs_rights_name(unsigned rights);

/* ---- open / close ---------------------------------------------------------- */
/* The filesystem of the node whose home is `home`, recording in store s
 * (which must outlive it). Recovers from a crash first: removes data files
 * no record points to (writes that were never acknowledged) and trims the
 * unacknowledged tail of an interrupted append. A record whose data file is
 * missing or short is reported by the calls that reach it (UQ_ECORRUPT,
 * naming the file), not here, so one damaged file does not stop a node. */
uq_err uqs_files_open(uqs_store *s, const char *home, uqs_files **out, uq_errmsg *em);
/* No call may be in progress. NULL is a no-op. */
void uqs_files_close(uqs_files *fs);

/* ---- trusted calls (the kernel, on behalf of the app owning the space) --- */
/* Create file `name` in app's space with data[0..len) and return a new
 * read+write handle. UQ_EINVAL for a bad app or file name (no '/', not
 * starting with '.', no control characters, 1..UQS_NAME_MAX bytes),
 * UQ_EEXIST if the file exists, UQ_ELIMIT if the disk or the store is full.
 * The file and its handle are durable on return. */
uq_err uqs_file_create(uqs_files *fs, const char *app, const char *name, const void *data, size_t len,
                       uqs_handle *out, uq_errmsg *em);
/* A fresh read+write root handle for an existing file of app's space (for
 * the app that owns the space, e.g. after it lost its handles).
 * UQ_ENOENT if there is no such file. */
uq_err uqs_file_open(uqs_files *fs, const char *app, const char *name, uqs_handle *out, uq_errmsg *em);
/* The names of app's files, sorted; *out_names is one malloc'ed block (free
 * it with free()), an array of *out_n strings. No files: n = 0. */
uq_err uqs_file_list(uqs_files *fs, const char *app, char ***out_names, size_t *out_n, uq_errmsg *em);

/* ---- handles written together with more ------------------------------------
 * The calls that make a handle (create, open, clone, split) commit its
 * record (and create's file record) with uqs_write. A caller that must
 * commit more in the same transaction (fs: the grant of the handle's
 * capability, which rewrites the holder's process record) passes a writer
 * to the _with variants: it is called once, with the store, the new
 * handle's id (chosen before the write) and the records, after every check
 * passed (never for a refused call) and under the file's lock; it must
 * apply ops, with its own, atomically and return once they are durable, or
 * return an error with nothing applied (the call then fails with it, as if
 * uqs_write had failed). */
typedef struct uqs_writer {
    uq_err (*write)(void *arg, uqs_store *s, uqs_handle id, const uqs_op *ops, size_t n, uq_errmsg *em);
    void *arg;
} uqs_writer;
uq_err uqs_file_create_with(uqs_files *fs, const char *app, const char *name, const void *data, size_t len,
                            const uqs_writer *w, uqs_handle *out, uq_errmsg *em);
uq_err uqs_file_open_with(uqs_files *fs, const char *app, const char *name, const uqs_writer *w, uqs_handle *out,
                          uq_errmsg *em);
uq_err uqs_handle_clone_with(uqs_files *fs, uqs_handle h, const uqs_writer *w, uqs_handle *out, uq_errmsg *em);
uq_err uqs_handle_split_with(uqs_files *fs, uqs_handle h, unsigned rights, const uqs_writer *w, uqs_handle *out,
                             uq_errmsg *em);
/* The same for the calls that delete handles (remove, revoke): a caller
 * that must commit more with the deletion (fs: the holders' process
 * records, rewritten without the capabilities of the handles that go)
 * passes a deleter, called once under the same locks and conditions with
 * the handles that go, ids[0..nids), and the records to write (their
 * deletions, and remove's file record's); the same contract as uqs_writer.
 * Remove unlinks the data file only once the write succeeded. */
typedef struct uqs_deleter {
    uq_err (*write)(void *arg, uqs_store *s, const uqs_handle *ids, size_t nids, const uqs_op *ops, size_t n,
                    uq_errmsg *em);
    void *arg;
} uqs_deleter;
uq_err uqs_file_remove_with(uqs_files *fs, uqs_handle h, const uqs_deleter *w, size_t *out_n, uq_errmsg *em);
uq_err uqs_handle_revoke_with(uqs_files *fs, uqs_handle h, bool recursive, const uqs_deleter *w, size_t *out_count,
                              uq_errmsg *em);

/* ---- calls through a handle ------------------------------------------------
 * Each checks the handle first: UQ_EPERM if it is unknown or revoked, or
 * lacks the right the call needs (read for reads, size and hash; write for
 * write, append and remove); UQ_ECORRUPT naming the data file if it is
 * missing or shorter than recorded. Writes are durable on return, reads see
 * exactly the acknowledged writes (never a partial one). */
/* Replace the content. */
uq_err uqs_file_write(uqs_files *fs, uqs_handle h, const void *data, size_t len, uq_errmsg *em);
/* Append data: all of it or (on error, or on a crash before the return)
 * none of it. */
uq_err uqs_file_append(uqs_files *fs, uqs_handle h, const void *data, size_t len, uq_errmsg *em);
/* The whole file; *out malloc'ed (owned by the caller), NUL-terminated
 * beyond *out_len. */
uq_err uqs_file_read(uqs_files *fs, uqs_handle h, uint8_t **out, size_t *out_len, uq_errmsg *em);
/* Bytes [off, off+len) clipped to the end of the file (*out_len may be
 * less than len, 0 at or past the end). */
uq_err uqs_file_read_range(uqs_files *fs, uqs_handle h, uint64_t off, size_t len, uint8_t **out, size_t *out_len,
                           uq_errmsg *em);
uq_err uqs_file_size(uqs_files *fs, uqs_handle h, uint64_t *out, uq_errmsg *em);
/* BLAKE2b-256 of the content, 64 lowercase hex digits and a NUL in out[65]. */
uq_err uqs_file_hash(uqs_files *fs, uqs_handle h, char *out, uq_errmsg *em);
/* Remove the file; every handle to it dies with it. */
uq_err uqs_file_remove(uqs_files *fs, uqs_handle h, uq_errmsg *em);
/* The same, telling which handles died: *out_ids (malloc'ed, free() it; NULL
 * when *out_n is 0) lists them, so that their capabilities can go too. */
uq_err uqs_file_remove_ids(uqs_files *fs, uqs_handle h, uqs_handle **out_ids, size_t *out_n, uq_errmsg *em);

/* ---- the handle table ------------------------------------------------------- */
/* What h reaches. UQ_EPERM if unknown or revoked. */
uq_err uqs_handle_info_get(uqs_files *fs, uqs_handle h, uqs_handle_info *out, uq_errmsg *em);
/* A new handle with the same rights, derived from h. */
uq_err uqs_handle_clone(uqs_files *fs, uqs_handle h, uqs_handle *out, uq_errmsg *em);
/* A new handle derived from h with rights, a non-empty subset of h's
 * (UQ_EPERM if h lacks one of them, UQ_EINVAL if rights is empty or has
 * unknown bits). The usual halves: UQS_RIGHT_READ and UQS_RIGHT_WRITE. */
uq_err uqs_handle_split(uqs_files *fs, uqs_handle h, unsigned rights, uqs_handle *out, uq_errmsg *em);
/* Revoke h; with recursive, every handle derived from it (transitively) as
 * well. Handles h was derived from are untouched. UQ_EPERM if h is unknown.
 * *out_count (may be NULL): how many handles were revoked. */
uq_err uqs_handle_revoke(uqs_files *fs, uqs_handle h, bool recursive, size_t *out_count, uq_errmsg *em);
/* The same, telling which handles were revoked: *out_ids (malloc'ed, free()
 * it; h first) lists the *out_count of them. */
uq_err uqs_handle_revoke_ids(uqs_files *fs, uqs_handle h, bool recursive, uqs_handle **out_ids, size_t *out_count,
                             uq_errmsg *em);

#endif

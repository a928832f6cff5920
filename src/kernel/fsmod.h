/* The filesystem module: a process of the node named `fs` that serves the
 * file store (store/files.h) to apps, with file handles as capabilities.
 *
 * Each app (the requesting process's id) has its own space,
 * <home>/files/<process id>/. Saving a file returns a handle; a handle is a
 * capability issued by node@fs with params
 *     {"handle":"<32 hex>","rights":"read"|"write"|"read-write"}
 * granted to the process that asked. Every operation on a handle needs the
 * requesting process to hold that capability with the right it needs (and
 * the store to know the handle). A process shares a handle by attaching the
 * capability to a message (send_caps, issuer "fs"), shares half of it by
 * splitting it first, and a revocation removes the capability from every
 * holder. `fs` is public (no messaging capability needed) and is served by
 * a thread of its own: file I/O and fsync never run on the scheduler's
 * workers. Requests and responses: docs/PERSISTENCE.md, "Files". */
#ifndef UQ_FSMOD_H
#define UQ_FSMOD_H

#include "kernel/kernel.h"
#include "store/files.h"

#define UQI_FS_PROCESS "fs"

typedef struct uqi_fsmod uqi_fsmod;

/* Start serving: creates the public host port `fs` on n and its thread.
 * files must outlive the module. UQ_EEXIST if a process named fs exists.
 * Capabilities issued by an earlier fs of this node (kept by
 * uqi_fsmod_stop) are taken over. */
uq_err uqi_fsmod_start(uqi_node *n, uqs_files *files, uqi_fsmod **out, uq_errmsg *em);
/* Stop: finish the request in progress, end the thread, remove the port.
 * What fs issued is kept (not revoked) for the next fs of this node. Call
 * before uqi_node_stop and before uqs_files_close. NULL is a no-op. */
void uqi_fsmod_stop(uqi_fsmod *f);

/* The capability params of handle hex with rights (UQS_RIGHT_*), canonical
 * JSON, into out (at least UQI_FS_PARAMS_MAX bytes). */
#define UQI_FS_PARAMS_MAX 80
void uqi_fsmod_cap_params(const char *hex, unsigned rights, char *out);
/* "read", "write", "read-write" (the capability's spelling), or NULL. */
const char *uqi_fsmod_rights_text(unsigned rights);

#endif

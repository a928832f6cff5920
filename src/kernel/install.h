/* Packages: a manifest names processes, their wasm files, on_exit, public,
 * and the capabilities each asks for. Installing describes the request in
 * plain words for the user to approve, then installs all or nothing.
 * Format: docs/CAPABILITIES.md ("Install-time requests"). */
#ifndef UQ_INSTALL_H
#define UQ_INSTALL_H

#include "kernel/kernel.h"

typedef struct uqi_pkg uqi_pkg;

/* Read and check a manifest (wasm paths are relative to its directory). */
uq_err uqi_pkg_load(const char *manifest_path, const char *node_name, uqi_pkg **out, uq_errmsg *em);
void uqi_pkg_free(uqi_pkg *p);
/* What the package asks for, in plain words, for the approval prompt (malloc'ed). */
char *uqi_pkg_describe(const uqi_pkg *p);
/* Are all of the package's processes on the node already (it came back
 * with the node's store)? */
bool uqi_pkg_installed(uqi_node *n, const uqi_pkg *p);
const char *uqi_pkg_name(const uqi_pkg *p);
/* Install and run every process, with the capabilities asked for, granted
 * by `installer` (who must hold them: the terminal holds everything). All
 * or nothing: on failure nothing of the package is left. On success the
 * processes' records are durable (uqi_node_sync): a node killed right after
 * brings them back. */
uq_err uqi_pkg_install(uqi_node *n, uqi_kproc *installer, const uqi_pkg *p, uq_errmsg *em);

#endif

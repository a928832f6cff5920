/* The host's allowlist of imports: every function a guest may import, by
 * module, name and exact type. wasm2c does not type-check imports, so a module
 * is checked against this table before it is translated. */
#ifndef UQ_HOSTAPI_H
#define UQ_HOSTAPI_H

#include "engine/wasm_parse.h"

typedef struct uqi_hostfn {
    const char *module;
    const char *name;
    const char *sig;     /* same notation as uqi_wasm_functype.sig */
} uqi_hostfn;

/* Check every import of info; on refusal em names the first offenders. */
uq_err uqi_hostapi_check(const uqi_wasm_info *info, uq_errmsg *em);
const uqi_hostfn *uqi_hostapi_find(const char *module, const char *name);
/* Render a signature such as "iiI:i" as "(i32, i32, i64) -> i32". */
void uqi_sig_pretty(const char *sig, char *buf, size_t cap);

#endif

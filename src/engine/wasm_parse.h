/* A small reader of the WebAssembly binary format: just enough of the module
 * (types, imports, memories, exports) to check it against the host before it
 * is translated. Full validation is left to wasm2c, run in a child process. */
#ifndef UQ_WASM_PARSE_H
#define UQ_WASM_PARSE_H

#include "util/util.h"

#define UQI_WASM_MAX_NAME 256   /* longest import/export name we accept */

typedef struct uqi_wasm_functype {
    char sig[48];   /* e.g. "iiIi:i" (i=i32 I=i64 f=f32 F=f64 v=v128 r=ref) */
} uqi_wasm_functype;

typedef struct uqi_wasm_import {
    char module[UQI_WASM_MAX_NAME];
    char name[UQI_WASM_MAX_NAME];
    uint8_t kind;       /* 0 func, 1 table, 2 memory, 3 global, 4 tag */
    uint32_t type_index; /* for functions */
} uqi_wasm_import;

typedef struct uqi_wasm_export {
    char name[UQI_WASM_MAX_NAME];
    uint8_t kind;
    uint32_t index;
} uqi_wasm_export;

typedef struct uqi_wasm_info {
    uint32_t ntypes;
    uqi_wasm_functype *types;
    uint32_t nimports;
    uqi_wasm_import *imports;
    uint32_t nfuncs_imported;
    uint32_t nfuncs_defined;
    uint32_t *func_type;     /* type index of every function (imported first) */
    uint32_t nexports;
    uqi_wasm_export *exports;
    uint32_t nmemories;      /* defined memories */
    uint32_t mem_min_pages;  /* of memory 0 */
    uint32_t mem_max_pages;  /* of memory 0; 65536 when absent */
    bool mem_has_max;
} uqi_wasm_info;

/* Parse bytes[0..len). On success *out is filled and must be released with
 * uqi_wasm_info_fini(). On failure nothing is allocated and em says where. */
uq_err uqi_wasm_parse(const uint8_t *bytes, size_t len, uqi_wasm_info *out, uq_errmsg *em);
void uqi_wasm_info_fini(uqi_wasm_info *info);

/* The signature of function index fidx, or NULL when out of range. */
const char *uqi_wasm_func_sig(const uqi_wasm_info *info, uint32_t fidx);
/* The export named name of the given kind, or NULL. */
const uqi_wasm_export *uqi_wasm_find_export(const uqi_wasm_info *info, const char *name, uint8_t kind);

#endif

/* Loading a module: parse and check the wasm against the host allowlist,
 * translate it with wasm2c and compile it with the system C compiler in a
 * child process with limits, cache the shared object by content hash (and
 * toolchain), and dlopen it. Loaded modules are shared and never unloaded. */
#ifndef UQ_MODULE_H
#define UQ_MODULE_H

#include <pthread.h>

#include "util/util.h"

#define UQI_MODULE_KEEP_BYTES (256 * 1024)

typedef struct uqi_module {
    struct uqi_module *next;
    uint8_t hash[32];
    char hex[65];
    void *dl;
    size_t inst_size;
    void (*instantiate)(void *inst, void *host);
    void (*free)(void *inst);
    void (*start)(void *inst);
    uint32_t mem_min_pages, mem_max_pages;
    bool compiled;          /* this engine compiled it (a cache miss) */
    bool persisted;         /* the kernel stored its bytes (node lock) */
    uint8_t *wasm;          /* its bytes, if at most UQI_MODULE_KEEP_BYTES: found again by comparing them */
    size_t wasm_len;
    double compile_seconds;
} uqi_module;

typedef struct uqi_engine {
    char *cache_dir;        /* where compiled modules are kept */
    char toolchain[768];    /* part of every cache key */
    char cc[64];            /* C compiler command */
    int opt_level;          /* -O level for guest code */
    unsigned compile_timeout_s;
    uint64_t compile_mem_limit;
    bool progress;          /* show progress of slow compiles on stderr */
    pthread_mutex_t lock;
    uqi_module *mods;
    uint64_t compiles, cache_hits;
} uqi_engine;

/* Set up an engine that keeps compiled code in cache_dir (created). */
uq_err uqi_engine_init(uqi_engine *e, const char *cache_dir, uq_errmsg *em);
void uqi_engine_fini(uqi_engine *e);

/* Load the module in wasm[0..len); label names it in messages. *out stays
 * owned by the engine. */
uq_err uqi_engine_load(uqi_engine *e, const uint8_t *wasm, size_t len, const char *label,
                       uqi_module **out, uq_errmsg *em);

/* Is m the module of wasm[0..len), by its kept bytes? No lock: m must have
 * been returned by uqi_engine_load before, on this thread or one this
 * thread has synchronized with since (its kept bytes, if any, were set
 * then, and never change). A spawner's hint for its next spawn
 * of the same bytes (not counted in cache_hits). */
bool uqi_module_same(const uqi_module *m, const uint8_t *wasm, size_t len);

/* The default cache directory for `uqbar run`: $UQBAR_CACHE, else
 * $XDG_CACHE_HOME/uqbar, else ~/.cache/uqbar. Returned string is malloc'ed. */
char *uqi_default_cache_dir(void);

/* Mangle a wasm name as wasm2c 1.0.32 does in symbol names. */
void uqi_wasm2c_mangle(const char *name, char *out, size_t cap);

#endif

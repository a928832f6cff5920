/* Per-thread caches of the blocks a spawn allocates and an exit frees (the
 * kernel's process record, the instance block). They are over glibc's
 * thread-cache limit (1 KiB), so each malloc and free went through its
 * bins and consolidation (about a tenth of a spawn from a process). A
 * thread keeps up to BLOCKS_MAX freed blocks and hands one back for a
 * request of exactly its size; a spawner's children end on its worker, so
 * the blocks circulate on one thread. Off under AddressSanitizer, which
 * should see every use after free. */
#include <pthread.h>
#include <stdlib.h>

#include "util/util.h"

#if defined(__SANITIZE_ADDRESS__)
#define BLOCKS_MAX 0
#else
#define BLOCKS_MAX 16
#endif

typedef struct block_cache {
    int n;
    size_t size[BLOCKS_MAX + 1];
    void *p[BLOCKS_MAX + 1];
} block_cache;

static _Thread_local block_cache bc;
static pthread_key_t bc_key; /* for its destructor only: a thread's blocks are freed when it ends */
static pthread_once_t bc_once = PTHREAD_ONCE_INIT;

static void bc_drain(void *arg)
{
    block_cache *c = arg;
    for (int i = 0; i < c->n; i++) free(c->p[i]);
    c->n = 0;
}

static void bc_key_make(void) { UQ_VERIFY(pthread_key_create(&bc_key, bc_drain) == 0); }

void *uqi_block_get(size_t size)
{
    for (int i = bc.n - 1; i >= 0; i--) {
        if (bc.size[i] != size) continue;
        void *p = bc.p[i];
        bc.n--;
        bc.p[i] = bc.p[bc.n];
        bc.size[i] = bc.size[bc.n];
        return p;
    }
    return uqi_xmalloc(size);
}

void uqi_block_put(void *p, size_t size)
{
    if (!p) return;
    if (bc.n >= BLOCKS_MAX) {
        free(p);
        return;
    }
    static _Thread_local bool keyed;
    if (UQ_UNLIKELY(!keyed)) {
        pthread_once(&bc_once, bc_key_make);
        pthread_setspecific(bc_key, &bc);
        keyed = true;
    }
    bc.size[bc.n] = size;
    bc.p[bc.n++] = p;
}

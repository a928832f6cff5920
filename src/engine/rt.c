/* The wasm-rt.h API for wasm2c-generated code, written for uqbar. Do not link
 * Debian's libwasm-rt-impl: it keeps one global trap jmp_buf, pays a
 * sigprocmask per call, turns any SIGSEGV into a guest trap and leaks the
 * memory reservation of every freed instance (see docs/ENGINE.md). */
#define _GNU_SOURCE /* PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <wasm-rt.h>

#include "engine/proc.h"
#include "engine/rt.h"

_Static_assert((int)WASM_RT_TRAP_OOB == (int)UQI_TRAP_OOB, "trap codes");
_Static_assert((int)WASM_RT_TRAP_UNREACHABLE == (int)UQI_TRAP_UNREACHABLE, "trap codes");
_Static_assert((int)WASM_RT_TRAP_CALL_INDIRECT == (int)UQI_TRAP_CALL_INDIRECT, "trap codes");
_Static_assert((int)WASM_RT_TRAP_EXHAUSTION == (int)UQI_TRAP_EXHAUSTION, "trap codes");

#define PAGE ((uint64_t)65536)

static atomic_uint_fast64_t committed;

uint64_t uqi_rt_committed_bytes(void)
{
    return atomic_load(&committed);
}

const char *uqi_trap_text(int code)
{
    switch (code) {
    case UQI_TRAP_OOB: return "out of bounds memory access";
    case UQI_TRAP_INT_OVERFLOW: return "integer overflow";
    case UQI_TRAP_DIV_BY_ZERO: return "integer divide by zero";
    case UQI_TRAP_INVALID_CONVERSION: return "invalid conversion to integer";
    case UQI_TRAP_UNREACHABLE: return "unreachable executed";
    case UQI_TRAP_CALL_INDIRECT: return "indirect call type mismatch (or null/out-of-range table entry)";
    case UQI_TRAP_UNCAUGHT_EXCEPTION: return "uncaught exception";
    case UQI_TRAP_EXHAUSTION: return "call stack exhausted";
    case UQI_UNWIND_EXIT: return "exited";
    case UQI_UNWIND_RESOURCE: return "resource limit exceeded";
    case UQI_UNWIND_KILLED: return "killed";
    default: return "unknown trap";
    }
}

/* ---- init ---------------------------------------------------------------- */
static bool rt_initialized;
void wasm_rt_init(void) { rt_initialized = true; }
bool wasm_rt_is_initialized(void) { return rt_initialized; }
void wasm_rt_free(void) { rt_initialized = false; }

const char *wasm_rt_strerror(wasm_rt_trap_t trap)
{
    return uqi_trap_text((int)trap);
}

/* ---- traps ----------------------------------------------------------------- */
void wasm_rt_trap(wasm_rt_trap_t code)
{
    uqi_task *t = uqi_task_current();
    UQ_VERIFY(t != NULL && t->in_guest);
    uqi_task_unwind(t, code == WASM_RT_TRAP_NONE ? UQI_TRAP_UNREACHABLE : (int)code);
}

static uqi_proc *cur_proc(void)
{
    uqi_task *t = uqi_task_current();
    UQ_VERIFY(t != NULL);
    return (uqi_proc *)t;
}

/* ---- function types -------------------------------------------------------- */
/* Interned for the life of the host: the index wasm2c compares in
 * call_indirect must mean the same signature across every loaded module. */
typedef struct { uint32_t np, nr; wasm_rt_type_t t[]; } functype;
static pthread_mutex_t types_lock = PTHREAD_MUTEX_INITIALIZER;
static functype **types;
static uint32_t ntypes, types_cap;

uint32_t wasm_rt_register_func_type(uint32_t params, uint32_t results, ...)
{
    uint32_t n = params + results;
    functype *ft = uqi_xmalloc(sizeof *ft + n * sizeof(wasm_rt_type_t));
    ft->np = params;
    ft->nr = results;
    va_list ap;
    va_start(ap, results);
    for (uint32_t i = 0; i < n; i++) ft->t[i] = va_arg(ap, wasm_rt_type_t);
    va_end(ap);
    pthread_mutex_lock(&types_lock);
    for (uint32_t i = 0; i < ntypes; i++) {
        functype *o = types[i];
        if (o->np == params && o->nr == results && memcmp(o->t, ft->t, n * sizeof(wasm_rt_type_t)) == 0) {
            pthread_mutex_unlock(&types_lock);
            free(ft);
            return i + 1; /* 0 is the null funcref's type */
        }
    }
    if (ntypes == types_cap) {
        types_cap = types_cap ? types_cap * 2 : 64;
        functype **nt = realloc(types, types_cap * sizeof *nt);
        UQ_VERIFY(nt != NULL);
        types = nt;
    }
    types[ntypes++] = ft;
    uint32_t id = ntypes;
    pthread_mutex_unlock(&types_lock);
    return id;
}

/* ---- memories ---------------------------------------------------------------- */
/* Freed reservations are pooled ready for the next instance: their first
 * `rw` bytes are readable and writable, the rest PROT_NONE. An instance
 * whose initial size equals a pooled entry's `rw` then starts with no
 * mprotect, madvise or page fault on pages the last one touched; before,
 * every spawn paid mprotect + madvise + mprotect, each a TLB shootdown
 * across the node's threads.
 *
 * A freed memory must be zero before it is reused. Cleaning it: up to
 * SCAN_MAX bytes, each 4 KiB page is compared with zero and only pages the
 * guest left non-zero are cleared, with no system call; beyond that,
 * madvise (MADV_DONTNEED) drops the pages and keeps the access. Comparing a
 * 64 KiB memory costs about 1.2 us here, a quarter of a spawn, so it is
 * done off the freeing worker when it can be: a freed memory enters the
 * pool *dirty*, and a cleaner thread (started on the first free) cleans
 * dirty entries in batches, woken once per CLEAN_BATCH of them (a wake-up
 * costs a system call; a worker must not pay one per exit). reserve()
 * prefers clean entries and cleans a dirty one itself when no clean one is
 * left, so a memory is never handed out dirty, and with the cleaner starved
 * of CPU a spawn costs what it did before. Pages never touched read as the
 * shared zero page, so a pooled entry keeps at most SCAN_MAX bytes resident
 * (64 entries: 8 MiB). */
#define MEM_POOL_MAX 64
#define SCAN_MAX ((uint64_t)128 << 10)
#define OS_PAGE 4096
#define CLEAN_BATCH 16
#define MEM_STOCK 32 /* with the cleaner: map fresh rather than clean, up to this many */

typedef struct pooled_mem {
    uint8_t *lo;
    uint64_t rw;   /* [lo, lo + rw) is PROT_READ|WRITE, and zero unless dirty */
    bool dirty;
} pooled_mem;

static pthread_mutex_t mem_pool_lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP; /* held briefly: spin, do not sleep */
static pthread_cond_t cleaner_cond = PTHREAD_COND_INITIALIZER;
/* Clean and dirty entries apart, each most recent last (under
 * mem_pool_lock): with one array, a spawn scanned past the dirty entries
 * of the last exits to find a clean one (2-3 % of a spawn). Together at
 * most MEM_POOL_MAX; an entry out with the cleaner is in neither. */
static pooled_mem clean_pool[MEM_POOL_MAX], dirty_pool[MEM_POOL_MAX];
static int n_clean, n_dirty;
static int mem_mapped;                 /* reservations mapped, pooled or in use */
static bool cleaner_on, cleaner_waits; /* under mem_pool_lock */
static pthread_once_t cleaner_once = PTHREAD_ONCE_INIT;

/* memcmp against a zero page runs at vector speed; a scalar loop took
 * 2.3 us for 64 KiB. Untouched pages read the kernel's zero page, which
 * stays in the cache. */
static const uint8_t zero_page[OS_PAGE];

static bool page_is_zero(const uint8_t *p)
{
    return memcmp(p, zero_page, OS_PAGE) == 0;
}

/* Which pages of [lo, lo + len) have a page-table entry (bit 63 present,
 * 62 swapped: any non-empty entry sets one): /proc/self/pagemap, one read
 * for the range. A page with neither was never touched since it was
 * mapped, or was dropped: reading it gives zeros, and comparing it costs
 * a TLB miss and a fault-free map of the zero page (1-2 us for the 15
 * pages of a 64 KiB memory a small guest never touches). False if the
 * file cannot be read: then every page is compared. */
static int pagemap_fd = -2; /* -2: not opened yet; -1: unavailable */
static pthread_once_t pagemap_once = PTHREAD_ONCE_INIT;
static void pagemap_open(void) { pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC); }

static bool pages_mapped(uint8_t *lo, uint64_t len, uint64_t *ent)
{
    pthread_once(&pagemap_once, pagemap_open);
    if (pagemap_fd < 0) return false;
    size_t bytes = (size_t)(len / OS_PAGE) * sizeof *ent;
    off_t at = (off_t)((uintptr_t)lo / OS_PAGE * sizeof *ent);
    /* the system call itself: glibc's pread is a cancellation point and
     * turns asynchronous cancellation on and off around it (2-3 % of a
     * spawn); no thread here is ever cancelled */
    return syscall(SYS_pread64, pagemap_fd, ent, bytes, at) == (long)bytes;
}

/* Make [lo, lo + used) zero again, keeping its access. */
static void clean(uint8_t *lo, uint64_t used)
{
    if (used <= SCAN_MAX) {
        uint64_t ent[SCAN_MAX / OS_PAGE];
        bool known = pages_mapped(lo, used, ent);
        for (uint64_t off = 0, i = 0; off < used; off += OS_PAGE, i++) {
            if (known && !(ent[i] & (3ull << 62))) continue; /* no entry: reads as zero */
            if (!page_is_zero(lo + off)) memset(lo + off, 0, OS_PAGE);
        }
    } else {
        madvise(lo, used, MADV_DONTNEED);
    }
}

/* Take entry k out of one of the pools (lock held). */
static pooled_mem pool_take(pooled_mem *pool, int *n, int k)
{
    pooled_mem e = pool[k];
    pool[k] = pool[--*n];
    return e;
}

static void *cleaner_main(void *arg)
{
    (void)arg;
    pooled_mem batch[CLEAN_BATCH];
    pthread_mutex_lock(&mem_pool_lock);
    for (;;) {
        while (!n_dirty) {
            cleaner_waits = true;
            pthread_cond_wait(&cleaner_cond, &mem_pool_lock);
            cleaner_waits = false;
        }
        /* Up to a batch of dirty entries out in one locked step, cleaned,
         * and back in one: the workers take this lock on every spawn and
         * exit, and one that found it held slept on it (a context switch
         * per spawn). A bounded batch: what is out is neither clean nor
         * there to be cleaned inline, and a worker that finds nothing maps
         * a fresh reservation. */
        int nb = n_dirty < CLEAN_BATCH ? n_dirty : CLEAN_BATCH;
        n_dirty -= nb;
        memcpy(batch, &dirty_pool[n_dirty], (size_t)nb * sizeof batch[0]);
        pthread_mutex_unlock(&mem_pool_lock);
        for (int i = 0; i < nb; i++) {
            clean(batch[i].lo, batch[i].rw);
            batch[i].dirty = false;
        }
        pthread_mutex_lock(&mem_pool_lock);
        int i = 0;
        while (i < nb && n_clean + n_dirty < MEM_POOL_MAX) clean_pool[n_clean++] = batch[i++];
        if (i < nb) {
            mem_mapped -= nb - i;
            pthread_mutex_unlock(&mem_pool_lock);
            for (; i < nb; i++) munmap(batch[i].lo, UQI_MEM_RESERVE);
            pthread_mutex_lock(&mem_pool_lock);
        }
    }
    return NULL;
}

static void cleaner_start(void)
{
    /* No signal for this thread: SIGURG and guest faults concern workers. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 64 << 10);
    pthread_t t;
    bool ok = pthread_create(&t, &a, cleaner_main, NULL) == 0;
    pthread_attr_destroy(&a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_lock(&mem_pool_lock);
    cleaner_on = ok; /* else every free cleans its own memory */
    pthread_mutex_unlock(&mem_pool_lock);
}

static void unmapped(void)
{
    pthread_mutex_lock(&mem_pool_lock);
    mem_mapped--;
    pthread_mutex_unlock(&mem_pool_lock);
}

/* A reservation whose first `want` bytes are writable and zero, the rest
 * inaccessible; NULL if none can be had. */
static uint8_t *reserve(uint64_t want)
{
    pooled_mem e = {NULL, 0, false};
    pthread_mutex_lock(&mem_pool_lock);
    /* the most recent (warm) clean entry of the same size; else a dirty one
     * of the same size; else the most recent clean one; else the most
     * recent dirty one */
    int k = n_clean - 1;
    while (k >= 0 && clean_pool[k].rw != want) k--;
    bool dirty = false;
    if (k < 0) {
        k = n_dirty - 1;
        while (k >= 0 && dirty_pool[k].rw != want) k--;
        dirty = k >= 0;
        if (k < 0 && n_clean) k = n_clean - 1;
        else if (k < 0 && n_dirty) dirty = true, k = n_dirty - 1;
    }
    /* Only dirty ones: while there are few reservations, a fresh one
     * builds the stock that lets the cleaner stay ahead (a spawner whose
     * children end at once would otherwise always find only its last
     * child's memory, dirty). */
    if (k >= 0 && !(dirty && cleaner_on && mem_mapped < MEM_STOCK))
        e = dirty ? pool_take(dirty_pool, &n_dirty, k) : pool_take(clean_pool, &n_clean, k);
    if (!e.lo) mem_mapped++;
    pthread_mutex_unlock(&mem_pool_lock);
    if (e.dirty) clean(e.lo, e.rw);
    if (!e.lo) {
        e.lo = mmap(NULL, UQI_MEM_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (e.lo == MAP_FAILED) {
            unmapped();
            return NULL;
        }
    }
    if (e.rw > want) { /* shrink: drop the pages and the access past want */
        madvise(e.lo + want, e.rw - want, MADV_DONTNEED);
        if (mprotect(e.lo + want, e.rw - want, PROT_NONE) != 0) goto fail;
    } else if (e.rw < want && mprotect(e.lo + e.rw, want - e.rw, PROT_READ | PROT_WRITE) != 0) {
        goto fail;
    }
    return e.lo;
fail:
    munmap(e.lo, UQI_MEM_RESERVE);
    unmapped();
    return NULL;
}

/* Back to the pool: dirty, for the cleaner thread; or zeroed here when
 * there is no cleaner; or unmapped when the pool is full. */
static void unreserve(uint8_t *lo, uint64_t used)
{
    pthread_once(&cleaner_once, cleaner_start);
    pthread_mutex_lock(&mem_pool_lock);
    bool room = n_clean + n_dirty < MEM_POOL_MAX, later = cleaner_on, wake = false;
    if (room && later) {
        dirty_pool[n_dirty++] = (pooled_mem){lo, used, true};
        wake = n_dirty >= CLEAN_BATCH && cleaner_waits;
        if (wake) cleaner_waits = false; /* one signal per batch */
    }
    pthread_mutex_unlock(&mem_pool_lock);
    if (room && later) {
        if (wake) pthread_cond_signal(&cleaner_cond);
        return;
    }
    if (!room) {
        munmap(lo, UQI_MEM_RESERVE);
        unmapped();
        return;
    }
    clean(lo, used);
    pthread_mutex_lock(&mem_pool_lock);
    if (n_clean + n_dirty < MEM_POOL_MAX) {
        clean_pool[n_clean++] = (pooled_mem){lo, used, false};
        lo = NULL;
    }
    pthread_mutex_unlock(&mem_pool_lock);
    if (lo) {
        munmap(lo, UQI_MEM_RESERVE);
        unmapped();
    }
}

static uint64_t cap_pages(uqi_proc *p, uint32_t max_pages)
{
    uint64_t cap = p->mem_cap_bytes ? p->mem_cap_bytes / PAGE : 65536;
    return cap < max_pages ? cap : max_pages;
}

void wasm_rt_allocate_memory(wasm_rt_memory_t *mem, uint32_t initial, uint32_t max)
{
    uqi_proc *p = cur_proc();
    memset(mem, 0, sizeof *mem);
    if (max > 65536) max = 65536;
    if (initial > cap_pages(p, max)) {
        snprintf(p->why, sizeof p->why, "initial memory of %u pages exceeds the limit of %llu pages",
                 initial, (unsigned long long)cap_pages(p, max));
        uqi_task_unwind(&p->task, UQI_UNWIND_RESOURCE);
    }
    uint64_t bytes = (uint64_t)initial * PAGE;
    uint8_t *lo = reserve(bytes);
    if (!lo) {
        snprintf(p->why, sizeof p->why, "cannot reserve address space for %u pages of linear memory", initial);
        uqi_task_unwind(&p->task, UQI_UNWIND_RESOURCE);
    }
    mem->data = lo;
    mem->pages = initial;
    mem->max_pages = max;
    mem->size = (uint32_t)(bytes > UINT32_MAX ? UINT32_MAX : bytes);
    atomic_fetch_add(&committed, bytes);
    if (!p->mem) {
        p->mem = mem;
        p->task.mem_lo = lo;
        p->task.mem_hi = lo + UQI_MEM_RESERVE;
    }
}

uint32_t wasm_rt_grow_memory(wasm_rt_memory_t *mem, uint32_t delta)
{
    uqi_proc *p = cur_proc();
    uint32_t old = mem->pages;
    uint64_t want = (uint64_t)old + delta;
    if (want > cap_pages(p, mem->max_pages)) {
        p->grow_refused++;
        return UINT32_MAX;
    }
    if (delta == 0) return old;
    if (mprotect(mem->data + (uint64_t)old * PAGE, (uint64_t)delta * PAGE, PROT_READ | PROT_WRITE) != 0)
        return UINT32_MAX;
    mem->pages = (uint32_t)want;
    uint64_t bytes = want * PAGE;
    mem->size = (uint32_t)(bytes > UINT32_MAX ? UINT32_MAX : bytes);
    atomic_fetch_add(&committed, (uint64_t)delta * PAGE);
    return old;
}

void wasm_rt_free_memory(wasm_rt_memory_t *mem)
{
    if (!mem->data) return;
    uint64_t used = (uint64_t)mem->pages * PAGE;
    atomic_fetch_sub(&committed, used);
    unreserve(mem->data, used);
    mem->data = NULL;
}

/* ---- tables ------------------------------------------------------------------ */
#define MAX_TABLE_ELEMS 10000000u

static void *table_alloc(uint32_t n, size_t elem)
{
    uqi_proc *p = cur_proc();
    if (n > MAX_TABLE_ELEMS) {
        snprintf(p->why, sizeof p->why, "table of %u elements exceeds the limit of %u", n, MAX_TABLE_ELEMS);
        uqi_task_unwind(&p->task, UQI_UNWIND_RESOURCE);
    }
    void *d = calloc(n ? n : 1, elem);
    if (!d) {
        snprintf(p->why, sizeof p->why, "out of memory for a table of %u elements", n);
        uqi_task_unwind(&p->task, UQI_UNWIND_RESOURCE);
    }
    return d;
}

void wasm_rt_allocate_funcref_table(wasm_rt_funcref_table_t *t, uint32_t elements, uint32_t max)
{
    t->data = table_alloc(elements, sizeof *t->data);
    t->size = elements;
    t->max_size = max;
}

void wasm_rt_allocate_externref_table(wasm_rt_externref_table_t *t, uint32_t elements, uint32_t max)
{
    t->data = table_alloc(elements, sizeof *t->data);
    t->size = elements;
    t->max_size = max;
}

void wasm_rt_free_funcref_table(wasm_rt_funcref_table_t *t)
{
    free(t->data);
    t->data = NULL;
}

void wasm_rt_free_externref_table(wasm_rt_externref_table_t *t)
{
    free(t->data);
    t->data = NULL;
}

#define GROW_TABLE(type)                                                                       \
    uint32_t wasm_rt_grow_##type##_table(wasm_rt_##type##_table_t *t, uint32_t delta,          \
                                         wasm_rt_##type##_t init)                              \
    {                                                                                          \
        uint32_t old = t->size;                                                                \
        uint64_t want = (uint64_t)old + delta;                                                 \
        if (want > t->max_size || want > MAX_TABLE_ELEMS) return UINT32_MAX;                   \
        if (delta == 0) return old;                                                            \
        void *nd = realloc(t->data, want * sizeof *t->data);                                   \
        if (!nd) return UINT32_MAX;                                                            \
        t->data = nd;                                                                          \
        for (uint64_t i = old; i < want; i++) t->data[i] = init;                               \
        t->size = (uint32_t)want;                                                              \
        return old;                                                                            \
    }
GROW_TABLE(funcref)
GROW_TABLE(externref)

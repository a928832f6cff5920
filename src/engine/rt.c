/* The wasm-rt.h API for wasm2c-generated code, written for uqbar. Do not link
 * Debian's libwasm-rt-impl: it keeps one global trap jmp_buf, pays a
 * sigprocmask per call, turns any SIGSEGV into a guest trap and leaks the
 * memory reservation of every freed instance (see docs/ENGINE.md). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
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
 * `rw` bytes are readable, writable and all zero, the rest PROT_NONE. A
 * memory is cleaned when it is freed (on the worker that ran it): up to
 * SCAN_MAX bytes, each 4 KiB page is checked and only pages the guest left
 * non-zero are cleared, with no system call; beyond that, madvise
 * (MADV_DONTNEED) drops the pages and keeps the access. An instance whose
 * initial size equals a pooled entry's `rw` then starts with no mprotect,
 * madvise or page fault on pages the last one touched; before, every spawn
 * paid mprotect + madvise + mprotect, each a TLB shootdown across the
 * node's threads. Pages never touched read as the shared zero page, so a
 * pooled entry keeps at most SCAN_MAX bytes resident (64 entries: 8 MiB). */
#define MEM_POOL_MAX 64
#define SCAN_MAX ((uint64_t)128 << 10)
#define OS_PAGE 4096

typedef struct pooled_mem {
    uint8_t *lo;
    uint64_t rw; /* [lo, lo + rw) is PROT_READ|WRITE and zero */
} pooled_mem;

static pthread_mutex_t mem_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pooled_mem mem_pool[MEM_POOL_MAX];
static int mem_pool_n;

/* A reservation whose first `want` bytes are writable and zero, the rest
 * inaccessible; NULL if none can be had. */
static uint8_t *reserve(uint64_t want)
{
    pooled_mem e = {NULL, 0};
    pthread_mutex_lock(&mem_pool_lock);
    if (mem_pool_n) {
        int k = mem_pool_n - 1; /* the most recent (warm) entry, unless another fits exactly */
        for (int i = mem_pool_n - 1; i >= 0; i--)
            if (mem_pool[i].rw == want) { k = i; break; }
        e = mem_pool[k];
        mem_pool[k] = mem_pool[--mem_pool_n];
    }
    pthread_mutex_unlock(&mem_pool_lock);
    if (!e.lo) {
        e.lo = mmap(NULL, UQI_MEM_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (e.lo == MAP_FAILED) return NULL;
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
    return NULL;
}

/* memcmp against a zero page runs at vector speed (a 64 KiB memory in about
 * 0.3 us); a scalar loop took 2.3 us. Untouched pages read the kernel's
 * zero page, which stays in the cache. */
static const uint8_t zero_page[OS_PAGE];

static bool page_is_zero(const uint8_t *p)
{
    return memcmp(p, zero_page, OS_PAGE) == 0;
}

/* Back to the pool with [lo, lo + used) zeroed (accessible), or unmapped
 * when the pool is full. */
static void unreserve(uint8_t *lo, uint64_t used)
{
    pthread_mutex_lock(&mem_pool_lock);
    bool room = mem_pool_n < MEM_POOL_MAX;
    pthread_mutex_unlock(&mem_pool_lock);
    if (!room) {
        munmap(lo, UQI_MEM_RESERVE);
        return;
    }
    if (used <= SCAN_MAX) {
        for (uint64_t off = 0; off < used; off += OS_PAGE)
            if (!page_is_zero(lo + off)) memset(lo + off, 0, OS_PAGE);
    } else {
        madvise(lo, used, MADV_DONTNEED);
    }
    pthread_mutex_lock(&mem_pool_lock);
    if (mem_pool_n < MEM_POOL_MAX) {
        mem_pool[mem_pool_n].lo = lo;
        mem_pool[mem_pool_n].rw = used;
        mem_pool_n++;
        lo = NULL;
    }
    pthread_mutex_unlock(&mem_pool_lock);
    if (lo) munmap(lo, UQI_MEM_RESERVE);
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

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
#define MEM_POOL_MAX 64
static pthread_mutex_t mem_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *mem_pool[MEM_POOL_MAX];
static int mem_pool_n;

static uint8_t *reserve(void)
{
    pthread_mutex_lock(&mem_pool_lock);
    uint8_t *p = mem_pool_n ? mem_pool[--mem_pool_n] : NULL;
    pthread_mutex_unlock(&mem_pool_lock);
    if (p) return p;
    p = mmap(NULL, UQI_MEM_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void unreserve(uint8_t *p, uint64_t used)
{
    if (used) {
        /* Drop the pages and the access; the reservation stays for reuse. */
        madvise(p, used, MADV_DONTNEED);
        mprotect(p, used, PROT_NONE);
    }
    pthread_mutex_lock(&mem_pool_lock);
    if (mem_pool_n < MEM_POOL_MAX) {
        mem_pool[mem_pool_n++] = p;
        p = NULL;
    }
    pthread_mutex_unlock(&mem_pool_lock);
    if (p) munmap(p, UQI_MEM_RESERVE);
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
    uint8_t *lo = reserve();
    if (!lo) {
        snprintf(p->why, sizeof p->why, "cannot reserve address space for linear memory");
        uqi_task_unwind(&p->task, UQI_UNWIND_RESOURCE);
    }
    uint64_t bytes = (uint64_t)initial * PAGE;
    if (bytes && mprotect(lo, bytes, PROT_READ | PROT_WRITE) != 0) {
        unreserve(lo, 0);
        snprintf(p->why, sizeof p->why, "cannot commit %u pages of linear memory", initial);
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

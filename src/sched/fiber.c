/* Fiber stacks (mmap'ed, a PROT_NONE guard page below, pooled) and the
 * context switch. The x86-64 switch saves only the callee-saved integer
 * registers: MXCSR and the x87 control word are not switched because nothing
 * in uqbar changes them (wasm has no rounding-mode control) and a signal
 * handler's sigreturn restores them itself. ucontext costs ~280 ns because it
 * saves and restores the signal mask with a system call. */
#include "sched/fiber.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- stack pool ------------------------------------------------------ */
/* Stacks of the default size are kept for reuse: mapping and protecting a
 * fresh one costs two system calls and page faults on first touch. A freed
 * stack goes back as it is ("dirty": its touched pages stay) while fewer
 * than DIRTY_MAX pooled stacks are dirty, and is taken first, so a spawn
 * after an exit reuses a warm stack with no system call; past that, its
 * deep pages are given back with madvise first. (Stacks hold no secrets a
 * guest can read: guest code cannot address its native stack.) */
#define POOL_MAX 256
#define DIRTY_MAX 8
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { uint8_t *map; bool dirty; } pool[POOL_MAX];
static int pool_n, pool_dirty;

static size_t page_size(void)
{
    static _Atomic size_t ps; /* workers make stacks concurrently */
    size_t v = atomic_load_explicit(&ps, memory_order_relaxed);
    if (!v) {
        v = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&ps, v, memory_order_relaxed);
    }
    return v;
}

static uint8_t *stack_alloc(size_t map_size)
{
    if (map_size == UQI_FIBER_DEFAULT_STACK + page_size()) {
        pthread_mutex_lock(&pool_lock);
        uint8_t *m = NULL;
        if (pool_n) {
            pool_n--;
            m = pool[pool_n].map;
            if (pool[pool_n].dirty) pool_dirty--;
        }
        pthread_mutex_unlock(&pool_lock);
        if (m) return m;
    }
    uint8_t *m = mmap(NULL, map_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return NULL;
    if (mprotect(m + page_size(), map_size - page_size(), PROT_READ | PROT_WRITE) != 0) {
        munmap(m, map_size);
        return NULL;
    }
    return m;
}

static void stack_free(uint8_t *m, size_t map_size)
{
    if (map_size == UQI_FIBER_DEFAULT_STACK + page_size()) {
        pthread_mutex_lock(&pool_lock);
        if (pool_n < POOL_MAX && pool_dirty < DIRTY_MAX) {
            pool[pool_n].map = m;
            pool[pool_n].dirty = true;
            pool_n++;
            pool_dirty++;
            m = NULL;
        }
        pthread_mutex_unlock(&pool_lock);
        if (!m) return;
        /* Give the deep pages back but keep the mapping and the top 16 KiB,
         * where every fiber runs: the next fiber does not fault them in again. */
        size_t keep = 16384;
        if (map_size - page_size() > keep) madvise(m + page_size(), map_size - page_size() - keep, MADV_DONTNEED);
        pthread_mutex_lock(&pool_lock);
        if (pool_n < POOL_MAX) {
            /* The top pool_dirty entries are the dirty ones (taken first):
             * a clean stack goes just below them. */
            int k = pool_n - pool_dirty;
            pool[pool_n] = pool[k];
            pool[k].map = m;
            pool[k].dirty = false;
            pool_n++;
            m = NULL;
        }
        pthread_mutex_unlock(&pool_lock);
        if (!m) return;
    }
    munmap(m, map_size);
}

/* ---- switch ---------------------------------------------------------- */
#if UQI_FIBER_ASM
__asm__(
    ".text\n"
    ".globl uqi_fiber_switch_asm\n"
    ".type uqi_fiber_switch_asm,@function\n"
    "uqi_fiber_switch_asm:\n"      /* rdi = &from->sp, rsi = to->sp */
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size uqi_fiber_switch_asm,.-uqi_fiber_switch_asm\n"
    ".globl uqi_fiber_trampoline\n"
    ".type uqi_fiber_trampoline,@function\n"
    "uqi_fiber_trampoline:\n"       /* first entry: r12 = arg, r13 = fn */
    "  movq %r12, %rdi\n"
    "  callq *%r13\n"
    "  ud2\n"
    ".size uqi_fiber_trampoline,.-uqi_fiber_trampoline\n");

void uqi_fiber_switch_asm(void **from_sp, void *to_sp);
void uqi_fiber_trampoline(void);

void uqi_fiber_switch(uqi_fiber *from, uqi_fiber *to)
{
    uqi_fiber_switch_asm(&from->sp, to->sp);
}
#else
void uqi_fiber_switch(uqi_fiber *from, uqi_fiber *to)
{
    swapcontext(&from->uc, &to->uc);
}
#endif

uq_err uqi_fiber_init(uqi_fiber *f, size_t stack_size, void (*fn)(void *), void *arg)
{
    memset(f, 0, sizeof *f);
    size_t ps = page_size();
    stack_size = (stack_size + ps - 1) & ~(ps - 1);
    if (stack_size < 4 * ps) stack_size = 4 * ps;
    f->map_size = stack_size + ps;
    f->map = stack_alloc(f->map_size);
    if (!f->map) return UQ_ENOMEM;
    f->guard_lo = f->map;
    f->guard_hi = f->map + ps;
#if UQI_FIBER_ASM
    uint8_t *top = f->map + f->map_size;
    /* Initial frame, popped by uqi_fiber_switch_asm: r15, r14, r13 (fn),
     * r12 (arg), rbx, rbp, return address (trampoline). After the ret,
     * rsp = top - 8 so that the trampoline's call leaves the callee with the
     * ABI's 16-byte alignment. */
    uint64_t *sp = (uint64_t *)(void *)(top - 16);
    *--sp = (uint64_t)(uintptr_t)uqi_fiber_trampoline;
    *--sp = 0;                             /* rbp */
    *--sp = 0;                             /* rbx */
    *--sp = (uint64_t)(uintptr_t)arg;      /* r12 */
    *--sp = (uint64_t)(uintptr_t)fn;       /* r13 */
    *--sp = 0;                             /* r14 */
    *--sp = 0;                             /* r15 */
    f->sp = sp;
#else
    if (getcontext(&f->uc) != 0) {
        stack_free(f->map, f->map_size);
        return UQ_ENOMEM;
    }
    f->uc.uc_stack.ss_sp = f->guard_hi;
    f->uc.uc_stack.ss_size = stack_size;
    f->uc.uc_link = NULL;
    makecontext(&f->uc, (void (*)(void))(void (*)(void *))fn, 1, arg);
#endif
    return UQ_OK;
}

void uqi_fiber_fini(uqi_fiber *f)
{
    if (f->map) stack_free(f->map, f->map_size);
    f->map = NULL;
}

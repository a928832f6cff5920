/* Worker threads, run queues, timers, blocking and preemption.
 *
 * Each worker owns a FIFO run queue and a min-heap of sleeping tasks, both
 * under the worker's mutex (uncontended when a task wakes a task of its own
 * worker, so local delivery makes no system call). A task spawned by a task of
 * the same worker goes to a second, local queue that only the worker's
 * thread touches (no lock); the loop takes from the two in turn. An idle worker waits on
 * its condition variable until the next deadline. Preemption: a POSIX timer
 * on the worker's CPU-time clock sends SIGURG to that thread; the handler
 * switches back to the scheduler only if the interrupted PC is guest code. */
#define _GNU_SOURCE
#include "sched/sched.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "engine/rt.h"

typedef struct uqi_worker {
    int id;
    pthread_t thread;
    uqi_fiber sched_fiber;           /* the worker's own stack */
    uqi_task *cur;                   /* running task or NULL */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool sleeping;
    uqi_task *rq_head, *rq_tail;     /* runnable, under lock */
    uqi_task *lq_head, *lq_tail;     /* runnable, spawned by its own tasks: only this worker's thread
                                        touches it (no lock; kernel code is never preempted) */
    bool lq_turn;                    /* the loop takes from the two queues in turn */
    bool lock_handed;                /* the task that switched back blocked holding lock (own thread only) */
    uqi_task **heap;                 /* sleeping tasks by wake_at, under lock */
    uint32_t heap_n, heap_cap;
    uint64_t live;                   /* tasks owned: atomic (a spawn onto the own worker takes no lock) */
    bool stop;
    timer_t timer;
    bool timer_ok;
} uqi_worker;

static uqi_worker *workers;
static int nworkers;
static atomic_uint next_worker;
static uint64_t slice_ns;
static _Thread_local uqi_worker *tls_worker;

/* ---- guest text ranges ----------------------------------------------- */
#define MAX_TEXT 8192
static struct { uintptr_t lo, hi; } text_ranges[MAX_TEXT];
static atomic_int text_n;
static pthread_mutex_t text_lock = PTHREAD_MUTEX_INITIALIZER;

void uqi_sched_add_guest_text(uintptr_t lo, uintptr_t hi)
{
    pthread_mutex_lock(&text_lock);
    int n = atomic_load(&text_n);
    if (n < MAX_TEXT) {
        text_ranges[n].lo = lo;
        text_ranges[n].hi = hi;
        atomic_store_explicit(&text_n, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&text_lock);
}

static bool in_guest_text(uintptr_t pc)
{
    int n = atomic_load_explicit(&text_n, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (pc >= text_ranges[i].lo && pc < text_ranges[i].hi) return true;
    return false;
}

/* ---- timer heap -------------------------------------------------------- */
static void heap_swap(uqi_worker *w, uint32_t a, uint32_t b)
{
    uqi_task *t = w->heap[a];
    w->heap[a] = w->heap[b];
    w->heap[b] = t;
    w->heap[a]->heap_index = a;
    w->heap[b]->heap_index = b;
}

static void heap_up(uqi_worker *w, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (w->heap[p]->wake_at <= w->heap[i]->wake_at) break;
        heap_swap(w, i, p);
        i = p;
    }
}

static void heap_down(uqi_worker *w, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->heap_n && w->heap[l]->wake_at < w->heap[m]->wake_at) m = l;
        if (r < w->heap_n && w->heap[r]->wake_at < w->heap[m]->wake_at) m = r;
        if (m == i) break;
        heap_swap(w, i, m);
        i = m;
    }
}

static void heap_push(uqi_worker *w, uqi_task *t)
{
    if (w->heap_n == w->heap_cap) {
        w->heap_cap = w->heap_cap ? w->heap_cap * 2 : 64;
        uqi_task **nh = realloc(w->heap, w->heap_cap * sizeof *nh);
        UQ_VERIFY(nh != NULL);
        w->heap = nh;
    }
    t->heap_index = w->heap_n;
    w->heap[w->heap_n++] = t;
    heap_up(w, t->heap_index);
}

static void heap_remove(uqi_worker *w, uqi_task *t)
{
    uint32_t i = t->heap_index;
    UQ_ASSERT(i < w->heap_n && w->heap[i] == t);
    w->heap_n--;
    if (i != w->heap_n) {
        w->heap[i] = w->heap[w->heap_n];
        w->heap[i]->heap_index = i;
        heap_down(w, i);
        heap_up(w, i);
    }
}

/* A task's state is written under its worker's lock, except the one step
 * of a local wake (uqi_task_wake from the task's own worker: BLOCKED ->
 * RUNNABLE by compare-and-swap, no lock); so every access is atomic
 * (relaxed: a plain move on x86; the lock or the swap orders them). */
static inline uqi_task_state st_get(const uqi_task *t) { return __atomic_load_n(&t->state, __ATOMIC_RELAXED); }
static inline void st_set(uqi_task *t, uqi_task_state s) { __atomic_store_n(&t->state, s, __ATOMIC_RELAXED); }

/* ---- run queue (worker lock held) ---------------------------------------- */
static void rq_push(uqi_worker *w, uqi_task *t)
{
    st_set(t, UQI_TASK_RUNNABLE);
    t->next = NULL;
    if (w->rq_tail) w->rq_tail->next = t;
    else __atomic_store_n(&w->rq_head, t, __ATOMIC_RELAXED);
    w->rq_tail = t;
    if (w->sleeping && tls_worker != w) pthread_cond_signal(&w->cond);
}

/* A task spawned by a task of w onto w (w's thread, no lock). */
static void lq_push(uqi_worker *w, uqi_task *t)
{
    st_set(t, UQI_TASK_RUNNABLE);
    t->next = NULL;
    if (w->lq_tail) w->lq_tail->next = t;
    else w->lq_head = t;
    w->lq_tail = t;
}

static uqi_task *lq_pop(uqi_worker *w)
{
    uqi_task *t = w->lq_head;
    if (t) {
        w->lq_head = t->next;
        if (!w->lq_head) w->lq_tail = NULL;
        t->next = NULL;
    }
    return t;
}

static uqi_task *rq_pop(uqi_worker *w)
{
    uqi_task *t = w->rq_head;
    if (t) {
        w->rq_head = t->next;
        if (!w->rq_head) w->rq_tail = NULL;
        t->next = NULL;
    }
    return t;
}

/* ---- task side ------------------------------------------------------------ */
struct uqi_worker *uqi_sched_current_worker(void) { return tls_worker; }

uqi_task *uqi_task_current(void)
{
    uqi_worker *w = tls_worker;
    return w ? w->cur : NULL;
}

/* Switch from the running task back to its worker's scheduler loop. */
static void to_scheduler(uqi_task *t)
{
    t->switches++;
    uqi_fiber_switch(&t->fiber, &t->worker->sched_fiber);
}

void uqi_task_yield(void)
{
    uqi_task *t = uqi_task_current();
    UQ_VERIFY(t != NULL);
    uqi_worker *w = t->worker;
    pthread_mutex_lock(&w->lock);
    rq_push(w, t);
    pthread_mutex_unlock(&w->lock);
    to_scheduler(t);
}

void uqi_task_block(void)
{
    uqi_task *t = uqi_task_current();
    UQ_VERIFY(t != NULL);
    uqi_worker *w = t->worker;
    pthread_mutex_lock(&w->lock);
    if (t->wake_pending) {
        t->wake_pending = false;
        pthread_mutex_unlock(&w->lock);
        return;
    }
    st_set(t, UQI_TASK_BLOCKED);
    /* the scheduler loop goes on with the lock held (it would take it
     * right after the switch) */
    w->lock_handed = true;
    to_scheduler(t);
}

void uqi_task_sleep_until(uint64_t deadline_ns)
{
    uqi_task *t = uqi_task_current();
    UQ_VERIFY(t != NULL);
    uqi_worker *w = t->worker;
    pthread_mutex_lock(&w->lock);
    if (t->wake_pending || deadline_ns <= uqi_now_ns()) {
        t->wake_pending = false;
        pthread_mutex_unlock(&w->lock);
        return;
    }
    st_set(t, UQI_TASK_SLEEPING);
    t->wake_at = deadline_ns;
    heap_push(w, t);
    pthread_mutex_unlock(&w->lock);
    to_scheduler(t);
}

void uqi_task_wake(uqi_task *t)
{
    uqi_worker *w = t->worker;
    if (w == tls_worker) {
        /* From a task of t's own worker (a reply to a process on the same
         * worker): a blocked task goes to the local queue, which only this
         * thread touches; the swap orders this against a waker on another
         * thread (which swaps too, under the lock). Anything else (sleeping,
         * running, done) takes the lock. */
        uqi_task_state b = UQI_TASK_BLOCKED;
        if (__atomic_compare_exchange_n(&t->state, &b, UQI_TASK_RUNNABLE, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            lq_push(w, t);
            return;
        }
    }
    pthread_mutex_lock(&w->lock);
    uqi_task_state b = UQI_TASK_BLOCKED;
    switch (st_get(t)) {
    case UQI_TASK_BLOCKED:
        if (__atomic_compare_exchange_n(&t->state, &b, UQI_TASK_RUNNABLE, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            rq_push(w, t);
        break;
    case UQI_TASK_SLEEPING:
        heap_remove(w, t);
        rq_push(w, t);
        break;
    case UQI_TASK_DONE:
        break;
    default:
        t->wake_pending = true;
        break;
    }
    pthread_mutex_unlock(&w->lock);
}

void uqi_task_request_kill(uqi_task *t)
{
    __atomic_store_n(&t->kill_requested, true, __ATOMIC_RELEASE);
    uqi_task_wake(t);
}

void uqi_task_check_kill(void)
{
    uqi_task *t = uqi_task_current();
    if (t && __atomic_load_n(&t->kill_requested, __ATOMIC_ACQUIRE) && t->in_guest) uqi_task_unwind(t, UQI_UNWIND_KILLED);
}

void uqi_task_unwind(uqi_task *t, int code)
{
    _longjmp(t->trap_jmp, code);
}

static void task_main(void *arg)
{
    uqi_task *t = arg;
    t->entry(t);
    t->in_guest = false;
    t->ended = true; /* the worker marks it DONE under its lock, which it takes anyway */
    to_scheduler(t);
    uqi_panic(__FILE__, __LINE__, "finished task resumed");
}

/* Where a new task goes. From a task (a process spawning a child), its own
 * worker, unless that worker owns PLACE_SLACK more tasks than the least
 * loaded one: the child then starts without waking another thread and frees
 * what it was given on the thread that allocated it (tasks never move, so a
 * spawner that keeps spawning long-lived children spreads them). From any
 * other thread, round robin. */
#define PLACE_SLACK 8
static int place(void)
{
    uqi_worker *me = tls_worker;
    if (!me) return (int)(atomic_fetch_add(&next_worker, 1) % (unsigned)nworkers);
    uint64_t mine = __atomic_load_n(&me->live, __ATOMIC_RELAXED), least = mine;
    int best = me->id;
    for (int i = 0; i < nworkers; i++) {
        uint64_t l = __atomic_load_n(&workers[i].live, __ATOMIC_RELAXED);
        if (l < least) {
            least = l;
            best = i;
        }
    }
    return mine <= least + PLACE_SLACK ? me->id : best;
}

uq_err uqi_sched_spawn(uqi_task *t, int worker)
{
    if (!workers) return UQ_ECLOSED;
    if (worker < 0 || worker >= nworkers) worker = place();
    uqi_worker *w = &workers[worker];
    /* The stack is taken by the worker when it first runs the task: a
     * burst of spawns then holds no more stacks than tasks have started,
     * and they come from the pool (a spawner outrunning the worker used to
     * map and protect a fresh stack for each). */
    memset(&t->fiber, 0, sizeof t->fiber);
    t->no_stack = false;
    t->worker = w;
    t->wake_pending = false;
    __atomic_fetch_add(&w->live, 1, __ATOMIC_RELAXED);
    if (w == tls_worker) {
        /* From a task of w (a process spawning a child onto its own
         * worker): w's thread is the only one touching its local queue, and
         * nothing else sees t before the spawner's caller publishes it
         * (under the node lock), so no worker lock. */
        lq_push(w, t);
        return UQ_OK;
    }
    pthread_mutex_lock(&w->lock);
    rq_push(w, t);
    pthread_mutex_unlock(&w->lock);
    return UQ_OK;
}

/* ---- signals ------------------------------------------------------------ */
/* SIGURG from the worker's CPU-time timer. Runs on the task's own stack (no
 * SA_ONSTACK) so that switching away inside the handler is sound: the signal
 * frame stays on the preempted fiber and returns when it is resumed. */
static void preempt_handler(int sig, siginfo_t *si, void *ucv)
{
    UQ_UNUSED(sig);
    UQ_UNUSED(si);
    uqi_worker *w = tls_worker;
    if (!w || !w->cur) return;
    uqi_task *t = w->cur;
    ucontext_t *uc = ucv;
#if defined(__x86_64__)
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.pc;
#else
    uintptr_t pc = 0;
#endif
    if (!t->in_guest || !in_guest_text(pc)) return;
    if (__atomic_load_n(&t->kill_requested, __ATOMIC_RELAXED)) uqi_task_unwind(t, UQI_UNWIND_KILLED); /* a killed spinner */
    int saved = errno;
    t->preemptions++;
    /* Taking the worker lock here is safe: the PC is in guest code, which
     * never holds it (nor is inside malloc or any other host routine). */
    pthread_mutex_lock(&w->lock);
    rq_push(w, t);
    pthread_mutex_unlock(&w->lock);
    to_scheduler(t);
    errno = saved;
}

/* SIGSEGV/SIGBUS on the alternate stack. A fault inside the running guest's
 * memory reservation is an out-of-bounds access; one in the running fiber's
 * guard page is stack exhaustion. Anything else is a real crash of the host,
 * reported as such. */
static void fault_handler(int sig, siginfo_t *si, void *ucv)
{
    UQ_UNUSED(ucv);
    uqi_worker *w = tls_worker;
    uqi_task *t = w ? w->cur : NULL;
    uint8_t *a = si->si_addr;
    if (t && t->in_guest) {
        if (a >= t->mem_lo && a < t->mem_hi) uqi_task_unwind(t, UQI_TRAP_OOB);
        if (a >= t->fiber.guard_lo && a < t->fiber.guard_hi) uqi_task_unwind(t, UQI_TRAP_EXHAUSTION);
    }
    static const char msg[] = "uqbar: fatal: host fault outside any guest (a bug in uqbar)\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    UQ_UNUSED(r);
    signal(sig, SIG_DFL);
}

void uqi_sched_thread_altstack(void)
{
    static _Thread_local bool done;
    if (done) return;
    size_t sz = 64 * 1024;
    /* mmap, not malloc: sanitizer runtimes unmap the thread's altstack at exit. */
    void *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    UQ_VERIFY(mem != MAP_FAILED);
    stack_t ss = {.ss_sp = mem, .ss_size = sz, .ss_flags = 0};
    UQ_VERIFY(sigaltstack(&ss, NULL) == 0);
    done = true;
}

static void install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sa.sa_sigaction = preempt_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
    sigaction(SIGURG, &sa, NULL);
}

void uqi_sched_signals_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_handlers);
    uqi_sched_thread_altstack();
}

/* ---- worker loop ---------------------------------------------------------- */
static void start_timer(uqi_worker *w)
{
#if defined(__SANITIZE_THREAD__)
    /* Under ThreadSanitizer, no preemption: the handler switches fibers
     * inside the signal, and TSan then takes every later call of that
     * fiber for one made inside the handler ("signal-unsafe call"). The
     * preemption tests are not run under TSan (.ci/run). */
    UQ_UNUSED(w);
    return;
#endif
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGURG;
    sev._sigev_un._tid = gettid();
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &w->timer) != 0) {
        uq_log(UQ_LOG_WARN, "sched", "no preemption timer on worker %d: %s", w->id, strerror(errno));
        return;
    }
    struct itimerspec its;
    its.it_interval = uqi_ns_to_timespec(slice_ns);
    its.it_value = its.it_interval;
    timer_settime(w->timer, 0, &its, NULL);
    w->timer_ok = true;
}

static void *worker_main(void *arg)
{
    uqi_worker *w = arg;
    tls_worker = w;
    uqi_sched_thread_altstack();
    start_timer(w);
    bool spun = false;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        /* expire timers */
        uint64_t now = w->heap_n ? uqi_now_ns() : 0;
        while (w->heap_n && w->heap[0]->wake_at <= now) {
            uqi_task *t = w->heap[0];
            heap_remove(w, t);
            rq_push(w, t);
        }
        /* the shared queue and the local one in turn: neither starves */
        uqi_task *t = w->lq_head && (w->lq_turn || !w->rq_head) ? lq_pop(w) : rq_pop(w);
        w->lq_turn = !w->lq_turn;
        if (!t) {
            if (w->stop && __atomic_load_n(&w->live, __ATOMIC_RELAXED) == 0) break;
            /* Waking a sleeping thread costs 5-20 us on a VM: spin briefly
             * (UQI_SPIN_NS) for new work before sleeping. */
            if (!spun) {
                pthread_mutex_unlock(&w->lock);
                uqi_spin_while(!__atomic_load_n(&w->rq_head, __ATOMIC_RELAXED));
                pthread_mutex_lock(&w->lock);
                spun = true;
                continue; /* look again at timers, the queue and stop */
            }
            spun = false;
            w->sleeping = true;
            if (w->heap_n) {
                uint64_t d = w->heap[0]->wake_at;
                struct timespec ts = uqi_ns_to_timespec(d);
                pthread_cond_timedwait(&w->cond, &w->lock, &ts);
            } else {
                pthread_cond_wait(&w->cond, &w->lock);
            }
            w->sleeping = false;
            continue;
        }
        spun = false;
        st_set(t, UQI_TASK_RUNNING);
        pthread_mutex_unlock(&w->lock);
        if (UQ_UNLIKELY(!t->fiber.map) &&
            uqi_fiber_init(&t->fiber, t->stack_size ? t->stack_size : UQI_FIBER_DEFAULT_STACK, task_main, t) != UQ_OK) {
            t->no_stack = true; /* it ends before it began */
            pthread_mutex_lock(&w->lock);
            st_set(t, UQI_TASK_DONE);
        } else {
            w->cur = t;
            uqi_fiber_switch(&w->sched_fiber, &t->fiber);
            w->cur = NULL;
            /* Under the lock: a waker may be moving a blocked task to runnable
             * (wakers read state under it). A task that blocked kept it. */
            if (w->lock_handed) w->lock_handed = false;
            else pthread_mutex_lock(&w->lock);
            if (t->ended) st_set(t, UQI_TASK_DONE);
        }
        if (st_get(t) == UQI_TASK_DONE) {
            pthread_mutex_unlock(&w->lock);
            uqi_fiber_fini(&t->fiber);
            if (t->on_done) t->on_done(t); /* may free t */
            pthread_mutex_lock(&w->lock);
            __atomic_fetch_sub(&w->live, 1, __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_unlock(&w->lock);
    if (w->timer_ok) timer_delete(w->timer);
    return NULL;
}

uq_err uqi_sched_start(const uqi_sched_config *cfg)
{
    if (workers) return UQ_EBUSY;
    uqi_sched_signals_init();
    nworkers = cfg && cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nworkers < 1) nworkers = 1;
    slice_ns = cfg && cfg->slice_ns ? cfg->slice_ns : 2000000ull;
    workers = uqi_xcalloc((size_t)nworkers, sizeof *workers);
    for (int i = 0; i < nworkers; i++) {
        uqi_worker *w = &workers[i];
        w->id = i;
        pthread_mutex_init(&w->lock, NULL);
        uqi_cond_init_monotonic(&w->cond);
    }
    for (int i = 0; i < nworkers; i++)
        UQ_VERIFY(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) == 0);
    return UQ_OK;
}

void uqi_sched_stop(void)
{
    if (!workers) return;
    for (int i = 0; i < nworkers; i++) {
        uqi_worker *w = &workers[i];
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
    }
    for (int i = 0; i < nworkers; i++) {
        pthread_join(workers[i].thread, NULL);
        free(workers[i].heap);
        pthread_mutex_destroy(&workers[i].lock);
        pthread_cond_destroy(&workers[i].cond);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
}

int uqi_sched_workers(void)
{
    return nworkers;
}

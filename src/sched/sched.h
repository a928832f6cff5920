/* The scheduler: worker threads that run tasks (fibers). A task is pinned to
 * one worker for life. Tasks block and are woken, sleep until a deadline, and
 * guest code that runs too long is preempted by a per-thread CPU-time timer
 * whose signal handler switches away only when the interrupted instruction
 * lies in guest code (see uqi_sched_add_guest_text). */
#ifndef UQ_SCHED_H
#define UQ_SCHED_H

#include <setjmp.h>
#include <stdatomic.h>

#include "sched/fiber.h"

typedef enum uqi_task_state {
    UQI_TASK_NEW = 0,
    UQI_TASK_RUNNABLE,  /* in a run queue */
    UQI_TASK_RUNNING,
    UQI_TASK_BLOCKED,   /* waiting for uqi_task_wake */
    UQI_TASK_SLEEPING,  /* waiting for a deadline or a wake */
    UQI_TASK_DONE,
} uqi_task_state;

struct uqi_worker;

typedef struct uqi_task {
    uqi_fiber fiber;
    struct uqi_worker *worker;     /* owner; fixed at spawn */
    struct uqi_task *next;         /* run-queue link */
    uqi_task_state state;          /* guarded by worker->lock when shared */
    bool wake_pending;             /* a wake arrived while not blocked */
    bool in_guest;                 /* guest code may be running: traps are ours */
    bool ended;                    /* its body returned (own worker only); the worker then marks it DONE */
    bool no_stack;                 /* ended unrun: no memory for its fiber's stack */
    bool kill_requested;           /* end it at the next blocking call or preemption; use
                                      uqi_task_request_kill (atomic accesses only) */
    uint64_t wake_at;              /* deadline while SLEEPING */
    uint32_t heap_index;           /* position in the worker's timer heap */
    void (*entry)(struct uqi_task *);   /* body, runs on the fiber */
    void (*on_done)(struct uqi_task *); /* runs on the worker after the fiber ended */
    size_t stack_size;
    jmp_buf trap_jmp;              /* where wasm_rt_trap and the fault handler land */
    uint8_t *mem_lo, *mem_hi;      /* guest linear-memory reservation */
    uint64_t switches, preemptions;
} uqi_task;

typedef struct uqi_sched_config {
    int workers;          /* threads; 0 = number of CPUs */
    uint64_t slice_ns;    /* CPU time before guest code is preempted; 0 = 2 ms */
} uqi_sched_config;

uq_err uqi_sched_start(const uqi_sched_config *cfg);
/* Stop the workers once every task has finished (or abandon them if force). */
void uqi_sched_stop(void);
int uqi_sched_workers(void);

/* Hand a task to the scheduler. worker < 0 picks one round-robin. The
 * task's fiber is created by the worker when it first runs the task; if
 * there is no memory for its stack, the task ends at once with no_stack set
 * (on_done still runs). On failure the task was not started. */
uq_err uqi_sched_spawn(uqi_task *t, int worker);

/* ---- called on a task's own fiber ----------------------------------- */
uqi_task *uqi_task_current(void);
/* The worker whose thread this is, or NULL (any thread). */
struct uqi_worker *uqi_sched_current_worker(void);
void uqi_task_yield(void);
/* Block until uqi_task_wake (returns at once if a wake is pending). */
void uqi_task_block(void);
/* Sleep until the monotonic time deadline_ns or a wake, whichever first. */
void uqi_task_sleep_until(uint64_t deadline_ns);

/* If the running task was asked to end, unwind it now (never returns then).
 * Blocking host calls call this after every wake-up. */
void uqi_task_check_kill(void);

/* ---- from anywhere ---------------------------------------------------- */
void uqi_task_wake(uqi_task *t);
/* Ask a task to end: it unwinds at its next blocking call or preemption. */
void uqi_task_request_kill(uqi_task *t);

/* Register [lo, hi) as guest machine code: only there may preemption switch
 * away. Async-signal-safe to read; ranges are never removed. */
void uqi_sched_add_guest_text(uintptr_t lo, uintptr_t hi);

/* Install the process-wide fault and preemption handlers and give the
 * calling thread an alternate signal stack. Idempotent. */
void uqi_sched_signals_init(void);
void uqi_sched_thread_altstack(void);

/* A guest trap or exit: jump to t->trap_jmp with code (never 0). */
__attribute__((noreturn)) void uqi_task_unwind(uqi_task *t, int code);

#endif

/* A process as the engine sees it: one wasm instance running on one task
 * (fiber), with its memory cap, WASI view (args, environment, output) and
 * outcome. The kernel builds its own process record around this. */
#ifndef UQ_PROC_H
#define UQ_PROC_H

#include <pthread.h>

#include <wasm-rt.h>

#include "sched/sched.h"

struct uqi_module;

typedef enum uqi_proc_status {
    UQI_PROC_NEW = 0,
    UQI_PROC_RUNNING,
    UQI_PROC_EXITED,    /* returned from _start or called proc_exit */
    UQI_PROC_TRAPPED,   /* a trap: trap_code says which */
    UQI_PROC_FAILED,    /* could not be instantiated: why says why */
    UQI_PROC_KILLED,
} uqi_proc_status;

typedef struct uqi_outbuf {
    char buf[1024];
    size_t n;
} uqi_outbuf;

typedef struct uqi_proc {
    uqi_task task;              /* first member: the scheduler's view */
    struct uqi_module *mod;
    void *inst;                 /* wasm2c instance storage */
    wasm_rt_memory_t *mem;      /* memory 0, set when allocated */
    uint64_t mem_cap_bytes;     /* 0: 4 GiB */
    uint64_t grow_refused;      /* memory.grow calls refused by the cap */
    /* WASI view */
    int argc, envc;
    char **argv, **envp;        /* owned */
    uint32_t argv_bytes, envp_bytes; /* sum of strlen+1, for *_sizes_get */
    char *tag;                  /* output line prefix on a node; NULL: raw output */
    bool tag_inline;            /* tag lies in the process's own allocation */
    bool stdin_ok;              /* fd 0 readable (uqbar run) */
    uqi_outbuf out[2];          /* partial lines of stdout, stderr when tagged */
    /* outcome */
    uqi_proc_status status;
    int exit_code;
    int trap_code;
    char why[256];
    /* completion */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool finished;
    void (*on_finish)(struct uqi_proc *); /* on the worker, after the instance is gone */
    bool free_on_finish;        /* nobody waits: free the process when it ends */
    void *user;                 /* the kernel's record */
    size_t block_size;          /* of its one allocation (uqi_block_get) */
} uqi_proc;

/* Create a process for module mod with copies of the NULL-terminated argv
 * and envp. Not started. */
uqi_proc *uqi_proc_new(struct uqi_module *mod, char *const *argv, char *const *envp);
/* The same with an output tag (copied, like argv and envp, into the one
 * allocation of the process). */
uqi_proc *uqi_proc_new_tagged(struct uqi_module *mod, char *const *argv, char *const *envp, const char *tag);
/* Start it on a worker (-1: any). */
uq_err uqi_proc_start(uqi_proc *p, int worker);
/* Wait until it finished (not from a task). */
void uqi_proc_wait(uqi_proc *p);
/* Free a finished (or never started) process. */
void uqi_proc_free(uqi_proc *p);
/* One line describing the outcome, e.g. "trap: integer divide by zero". */
void uqi_proc_outcome(const uqi_proc *p, char *buf, size_t cap);

/* A pointer into the guest's memory 0 for [off, off+len), or NULL when out
 * of bounds. 64-bit arithmetic; never store the result past the host call. */
static inline uint8_t *uqi_guest_ptr(uqi_proc *p, uint32_t off, uint32_t len)
{
    if (UQ_UNLIKELY(!p->mem || (uint64_t)off + len > p->mem->size)) return NULL;
    return p->mem->data + off;
}

#endif

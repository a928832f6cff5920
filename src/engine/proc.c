/* Process lifecycle in the engine: instantiate on the task's own fiber (so a
 * trap while instantiating is caught like any other), run _start, record the
 * outcome, free the instance, and tell whoever waits. */
#include "engine/proc.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "engine/module.h"
#include "engine/rt.h"

static int vec_len(char *const *v, size_t *bytes)
{
    int n = 0;
    while (v && v[n]) *bytes += strlen(v[n++]) + 1;
    return n;
}

/* Copy v into *ptrs (n + 1 slots) and its strings to *str, advancing it. */
static char **copy_vec(char *const *v, int n, char **ptrs, char **str)
{
    for (int i = 0; i < n; i++) {
        size_t l = strlen(v[i]) + 1;
        memcpy(*str, v[i], l);
        ptrs[i] = *str;
        *str += l;
    }
    ptrs[n] = NULL;
    return ptrs;
}

static uint32_t vec_bytes(char **v)
{
    uint64_t n = 0;
    for (int i = 0; v[i]; i++) n += strlen(v[i]) + 1;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static void proc_entry(uqi_task *t)
{
    uqi_proc *p = (uqi_proc *)t;
    p->status = UQI_PROC_RUNNING;
    int code = _setjmp(t->trap_jmp);
    if (code == 0) {
        t->in_guest = true;
        p->mod->instantiate(p->inst, p);
        p->mod->start(p->inst);
        p->status = UQI_PROC_EXITED;
        p->exit_code = 0;
    } else if (code == UQI_UNWIND_EXIT) {
        p->status = UQI_PROC_EXITED;
    } else if (code == UQI_UNWIND_RESOURCE) {
        p->status = UQI_PROC_FAILED;
    } else if (code == UQI_UNWIND_KILLED) {
        p->status = UQI_PROC_KILLED;
    } else {
        p->status = UQI_PROC_TRAPPED;
        p->trap_code = code;
    }
    t->in_guest = false;
    /* A trapped instance is dead: its shadow stack pointer is anywhere. */
    p->mod->free(p->inst);
    p->mem = NULL;
}

static void proc_done(uqi_task *t)
{
    uqi_proc *p = (uqi_proc *)t;
    if (t->no_stack) {
        p->status = UQI_PROC_FAILED;
        snprintf(p->why, sizeof p->why, "no memory for a fiber stack");
    }
    if (p->on_finish) p->on_finish(p);
    if (p->free_on_finish) {
        uqi_proc_free(p);
        return;
    }
    pthread_mutex_lock(&p->lock);
    __atomic_store_n(&p->finished, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~(size_t)((a) - 1))

/* One allocation per process: the record, the instance, argv, envp and the
 * tag (a spawn used to make seven, freed on another thread than the one
 * that made them when a host thread spawned). */
uqi_proc *uqi_proc_new_tagged(struct uqi_module *mod, char *const *argv, char *const *envp, const char *tag)
{
    size_t strs = 0;
    int argc = vec_len(argv, &strs), envc = vec_len(envp, &strs);
    size_t tag_len = tag ? strlen(tag) + 1 : 0;
    size_t inst_off = ALIGN_UP(sizeof(uqi_proc), 64);
    size_t vec_off = ALIGN_UP(inst_off + mod->inst_size, sizeof(char *));
    size_t str_off = vec_off + ((size_t)argc + 1 + (size_t)envc + 1) * sizeof(char *);
    /* Zeroed but for the output line buffers and the failure text (2.3 KiB
     * of the 3: a spawn's stores, and the cache lines they take, are what
     * make it cost; both are read only up to what was written). */
    size_t size = str_off + strs + tag_len;
    uint8_t *b = uqi_block_get(size);
    uqi_proc *p = (uqi_proc *)b;
    memset(p, 0, offsetof(uqi_proc, out));
    p->out[0].n = p->out[1].n = 0;
    memset(&p->status, 0, offsetof(uqi_proc, why) - offsetof(uqi_proc, status));
    p->why[0] = '\0';
    memset(&p->lock, 0, sizeof *p - offsetof(uqi_proc, lock));
    memset(b + sizeof *p, 0, str_off - sizeof *p); /* the instance (and padding, the vectors) */
    p->block_size = size;
    p->mod = mod;
    p->inst = b + inst_off;
    char **ptrs = (char **)(b + vec_off), *str = (char *)(b + str_off);
    p->argc = argc;
    p->envc = envc;
    p->argv = copy_vec(argv, argc, ptrs, &str);
    p->envp = copy_vec(envp, envc, ptrs + argc + 1, &str);
    if (tag) {
        memcpy(str, tag, tag_len);
        p->tag = str;
        p->tag_inline = true;
    }
    p->argv_bytes = vec_bytes(p->argv);
    p->envp_bytes = vec_bytes(p->envp);
    p->task.entry = proc_entry;
    p->task.on_done = proc_done;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    return p;
}

uqi_proc *uqi_proc_new(struct uqi_module *mod, char *const *argv, char *const *envp)
{
    return uqi_proc_new_tagged(mod, argv, envp, NULL);
}

uq_err uqi_proc_start(uqi_proc *p, int worker)
{
    return uqi_sched_spawn(&p->task, worker);
}

void uqi_proc_wait(uqi_proc *p)
{
    /* Waking a sleeping thread costs 5-13 us on a VM: spin a little first. */
    for (int i = 0; i < 20000 && !__atomic_load_n(&p->finished, __ATOMIC_ACQUIRE); i++)
        uqi_cpu_relax();
    pthread_mutex_lock(&p->lock);
    while (!p->finished) pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

void uqi_proc_free(uqi_proc *p)
{
    if (!p) return;
    if (!p->tag_inline) free(p->tag);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    uqi_block_put(p, p->block_size);
}

void uqi_proc_outcome(const uqi_proc *p, char *buf, size_t cap)
{
    switch (p->status) {
    case UQI_PROC_EXITED: snprintf(buf, cap, "exited with status %d", p->exit_code); break;
    case UQI_PROC_TRAPPED: snprintf(buf, cap, "trap: %s", uqi_trap_text(p->trap_code)); break;
    case UQI_PROC_FAILED: snprintf(buf, cap, "failed to start: %s", p->why); break;
    case UQI_PROC_KILLED: snprintf(buf, cap, "killed"); break;
    default: snprintf(buf, cap, "running"); break;
    }
}

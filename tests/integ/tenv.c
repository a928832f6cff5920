/* Shared set-up for in-process engine tests. */
#include "tenv.h"

#include <stdio.h>

static uqi_engine eng;
static bool eng_ok;

const char *tenv_cache(void)
{
    static char b[1024];
    snprintf(b, sizeof b, "%s/cache-test", tb_shared());
    return b;
}

uqi_engine *tenv_engine(int workers)
{
    if (!eng_ok) {
        uq_errmsg em = {{0}};
        if (uqi_engine_init(&eng, tenv_cache(), &em)) test_fail(__FILE__, __LINE__, "engine: %s", em.text);
        eng.progress = false;
        uqi_sched_config sc = {.workers = workers, .slice_ns = 1000000};
        ASSERT_EQ(uqi_sched_start(&sc), UQ_OK);
        eng_ok = true;
    }
    return &eng;
}

uq_err tenv_try_load(const char *path, uq_errmsg *em)
{
    uqi_engine *e = tenv_engine(1);
    uint8_t *b;
    size_t n;
    uq_err err = uqi_read_file(path, &b, &n, em);
    if (err) return err;
    uqi_module *m;
    err = uqi_engine_load(e, b, n, path, &m, em);
    free(b);
    return err;
}

uqi_module *tenv_load(const char *guest)
{
    uqi_engine *e = tenv_engine(1);
    uq_errmsg em = {{0}};
    uint8_t *b;
    size_t n;
    const char *path = tb_guest(guest);
    if (uqi_read_file(path, &b, &n, &em)) test_fail(__FILE__, __LINE__, "%s", em.text);
    uqi_module *m;
    uq_err err = uqi_engine_load(e, b, n, path, &m, &em);
    free(b);
    if (err) test_fail(__FILE__, __LINE__, "load %s: %s", guest, em.text);
    return m;
}

uqi_proc *tenv_spawn(const char *guest, const char *const *args, uint64_t mem_cap, int worker)
{
    uqi_module *m = tenv_load(guest);
    const char *argv[16] = {guest};
    int n = 1;
    for (int i = 0; args && args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    char *const envp[] = {NULL};
    uqi_proc *p = uqi_proc_new(m, (char *const *)argv, envp);
    p->mem_cap_bytes = mem_cap;
    ASSERT_EQ(uqi_proc_start(p, worker), UQ_OK);
    return p;
}

/* Shared set-up for tests that run processes in-process: one engine with a
 * cache shared by all tests (so each guest compiles once per build). */
#ifndef UQ_TENV_H
#define UQ_TENV_H

#include "engine/module.h"
#include "engine/proc.h"
#include "engine/rt.h"
#include "runner.h"

/* The test cache: <build>/cache-test */
const char *tenv_cache(void);
/* Init engine + scheduler with n workers (once per test process). */
uqi_engine *tenv_engine(int workers);
/* Load a guest by name; fails the test on error. */
uqi_module *tenv_load(const char *guest);
/* Load and return the error (for refusal tests); em filled. */
uq_err tenv_try_load(const char *path, uq_errmsg *em);
/* Start a process of guest with args (argv[0] = guest name) on worker w. */
uqi_proc *tenv_spawn(const char *guest, const char *const *args, uint64_t mem_cap, int worker);

#endif

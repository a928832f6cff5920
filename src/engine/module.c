/* The module pipeline: bytes -> checked -> (cache | wasm2c + cc in a child)
 * -> dlopen -> entry points. See docs/ENGINE.md for why each step is so. */
#define _GNU_SOURCE
#include "engine/module.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/hostapi.h"
#include "engine/wasm_parse.h"
#include "sched/sched.h"

#define GLUE_VERSION "uqbar-glue-4" /* bump when glue or cc flags change */
#ifndef UQ_WASM_RT_H
#define UQ_WASM_RT_H "/usr/include/wasm-rt.h"
#endif

/* ---- small process helpers ------------------------------------------------ */

/* Run argv with stdout captured into out (NUL-terminated). */
static int run_capture(const char *const argv[], char *out, size_t cap)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        int dn = open("/dev/null", O_RDWR);
        if (dn >= 0) { dup2(dn, 0); dup2(dn, 2); }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fds[0], out + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
        if (n == cap - 1) break;
    }
    out[n] = '\0';
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct progress {
    const char *label;
    size_t wasm_len;
    uint64_t t0;
    bool shown, tty;
    uint64_t last;
} progress;

static void progress_tick(progress *pg, bool enabled, const char *step)
{
    if (!enabled) return;
    uint64_t now = uqi_now_ns();
    double s = (double)(now - pg->t0) / 1e9;
    if (s < 1.0) return;
    if (pg->tty) {
        if (now - pg->last < 250000000ull && pg->shown) return;
        fprintf(stderr, "\ruqbar: compiling %s (%zu KiB of wasm, first run only): %s %.0fs ", pg->label,
                pg->wasm_len / 1024, step, s);
    } else {
        if (pg->shown && now - pg->last < 10000000000ull) return;
        fprintf(stderr, "uqbar: compiling %s (%zu KiB of wasm, first run only): %s %.0fs\n", pg->label,
                pg->wasm_len / 1024, step, s);
    }
    fflush(stderr);
    pg->shown = true;
    pg->last = now;
}

/* Run a compile step in a child with resource limits and a wall-clock
 * timeout; its output goes to logpath. */
static uq_err run_limited(uqi_engine *e, const char *const argv[], const char *logpath, progress *pg,
                          const char *step, uq_errmsg *em)
{
    pid_t pid = fork();
    if (pid < 0) return uqi_errf(em, UQ_ECOMPILE, "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = e->compile_mem_limit;
        setrlimit(RLIMIT_AS, &rl);
        rl.rlim_cur = rl.rlim_max = e->compile_timeout_s + 5;
        setrlimit(RLIMIT_CPU, &rl);
        rl.rlim_cur = rl.rlim_max = (rlim_t)2 << 30;
        setrlimit(RLIMIT_FSIZE, &rl);
        rl.rlim_cur = rl.rlim_max = 0;
        setrlimit(RLIMIT_CORE, &rl);
        int dn = open("/dev/null", O_RDONLY);
        if (dn >= 0) dup2(dn, 0);
        int lf = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (lf >= 0) { dup2(lf, 1); dup2(lf, 2); }
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    setpgid(pid, pid);
    uint64_t deadline = uqi_now_ns() + (uint64_t)e->compile_timeout_s * 1000000000ull;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return uqi_errf(em, UQ_ECOMPILE, "waitpid: %s", strerror(errno));
        if (uqi_now_ns() > deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
            return uqi_errf(em, UQ_ETIMEDOUT, "%s took longer than %u s and was stopped", step, e->compile_timeout_s);
        }
        progress_tick(pg, e->progress, step);
        usleep(20000);
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return UQ_OK;
    /* First line of the log tells the user what went wrong. */
    char first[300] = "";
    FILE *f = fopen(logpath, "r");
    if (f) {
        if (!fgets(first, sizeof first, f)) first[0] = '\0';
        fclose(f);
        first[strcspn(first, "\n")] = '\0';
    }
    if (WIFSIGNALED(st))
        return uqi_errf(em, UQ_ECOMPILE, "%s was killed by signal %d (resource limit?) %s", step, WTERMSIG(st), first);
    if (WEXITSTATUS(st) == 127) return uqi_errf(em, UQ_ECOMPILE, "%s: command %s not found", step, argv[0]);
    return uqi_errf(em, UQ_ECOMPILE, "%s failed: %s", step, first[0] ? first : "(no output)");
}

/* ---- engine ------------------------------------------------------------- */

char *uqi_default_cache_dir(void)
{
    char buf[4096];
    const char *v = getenv("UQBAR_CACHE");
    if (v && *v) return uqi_xstrdup(v);
    v = getenv("XDG_CACHE_HOME");
    if (v && *v) {
        snprintf(buf, sizeof buf, "%s/uqbar", v);
        return uqi_xstrdup(buf);
    }
    v = getenv("HOME");
    snprintf(buf, sizeof buf, "%s/.cache/uqbar", v && *v ? v : "/tmp");
    return uqi_xstrdup(buf);
}

static void hash_file(const char *path, char *hex65)
{
    uint8_t *b = NULL;
    size_t n = 0;
    uint8_t h[32] = {0};
    if (uqi_read_file(path, &b, &n, NULL) == UQ_OK) {
        crypto_generichash(h, sizeof h, b, n, NULL, 0);
        free(b);
    }
    sodium_bin2hex(hex65, 65, h, sizeof h);
}

uq_err uqi_engine_init(uqi_engine *e, const char *cache_dir, uq_errmsg *em)
{
    memset(e, 0, sizeof *e);
    const char *lv = getenv("UQBAR_LOG"); /* error, warn, info, debug */
    if (lv && *lv) {
        static const char *names[] = {"error", "warn", "info", "debug"};
        for (int i = 0; i < 4; i++)
            if (strcmp(lv, names[i]) == 0) uqi_log_level = i;
    }
    if (sodium_init() < 0) return uqi_errf(em, UQ_ECRYPTO, "libsodium failed to initialize");
    uq_err err = uqi_mkdirs(cache_dir, em);
    if (err) return err;
    e->cache_dir = uqi_xstrdup(cache_dir);
    const char *cc = getenv("UQBAR_CC");
    snprintf(e->cc, sizeof e->cc, "%s", cc && *cc ? cc : "cc");
    e->opt_level = 2;
    const char *o = getenv("UQBAR_OPT");
    if (o && *o >= '0' && *o <= '3' && !o[1]) e->opt_level = *o - '0';
    e->compile_timeout_s = 900;
    e->compile_mem_limit = (uint64_t)6 << 30;
    e->progress = true;
    pthread_mutex_init(&e->lock, NULL);
    /* The toolchain goes into every cache key: wasm2c renamed every symbol
     * after 1.0.32, and code from another compiler or flags is another binary. */
    char w2c[128] = "", ccv[256] = "", rth[65];
    const char *a1[] = {"wasm2c", "--version", NULL};
    if (run_capture(a1, w2c, sizeof w2c) != 0) {
        free(e->cache_dir);
        return uqi_errf(em, UQ_ECOMPILE, "wasm2c not found (install Debian's wabt package)");
    }
    const char *a2[] = {e->cc, "-dumpfullversion", "-dumpmachine", NULL};
    if (run_capture(a2, ccv, sizeof ccv) != 0) {
        free(e->cache_dir);
        return uqi_errf(em, UQ_ECOMPILE, "C compiler '%s' not found", e->cc);
    }
    w2c[strcspn(w2c, "\n")] = '\0';
    for (char *c = ccv; *c; c++) if (*c == '\n') *c = ' ';
    hash_file(UQ_WASM_RT_H, rth);
    snprintf(e->toolchain, sizeof e->toolchain, "%s|wasm2c %s|%s %s|-O%d|%s", GLUE_VERSION, w2c, e->cc, ccv,
             e->opt_level, rth);
    return UQ_OK;
}

void uqi_engine_fini(uqi_engine *e)
{
    /* The shared objects stay mapped (no dlclose): their text ranges are
     * registered with the scheduler for good. Only the records go. */
    for (uqi_module *m = e->mods, *next; m; m = next) {
        next = m->next;
        free(m->wasm);
        free(m);
    }
    e->mods = NULL;
    pthread_mutex_destroy(&e->lock);
    free(e->cache_dir);
    e->cache_dir = NULL;
}

void uqi_wasm2c_mangle(const char *name, char *out, size_t cap)
{
    size_t k = 0;
    for (const unsigned char *c = (const unsigned char *)name; *c && k + 4 < cap; c++) {
        if (*c == 'Z') {
            out[k++] = 'Z';
            out[k++] = 'Z';
        } else if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_') {
            out[k++] = (char)*c;
        } else {
            k += (size_t)snprintf(out + k, cap - k, "Z%02X", *c);
        }
    }
    out[k] = '\0';
}

/* The glue gives every module the same four entry points, whatever its
 * imports are: wasm2c's instantiate takes one instance pointer per imported
 * module, in sorted order, and we pass the process for each. */
static uq_err write_glue(const char *path, const uqi_wasm_info *info, uq_errmsg *em)
{
    const char *mods[16];
    int nm = 0;
    for (uint32_t i = 0; i < info->nimports; i++) {
        bool seen = false;
        for (int j = 0; j < nm; j++) seen |= strcmp(mods[j], info->imports[i].module) == 0;
        if (!seen) {
            if (nm == 16) return uqi_errf(em, UQ_EIMPORT, "too many import modules");
            mods[nm++] = info->imports[i].module;
        }
    }
    FILE *f = fopen(path, "w");
    if (!f) return uqi_errf(em, UQ_ECOMPILE, "%s: %s", path, strerror(errno));
    fprintf(f, "#include \"m.h\"\n#define API __attribute__((visibility(\"default\")))\n"
               "API size_t uqg_instance_size = sizeof(Z_m_instance_t);\n"
               "API void uqg_init(void) { Z_m_init_module(); }\n"
               "API void uqg_instantiate(void *i, void *h) { (void)h; Z_m_instantiate((Z_m_instance_t *)i");
    for (int j = 0; j < nm; j++) fprintf(f, ", h");
    fprintf(f, "); }\nAPI void uqg_free(void *i) { Z_m_free((Z_m_instance_t *)i); }\n"
               "API void uqg_start(void *i) {\n");
    if (uqi_wasm_find_export(info, "_initialize", 0)) fprintf(f, "  Z_mZ__initialize((Z_m_instance_t *)i);\n");
    fprintf(f, "  Z_mZ__start((Z_m_instance_t *)i);\n}\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return uqi_errf(em, UQ_ECOMPILE, "%s: write failed", path);
    return UQ_OK;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char p[4096];
        while ((de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* wasm2c 1.0.32 keeps every load alive (so that an unused out-of-bounds load
 * still faults) with `asm("" :: "r"(result))`. For f32/f64 the "r" constraint
 * moves each loaded value from an SSE register to a general one and back.
 * Rewrite that barrier to pick the register class by type: the load is still
 * forced, without the round trip (nbody: 85 -> 18 such moves). */
static uq_err patch_generated(const char *path, uq_errmsg *em)
{
    static const char barrier[] = "wasm_asm(\"\" ::\"r\"(result));";
    static const char anchor[] = "#if WABT_BIG_ENDIAN";
    static const char force[] =
        "static inline void uq_force_f32(f32 v) { __asm__(\"\" ::\"x\"(v)); }\n"
        "static inline void uq_force_f64(f64 v) { __asm__(\"\" ::\"x\"(v)); }\n"
        "static inline void uq_force_int(u64 v) { __asm__(\"\" ::\"r\"(v)); }\n"
        "#define UQ_FORCE(v) _Generic((v), f32: uq_force_f32, f64: uq_force_f64, default: uq_force_int)(v)\n";
#if !defined(__x86_64__)
    UQ_UNUSED(path); UQ_UNUSED(em); UQ_UNUSED(barrier); UQ_UNUSED(anchor); UQ_UNUSED(force);
    return UQ_OK;
#else
    uint8_t *b;
    size_t n;
    uq_err err = uqi_read_file(path, &b, &n, em);
    if (err) return err;
    char *src = (char *)b;
    char *a = memmem(src, n, anchor, sizeof anchor - 1);
    if (!a) { free(b); return UQ_OK; } /* not the layout we know: leave it */
    size_t cap = n + sizeof force + 64 * 4;
    char *out = uqi_xmalloc(cap), *o = out;
    size_t pre = (size_t)(a - src);
    memcpy(o, src, pre);
    o += pre;
    memcpy(o, force, sizeof force - 1);
    o += sizeof force - 1;
    const char *p = a, *end = src + n;
    const size_t bl = sizeof barrier - 1;
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), barrier, bl);
        if (!q || (size_t)(o - out) + (size_t)(q - p) + 32 > cap) q = end;
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        if (q == end) break;
        memcpy(o, "UQ_FORCE(result);", 17);
        o += 17;
        p = q + bl;
    }
    free(b);
    err = uqi_write_file_atomic(path, out, (size_t)(o - out), em);
    free(out);
    return err;
#endif
}

static uq_err compile_module(uqi_engine *e, const uint8_t *wasm, size_t len, const uqi_wasm_info *info,
                             const char *label, const char *so_path, uq_errmsg *em)
{
    static atomic_uint seq;
    char dir[3800], p_wasm[4200], p_c[4200], p_glue[4200], p_so[4200], p_log[4200];
    snprintf(dir, sizeof dir, "%s/tmp.%d.%u", e->cache_dir, (int)getpid(), atomic_fetch_add(&seq, 1));
    if (mkdir(dir, 0700) != 0) return uqi_errf(em, UQ_ECOMPILE, "mkdir %s: %s", dir, strerror(errno));
    snprintf(p_wasm, sizeof p_wasm, "%s/in.wasm", dir);
    snprintf(p_c, sizeof p_c, "%s/m.c", dir);
    snprintf(p_glue, sizeof p_glue, "%s/glue.c", dir);
    snprintf(p_so, sizeof p_so, "%s/m.so", dir);
    snprintf(p_log, sizeof p_log, "%s/log", dir);
    progress pg = {label, len, uqi_now_ns(), false, isatty(2) == 1, 0};
    uq_err err = uqi_write_file_atomic(p_wasm, wasm, len, em);
    if (!err) err = write_glue(p_glue, info, em);
    if (!err) {
        const char *argv[] = {"wasm2c", p_wasm, "-n", "m", "-o", p_c, NULL};
        err = run_limited(e, argv, p_log, &pg, "wasm2c", em);
        if (err == UQ_ECOMPILE) {
            /* wasm2c validates the whole module: its verdict is the user's error. */
            char msg[sizeof em->text];
            snprintf(msg, sizeof msg, "%s", em ? em->text : "");
            err = uqi_errf(em, UQ_EBADMODULE, "invalid module: %s", msg);
        }
    }
    if (!err) err = patch_generated(p_c, em);
    if (!err) {
        char opt[8];
        snprintf(opt, sizeof opt, "-O%d", e->opt_level);
        char inc[4200];
        snprintf(inc, sizeof inc, "-I%s", dir);
        const char *argv[] = {e->cc, opt, "-fPIC", "-shared", "-fvisibility=hidden", "-DNDEBUG",
                        "-DWASM_RT_USE_STACK_DEPTH_COUNT=0", "-DWASM_RT_MEMCHECK_SIGNAL_HANDLER=1",
                        "-fno-strict-aliasing", "-fno-optimize-sibling-calls", "-fno-math-errno", "-w", inc,
                        p_c, p_glue, "-o", p_so, "-Wl,-z,now", "-lm", NULL};
        err = run_limited(e, argv, p_log, &pg, "cc", em);
    }
    if (!err) {
        int fd = open(p_so, O_RDONLY);
        if (fd >= 0) { fsync(fd); close(fd); }
        if (rename(p_so, so_path) != 0) err = uqi_errf(em, UQ_ECOMPILE, "rename to %s: %s", so_path, strerror(errno));
    }
    if (pg.shown) {
        double s = (double)(uqi_now_ns() - pg.t0) / 1e9;
        fprintf(stderr, "%suqbar: compiled %s in %.1fs%s\n", pg.tty ? "\r" : "", label, s, err ? " (failed)" : "");
    }
    rm_tree(dir);
    return err;
}

typedef struct text_find { uintptr_t base; int found; } text_find;

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    UQ_UNUSED(size);
    text_find *tf = arg;
    if (info->dlpi_addr != tf->base) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            uqi_sched_add_guest_text(lo, lo + ph->p_memsz);
            tf->found++;
        }
    }
    return tf->found ? 1 : 0;
}

static uq_err open_so(uqi_module *m, const char *so_path, uq_errmsg *em)
{
    m->dl = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
    if (!m->dl) return uqi_errf(em, UQ_ECOMPILE, "cannot load compiled module %s: %s", so_path, dlerror());
    size_t *isz = dlsym(m->dl, "uqg_instance_size");
    void (*init)(void) = (void (*)(void))dlsym(m->dl, "uqg_init");
    m->instantiate = (void (*)(void *, void *))dlsym(m->dl, "uqg_instantiate");
    m->free = (void (*)(void *))dlsym(m->dl, "uqg_free");
    m->start = (void (*)(void *))dlsym(m->dl, "uqg_start");
    if (!isz || !init || !m->instantiate || !m->free || !m->start) {
        dlclose(m->dl);
        m->dl = NULL;
        return uqi_errf(em, UQ_ECOMPILE, "compiled module %s lacks its entry points", so_path);
    }
    m->inst_size = *isz;
    struct link_map *lm = NULL;
    if (dlinfo(m->dl, RTLD_DI_LINKMAP, &lm) != 0 || !lm) {
        dlclose(m->dl);
        m->dl = NULL;
        return uqi_errf(em, UQ_ECOMPILE, "dlinfo failed for %s", so_path);
    }
    text_find tf = {(uintptr_t)lm->l_addr, 0};
    dl_iterate_phdr(phdr_cb, &tf);
    init();
    return UQ_OK;
}

/* A module loaded before, found by its bytes (kept for modules up to
 * UQI_MODULE_KEEP_BYTES) or its hash; NULL if none (e->lock held). */
static uqi_module *find_loaded(uqi_engine *e, const uint8_t *wasm, size_t len, const uint8_t *h)
{
    for (uqi_module *m = e->mods; m; m = m->next)
        if (h ? memcmp(m->hash, h, 32) == 0 : m->wasm_len == len && m->wasm && memcmp(m->wasm, wasm, len) == 0)
            return m;
    return NULL;
}

static void keep_bytes(uqi_module *m, const uint8_t *wasm, size_t len)
{
    if (m->wasm || len > UQI_MODULE_KEEP_BYTES) return;
    m->wasm = uqi_xmalloc(len);
    memcpy(m->wasm, wasm, len);
    m->wasm_len = len;
}

bool uqi_module_same(const uqi_module *m, const uint8_t *wasm, size_t len)
{
    return m->wasm && m->wasm_len == len && memcmp(m->wasm, wasm, len) == 0;
}

uq_err uqi_engine_load(uqi_engine *e, const uint8_t *wasm, size_t len, const char *label, uqi_module **out,
                       uq_errmsg *em)
{
    /* Spawning a module already loaded (a process spawning children) skips
     * parsing, checking and hashing: identical bytes are the same module.
     * Larger modules are found by their hash, still without parsing. */
    pthread_mutex_lock(&e->lock);
    uqi_module *known = find_loaded(e, wasm, len, NULL);
    if (known) e->cache_hits++;
    pthread_mutex_unlock(&e->lock);
    if (known) {
        *out = known;
        return UQ_OK;
    }
    uint8_t h[32];
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, sizeof h);
    crypto_generichash_update(&hs, (const uint8_t *)e->toolchain, strlen(e->toolchain) + 1);
    crypto_generichash_update(&hs, wasm, len);
    crypto_generichash_final(&hs, h, sizeof h);
    pthread_mutex_lock(&e->lock);
    if ((known = find_loaded(e, wasm, len, h))) {
        e->cache_hits++;
        keep_bytes(known, wasm, len);
    }
    pthread_mutex_unlock(&e->lock);
    if (known) {
        *out = known;
        return UQ_OK;
    }
    uqi_wasm_info info;
    uq_err err = uqi_wasm_parse(wasm, len, &info, em);
    if (err) return err;
    err = uqi_hostapi_check(&info, em);
    if (err) goto done;
    const uqi_wasm_export *st = uqi_wasm_find_export(&info, "_start", 0);
    if (!st) {
        err = uqi_errf(em, UQ_EEXPORT, "module has no _start function (build it as a WASI command)");
        goto done;
    }
    if (strcmp(uqi_wasm_func_sig(&info, st->index), ":") != 0) {
        err = uqi_errf(em, UQ_EEXPORT, "_start must take and return nothing");
        goto done;
    }
    const uqi_wasm_export *ini = uqi_wasm_find_export(&info, "_initialize", 0);
    if (ini && strcmp(uqi_wasm_func_sig(&info, ini->index), ":") != 0) {
        err = uqi_errf(em, UQ_EEXPORT, "_initialize must take and return nothing");
        goto done;
    }
    pthread_mutex_lock(&e->lock);
    if ((known = find_loaded(e, wasm, len, h))) { /* loaded meanwhile by another thread */
        e->cache_hits++;
        keep_bytes(known, wasm, len);
        pthread_mutex_unlock(&e->lock);
        *out = known;
        goto done;
    }
    uqi_module *m = uqi_xcalloc(1, sizeof *m);
    memcpy(m->hash, h, sizeof h);
    sodium_bin2hex(m->hex, sizeof m->hex, h, sizeof h);
    m->mem_min_pages = info.mem_min_pages;
    m->mem_max_pages = info.mem_max_pages;
    char so_path[4200];
    snprintf(so_path, sizeof so_path, "%s/%s.so", e->cache_dir, m->hex);
    if (access(so_path, R_OK) == 0) {
        err = open_so(m, so_path, em);
        if (err) {
            uq_log(UQ_LOG_WARN, "engine", "cached %s is unusable (%s); compiling again", so_path, em ? em->text : "");
            unlink(so_path);
        } else {
            e->cache_hits++;
            uq_log(UQ_LOG_INFO, "engine", "%s: compiled code found in cache (%s)", label, m->hex);
        }
    } else {
        err = UQ_ENOENT;
    }
    if (err) {
        uint64_t t0 = uqi_now_ns();
        err = compile_module(e, wasm, len, &info, label, so_path, em);
        if (!err) err = open_so(m, so_path, em);
        m->compiled = true;
        m->compile_seconds = (double)(uqi_now_ns() - t0) / 1e9;
        e->compiles++;
        if (!err) uq_log(UQ_LOG_INFO, "engine", "%s: compiled in %.2fs (%s)", label, m->compile_seconds, m->hex);
    }
    if (err) {
        pthread_mutex_unlock(&e->lock);
        free(m);
        goto done;
    }
    keep_bytes(m, wasm, len);
    m->next = e->mods;
    e->mods = m;
    pthread_mutex_unlock(&e->lock);
    *out = m;
done:
    uqi_wasm_info_fini(&info);
    return err;
}

/* The import allowlist and its check. Adding a host function means adding a
 * row here and defining Z_<module>Z_<name> with the matching C types. */
#include "engine/hostapi.h"

#include <stdio.h>
#include <string.h>

#define W "wasi_snapshot_preview1"
static const uqi_hostfn table[] = {
    {W, "args_get", "ii:i"},
    {W, "args_sizes_get", "ii:i"},
    {W, "environ_get", "ii:i"},
    {W, "environ_sizes_get", "ii:i"},
    {W, "clock_res_get", "ii:i"},
    {W, "clock_time_get", "iIi:i"},
    {W, "fd_advise", "iIIi:i"},
    {W, "fd_allocate", "iII:i"},
    {W, "fd_close", "i:i"},
    {W, "fd_datasync", "i:i"},
    {W, "fd_fdstat_get", "ii:i"},
    {W, "fd_fdstat_set_flags", "ii:i"},
    {W, "fd_fdstat_set_rights", "iII:i"},
    {W, "fd_filestat_get", "ii:i"},
    {W, "fd_filestat_set_size", "iI:i"},
    {W, "fd_filestat_set_times", "iIIi:i"},
    {W, "fd_pread", "iiiIi:i"},
    {W, "fd_prestat_get", "ii:i"},
    {W, "fd_prestat_dir_name", "iii:i"},
    {W, "fd_pwrite", "iiiIi:i"},
    {W, "fd_read", "iiii:i"},
    {W, "fd_readdir", "iiiIi:i"},
    {W, "fd_renumber", "ii:i"},
    {W, "fd_seek", "iIii:i"},
    {W, "fd_sync", "i:i"},
    {W, "fd_tell", "ii:i"},
    {W, "fd_write", "iiii:i"},
    {W, "path_create_directory", "iii:i"},
    {W, "path_filestat_get", "iiiii:i"},
    {W, "path_filestat_set_times", "iiiiIIi:i"},
    {W, "path_link", "iiiiiii:i"},
    {W, "path_open", "iiiiiIIii:i"},
    {W, "path_readlink", "iiiiii:i"},
    {W, "path_remove_directory", "iii:i"},
    {W, "path_rename", "iiiiii:i"},
    {W, "path_symlink", "iiiii:i"},
    {W, "path_unlink_file", "iii:i"},
    {W, "poll_oneoff", "iiii:i"},
    {W, "proc_exit", "i:"},
    {W, "proc_raise", "i:i"},
    {W, "sched_yield", ":i"},
    {W, "random_get", "ii:i"},
    {W, "sock_accept", "iii:i"},
    {W, "sock_recv", "iiiiii:i"},
    {W, "sock_send", "iiiii:i"},
    {W, "sock_shutdown", "ii:i"},
    /* the uqbar guest ABI (src/kernel/abi.c, docs/ABI.md) */
    {"uqbar", "receive", "i:i"},
    {"uqbar", "msg_read", "iiiii:i"},
    {"uqbar", "msg_free", "i:i"},
    {"uqbar", "send", "i:I"},
    {"uqbar", "our", "ii:i"},
    {"uqbar", "send_caps", "iii:I"},
    {"uqbar", "caps_list", "ii:i"},
    {"uqbar", "cap_has", "iiii:i"},
    {"uqbar", "cap_verify", "iiii:i"},
    {"uqbar", "cap_drop", "ii:i"},
    {"uqbar", "spawn", "iii:i"},
    {"uqbar", "state_set", "ii:i"},
    {"uqbar", "state_get", "ii:i"},
    {"uqbar", "state_clear", ":i"},
};
#undef W

const uqi_hostfn *uqi_hostapi_find(const char *module, const char *name)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].module, module) == 0 && strcmp(table[i].name, name) == 0) return &table[i];
    return NULL;
}

void uqi_sig_pretty(const char *sig, char *buf, size_t cap)
{
    size_t k = 0;
    bool first = true;
    #define PUT(s) do { int w_ = snprintf(buf + k, k < cap ? cap - k : 0, "%s", s); if (w_ > 0) k += (size_t)w_; } while (0)
    PUT("(");
    for (const char *c = sig; *c; c++) {
        if (*c == ':') {
            PUT(") -> (");
            first = true;
            continue;
        }
        if (!first) PUT(", ");
        first = false;
        switch (*c) {
        case 'i': PUT("i32"); break;
        case 'I': PUT("i64"); break;
        case 'f': PUT("f32"); break;
        case 'F': PUT("f64"); break;
        case 'v': PUT("v128"); break;
        default: PUT("ref"); break;
        }
    }
    PUT(")");
    #undef PUT
}

uq_err uqi_hostapi_check(const uqi_wasm_info *info, uq_errmsg *em)
{
    static const char *kinds[] = {"function", "table", "memory", "global", "tag"};
    for (uint32_t i = 0; i < info->nimports; i++) {
        const uqi_wasm_import *im = &info->imports[i];
        if (im->kind != 0)
            return uqi_errf(em, UQ_EIMPORT,
                            "import %s.%s is a %s; only functions may be imported (a module defines its own memory)",
                            im->module, im->name, im->kind < 5 ? kinds[im->kind] : "?");
        const uqi_hostfn *h = uqi_hostapi_find(im->module, im->name);
        if (!h)
            return uqi_errf(em, UQ_EIMPORT, "import %s.%s is not provided by the host", im->module, im->name);
        const char *got = info->types[im->type_index].sig;
        if (strcmp(got, h->sig) != 0) {
            char a[128], b[128];
            uqi_sig_pretty(got, a, sizeof a);
            uqi_sig_pretty(h->sig, b, sizeof b);
            return uqi_errf(em, UQ_EIMPORT, "import %s.%s has type %s but the host provides %s",
                            im->module, im->name, a, b);
        }
    }
    return UQ_OK;
}

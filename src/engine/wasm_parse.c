/* Reader of the WebAssembly binary format (type, import, function, memory and
 * export sections). Every length is checked against the remaining input, with
 * 64-bit arithmetic, before it is used: this code reads attacker input. */
#include "engine/wasm_parse.h"

#include <stdio.h>
#include <string.h>

typedef struct reader {
    const uint8_t *p, *end;
    const uint8_t *base;
    uq_errmsg *em;
    uq_err err;
} reader;

static bool fail(reader *r, const char *what)
{
    if (r->err == UQ_OK) {
        r->err = UQ_EBADMODULE;
        uqi_errf(r->em, UQ_EBADMODULE, "%s at byte offset %zu", what, (size_t)(r->p - r->base));
    }
    r->p = r->end;
    return false;
}

static bool rd_byte(reader *r, uint8_t *out)
{
    if (r->p >= r->end) return fail(r, "unexpected end of module");
    *out = *r->p++;
    return true;
}

static bool rd_u32(reader *r, uint32_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        uint8_t b;
        if (!rd_byte(r, &b)) return false;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (v > UINT32_MAX) return fail(r, "integer too large");
            *out = (uint32_t)v;
            return true;
        }
    }
    return fail(r, "integer representation too long");
}

static bool rd_name(reader *r, char *out, size_t cap)
{
    uint32_t n;
    if (!rd_u32(r, &n)) return false;
    if ((uint64_t)n > (uint64_t)(r->end - r->p)) return fail(r, "name runs past end");
    if (n >= cap) return fail(r, "name too long");
    for (uint32_t i = 0; i < n; i++)
        if (r->p[i] == 0) return fail(r, "name contains NUL");
    memcpy(out, r->p, n);
    out[n] = '\0';
    r->p += n;
    return true;
}

static bool rd_limits(reader *r, uint32_t *min, uint32_t *max, bool *has_max)
{
    uint8_t flags;
    if (!rd_byte(r, &flags)) return false;
    if (flags > 3) return fail(r, "bad limits flags");
    if (!rd_u32(r, min)) return false;
    *has_max = flags & 1;
    *max = 0;
    if (*has_max && !rd_u32(r, max)) return false;
    return true;
}

static char valtype_char(uint8_t t)
{
    switch (t) {
    case 0x7f: return 'i';
    case 0x7e: return 'I';
    case 0x7d: return 'f';
    case 0x7c: return 'F';
    case 0x7b: return 'v';
    case 0x70: case 0x6f: return 'r';
    default: return 0;
    }
}

static bool rd_types(reader *r, uqi_wasm_info *m)
{
    uint32_t n;
    if (!rd_u32(r, &n)) return false;
    if ((uint64_t)n > (uint64_t)(r->end - r->p)) return fail(r, "type count exceeds section");
    m->types = uqi_xcalloc(n, sizeof *m->types);
    m->ntypes = n;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t form;
        if (!rd_byte(r, &form)) return false;
        if (form != 0x60) return fail(r, "bad function type form");
        char *s = m->types[i].sig;
        size_t k = 0, cap = sizeof m->types[i].sig;
        for (int part = 0; part < 2; part++) {
            uint32_t cnt;
            if (!rd_u32(r, &cnt)) return false;
            for (uint32_t j = 0; j < cnt; j++) {
                uint8_t t;
                if (!rd_byte(r, &t)) return false;
                char c = valtype_char(t);
                if (!c) return fail(r, "bad value type");
                if (k + 2 >= cap) return fail(r, "function type has too many parameters");
                s[k++] = c;
            }
            if (part == 0) s[k++] = ':';
        }
        s[k] = '\0';
    }
    return true;
}

static bool rd_imports(reader *r, uqi_wasm_info *m)
{
    uint32_t n;
    if (!rd_u32(r, &n)) return false;
    if ((uint64_t)n > (uint64_t)(r->end - r->p)) return fail(r, "import count exceeds section");
    m->imports = uqi_xcalloc(n, sizeof *m->imports);
    m->nimports = n;
    for (uint32_t i = 0; i < n; i++) {
        uqi_wasm_import *im = &m->imports[i];
        if (!rd_name(r, im->module, sizeof im->module)) return false;
        if (!rd_name(r, im->name, sizeof im->name)) return false;
        if (!rd_byte(r, &im->kind)) return false;
        uint32_t a, b;
        bool hm;
        uint8_t t;
        switch (im->kind) {
        case 0:
            if (!rd_u32(r, &im->type_index)) return false;
            if (im->type_index >= m->ntypes) return fail(r, "import type index out of range");
            m->nfuncs_imported++;
            break;
        case 1:
            if (!rd_byte(r, &t)) return false;
            if (!rd_limits(r, &a, &b, &hm)) return false;
            break;
        case 2:
            if (!rd_limits(r, &a, &b, &hm)) return false;
            break;
        case 3:
            if (!rd_byte(r, &t) || !rd_byte(r, &t)) return false;
            break;
        case 4:
            if (!rd_byte(r, &t) || !rd_u32(r, &a)) return false;
            break;
        default:
            return fail(r, "bad import kind");
        }
    }
    return true;
}

static bool rd_functions(reader *r, uqi_wasm_info *m)
{
    uint32_t n;
    if (!rd_u32(r, &n)) return false;
    if ((uint64_t)n > (uint64_t)(r->end - r->p)) return fail(r, "function count exceeds section");
    m->nfuncs_defined = n;
    m->func_type = uqi_xcalloc((size_t)m->nfuncs_imported + n, sizeof *m->func_type);
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->nimports; i++)
        if (m->imports[i].kind == 0) m->func_type[k++] = m->imports[i].type_index;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t;
        if (!rd_u32(r, &t)) return false;
        if (t >= m->ntypes) return fail(r, "function type index out of range");
        m->func_type[k++] = t;
    }
    return true;
}

static bool rd_memories(reader *r, uqi_wasm_info *m)
{
    uint32_t n;
    if (!rd_u32(r, &n)) return false;
    if ((uint64_t)n > (uint64_t)(r->end - r->p)) return fail(r, "memory count exceeds section");
    for (uint32_t i = 0; i < n; i++) {
        uint32_t mn, mx;
        bool hm;
        if (!rd_limits(r, &mn, &mx, &hm)) return false;
        if (i == 0) {
            m->mem_min_pages = mn;
            m->mem_max_pages = hm ? mx : 65536;
            m->mem_has_max = hm;
        }
    }
    m->nmemories = n;
    return true;
}

static bool rd_exports(reader *r, uqi_wasm_info *m)
{
    uint32_t n;
    if (!rd_u32(r, &n)) return false;
    if ((uint64_t)n > (uint64_t)(r->end - r->p)) return fail(r, "export count exceeds section");
    m->exports = uqi_xcalloc(n, sizeof *m->exports);
    m->nexports = n;
    for (uint32_t i = 0; i < n; i++) {
        uqi_wasm_export *ex = &m->exports[i];
        if (!rd_name(r, ex->name, sizeof ex->name)) return false;
        if (!rd_byte(r, &ex->kind) || !rd_u32(r, &ex->index)) return false;
    }
    return true;
}

uq_err uqi_wasm_parse(const uint8_t *bytes, size_t len, uqi_wasm_info *out, uq_errmsg *em)
{
    memset(out, 0, sizeof *out);
    reader r = {bytes, bytes + len, bytes, em, UQ_OK};
    static const uint8_t magic[8] = {0, 'a', 's', 'm', 1, 0, 0, 0};
    if (len < 8 || memcmp(bytes, magic, 4) != 0)
        return uqi_errf(em, UQ_EBADMODULE, "not a WebAssembly module (bad magic number)");
    if (memcmp(bytes + 4, magic + 4, 4) != 0)
        return uqi_errf(em, UQ_EBADMODULE, "unsupported WebAssembly version (only version 1)");
    r.p += 8;
    int last_id = 0;
    bool have_funcs = false;
    while (r.p < r.end && r.err == UQ_OK) {
        uint8_t id;
        uint32_t size;
        if (!rd_byte(&r, &id) || !rd_u32(&r, &size)) break;
        if ((uint64_t)size > (uint64_t)(r.end - r.p)) {
            fail(&r, "section runs past end of module (truncated file?)");
            break;
        }
        reader s = {r.p, r.p + size, bytes, em, UQ_OK};
        if (id != 0) {
            /* sections 1..11 are ordered; 12 (datacount) sits between 9 and 10 */
            int order = id == 12 ? 95 : id == 13 ? 55 : id * 10;
            if (id > 13) { fail(&r, "unknown section id"); break; }
            if (order <= last_id) { fail(&r, "section out of order or duplicated"); break; }
            last_id = order;
        }
        bool ok = true;
        switch (id) {
        case 1: ok = rd_types(&s, out); break;
        case 2: ok = rd_imports(&s, out); break;
        case 3: ok = rd_functions(&s, out); have_funcs = true; break;
        case 5: ok = rd_memories(&s, out); break;
        case 7: ok = rd_exports(&s, out); break;
        default: s.p = s.end; break;
        }
        if (!ok || s.err != UQ_OK) { r.err = s.err ? s.err : UQ_EBADMODULE; break; }
        if (s.p != s.end && id != 0 && (id == 1 || id == 2 || id == 3 || id == 5 || id == 7)) {
            r.p = s.p;
            fail(&r, "section size mismatch");
            break;
        }
        r.p += size;
    }
    if (r.err == UQ_OK && !have_funcs) {
        out->func_type = uqi_xcalloc(out->nfuncs_imported, sizeof *out->func_type);
        uint32_t k = 0;
        for (uint32_t i = 0; i < out->nimports; i++)
            if (out->imports[i].kind == 0) out->func_type[k++] = out->imports[i].type_index;
    }
    if (r.err == UQ_OK) {
        for (uint32_t i = 0; i < out->nexports; i++) {
            const uqi_wasm_export *ex = &out->exports[i];
            if (ex->kind == 0 && ex->index >= out->nfuncs_imported + out->nfuncs_defined) {
                uqi_errf(em, UQ_EBADMODULE, "export \"%s\" names function %u, which does not exist", ex->name, ex->index);
                r.err = UQ_EBADMODULE;
                break;
            }
        }
    }
    if (r.err != UQ_OK) {
        uqi_wasm_info_fini(out);
        return r.err;
    }
    return UQ_OK;
}

void uqi_wasm_info_fini(uqi_wasm_info *m)
{
    free(m->types);
    free(m->imports);
    free(m->func_type);
    free(m->exports);
    memset(m, 0, sizeof *m);
}

const char *uqi_wasm_func_sig(const uqi_wasm_info *m, uint32_t fidx)
{
    if (fidx >= m->nfuncs_imported + m->nfuncs_defined) return NULL;
    return m->types[m->func_type[fidx]].sig;
}

const uqi_wasm_export *uqi_wasm_find_export(const uqi_wasm_info *m, const char *name, uint8_t kind)
{
    for (uint32_t i = 0; i < m->nexports; i++)
        if (m->exports[i].kind == kind && strcmp(m->exports[i].name, name) == 0) return &m->exports[i];
    return NULL;
}

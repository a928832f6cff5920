/* The wasm reader and the import allowlist: valid modules parse, hostile
 * and truncated bytes are refused with a message, never a crash. */
#include "engine/hostapi.h"
#include "engine/module.h"
#include "engine/wasm_parse.h"
#include "runner.h"

static uint8_t *load(const char *guest, size_t *n)
{
    uint8_t *b;
    uq_errmsg em;
    if (uqi_read_file(tb_guest(guest), &b, n, &em)) test_fail(__FILE__, __LINE__, "%s", em.text);
    return b;
}

TEST(parse_real_wasi_program)
{
    size_t n;
    uint8_t *b = load("hello", &n);
    uqi_wasm_info info;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_wasm_parse(b, n, &info, &em), UQ_OK);
    ASSERT(info.nimports > 0);
    ASSERT(uqi_wasm_find_export(&info, "_start", 0) != NULL);
    ASSERT(uqi_wasm_find_export(&info, "memory", 2) != NULL);
    ASSERT_EQ(uqi_hostapi_check(&info, &em), UQ_OK);
    bool saw_fd_write = false;
    for (uint32_t i = 0; i < info.nimports; i++) {
        if (strcmp(info.imports[i].name, "fd_write") == 0) {
            saw_fd_write = true;
            ASSERT(strcmp(info.types[info.imports[i].type_index].sig, "iiii:i") == 0);
        }
    }
    ASSERT(saw_fd_write);
    uqi_wasm_info_fini(&info);
    free(b);
}

TEST(parse_refuses_garbage)
{
    uqi_wasm_info info;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_wasm_parse((const uint8_t *)"", 0, &info, &em), UQ_EBADMODULE);
    ASSERT_STR_HAS(em.text, "bad magic");
    ASSERT_EQ(uqi_wasm_parse((const uint8_t *)"\177ELF\2\1\1\0\0\0", 10, &info, &em), UQ_EBADMODULE);
    ASSERT_STR_HAS(em.text, "not a WebAssembly module");
    ASSERT_EQ(uqi_wasm_parse((const uint8_t *)"\0asm\2\0\0\0", 8, &info, &em), UQ_EBADMODULE);
    ASSERT_STR_HAS(em.text, "version");
    /* a section that claims more bytes than exist */
    const uint8_t big[] = {0, 'a', 's', 'm', 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x0f, 0x60};
    ASSERT_EQ(uqi_wasm_parse(big, sizeof big, &info, &em), UQ_EBADMODULE);
    ASSERT_STR_HAS(em.text, "truncated");
    /* an over-long LEB128 */
    const uint8_t leb[] = {0, 'a', 's', 'm', 1, 0, 0, 0, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80};
    ASSERT_EQ(uqi_wasm_parse(leb, sizeof leb, &info, &em), UQ_EBADMODULE);
}

/* Every prefix of a real module either parses (it may end between sections)
 * or is refused; none crashes or reads past the end (ASan build checks). */
TEST(parse_every_truncation)
{
    size_t n;
    uint8_t *b = load("hello", &n);
    int refused = 0;
    for (size_t len = 0; len < n; len++) {
        uint8_t *c = malloc(len ? len : 1);
        memcpy(c, b, len);
        uqi_wasm_info info;
        uq_errmsg em = {{0}};
        uq_err e = uqi_wasm_parse(c, len, &info, &em);
        if (e == UQ_OK) uqi_wasm_info_fini(&info);
        else {
            refused++;
            ASSERT(em.text[0] != '\0');
        }
        free(c);
    }
    test_log("%d of %zu prefixes refused", refused, n);
    ASSERT(refused > 0);
    free(b);
}

/* Random corruption of a real module: never a crash. */
TEST(parse_random_mutations)
{
    size_t n;
    uint8_t *b = load("hello", &n);
    uint8_t *c = malloc(n);
    srand(12345);
    int refused = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(c, b, n);
        int flips = 1 + rand() % 8;
        for (int k = 0; k < flips; k++) c[(size_t)rand() % n] = (uint8_t)rand();
        uqi_wasm_info info;
        uq_errmsg em;
        if (uqi_wasm_parse(c, n, &info, &em) == UQ_OK) {
            uqi_hostapi_check(&info, &em);
            uqi_wasm_info_fini(&info);
        } else {
            refused++;
        }
    }
    test_log("%d of 3000 mutants refused by the reader", refused);
    free(c);
    free(b);
}

static uq_err check_guest(const char *g, uq_errmsg *em)
{
    size_t n;
    uint8_t *b = load(g, &n);
    uqi_wasm_info info;
    uq_err e = uqi_wasm_parse(b, n, &info, em);
    free(b);
    if (e) return e;
    e = uqi_hostapi_check(&info, em);
    uqi_wasm_info_fini(&info);
    return e;
}

TEST(imports_unknown_mistyped_and_non_function_refused)
{
    uq_errmsg em = {{0}};
    ASSERT_EQ(check_guest("bad_import_unknown", &em), UQ_EIMPORT);
    ASSERT_STR_HAS(em.text, "import wasi_snapshot_preview1.steal_keys is not provided by the host");
    ASSERT_EQ(check_guest("bad_import_module", &em), UQ_EIMPORT);
    ASSERT_STR_HAS(em.text, "import env.system is not provided by the host");
    ASSERT_EQ(check_guest("bad_import_type", &em), UQ_EIMPORT);
    ASSERT_STR_HAS(em.text, "import wasi_snapshot_preview1.fd_write has type (i32, i32) -> (i32) but the host provides (i32, i32, i32, i32) -> (i32)");
    ASSERT_EQ(check_guest("bad_import_memory", &em), UQ_EIMPORT);
    ASSERT_STR_HAS(em.text, "import env.memory is a memory; only functions may be imported");
    ASSERT_EQ(check_guest("hello", &em), UQ_OK);
}

TEST(wasm2c_mangling_matches)
{
    char out[128];
    uqi_wasm2c_mangle("_start", out, sizeof out);
    ASSERT(strcmp(out, "_start") == 0);
    uqi_wasm2c_mangle("we-ird.Name", out, sizeof out);
    ASSERT(strcmp(out, "weZ2DirdZ2EName") == 0);
    uqi_wasm2c_mangle("Zed", out, sizeof out);
    ASSERT(strcmp(out, "ZZed") == 0);
}

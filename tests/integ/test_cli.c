/* `uqbar run` as a user runs it: real modules, real output, exit codes. */
#include "runner.h"
#include "util/util.h"

static const char *uqbar(void)
{
    static char b[1024];
    snprintf(b, sizeof b, "%s/uqbar", tb_build());
    return b;
}

static const char *cache(void)
{
    static char b[1024];
    snprintf(b, sizeof b, "%s/cache-test", tb_shared());
    return b;
}

#define RUN_T(secs, ...) ({ const char *a_[] = {uqbar(), "run", "--cache", cache(), __VA_ARGS__, NULL}; tb_run(a_, NULL, secs); })
#define RUN(...) RUN_T(120, __VA_ARGS__)

TEST(cli_wasi_program_with_printf_and_args)
{
    cmd_result r = RUN(tb_guest("hello"), "one", "two words");
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "hello from wasm: 2 args: [one] [two words]\n");
    ASSERT_STR_HAS(r.err, "to stderr\n");
    ASSERT_STR_LACKS(r.out, "GREETING");
    tb_result_free(&r);
    r = RUN("--env", "GREETING=hi there", tb_guest("hello"), "x");
    ASSERT_EQ(r.status, 7); /* the module's exit code */
    ASSERT_STR_HAS(r.out, "GREETING=hi there\n");
    tb_result_free(&r);
}

TEST(cli_trap_is_one_clear_line_and_status)
{
    static const struct { const char *g, *text; } cases[] = {
        {"trap_oob", "trap: out of bounds memory access"},
        {"trap_unreachable", "trap: unreachable executed"},
        {"trap_div0", "trap: integer divide by zero"},
        {"trap_overflow", "trap: integer overflow"},
        {"trap_indirect", "trap: indirect call type mismatch"},
        {"trap_stack", "trap: call stack exhausted"},
        {"null_call", "trap: indirect call type mismatch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cmd_result r = RUN(tb_guest(cases[i].g));
        test_log("%s -> %d: %s", cases[i].g, r.status, r.err);
        ASSERT(!r.signaled);
        ASSERT_EQ(r.status, 121);
        ASSERT_STR_HAS(r.err, cases[i].text);
        ASSERT_STR_LACKS(r.err, "core dumped");
        tb_result_free(&r);
    }
}

TEST(cli_recursion_from_c_ends_in_a_trap)
{
    cmd_result r = RUN(tb_guest("recurse"));
    ASSERT(!r.signaled);
    ASSERT_EQ(r.status, 121);
    ASSERT_STR_HAS(r.err, "trap: ");
    tb_result_free(&r);
}

TEST(cli_garbage_and_truncated_files)
{
    const char *p = tb_write_tmp("garbage.wasm", "this is not wasm at all", 23);
    cmd_result r = RUN(p);
    ASSERT_EQ(r.status, 122);
    ASSERT_STR_HAS(r.err, "not a WebAssembly module");
    tb_result_free(&r);
    /* truncated: the first 3/4 of a real module */
    uint8_t *b;
    size_t n;
    ASSERT_EQ(uqi_read_file(tb_guest("hello"), &b, &n, NULL), UQ_OK);
    p = tb_write_tmp("trunc.wasm", b, n * 3 / 4);
    free(b);
    r = RUN(p);
    ASSERT_EQ(r.status, 122);
    ASSERT_STR_HAS(r.err, "truncated");
    tb_result_free(&r);
    r = RUN("/nonexistent/file.wasm");
    ASSERT_EQ(r.status, 122);
    ASSERT_STR_HAS(r.err, "No such file");
    tb_result_free(&r);
    r = RUN(tb_guest("no_start"));
    ASSERT_EQ(r.status, 122);
    ASSERT_STR_HAS(r.err, "no _start function");
    tb_result_free(&r);
}

/* A module that passes our reader but that wasm2c's validator refuses. */
TEST(cli_invalid_body_refused_by_validator)
{
    /* type section: () -> i32, one function, body returns nothing: invalid */
    static const uint8_t m[] = {0, 'a', 's', 'm', 1, 0, 0, 0,
                                1, 5, 1, 0x60, 0, 1, 0x7f,    /* type 0: () -> i32 */
                                3, 2, 1, 0,                   /* func 0: type 0 */
                                7, 10, 1, 6, '_', 's', 't', 'a', 'r', 't', 0, 0,
                                10, 4, 1, 2, 0, 0x0b};        /* body: end (no value) */
    const char *p = tb_write_tmp("invalid.wasm", m, sizeof m);
    cmd_result r = RUN(p);
    test_log("%s", r.err);
    ASSERT_EQ(r.status, 122);
    ASSERT(strstr(r.err, "_start must take and return nothing") || strstr(r.err, "invalid module"));
    tb_result_free(&r);
}

TEST(cli_refused_imports_are_named)
{
    cmd_result r = RUN(tb_guest("bad_import_unknown"));
    ASSERT_EQ(r.status, 122);
    ASSERT_STR_HAS(r.err, "wasi_snapshot_preview1.steal_keys is not provided by the host");
    tb_result_free(&r);
    r = RUN(tb_guest("bad_import_type"));
    ASSERT_EQ(r.status, 122);
    ASSERT_STR_HAS(r.err, "fd_write has type (i32, i32) -> (i32)");
    tb_result_free(&r);
}

TEST(cli_wasi_denies_what_is_not_granted)
{
    cmd_result r = RUN(tb_guest("wasi_deny"));
    test_log("%s", r.out);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "all denied");
    ASSERT_STR_HAS(r.out, "read fd 5: Bad file descriptor");
    tb_result_free(&r);
}

TEST(cli_memory_cap)
{
    cmd_result r = RUN("--max-memory", "32M", tb_guest("malloc_cap"));
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "then malloc returned NULL");
    ASSERT_STR_HAS(r.out, "still alive");
    tb_result_free(&r);
    r = RUN("--max-memory", "lots", tb_guest("malloc_cap"));
    ASSERT_EQ(r.status, 2);
    ASSERT_STR_HAS(r.err, "bad size");
    tb_result_free(&r);
}

TEST(cli_second_run_uses_cache)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/c", tb_tmpdir());
    const char *a[] = {uqbar(), "run", "-v", "--cache", dir, tb_guest("hello"), NULL};
    cmd_result r1 = tb_run(a, NULL, 120);
    ASSERT_EQ(r1.status, 0);
    ASSERT_STR_HAS(r1.err, "compiled in");
    cmd_result r2 = tb_run(a, NULL, 120);
    ASSERT_EQ(r2.status, 0);
    ASSERT_STR_HAS(r2.err, "compiled code found in cache");
    ASSERT_STR_LACKS(r2.err, "compiled in");
    test_log("first run %.2fs, second %.3fs", r1.seconds, r2.seconds);
    tb_result_free(&r1);
    tb_result_free(&r2);
}

/* `uqbar run` grants stdin: a filter reads it to the end. */
TEST(cli_stdin_is_readable_in_run)
{
    const char *a[] = {uqbar(), "run", "--cache", cache(), tb_guest("upcase"), NULL};
    cmd_result r = tb_run(a, "hello stdin\nsecond line\n", 60);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "HELLO STDIN\nSECOND LINE\n");
    ASSERT_STR_HAS(r.err, "read 24 bytes");
    tb_result_free(&r);
}

TEST(cli_usage_errors_and_help)
{
    const char *a[] = {uqbar(), "frobnicate", NULL};
    cmd_result r = tb_run(a, NULL, 10);
    ASSERT_EQ(r.status, 2);
    ASSERT_STR_HAS(r.err, "unknown command 'frobnicate'");
    tb_result_free(&r);
    const char *h[] = {uqbar(), "help", NULL};
    r = tb_run(h, NULL, 10);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "uqbar run [options] FILE.wasm");
    tb_result_free(&r);
}

/* A large real C library: SQLite's amalgamation compiled to wasm answers. */
TEST_T(cli_sqlite_answers_queries, 900)
{
    char p[1024];
    snprintf(p, sizeof p, "%s", tb_guest("sqlq"));
    /* the first run compiles SQLite into an empty cache: minutes on a loaded
     * 2-core machine, hence the longer limit */
    cmd_result r = RUN_T(600, p);
    if (r.status != 0) test_log("stderr: %s", r.err);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "selftest: ok");
    ASSERT_STR_HAS(r.out, "check count: 10000 ok");
    tb_result_free(&r);
    r = RUN(p, "create table t(a,b); insert into t values(1,'x'),(2,'y'),(3,'z');",
            "select sum(a), group_concat(b,'-') from t;");
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "6|x-y-z");
    tb_result_free(&r);
    r = RUN(p, "selec 1;");
    ASSERT_EQ(r.status, 1);
    ASSERT_STR_HAS(r.err, "syntax error");
    tb_result_free(&r);
}

/* `uqbar boot`: a node with a terminal; the commands a user types first. */
TEST(cli_boot_terminal_session)
{
    char home[1200], demo[1200], sink[1200];
    snprintf(home, sizeof home, "%s/home", tb_tmpdir());
    snprintf(demo, sizeof demo, "%s/apps/demo.json", tb_shared());
    snprintf(sink, sizeof sink, "%s/apps/sink.wasm", tb_shared());
    const char *a[] = {uqbar(), "boot", "--home", home, "--name", "t.local", "--install", demo, "--yes", NULL};
    char input[4096];
    snprintf(input, sizeof input,
             "help\n"
             "m echo {\"hello\":\"world\"}\n"
             "m mw {\"via\":\"middleware\"}\n"
             "start sink2 %s\n"
             "m sink2 {\"x\":1} -t 1\n"
             "m nobody {}\n"
             "m BAD@@ {}\n"
             "ps\n"
             "debug\n"
             "kill sink2\n"
             "frob\n",
             sink); /* end of input: graceful shutdown */
    cmd_result r = tb_run(a, input, 120);
    test_log("%s", r.out);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "uqbar node t.local is up");
    ASSERT_STR_HAS(r.out, "m ADDRESS JSON");
    ASSERT_STR_HAS(r.out, "response from t.local@echo: {\"hello\":\"world\"}");
    ASSERT_STR_HAS(r.out, "[mw] forwarding {\"via\":\"middleware\"} from t.local@terminal");
    ASSERT_STR_HAS(r.out, "response from t.local@echo: {\"via\":\"middleware\"}");
    ASSERT_STR_HAS(r.out, "response from t.local@kernel: \"InitializedProcess\"");
    ASSERT_STR_HAS(r.out, "response from t.local@kernel: \"StartedProcess\"");
    ASSERT_STR_HAS(r.out, "error Timeout from t.local@sink2");
    ASSERT_STR_HAS(r.out, "error NoSuchProcess from t.local@nobody");
    ASSERT_STR_HAS(r.out, "error: bad address");
    ASSERT_STR_HAS(r.out, "mailbox");
    ASSERT_STR_HAS(r.out, "{\"Debug\":{\"ProcessMap\":{");
    ASSERT_STR_HAS(r.out, "{\"KilledProcess\":\"sink2\"}");
    /* "Installing shows the user, in plain words, what the app asks for" */
    ASSERT_STR_HAS(r.out, "Package demo installs 6 processes");
    ASSERT_STR_HAS(r.out, "mw (middleware.wasm), restarted when it exits");
    ASSERT_STR_HAS(r.out, "- send messages to echo");
    ASSERT_STR_HAS(r.out, "installed and running");
    ASSERT_STR_HAS(r.out, "unknown command 'frob'");
    ASSERT_STR_HAS(r.out, "shutting down");
    tb_result_free(&r);
    const char *nohome[] = {uqbar(), "boot", NULL};
    r = tb_run(nohome, NULL, 10);
    ASSERT_EQ(r.status, 2);
    ASSERT_STR_HAS(r.err, "--home DIR is required");
    tb_result_free(&r);
}

/* "Installing shows the user, in plain words, what the app asks for ... and
 * installs only after approval ... A refusal leaves nothing behind." */
TEST(cli_install_refused_leaves_nothing)
{
    char home[1200], demo[1200];
    snprintf(home, sizeof home, "%s/home", tb_tmpdir());
    snprintf(demo, sizeof demo, "%s/apps/demo.json", tb_shared());
    const char *a[] = {uqbar(), "boot", "--home", home, "--name", "t.local", "--install", demo, NULL};
    cmd_result r = tb_run(a, "n\nps\nm echo {}\n", 120);
    test_log("%s", r.out);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "fanout (fanout.wasm)");
    ASSERT_STR_HAS(r.out, "- send messages to counter");
    ASSERT_STR_HAS(r.out, "Install ");
    ASSERT_STR_HAS(r.out, "not installed: nothing was changed");
    ASSERT_STR_LACKS(r.out, "echo   ");
    ASSERT_STR_HAS(r.out, "error NoSuchProcess from t.local@echo");
    tb_result_free(&r);
}

/* "Booting a node again with the same home restarts the processes that
 * were running before, with their capabilities and state": the terminal's
 * view, with the demo package and its persistent tally. */
TEST(cli_boot_again_brings_processes_back)
{
    char home[1200], demo[1200];
    snprintf(home, sizeof home, "%s/home", tb_tmpdir());
    snprintf(demo, sizeof demo, "%s/apps/demo.json", tb_shared());
    const char *a[] = {uqbar(), "boot", "--home", home, "--name", "t.local", "--install", demo, "--yes", NULL};
    cmd_result r = tb_run(a, "m tally {\"add\":41}\nm tally {\"add\":1}\n", 120);
    test_log("%s", r.out);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "response from t.local@tally: {\"count\":42,\"rc\":0}");
    tb_result_free(&r);
    r = tb_run(a, "m tally {\"get\":1}\nm mw {\"back\":true}\nps\n", 120);
    test_log("%s", r.out);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_HAS(r.out, "restored 6 processes in");
    ASSERT_STR_HAS(r.out, "package demo is installed already");
    ASSERT_STR_HAS(r.out, "response from t.local@tally: {\"count\":42,");
    ASSERT_STR_HAS(r.out, "response from t.local@echo: {\"back\":true}"); /* mw kept its capability */
    tb_result_free(&r);
}

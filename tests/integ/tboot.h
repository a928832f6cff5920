/* Real nodes as OS processes (`uqbar boot`) driven through their terminal
 * (stdin from a pipe, stdout and stderr into another), and what the tests
 * around them need: a free loopback port, a manifest, directory files made
 * of the nodes' own records. */
#ifndef UQ_TEST_TBOOT_H
#define UQ_TEST_TBOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "runner.h"

/* Fork and exec argv (NULL-ended) with stdin from a pipe (*in: its write
 * end) and stdout and stderr into another (*out: its read end). ns: the
 * child enters network namespace /run/netns/<ns> first (NULL: stays);
 * pdeathsig: a signal the child gets when the test process dies (0: none).
 * The child makes only async-signal-safe calls (the test may have threads). */
pid_t tboot_spawn(const char *const *argv, const char *ns, int pdeathsig, int *in, int *out);
/* tboot_spawn with env (NULL-ended "NAME=VALUE" strings, or NULL) added to
 * the child's environment, replacing a variable of the same name. */
pid_t tboot_spawn_env(const char *const *argv, const char *const *env, const char *ns, int pdeathsig, int *in,
                      int *out);

/* A TCP port on 127.0.0.1 that nothing listens on (just now). */
int tboot_free_port(void);

/* One process of a manifest: <shared>/apps/<app>.wasm. */
typedef struct tboot_proc {
    const char *name, *app, *on_exit;
    bool public, networking;
} tboot_proc;

/* Write manifest <tmp>/<file> of package pkg holding procs[0..n), with
 * absolute paths; its path into path. */
void tboot_manifest(char *path, size_t cap, const char *file, const char *pkg, const tboot_proc *procs, int n);

/* A node in its own OS process, its output read as it is needed. */
typedef struct bnode {
    pid_t pid;
    int in, out;
    char name[32], home[1200], listen[64], backup[64];
    const char *peers;     /* --peers file (NULL: none given, <home>/peers) */
    const char *extra[4];  /* more boot options, NULL-ended */
    const char *env[4];    /* "NAME=VALUE" for its environment, NULL-ended */
    char buf[65536];       /* output not yet matched by bn_expect */
    size_t have;
    char seen[16384];      /* the last of everything read, for failure messages */
    size_t nseen;
} bnode;

/* name, home <tmp>/<name>, listen on 127.0.0.1 at a free port. */
void bn_init(bnode *b, const char *name);
/* bn_init nodes[i] as names[i] for i < n, each with peers as its --peers
 * file (NULL: none). */
void bn_init_all(bnode *nodes, const char *const *names, int n, const char *peers);
/* Start `uqbar boot` (dev key, net timeout 2 s, 1 worker; manifest, if any,
 * installed with --yes). */
void bn_boot(bnode *b, const char *manifest);
/* Read the node's output until a line holds want (true; the output up to
 * the end of that line is dropped) or ms pass (false). */
bool bn_expect(bnode *b, const char *want, int ms);
/* bn_expect, or the test fails at the caller's line, quoting the node's output. */
#define BN_EXPECT(b, want, ms) bn_expect_at(__FILE__, __LINE__, b, want, ms)
void bn_expect_at(const char *file, int at, bnode *b, const char *want, int ms);
/* Type line (with its newline) into the node's terminal. */
void bn_say(bnode *b, const char *line);
/* bn_boot, then its "is up" within 60 s or the test fails. */
void bn_up(bnode *b, const char *manifest);
/* bn_say(line), then bn_expect(want, ms) or the test fails (at the caller's line). */
#define bn_ask(b, line, want, ms) bn_ask_at(__FILE__, __LINE__, b, line, want, ms)
void bn_ask_at(const char *file, int at, bnode *b, const char *line, const char *want, int ms);
/* bn_say(line) and bn_expect(want, ms), up to tries times: whether want came. */
bool bn_retry(bnode *b, const char *line, const char *want, int tries, int ms);
/* bn_boot each of nodes[0..n) with manifest, then bn_wait_up each. */
void bn_up_all(bnode *nodes, int n, const char *manifest);
/* Wait for the "is up" of a node booted (60 s), or the test fails. */
void bn_wait_up(bnode *b);
/* Send sig (0: none), wait for the process, close its pipes; its wait status. */
int bn_kill(bnode *b, int sig);
/* SIGKILL, and assert it was alive until then (killed by that signal). */
void bn_kill9(bnode *b);
/* A node named name booted at home (bn_init, bn_boot); with delay_ms set,
 * every store commit takes that long (UQBAR_TEST_STORE_DELAY_MS), for
 * tests that kill it while a write is still queued. */
void bn_boot_home(bnode *b, const char *name, const char *home, const char *manifest, const char *delay_ms);
/* "exit" in its terminal, "shutting down" within 10 s (asserted), then bn_kill(b, sig). */
void bn_exit(bnode *b, int sig);
/* The records (<home>/record) of of[0..n), one after the other, written
 * as the directory file path. */
void bn_directory(const char *path, bnode *const *of, int n);
/* The same into b's own directory file, <home>/peers. */
void bn_peers(bnode *b, bnode *const *of, int n);

#endif

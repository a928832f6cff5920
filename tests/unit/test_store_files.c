/* The filesystem with handle capabilities (src/store/files.c): "When a file
 * is saved by a process, the filesystem returns a handle to that file upon
 * success. This handle is the only way to read or write to that file. The
 * process can clone the handle and share it via message with another
 * process, or split the handle and only clone and share the 'read' or
 * 'write' aspect." (../shared/seeds/processes.md, Capabilities) */
#define _GNU_SOURCE
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runner.h"
#include "store/files.h"
#include "util/util.h"

typedef struct {
    uqs_store *s;
    uqs_files *fs;
} fsys;

static fsys fs_open(const char *home)
{
    fsys f;
    uq_errmsg em = {{0}};
    if (uqs_open(home, NULL, &f.s, &em)) test_fail(__FILE__, __LINE__, "uqs_open: %s", em.text);
    if (uqs_files_open(f.s, home, &f.fs, &em)) test_fail(__FILE__, __LINE__, "uqs_files_open: %s", em.text);
    return f;
}

static void fs_close(fsys f)
{
    uqs_files_close(f.fs);
    uqs_close(f.s);
}

static uqs_handle create_ok(fsys f, const char *app, const char *name, const char *text)
{
    uqs_handle h;
    uq_errmsg em = {{0}};
    if (uqs_file_create(f.fs, app, name, text, strlen(text), &h, &em))
        test_fail(__FILE__, __LINE__, "create %s/%s: %s", app, name, em.text);
    return h;
}

static void expect_content(fsys f, uqs_handle h, const char *want)
{
    uint8_t *b;
    size_t n;
    uq_errmsg em = {{0}};
    if (uqs_file_read(f.fs, h, &b, &n, &em)) test_fail(__FILE__, __LINE__, "read: %s", em.text);
    if (n != strlen(want) || memcmp(b, want, n) != 0)
        test_fail(__FILE__, __LINE__, "read \"%.*s\", expected \"%s\"", (int)n, (const char *)b, want);
    free(b);
}

TEST(store_files_create_read_write_append_range_hash)
{
    fsys f = fs_open(tb_tmpdir());
    uq_errmsg em = {{0}};
    uqs_handle h = create_ok(f, "notes", "todo.txt", "hello");
    expect_content(f, h, "hello");
    uqs_handle h2;
    ASSERT_EQ(uqs_file_create(f.fs, "notes", "todo.txt", "x", 1, &h2, &em), UQ_EEXIST);
    ASSERT_EQ(uqs_file_append(f.fs, h, " world", 6, &em), UQ_OK);
    expect_content(f, h, "hello world");
    uint64_t size;
    ASSERT_EQ(uqs_file_size(f.fs, h, &size, &em), UQ_OK);
    ASSERT_EQ(size, 11);
    uint8_t *b;
    size_t n;
    ASSERT_EQ(uqs_file_read_range(f.fs, h, 6, 3, &b, &n, &em), UQ_OK);
    ASSERT_EQ(n, 3);
    ASSERT(memcmp(b, "wor", 3) == 0);
    free(b);
    ASSERT_EQ(uqs_file_read_range(f.fs, h, 9, 100, &b, &n, &em), UQ_OK); /* clipped */
    ASSERT_EQ(n, 2);
    ASSERT(memcmp(b, "ld", 2) == 0);
    free(b);
    ASSERT_EQ(uqs_file_read_range(f.fs, h, 50, 10, &b, &n, &em), UQ_OK); /* past the end */
    ASSERT_EQ(n, 0);
    free(b);
    char hex[65], want[65];
    uint8_t d[32];
    ASSERT_EQ(uqs_file_hash(f.fs, h, hex, &em), UQ_OK);
    crypto_generichash(d, 32, (const uint8_t *)"hello world", 11, NULL, 0);
    sodium_bin2hex(want, sizeof want, d, 32);
    ASSERT(strcmp(hex, want) == 0);
    ASSERT_EQ(uqs_file_write(f.fs, h, "replaced", 8, &em), UQ_OK);
    expect_content(f, h, "replaced");
    ASSERT_EQ(uqs_file_write(f.fs, h, "", 0, &em), UQ_OK);
    expect_content(f, h, "");
    ASSERT_EQ(uqs_file_append(f.fs, h, "ab", 2, &em), UQ_OK);
    ASSERT_EQ(uqs_file_append(f.fs, h, "", 0, &em), UQ_OK);
    expect_content(f, h, "ab");
    /* A larger file, hashed in chunks. */
    size_t big = (1 << 20) + 123;
    uint8_t *bb = uqi_xmalloc(big);
    for (size_t i = 0; i < big; i++) bb[i] = (uint8_t)(i * 13);
    ASSERT_EQ(uqs_file_write(f.fs, h, bb, big, &em), UQ_OK);
    ASSERT_EQ(uqs_file_hash(f.fs, h, hex, &em), UQ_OK);
    crypto_generichash(d, 32, bb, big, NULL, 0);
    sodium_bin2hex(want, sizeof want, d, 32);
    ASSERT(strcmp(hex, want) == 0);
    free(bb);
    fs_close(f);
}

TEST(store_files_rights_clone_split_revoke)
{
    fsys f = fs_open(tb_tmpdir());
    uq_errmsg em = {{0}};
    uqs_handle rw = create_ok(f, "app", "data", "v1"), ro, wo, ro2, c, x;
    ASSERT_EQ(uqs_handle_split(f.fs, rw, UQS_RIGHT_READ, &ro, &em), UQ_OK);
    ASSERT_EQ(uqs_handle_split(f.fs, rw, UQS_RIGHT_WRITE, &wo, &em), UQ_OK);
    /* The read half reads, and cannot write. */
    expect_content(f, ro, "v1");
    ASSERT_EQ(uqs_file_write(f.fs, ro, "no", 2, &em), UQ_EPERM);
    ASSERT_STR_HAS(em.text, "lacks the write right (it has read)");
    ASSERT_EQ(uqs_file_append(f.fs, ro, "no", 2, &em), UQ_EPERM);
    ASSERT_EQ(uqs_file_remove(f.fs, ro, &em), UQ_EPERM);
    /* The write half writes, and cannot read. */
    ASSERT_EQ(uqs_file_write(f.fs, wo, "v2", 2, &em), UQ_OK);
    uint8_t *b;
    size_t n;
    uint64_t size;
    char hex[65];
    ASSERT_EQ(uqs_file_read(f.fs, wo, &b, &n, &em), UQ_EPERM);
    ASSERT_STR_HAS(em.text, "lacks the read right (it has write)");
    ASSERT_EQ(uqs_file_size(f.fs, wo, &size, &em), UQ_EPERM);
    ASSERT_EQ(uqs_file_hash(f.fs, wo, hex, &em), UQ_EPERM);
    expect_content(f, ro, "v2");
    /* A half cannot regain what it lacks. */
    ASSERT_EQ(uqs_handle_split(f.fs, ro, UQS_RIGHTS_ALL, &x, &em), UQ_EPERM);
    ASSERT_EQ(uqs_handle_split(f.fs, ro, UQS_RIGHT_WRITE, &x, &em), UQ_EPERM);
    ASSERT_EQ(uqs_handle_split(f.fs, rw, 0, &x, &em), UQ_EINVAL);
    ASSERT_EQ(uqs_handle_split(f.fs, rw, 8, &x, &em), UQ_EINVAL);
    /* Clone keeps the rights. */
    ASSERT_EQ(uqs_handle_clone(f.fs, ro, &ro2, &em), UQ_OK);
    uqs_handle_info info;
    ASSERT_EQ(uqs_handle_info_get(f.fs, ro2, &info, &em), UQ_OK);
    ASSERT_EQ(info.rights, UQS_RIGHT_READ);
    ASSERT(info.derived);
    ASSERT(memcmp(info.parent.id, ro.id, 16) == 0);
    ASSERT(strcmp(info.app, "app") == 0 && strcmp(info.name, "data") == 0);
    ASSERT_EQ(uqs_handle_info_get(f.fs, rw, &info, &em), UQ_OK);
    ASSERT(!info.derived);
    ASSERT_EQ(info.rights, UQS_RIGHTS_ALL);
    ASSERT_EQ(uqs_handle_clone(f.fs, ro2, &c, &em), UQ_OK); /* rw -> ro -> ro2 -> c */
    /* Non-recursive revoke: only that handle. */
    size_t count;
    ASSERT_EQ(uqs_handle_revoke(f.fs, ro2, false, &count, &em), UQ_OK);
    ASSERT_EQ(count, 1);
    ASSERT_EQ(uqs_file_read(f.fs, ro2, &b, &n, &em), UQ_EPERM);
    ASSERT_STR_HAS(em.text, "unknown or revoked");
    expect_content(f, c, "v2");
    ASSERT_EQ(uqs_handle_revoke(f.fs, ro2, false, &count, &em), UQ_EPERM); /* twice */
    /* Recursive revoke of rw: everything derived from it goes, even past
     * the hole left by ro2. */
    uqs_handle other = create_ok(f, "app", "other", "o");
    ASSERT_EQ(uqs_handle_revoke(f.fs, rw, true, &count, &em), UQ_OK);
    ASSERT_EQ(count, 3); /* rw, ro, wo; c's parent ro2 is already gone */
    ASSERT_EQ(uqs_file_read(f.fs, ro, &b, &n, &em), UQ_EPERM);
    ASSERT_EQ(uqs_file_write(f.fs, wo, "x", 1, &em), UQ_EPERM);
    expect_content(f, c, "v2"); /* derived from a handle revoked alone before */
    expect_content(f, other, "o");
    /* A recursive revoke from the middle leaves the ancestors. */
    uqs_handle m, leaf;
    ASSERT_EQ(uqs_handle_clone(f.fs, other, &m, &em), UQ_OK);
    ASSERT_EQ(uqs_handle_split(f.fs, m, UQS_RIGHT_READ, &leaf, &em), UQ_OK);
    ASSERT_EQ(uqs_handle_revoke(f.fs, m, true, &count, &em), UQ_OK);
    ASSERT_EQ(count, 2);
    ASSERT_EQ(uqs_file_read(f.fs, leaf, &b, &n, &em), UQ_EPERM);
    expect_content(f, other, "o");
    /* An unguessed id reaches nothing. */
    uqs_handle forged;
    randombytes_buf(forged.id, 16);
    ASSERT_EQ(uqs_file_read(f.fs, forged, &b, &n, &em), UQ_EPERM);
    fs_close(f);
}

TEST(store_files_invalid_names_and_handle_text)
{
    fsys f = fs_open(tb_tmpdir());
    uq_errmsg em = {{0}};
    uqs_handle h;
    const char *bad[] = {"", "a/b", "..", ".", ".hidden", "../etc/passwd", "tab\there", "nl\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ASSERT_EQ(uqs_file_create(f.fs, "app", bad[i], "x", 1, &h, &em), UQ_EINVAL);
        ASSERT_STR_HAS(em.text, "bad file name");
    }
    char longname[UQS_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ASSERT_EQ(uqs_file_create(f.fs, "app", longname, "x", 1, &h, &em), UQ_EINVAL);
    ASSERT_STR_HAS(em.text, "1-200 bytes");
    longname[UQS_NAME_MAX] = '\0';
    create_ok(f, "app", longname, "longest name");
    create_ok(f, "app", "with space and ünïcode.v1", "fine");
    const char *bad_apps[] = {"", "a/b", "..", ".x", "a b"};
    for (size_t i = 0; i < sizeof bad_apps / sizeof *bad_apps; i++) {
        ASSERT_EQ(uqs_file_create(f.fs, bad_apps[i], "f", "x", 1, &h, &em), UQ_EINVAL);
        ASSERT_STR_HAS(em.text, "bad app name");
    }
    create_ok(f, "chat:sys", "f", "pkg-style app names are fine");
    /* Handles in text. */
    h = create_ok(f, "app", "t", "text");
    char hex[UQS_HANDLE_HEX + 1];
    uqs_handle_format(h, hex);
    ASSERT_EQ(strlen(hex), 32);
    uqs_handle back;
    ASSERT_EQ(uqs_handle_parse(hex, &back, &em), UQ_OK);
    ASSERT(memcmp(back.id, h.id, 16) == 0);
    expect_content(f, back, "text");
    ASSERT_EQ(uqs_handle_parse("abc", &back, &em), UQ_EINVAL);
    ASSERT_STR_HAS(em.text, "malformed file handle");
    ASSERT_EQ(uqs_handle_parse("zz000000000000000000000000000000", &back, &em), UQ_EINVAL);
    ASSERT_EQ(uqs_handle_parse(NULL, &back, &em), UQ_EINVAL);
    ASSERT(strcmp(uqs_rights_name(UQS_RIGHT_READ), "read") == 0);
    fs_close(f);
}

TEST(store_files_list_remove_recreate)
{
    fsys f = fs_open(tb_tmpdir());
    uq_errmsg em = {{0}};
    uqs_handle b = create_ok(f, "app", "b", "B");
    create_ok(f, "app", "a", "A");
    create_ok(f, "app", "c", "C");
    create_ok(f, "app2", "z", "Z");
    create_ok(f, "ap", "p", "not app's");
    char **names;
    size_t n;
    ASSERT_EQ(uqs_file_list(f.fs, "app", &names, &n, &em), UQ_OK);
    ASSERT_EQ(n, 3);
    ASSERT(strcmp(names[0], "a") == 0 && strcmp(names[1], "b") == 0 && strcmp(names[2], "c") == 0);
    free(names);
    ASSERT_EQ(uqs_file_list(f.fs, "nobody", &names, &n, &em), UQ_OK);
    ASSERT_EQ(n, 0);
    free(names);
    /* Remove: every handle to the file dies with it. */
    uqs_handle b2, b3;
    ASSERT_EQ(uqs_handle_clone(f.fs, b, &b2, &em), UQ_OK);
    ASSERT_EQ(uqs_file_open(f.fs, "app", "b", &b3, &em), UQ_OK);
    ASSERT_EQ(uqs_file_remove(f.fs, b2, &em), UQ_OK);
    uint8_t *d;
    size_t dn;
    ASSERT_EQ(uqs_file_read(f.fs, b, &d, &dn, &em), UQ_EPERM);
    ASSERT_EQ(uqs_file_read(f.fs, b3, &d, &dn, &em), UQ_EPERM);
    ASSERT_EQ(uqs_file_list(f.fs, "app", &names, &n, &em), UQ_OK);
    ASSERT_EQ(n, 2);
    free(names);
    ASSERT_EQ(uqs_file_open(f.fs, "app", "b", &b3, &em), UQ_ENOENT);
    /* The same name again is a new file: the old handles stay dead. */
    uqs_handle nb = create_ok(f, "app", "b", "new B");
    ASSERT_EQ(uqs_file_read(f.fs, b, &d, &dn, &em), UQ_EPERM);
    expect_content(f, nb, "new B");
    char path[1200];
    snprintf(path, sizeof path, "%s/files/app/b.v1", tb_tmpdir());
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_size, 5);
    fs_close(f);
}

TEST(store_files_persist_across_reopen)
{
    const char *home = tb_tmpdir();
    fsys f = fs_open(home);
    uq_errmsg em = {{0}};
    uqs_handle h = create_ok(f, "app", "log", "one");
    ASSERT_EQ(uqs_file_append(f.fs, h, ",two", 4, &em), UQ_OK);
    uqs_handle ro;
    ASSERT_EQ(uqs_handle_split(f.fs, h, UQS_RIGHT_READ, &ro, &em), UQ_OK);
    fs_close(f);
    f = fs_open(home);
    expect_content(f, h, "one,two");
    expect_content(f, ro, "one,two");
    ASSERT_EQ(uqs_file_write(f.fs, ro, "x", 1, &em), UQ_EPERM);
    uqs_handle fresh;
    ASSERT_EQ(uqs_file_open(f.fs, "app", "log", &fresh, &em), UQ_OK);
    expect_content(f, fresh, "one,two");
    fs_close(f);
}

static void write_raw(const char *path, const char *text, const char *mode)
{
    FILE *fp = fopen(path, mode);
    ASSERT(fp != NULL);
    fputs(text, fp);
    fclose(fp);
}

/* What a crash can leave behind: a data file no record points to (a create
 * or replace never acknowledged), an old generation, and the tail of an
 * append never acknowledged. Opening cleans them up. */
TEST(store_files_recovery_removes_unacknowledged_leftovers)
{
    const char *home = tb_tmpdir();
    fsys f = fs_open(home);
    uqs_handle h = create_ok(f, "app", "f", "committed");
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqs_file_write(f.fs, h, "gen2", 4, &em), UQ_OK); /* now f.v2 */
    fs_close(f);
    char p[1200];
    snprintf(p, sizeof p, "%s/files/app/f.v2", home);
    write_raw(p, "+half-an-append", "a");
    snprintf(p, sizeof p, "%s/files/app/f.v3", home);
    write_raw(p, "a replace never committed", "w");
    snprintf(p, sizeof p, "%s/files/app/f.v1", home);
    write_raw(p, "old generation", "w");
    snprintf(p, sizeof p, "%s/files/app/new.v1", home);
    write_raw(p, "a create never committed", "w");
    snprintf(p, sizeof p, "%s/files/app/README", home);
    write_raw(p, "not ours: left alone", "w");
    f = fs_open(home);
    expect_content(f, h, "gen2");
    struct stat st;
    snprintf(p, sizeof p, "%s/files/app/f.v2", home);
    ASSERT_EQ(stat(p, &st), 0);
    ASSERT_EQ(st.st_size, 4); /* trimmed */
    const char *gone[] = {"f.v3", "f.v1", "new.v1"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/files/app/%s", home, gone[i]);
        ASSERT(stat(p, &st) != 0);
    }
    snprintf(p, sizeof p, "%s/files/app/README", home);
    ASSERT_EQ(stat(p, &st), 0);
    uqs_handle n2;
    ASSERT_EQ(uqs_file_open(f.fs, "app", "new", &n2, &em), UQ_ENOENT);
    /* An append after a failed one does not carry its tail. */
    ASSERT_EQ(uqs_file_append(f.fs, h, "+ok", 3, &em), UQ_OK);
    expect_content(f, h, "gen2+ok");
    fs_close(f);
}

TEST(store_files_missing_data_file_is_reported)
{
    const char *home = tb_tmpdir();
    fsys f = fs_open(home);
    uqs_handle h = create_ok(f, "app", "f", "data");
    char p[1200];
    snprintf(p, sizeof p, "%s/files/app/f.v1", home);
    ASSERT_EQ(unlink(p), 0);
    uint8_t *b;
    size_t n;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqs_file_read(f.fs, h, &b, &n, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, p);
    ASSERT_EQ(uqs_file_append(f.fs, h, "x", 1, &em), UQ_ECORRUPT);
    ASSERT_STR_HAS(em.text, p);
    /* Replacing it repairs it. */
    ASSERT_EQ(uqs_file_write(f.fs, h, "again", 5, &em), UQ_OK);
    expect_content(f, h, "again");
    fs_close(f);
}

/* A full disk (RLIMIT_FSIZE, SIGXFSZ ignored): the writer gets UQ_ELIMIT,
 * its file keeps its last content, other files keep working. */
TEST(store_files_disk_full_fails_the_writer)
{
    const char *home = tb_tmpdir();
    fsys f = fs_open(home);
    uq_errmsg em = {{0}};
    uqs_handle h = create_ok(f, "app", "f", "small");
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4 << 20; /* data.mdb is sparse-free and smaller than this */
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
    size_t big = 5 << 20;
    uint8_t *b = uqi_xcalloc(1, big);
    uqs_handle h2;
    ASSERT_EQ(uqs_file_create(f.fs, "app", "big", b, big, &h2, &em), UQ_ELIMIT);
    test_log("create: %s", em.text);
    ASSERT_STR_HAS(em.text, "file size limit");
    ASSERT_EQ(uqs_file_write(f.fs, h, b, big, &em), UQ_ELIMIT);
    expect_content(f, h, "small");
    ASSERT_EQ(uqs_file_write(f.fs, h, b, 3 << 20, &em), UQ_OK);
    ASSERT_EQ(uqs_file_append(f.fs, h, b, 2 << 20, &em), UQ_ELIMIT);
    test_log("append: %s", em.text);
    uint64_t size;
    ASSERT_EQ(uqs_file_size(f.fs, h, &size, &em), UQ_OK);
    ASSERT_EQ(size, 3 << 20);
    ASSERT_EQ(uqs_file_append(f.fs, h, "tail", 4, &em), UQ_OK);
    uqs_handle h3 = create_ok(f, "app", "other", "still works");
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
    ASSERT_EQ(uqs_file_create(f.fs, "app", "big", b, big, &h2, &em), UQ_OK);
    fs_close(f);
    f = fs_open(home);
    ASSERT_EQ(uqs_file_size(f.fs, h, &size, &em), UQ_OK);
    ASSERT_EQ(size, (3 << 20) + 4);
    expect_content(f, h3, "still works");
    ASSERT_EQ(uqs_file_size(f.fs, h2, &size, &em), UQ_OK);
    ASSERT_EQ(size, big);
    free(b);
    fs_close(f);
}

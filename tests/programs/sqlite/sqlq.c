/*
 * sqlq -- run SQL against an in-memory SQLite database.
 *
 *   sqlq 'SQL...' ['SQL...' ...]
 *       Each argument is one batch of statements, run in order against the
 *       same ":memory:" database.  Result rows go to stdout as
 *       "col1|col2|..." lines (the sqlite3 shell's list mode; NULL prints as
 *       an empty string).  On an SQL error: "error: <msg>" on stderr, exit 1.
 *
 *   sqlq
 *       Built-in self-test: a table of 10000 rows, aggregates, an index
 *       lookup, a join; prints the results and checks a few of them against
 *       values computed in C.  Exit 0 when all checks pass.
 *
 * Built with -DSQLITE_OS_OTHER=1 (see build.sh): SQLite then has no OS
 * layer of its own, and this file supplies sqlite3_os_init() with a
 * minimal VFS, "memonly", that can open no files.  ":memory:" databases,
 * temp storage (SQLITE_TEMP_STORE=3) and statement journals all live in
 * memory, so nothing ever reaches xOpen.  The VFS needs from the host only
 * a clock (clock_gettime) and entropy (getentropy).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sqlite3.h"

#if !defined(SQLITE_OS_OTHER) || SQLITE_OS_OTHER != 1
#error "build sqlq.c and sqlite3.c with -DSQLITE_OS_OTHER=1"
#endif

/* ------------------------------------------------------------------ */
/* The "memonly" VFS                                                    */

static int mo_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f,
                   int flags, int *out_flags)
{
    (void)vfs; (void)name; (void)flags; (void)out_flags;
    f->pMethods = 0;            /* tells SQLite there is nothing to close */
    return SQLITE_CANTOPEN;
}

static int mo_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs; (void)name; (void)sync_dir;
    return SQLITE_IOERR_DELETE_NOENT;
}

static int mo_access(sqlite3_vfs *vfs, const char *name, int flags, int *res)
{
    (void)vfs; (void)name; (void)flags;
    *res = 0;                   /* no file exists */
    return SQLITE_OK;
}

static int mo_full_pathname(sqlite3_vfs *vfs, const char *name, int n,
                            char *out)
{
    (void)vfs;
    sqlite3_snprintf(n, out, "%s", name);
    return SQLITE_OK;
}

static int mo_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    int done = 0;
    while (done < n) {
        int chunk = n - done > 256 ? 256 : n - done; /* getentropy's limit */
        if (getentropy(out + done, (size_t)chunk) != 0)
            break;
        done += chunk;
    }
    if (done < n)               /* no entropy source: zeros */
        memset(out + done, 0, (size_t)(n - done));
    return n;
}

/* There is nothing to wait for: with no files there are no locks, so the
 * busy handler never runs.  Report the sleep as done without sleeping. */
static int mo_sleep(sqlite3_vfs *vfs, int microseconds)
{
    (void)vfs;
    return microseconds;
}

/* Julian day number times 86400000 (milliseconds), as SQLite wants it. */
static int mo_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    static const sqlite3_int64 unix_epoch = 24405875 * (sqlite3_int64)8640000;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return SQLITE_ERROR;
    *out = unix_epoch + (sqlite3_int64)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return SQLITE_OK;
}

static int mo_current_time(sqlite3_vfs *vfs, double *out)
{
    sqlite3_int64 ms;
    int rc = mo_current_time_int64(vfs, &ms);
    if (rc == SQLITE_OK)
        *out = ms / 86400000.0;
    return rc;
}

static int mo_get_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    if (n > 0)
        out[0] = 0;
    return 0;
}

static sqlite3_vfs memonly_vfs = {
    2,                          /* iVersion */
    0,                          /* szOsFile: files are never opened */
    512,                        /* mxPathname */
    0,                          /* pNext */
    "memonly",                  /* zName */
    0,                          /* pAppData */
    mo_open,
    mo_delete,
    mo_access,
    mo_full_pathname,
    0, 0, 0, 0,                 /* xDlOpen, xDlError, xDlSym, xDlClose */
    mo_randomness,
    mo_sleep,
    mo_current_time,
    mo_get_last_error,
    mo_current_time_int64,
    0, 0, 0,                    /* xSetSystemCall, xGetSystemCall, xNextSystemCall */
};

int sqlite3_os_init(void)
{
    memonly_vfs.szOsFile = (int)sizeof(sqlite3_file);
    return sqlite3_vfs_register(&memonly_vfs, 1);
}

int sqlite3_os_end(void)
{
    return SQLITE_OK;
}

/* ------------------------------------------------------------------ */
/* Running SQL                                                          */

static int print_row(void *unused, int ncol, char **vals, char **names)
{
    (void)unused; (void)names;
    for (int i = 0; i < ncol; i++) {
        if (i)
            putchar('|');
        if (vals[i])
            fputs(vals[i], stdout);
    }
    putchar('\n');
    return 0;
}

/* Runs one batch; on error prints it and returns nonzero. */
static int run(sqlite3 *db, const char *sql)
{
    char *err = 0;
    if (sqlite3_exec(db, sql, print_row, 0, &err) != SQLITE_OK) {
        fflush(stdout);
        fprintf(stderr, "error: %s\n", err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return 1;
    }
    return 0;
}

/* Runs one query that yields a single integer. */
static sqlite3_int64 query_int(sqlite3 *db, const char *sql, int *failed)
{
    sqlite3_stmt *st = 0;
    sqlite3_int64 v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, 0) != SQLITE_OK
        || sqlite3_step(st) != SQLITE_ROW) {
        fprintf(stderr, "error: %s\n", sqlite3_errmsg(db));
        *failed = 1;
    } else {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static int check(const char *what, sqlite3_int64 got, sqlite3_int64 want)
{
    printf("check %s: %lld %s\n", what, (long long)got,
           got == want ? "ok" : "MISMATCH");
    if (got != want)
        fprintf(stderr, "selftest: %s is %lld, expected %lld\n", what,
                (long long)got, (long long)want);
    return got != want;
}

/* ------------------------------------------------------------------ */
/* Self-test                                                            */

#define NROWS 10000
#define NDEPT 7

static uint32_t rng = 12345;
static uint32_t next_rand(void)
{
    rng = rng * 1103515245u + 12345u;
    return (rng >> 16) & 0x7fff;
}

static int selftest(sqlite3 *db)
{
    static const char *const dept_names[NDEPT] = {
        "engineering", "sales", "support", "research", "legal", "finance", "ops",
    };
    int bad = 0;

    printf("sqlite %s\n", sqlite3_libversion());

    if (run(db,
            "CREATE TABLE dept(id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
            "CREATE TABLE emp(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            "                 dept_id INTEGER REFERENCES dept(id),"
            "                 salary INTEGER, score REAL);"))
        return 1;

    sqlite3_int64 want_sum = 0, want_dept3 = 0, want_rich = 0;
    sqlite3_int64 want_kept = 0, want_kept_sum = 0; /* after UPDATE+DELETE */
    sqlite3_stmt *ins = 0;
    if (run(db, "BEGIN"))
        return 1;
    if (sqlite3_prepare_v2(db, "INSERT INTO dept(id, name) VALUES(?1, ?2)", -1,
                           &ins, 0) != SQLITE_OK)
        goto sqlerr;
    for (int i = 0; i < NDEPT; i++) {
        sqlite3_bind_int(ins, 1, i + 1);
        sqlite3_bind_text(ins, 2, dept_names[i], -1, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            goto sqlerr;
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO emp(id, name, dept_id, salary, score)"
                           " VALUES(?1, ?2, ?3, ?4, ?5)",
                           -1, &ins, 0) != SQLITE_OK)
        goto sqlerr;
    for (int i = 1; i <= NROWS; i++) {
        char name[32];
        int dept = (int)(next_rand() % NDEPT) + 1;
        int salary = 30000 + (int)(next_rand() % 1000) * 100;
        double score = (double)(next_rand() % 10000) / 100.0;
        snprintf(name, sizeof name, "emp-%05d", (i * 7919) % 100003);
        sqlite3_bind_int(ins, 1, i);
        sqlite3_bind_text(ins, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(ins, 3, dept);
        sqlite3_bind_int(ins, 4, salary);
        sqlite3_bind_double(ins, 5, score);
        if (sqlite3_step(ins) != SQLITE_DONE)
            goto sqlerr;
        sqlite3_reset(ins);
        want_sum += salary;
        if (dept == 3)
            want_dept3++;
        if (salary >= 120000)
            want_rich++;
        if (i % 10 != 0) {
            want_kept++;
            want_kept_sum += salary + (dept == 3);
        }
    }
    sqlite3_finalize(ins);
    ins = 0;
    if (run(db, "COMMIT"))
        return 1;

    if (run(db, "CREATE INDEX emp_name ON emp(name);"
                "CREATE INDEX emp_dept_salary ON emp(dept_id, salary);"
                "ANALYZE;"))
        return 1;

    /* Check against values computed in C while inserting. */
    int failed = 0;
    printf("-- checks\n");
    bad |= check("count", query_int(db, "SELECT count(*) FROM emp", &failed), NROWS);
    bad |= check("sum(salary)",
                 query_int(db, "SELECT sum(salary) FROM emp", &failed), want_sum);
    bad |= check("dept 3 rows (index)",
                 query_int(db, "SELECT count(*) FROM emp WHERE dept_id = 3", &failed),
                 want_dept3);
    bad |= check("salary >= 120000",
                 query_int(db, "SELECT count(*) FROM emp WHERE salary >= 120000", &failed),
                 want_rich);
    if (failed)
        return 1;

    static const char *const queries[] = {
        "SELECT count(*), sum(salary), min(salary), max(salary),"
        "       round(avg(score), 4) FROM emp",
        "SELECT dept_id, count(*), sum(salary), round(avg(score), 3)"
        "  FROM emp GROUP BY dept_id ORDER BY dept_id",
        /* index lookup */
        "SELECT id, name, dept_id, salary FROM emp WHERE name = 'emp-91393'",
        "SELECT count(*) FROM emp WHERE name BETWEEN 'emp-10000' AND 'emp-10999'",
        "EXPLAIN QUERY PLAN SELECT id FROM emp WHERE name = 'emp-91393'",
        /* join */
        "SELECT d.name, count(e.id), max(e.salary), min(e.score)"
        "  FROM dept d JOIN emp e ON e.dept_id = d.id"
        " WHERE e.salary >= 120000 GROUP BY d.id ORDER BY d.name",
        /* sort, window function, subquery, string functions */
        "SELECT id, name, score FROM emp ORDER BY score DESC, id LIMIT 3",
        "SELECT dept_id, id, salary FROM ("
        "  SELECT dept_id, id, salary,"
        "         row_number() OVER (PARTITION BY dept_id ORDER BY salary DESC, id) AS rn"
        "    FROM emp) WHERE rn = 1 ORDER BY dept_id",
        "SELECT upper(d.name), length(group_concat(e.id)) FROM dept d"
        "  JOIN emp e ON e.dept_id = d.id WHERE d.id IN (2, 5)"
        " GROUP BY d.id ORDER BY d.id",
        /* recursive CTE, json, printf */
        "WITH RECURSIVE fib(n, a, b) AS (SELECT 1, 0, 1 UNION ALL"
        "  SELECT n + 1, b, a + b FROM fib WHERE n < 60)"
        " SELECT n, a FROM fib WHERE n % 15 = 0",
        "SELECT json_object('n', count(*), 'top', max(salary)) FROM emp",
        "SELECT printf('%.3f|%08x|%s', 3.14159265, 48879, quote(x'cafe'))",
        "PRAGMA integrity_check",
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        printf("-- %zu\n", i + 1);
        if (run(db, queries[i]))
            return 1;
    }

    /* Update + delete in a transaction, then check again. */
    printf("-- update/delete\n");
    if (run(db, "BEGIN; UPDATE emp SET salary = salary + 1 WHERE dept_id = 3;"
                " DELETE FROM emp WHERE id % 10 = 0; COMMIT;"
                " SELECT count(*), sum(salary) FROM emp;"
                " PRAGMA integrity_check;"))
        return 1;
    bad |= check("count after delete",
                 query_int(db, "SELECT count(*) FROM emp", &failed), want_kept);
    bad |= check("sum after update",
                 query_int(db, "SELECT sum(salary) FROM emp", &failed), want_kept_sum);
    if (failed)
        return 1;
    printf("selftest: %s\n", bad ? "FAILED" : "ok");
    return bad;

sqlerr:
    fprintf(stderr, "error: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(ins);
    return 1;
}

int main(int argc, char **argv)
{
    sqlite3 *db = 0;
    int rc;

    if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
        fprintf(stderr, "error: %s\n", db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return 1;
    }
    if (argc < 2) {
        rc = selftest(db);
    } else {
        rc = 0;
        for (int i = 1; i < argc && !rc; i++)
            rc = run(db, argv[i]);
    }
    sqlite3_close(db);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "error: writing stdout failed\n");
        return 1;
    }
    return rc ? 1 : 0;
}

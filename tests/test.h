/* A few macros for tests: each test is its own executable (ctest runs it in
 * its own process); a failed check prints where and why and exits 1. */
#ifndef EVL_TEST_H
#define EVL_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evlog/evlog.h"

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

/* Expect a specific evl code; on mismatch print both names. */
#define CHECK_RC(expr, want)                                                        \
    do {                                                                            \
        int rc_ = (expr);                                                           \
        if (rc_ != (want)) {                                                        \
            fprintf(stderr, "%s:%d: %s returned %s (%s), want %s\n", __FILE__,      \
                    __LINE__, #expr, evl_errname(rc_), evl_strerror(rc_),           \
                    evl_errname(want));                                             \
            exit(1);                                                                \
        }                                                                           \
    } while (0)
#define OK(expr) CHECK_RC(expr, EVL_OK)

static int test_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

/* A fresh temporary directory, removed at exit unless EVL_KEEP_TMP is set. */
static char test_dir_buf[256];
static void test_rm_dir(void) {
    if (!getenv("EVL_KEEP_TMP") && test_dir_buf[0]) nftw(test_dir_buf, test_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
static inline const char *test_tmpdir(void) {
    if (!test_dir_buf[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(test_dir_buf, sizeof test_dir_buf, "%s/evltest.XXXXXX", t ? t : "/tmp");
        if (!mkdtemp(test_dir_buf)) { perror("mkdtemp"); exit(1); }
        atexit(test_rm_dir);
    }
    return test_dir_buf;
}
/* A path under the temporary directory (static buffer rotation of 8). */
static inline const char *test_path(const char *name) {
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ & 7];
    snprintf(b, 512, "%s/%s", test_tmpdir(), name);
    return b;
}

#define TEST_PASS() do { printf("ok %s\n", __FILE__); return 0; } while (0)

#endif

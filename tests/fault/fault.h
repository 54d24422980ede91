/* Helpers of the fault tests: run this executable again as a child under
 * the ioshim (LD_PRELOAD), collect the ids it acknowledges on a pipe, and
 * check them against the log after the "power cut". */
#ifndef EVL_TEST_FAULT_H
#define EVL_TEST_FAULT_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "log/util.h"

#define SHIM_CRASH_STATUS 86

typedef struct idset {
    uint8_t (*v)[16];
    size_t n, cap;
} idset;

static inline void idset_add(idset *s, const uint8_t id[16]) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->v = realloc(s->v, s->cap * 16);
        CHECK(s->v);
    }
    memcpy(s->v[s->n++], id, 16);
}
static inline int id_cmp(const void *a, const void *b) { return memcmp(a, b, 16); }
static inline void idset_sort(idset *s) {
    if (s->n) qsort(s->v, s->n, 16, id_cmp);
}
static inline int idset_has(const idset *s, const uint8_t id[16]) {
    return s->n && bsearch(id, s->v, s->n, 16, id_cmp) != NULL;
}

/* Every event id in the log, sorted; returns the number of duplicate ids. */
static inline size_t log_ids(evl_log *log, idset *out) {
    evl_iter *it;
    evl_event ev;
    out->n = 0;
    OK(evl_iter_open(log, &(evl_query){0}, &it));
    int rc;
    while ((rc = evl_iter_next(it, &ev)) == EVL_OK) idset_add(out, ev.id);
    CHECK(rc == EVL_END);
    evl_iter_close(it);
    idset_sort(out);
    size_t dup = 0;
    for (size_t i = 1; i < out->n; i++) dup += !memcmp(out->v[i - 1], out->v[i], 16);
    return dup;
}

/* A child: this executable with argv, the shim preloaded with the extra
 * environment (NAME=VALUE strings, NULL-terminated).  Its fd 3 is the write
 * end of a pipe whose read end is returned in *ack_fd; its fd 4 is fd4
 * when that is >= 0. */
static inline pid_t spawn_child(const char *shim, char *const argv[], char *const extra_env[], int *ack_fd,
                                int fd4) {
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* out of the way of 3 and 4 first (dup2 onto itself would keep CLOEXEC) */
        int a = fcntl(p[1], F_DUPFD, 10), b = fd4 >= 0 ? fcntl(fd4, F_DUPFD, 10) : -1;
        if (a < 0 || dup2(a, 3) != 3) _exit(120);
        if (fd4 >= 0 && (b < 0 || dup2(b, 4) != 4)) _exit(120);
        char pre[1024];
        snprintf(pre, sizeof pre, "%s", shim);
        setenv("LD_PRELOAD", pre, 1);
        /* the sanitizer runtime must otherwise come first in the library list */
        const char *ao = getenv("ASAN_OPTIONS");
        char asan[1024];
        snprintf(asan, sizeof asan, "%s%sverify_asan_link_order=0", ao ? ao : "", ao && *ao ? ":" : "");
        setenv("ASAN_OPTIONS", asan, 1);
        for (size_t i = 0; extra_env && extra_env[i]; i++) putenv(extra_env[i]);
        execv("/proc/self/exe", argv);
        _exit(121);
    }
    close(p[1]);
    *ack_fd = p[0];
    return pid;
}

/* Read 16-byte ids from fd until EOF into s; returns how many. */
static inline size_t read_acks(int fd, idset *s) {
    uint8_t buf[16 * 256];
    size_t have = 0, n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        have += (size_t)r;
        size_t whole = have / 16 * 16;
        for (size_t o = 0; o < whole; o += 16, n++) idset_add(s, buf + o);
        memmove(buf, buf + whole, have - whole);
        have -= whole;
    }
    close(fd);
    return n; /* a torn last id (the child died mid-write) is not an ack */
}

/* "ops=N ..." from the shim's stats file: the value of key, or 0. */
static inline uint64_t shim_stat(const char *path, const char *key) {
    char buf[256] = {0}, pat[32];
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    snprintf(pat, sizeof pat, "%s=", key);
    char *p = strstr(buf, pat);
    return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

static inline uint64_t env_or(const char *name, uint64_t dflt) {
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : dflt;
}

static inline void rm_rf(const char *dir) { nftw(dir, test_rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

#endif

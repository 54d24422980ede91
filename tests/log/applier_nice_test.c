/* evl_log_options.applier_nice: the applier thread runs nicer than the
 * thread that opened the log by exactly that much (at most 19), 0 leaves
 * it alone, and appends are unaffected.  The thread's nice value is read
 * from /proc, as `top -H` would show it. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

#include "log/util.h"

/* The nice value of this process's thread named @p name, or 100 if none. */
static int thread_nice(const char *name) {
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL);
    struct dirent *e;
    int nice = 100;
    while ((e = readdir(d)) && nice == 100) {
        if (e->d_name[0] == '.') continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        int is = fgets(buf, sizeof buf, f) && !strncmp(buf, name, strlen(name)) && buf[strlen(name)] == '\n';
        fclose(f);
        if (!is) continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* after "(comm) ": state is field 3, nice field 19 */
        char *p = strrchr(buf, ')');
        CHECK(p != NULL);
        int field = 2;
        for (p++; *p && field < 19; p++)
            if (*p == ' ') field++;
        CHECK(sscanf(p, " %d", &nice) == 1 || sscanf(p, "%d", &nice) == 1);
    }
    closedir(d);
    return nice;
}

/* Wait (5 s at most) until the applier shows @p want. */
static int applier_nice_is(int want) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int got = thread_nice("evl-applier");
        if (got == want) return 1;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 5) {
            fprintf(stderr, "evl-applier nice %d, want %d\n", got, want);
            return 0;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

int main(void) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    errno = 0;
    int base = getpriority(PRIO_PROCESS, 0);
    CHECK(!(base == -1 && errno));
    static const unsigned deltas[] = {10, 0, 3, 40};
    for (size_t i = 0; i < sizeof deltas / sizeof deltas[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "nice-%u", deltas[i]);
        evl_log_options o;
        evl_log_options_init(&o);
        if (i) o.applier_nice = deltas[i]; /* the first: the default */
        CHECK(o.applier_nice == deltas[i]);
        evl_log *log;
        OK(evl_log_open(test_path(name), &o, &log));
        int want = base + (int)deltas[i];
        CHECK(applier_nice_is(want > 19 ? 19 : want));
        /* the opener's own priority is untouched */
        CHECK(getpriority(PRIO_PROCESS, 0) == base);
        for (int k = 0; k < 50; k++) {
            pack_data(&sb, k, "nice");
            OK(append1(log, "nice-1", EVL_REV_ANY, "Noted", sb.data, sb.size, NULL, NULL, NULL));
        }
        /* a read after the appends waits for the applier: all 50 are there */
        evl_iter *it;
        OK(evl_iter_open(log, &(evl_query){.stream = "nice-1"}, &it));
        int n = 0;
        evl_event ev;
        while (evl_iter_next(it, &ev) == EVL_OK) CHECK(data_n(&ev) == n++);
        CHECK(n == 50);
        evl_iter_close(it);
        evl_log_close(log);
    }
    msgpack_sbuffer_destroy(&sb);
    TEST_PASS();
}

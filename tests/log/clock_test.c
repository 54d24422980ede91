/* Time never goes back with position, even when the wall clock does; and a
 * reader process killed with SIGKILL leaves a stale LMDB slot that the next
 * open clears.  The executable defines clock_gettime() itself, so the
 * (statically linked) library's calls land here and the test can step the
 * wall clock back. */
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "util.h"

static atomic_llong realtime_offset_s; /* test-only: how far the wall clock is stepped */

int clock_gettime(clockid_t id, struct timespec *ts) {
    int rc = (int)syscall(SYS_clock_gettime, id, ts);
    if (rc == 0 && id == CLOCK_REALTIME) ts->tv_sec += atomic_load(&realtime_offset_s);
    return rc;
}

static int64_t time_of(evl_log *log, uint64_t pos) {
    uint8_t *raw;
    size_t len;
    evl_event ev;
    OK(evl_log_get(log, pos, &raw, &len));
    OK(evl_log_decode(raw, len, &ev));
    int64_t t = ev.time_ns;
    evl_free(raw);
    return t;
}

int main(void) {
    evl_log *log;
    const char *dir = test_path("data");
    OK(evl_log_open(dir, NULL, &log));
    evl_ack a1, a2, a3;
    OK(append1(log, "clock-1", EVL_REV_ANY, "Ticked", NULL, 0, NULL, &a1, NULL));
    atomic_store(&realtime_offset_s, -3600); /* the clock steps back an hour */
    OK(append1(log, "clock-1", EVL_REV_ANY, "Ticked", NULL, 0, NULL, &a2, NULL));
    CHECK(time_of(log, a2.position) >= time_of(log, a1.position));
    evl_log_close(log);
    OK(evl_log_open(dir, NULL, &log)); /* and across a restart, still an hour behind */
    OK(append1(log, "clock-1", EVL_REV_ANY, "Ticked", NULL, 0, NULL, &a3, NULL));
    CHECK(time_of(log, a3.position) >= time_of(log, a2.position));
    atomic_store(&realtime_offset_s, 0);
    OK(append1(log, "clock-1", EVL_REV_ANY, "Ticked", NULL, 0, NULL, &a3, NULL));
    verify_ok(log, 4);
    /* the time index still answers "first position at or after T" */
    uint64_t p;
    OK(evl_log_position_at(log, time_of(log, 2), &p));
    CHECK(p <= 2 && time_of(log, p) == time_of(log, 2));
    evl_log_close(log);

    /* a reader killed inside a read transaction */
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        evl_log_options o;
        evl_log_options_init(&o);
        o.read_only = 1;
        evl_log *ro;
        evl_iter *it;
        if (evl_log_open(dir, &o, &ro) || evl_iter_open(ro, &(evl_query){0}, &it)) _exit(2);
        if (write(pfd[1], "x", 1) != 1) _exit(3);
        for (;;) pause();
    }
    char c;
    CHECK(read(pfd[0], &c, 1) == 1); /* the child holds its read transaction now */
    evl_log_options o;
    evl_log_options_init(&o);
    o.read_only = 1;
    evl_log *ro;
    evl_log_stats st;
    OK(evl_log_open(dir, &o, &ro));
    OK(evl_log_stats_get(ro, &st));
    CHECK(st.readers == 1); /* the live child */
    evl_log_close(ro);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    OK(evl_log_open(dir, NULL, &log)); /* clears the dead child's slot */
    OK(evl_log_stats_get(log, &st));
    CHECK(st.readers == 0);
    evl_log_close(log);
    TEST_PASS();
}

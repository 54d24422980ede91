/* fsyncgate: a failed fsync is never retried and acknowledged.
 * This executable defines fdatasync()/fsync() itself, so LMDB's calls land
 * here (the dynamic linker resolves liblmdb's reference to the executable's
 * definition) and the test decides when they fail. */
#include <errno.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>

#include "util.h"

static atomic_int fail_syncs; /* test-only global: the fault switch */

int fdatasync(int fd) {
    if (atomic_load(&fail_syncs)) { errno = EIO; return -1; }
    return (int)syscall(SYS_fdatasync, fd);
}
int fsync(int fd) {
    if (atomic_load(&fail_syncs)) { errno = EIO; return -1; }
    return (int)syscall(SYS_fsync, fd);
}

static int wait_read_only(evl_log *log, int ms) {
    int64_t deadline = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    deadline = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 + ms;
    for (;;) {
        evl_log_stats st;
        OK(evl_log_stats_get(log, &st));
        if (st.read_only_error) return st.read_only_error;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 > deadline) return 0;
        /* the writer flushes on its own timer; yield until it has */
        evl_log_wait(log, UINT64_MAX - 1, 5, NULL);
    }
}

int main(void) {
    evl_log *log;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_data(&sb, 1, "durable");
    const char *dir = test_path("full");

    /* sync full: the failing commit is refused and every later append too */
    OK(evl_log_open(dir, NULL, &log));
    for (int i = 0; i < 5; i++) OK(append1(log, "acct-1", EVL_REV_ANY, "Ok", sb.data, sb.size, NULL, NULL, NULL));
    CHECK(evl_log_head(log) == 5); /* in LMDB too, before the disk fails */
    atomic_store(&fail_syncs, 1);
    int rc = append1(log, "acct-1", EVL_REV_ANY, "Lost", sb.data, sb.size, NULL, NULL, NULL);
    CHECK(rc == EVL_ESYS(EIO));
    CHECK(wait_read_only(log, 1000) == EVL_ESYS(EIO));
    atomic_store(&fail_syncs, 0); /* the disk "recovers": still no retry */
    CHECK_RC(append1(log, "acct-1", EVL_REV_ANY, "Later", sb.data, sb.size, NULL, NULL, NULL), EVL_EREADONLY);
    CHECK(evl_log_head(log) == 5);
    /* reads keep working */
    CHECK(count_query(log, &(evl_query){.stream = "acct-1"}) == 5);
    evl_log_close(log);
    OK(evl_log_open(dir, NULL, &log));
    CHECK(evl_log_head(log) == 5);
    verify_ok(log, 5);
    OK(append1(log, "acct-1", EVL_REV_ANY, "AfterRestart", sb.data, sb.size, NULL, NULL, NULL));
    evl_log_close(log);

    /* sync none: commits are acknowledged before the flush; a failed flush
     * makes the log read-only just the same */
    evl_log_options opt;
    evl_log_options_init(&opt);
    opt.sync = EVL_SYNC_NONE;
    opt.flush_interval_ms = 10;
    OK(evl_log_open(test_path("none"), &opt, &log));
    OK(append1(log, "acct-2", EVL_REV_ANY, "Ok", sb.data, sb.size, NULL, NULL, NULL));
    for (int i = 0; i < 200; i++) {   /* the flush timer runs: syncs are counted */
        evl_log_stats st;
        OK(evl_log_stats_get(log, &st));
        if (st.syncs > 0) break;
        evl_log_wait(log, UINT64_MAX - 1, 5, NULL);
        CHECK(i < 199);
    }
    atomic_store(&fail_syncs, 1);
    OK(append1(log, "acct-2", EVL_REV_ANY, "Unflushed", sb.data, sb.size, NULL, NULL, NULL));
    CHECK(wait_read_only(log, 5000) == EVL_ESYS(EIO));
    CHECK_RC(append1(log, "acct-2", EVL_REV_ANY, "Later", sb.data, sb.size, NULL, NULL, NULL), EVL_EREADONLY);
    atomic_store(&fail_syncs, 0);
    evl_log_close(log);
    msgpack_sbuffer_destroy(&sb);
    TEST_PASS();
}

/* Hot backup while appends go on: the copy verifies, holds at least what was
 * committed when the backup began, and is a byte-for-byte prefix of the log. */
#include "util.h"

typedef struct appender { evl_log *log; volatile int stop; uint64_t n; } appender;

static void *append_loop(void *p) {
    appender *a = p;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    while (!a->stop) {
        char stream[32];
        snprintf(stream, sizeof stream, "backup-%d", (int)(a->n % 17));
        pack_data(&sb, (int64_t)a->n, "payload under backup");
        OK(append1(a->log, stream, EVL_REV_ANY, "Written", sb.data, sb.size, NULL, NULL, NULL));
        a->n++;
    }
    msgpack_sbuffer_destroy(&sb);
    return NULL;
}

int main(void) {
    evl_log *log, *copy;
    evl_log_options opt;
    evl_log_options_init(&opt);
    opt.sync = EVL_SYNC_NONE;
    OK(evl_log_open(test_path("data"), &opt, &log));
    appender a = {log, 0, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, append_loop, &a) == 0);
    while (evl_log_head(log) < 2000) evl_log_wait(log, 1999, 1000, NULL);
    uint64_t at;
    OK(evl_log_backup(log, test_path("backup"), &at));
    CHECK_RC(evl_log_backup(log, test_path("backup"), NULL), EVL_EBUSY);
    a.stop = 1;
    pthread_join(t, NULL);
    evl_log_options ro;
    evl_log_options_init(&ro);
    ro.read_only = 1;
    OK(evl_log_open(test_path("backup"), &ro, &copy));
    uint64_t n = evl_log_head(copy);
    CHECK(n >= at && n <= evl_log_head(log));
    verify_ok(copy, n);
    for (uint64_t p = 1; p <= n; p++) {
        uint8_t *r1, *r2;
        size_t l1, l2;
        OK(evl_log_get(log, p, &r1, &l1));
        OK(evl_log_get(copy, p, &r2, &l2));
        CHECK(l1 == l2 && memcmp(r1, r2, l1) == 0);
        evl_free(r1);
        evl_free(r2);
    }
    printf("backup at head %llu holds %llu events (log went on to %llu)\n", (unsigned long long)at,
           (unsigned long long)n, (unsigned long long)evl_log_head(log));
    evl_log_close(copy);
    /* the copy is a data directory of its own: appends go on there */
    OK(evl_log_open(test_path("backup"), NULL, &copy));
    OK(append1(copy, "backup-0", EVL_REV_ANY, "AfterRestore", NULL, 0, NULL, NULL, NULL));
    verify_ok(copy, n + 1);
    evl_log_close(copy);
    evl_log_close(log);
    TEST_PASS();
}

/* A scan of the whole log does not keep the log resident: the iterator
 * gives the map's pages back behind it (read.c, "dropper"), so the
 * process's file-backed resident set stays far below the log's size. */
#include <stdio.h>

#include "util.h"

/* RssFile of this process, in KiB (0 when the kernel does not say). */
static long rss_file_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssFile: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

int main(void) {
    evl_log *log;
    evl_log_options opt;
    evl_log_options_init(&opt);
    opt.sync = EVL_SYNC_NONE;
    OK(evl_log_open(test_path("data"), &opt, &log));
    /* 160 MiB of records, in batches of 256 events of 1 KiB */
    enum { BATCH = 256, BATCHES = 640, SZ = 1024 };
    static char filler[SZ];
    memset(filler, 'x', SZ - 1);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    evl_event_in evs[BATCH];
    for (int b = 0; b < BATCHES; b++) {
        pack_data(&sb, b, filler);
        for (int i = 0; i < BATCH; i++) evs[i] = (evl_event_in){.type = "Filled", .data = sb.data, .data_len = sb.size};
        evl_stream_in s = {.stream = "fill-1", .expected = EVL_REV_ANY, .events = evs, .n_events = BATCH};
        evl_append_result res;
        OK(evl_log_append(log, &s, 1, &res));
        evl_free(res.acks);
    }
    msgpack_sbuffer_destroy(&sb);
    evl_log_close(log);

    /* a fresh open: nothing of the log mapped yet */
    opt.read_only = 1;
    OK(evl_log_open(test_path("data"), &opt, &log));
    long before = rss_file_kib(), peak = before;
    evl_iter *it;
    evl_event ev;
    uint64_t n = 0, bytes = 0;
    OK(evl_iter_open(log, &(evl_query){0}, &it));
    while (evl_iter_next(it, &ev) == EVL_OK) {
        n++;
        bytes += ev.raw_len;
        /* the peak matters, not only where the scan ends */
        if ((n & 1023) == 0) {
            long now = rss_file_kib();
            if (now > peak) peak = now;
        }
    }
    long after = rss_file_kib();
    evl_iter_close(it);
    CHECK(n == (uint64_t)BATCH * BATCHES);
    printf("scanned %llu events, %llu MiB of records: RssFile %ld -> %ld KiB, at most %ld KiB\n",
           (unsigned long long)n, (unsigned long long)(bytes >> 20), before, after, peak);
    /* without the dropper the whole 160+ MiB stays mapped; with one that
     * dropped only the pages records were read from, the pages the kernel
     * mapped around them stayed (a fifth of a log with indexes).  The
     * dropper's two batches of 8 MiB, a 2 MiB alignment and what faults map
     * around them stay below 32 MiB. */
    if (before > 0) CHECK(after - before < 32 * 1024);
    if (before > 0) CHECK(peak - before < 32 * 1024);

    /* backwards too */
    peak = before = rss_file_kib();
    n = 0;
    OK(evl_iter_open(log, &(evl_query){.backward = 1}, &it));
    while (evl_iter_next(it, &ev) == EVL_OK)
        if ((++n & 1023) == 0) {
            long now = rss_file_kib();
            if (now > peak) peak = now;
        }
    evl_iter_close(it);
    CHECK(n == (uint64_t)BATCH * BATCHES);
    printf("backwards: RssFile %ld -> at most %ld KiB\n", before, peak);
    if (before > 0) CHECK(peak - before < 32 * 1024);

    /* as a projector reads: through the type index, in batches of 1000
     * events, each by an iterator closed before its window fills */
    peak = before = rss_file_kib();
    n = 0;
    for (uint64_t from = 1; from <= (uint64_t)BATCH * BATCHES; from += 1000) {
        OK(evl_iter_open(log, &(evl_query){.type = "Filled", .from_position = from, .until_position = from + 999}, &it));
        while (evl_iter_next(it, &ev) == EVL_OK) n++;
        evl_iter_close(it);
        long now = rss_file_kib();
        if (now > peak) peak = now;
    }
    CHECK(n == (uint64_t)BATCH * BATCHES);
    printf("typed, in batches: RssFile %ld -> at most %ld KiB\n", before, peak);
    if (before > 0) CHECK(peak - before < 32 * 1024);
    evl_log_close(log);
    return 0;
}

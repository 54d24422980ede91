/* I/O error sweep over the log (C API, sync full).
 *
 * A child (this executable under the ioshim) opens a log and appends a fixed
 * workload — single events and two-stream batches — one append at a time,
 * reporting each acknowledged id on a pipe.  The shim fails the Nth write or
 * sync of data.mdb with EIO, for N = 1, 2, ... until a run no longer reaches
 * N, in three variants: the Nth operation only ("once"), the Nth and every
 * later one ("sticky"), and the Nth write cut short to half its length
 * ("short").  At exit the shim drops whatever was not synced (a power cut
 * right after the run: what a failed sync did not write is not on disk).
 *
 * Checked for every N: the failing append returns an error and every append
 * after it fails too (EVL_EREADONLY: a failed commit or sync is never
 * retried); the log then reopens, verifies, and holds every acknowledged
 * event exactly once.  Reported: runs, failures injected at open, failed
 * appends whose events are nonetheless in the log.
 *
 * EVL_IOERR_EVENTS scales the workload (appends per run). */
#include "fault/fault.h"

static void make_id(uint8_t id[16], uint32_t gen, uint64_t n) {
    memset(id, 0, 16);
    id[0] = 0xE1;
    memcpy(id + 4, &gen, 4);
    memcpy(id + 8, &n, 8);
}

/* exit status: 0 done, 2 the open failed, 6 an append after a failure was
 * acknowledged, 7 the failing append was reported as a success elsewhere */
static int child_main(char **argv) {
    evl_log *log;
    uint32_t gen = (uint32_t)strtoul(argv[3], NULL, 10);
    uint64_t appends = strtoull(argv[4], NULL, 10);
    if (evl_log_open(argv[2], NULL, &log)) exit(2); /* exit: the shim writes its stats */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int failed = 0;
    for (uint64_t n = 0; n < appends; n++) {
        uint8_t id[2][16];
        make_id(id[0], gen, 2 * n);
        make_id(id[1], gen, 2 * n + 1);
        pack_data(&sb, (int64_t)n, "i/o error sweep");
        evl_event_in e0 = {.type = "Swept", .id = id[0], .data = sb.data, .data_len = sb.size};
        evl_event_in e1 = {.type = "Swept", .id = id[1], .data = sb.data, .data_len = sb.size};
        evl_stream_in s[2] = {{.stream = "sweep-a", .expected = EVL_REV_ANY, .events = &e0, .n_events = 1},
                              {.stream = "sweep-b", .expected = EVL_REV_ANY, .events = &e1, .n_events = 1}};
        size_t ns = n % 2 + 1;
        evl_append_result res;
        int rc = evl_log_append(log, s, ns, &res);
        evl_free(res.acks);
        if (rc == EVL_OK) {
            if (failed) _exit(6);
            for (size_t k = 0; k < ns; k++)
                if (write(3, id[k], 16) != 16) _exit(4);
        } else {
            /* the ids of a failed append go on fd 4: the parent counts
             * those that are in the log all the same */
            for (size_t k = 0; k < ns; k++)
                if (write(4, id[k], 16) != 16) _exit(4);
            if (failed && rc != EVL_EREADONLY) _exit(7);
            failed++;
            if (failed > 3) break;
        }
    }
    msgpack_sbuffer_destroy(&sb);
    evl_log_close(log);
    return 0;
}

typedef struct sweep {
    const char *name;
    const char *env[3];
} sweep;

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "child")) return child_main(argv);
    uint64_t appends = env_or("EVL_IOERR_APPENDS", 30);
    sweep sweeps[] = {{"once", {NULL}},
                      {"sticky", {"EVL_SHIM_FAIL_STICKY=1", NULL}},
                      {"short", {"EVL_SHIM_FAIL_SHORT=1", NULL}}};
    char stats[600], e_stats[700], e_at[64], a_gen[16], a_n[24];
    snprintf(stats, sizeof stats, "%s/shim.stats", test_tmpdir());
    snprintf(e_stats, sizeof e_stats, "EVL_SHIM_STATS=%s", stats);
    uint32_t gen = 0;
    uint64_t total_runs = 0;
    for (size_t v = 0; v < sizeof sweeps / sizeof sweeps[0]; v++) {
        uint64_t runs = 0, open_failed = 0, acked_total = 0, failed_present = 0, failed_appends = 0;
        uint64_t n = 1;
        for (;; n++) {
            char dir[512];
            snprintf(dir, sizeof dir, "%s/%s-%llu", test_tmpdir(), sweeps[v].name, (unsigned long long)n);
            snprintf(e_at, sizeof e_at, "EVL_SHIM_FAIL_AT=%llu", (unsigned long long)n);
            snprintf(a_gen, sizeof a_gen, "%u", ++gen);
            snprintf(a_n, sizeof a_n, "%llu", (unsigned long long)appends);
            char *env[8] = {e_at, e_stats, "EVL_SHIM_FAKE_SYNC=1", "EVL_SHIM_EXIT_DROP=1"};
            for (size_t k = 0; sweeps[v].env[k]; k++) env[4 + k] = (char *)sweeps[v].env[k];
            unlink(stats);
            char *cargv[] = {"ioerr", "child", dir, a_gen, a_n, NULL};
            int fd, nfd[2], status;
            CHECK(pipe2(nfd, O_CLOEXEC) == 0);
            /* fd 4 of the child: the ids of failed appends */
            pid_t pid = spawn_child(EVL_IOSHIM_PATH, cargv, env, &fd, nfd[1]);
            close(nfd[1]);
            idset acked = {0}, failed = {0}, inlog = {0};
            read_acks(fd, &acked);
            read_acks(nfd[0], &failed);
            CHECK(waitpid(pid, &status, 0) == pid);
            if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 2)) {
                fprintf(stderr, "%s, N=%llu: child status %#x (6: acknowledged after a failure, 7: a second "
                        "failure other than read-only)\n", sweeps[v].name, (unsigned long long)n, status);
                CHECK(0);
            }
            runs++;
            uint64_t injected = shim_stat(stats, "failed");
            if (WEXITSTATUS(status) == 2) {
                open_failed++;
                CHECK(acked.n == 0);
            }
            /* the log reopens and verifies with every acknowledged event, and
             * this process has no shim: it sees what is on "disk" */
            evl_log *log;
            int rc = evl_log_open(dir, NULL, &log);
            if (rc) {
                fprintf(stderr, "%s, N=%llu: the log does not open: %s\n", sweeps[v].name, (unsigned long long)n,
                        evl_strerror(rc));
                CHECK(0);
            }
            verify_ok(log, UINT64_MAX);
            CHECK(log_ids(log, &inlog) == 0);
            for (size_t k = 0; k < acked.n; k++)
                if (!idset_has(&inlog, acked.v[k])) {
                    fprintf(stderr, "%s, N=%llu: an acknowledged event is missing\n", sweeps[v].name,
                            (unsigned long long)n);
                    CHECK(0);
                }
            for (size_t k = 0; k < failed.n; k++) failed_present += idset_has(&inlog, failed.v[k]);
            failed_appends += failed.n ? 1 : 0;
            acked_total += acked.n;
            evl_log_close(log);
            rm_rf(dir);
            free(acked.v);
            free(failed.v);
            free(inlog.v);
            if (injected == 0) break; /* the run never reached the Nth operation */
        }
        printf("%s: N = 1..%llu (the last run reached no fault): %llu runs, %llu failed at open, %llu runs with a "
               "failed append, %llu events acknowledged and all present, %llu events of failed appends found in "
               "the log\n", sweeps[v].name, (unsigned long long)n, (unsigned long long)runs,
               (unsigned long long)open_failed, (unsigned long long)failed_appends,
               (unsigned long long)acked_total, (unsigned long long)failed_present);
        CHECK(failed_appends > runs / 2); /* the sweep did hit the appends */
        total_runs += runs;
    }
    printf("%llu runs in all\n", (unsigned long long)total_runs);
    TEST_PASS();
}

/* I/O error sweep over the log (C API, sync full).
 *
 * A child (this executable under the ioshim) opens a log and appends a fixed
 * workload — single events and two-stream batches — one append at a time,
 * reporting each acknowledged id on a pipe.  The shim fails the Nth write or
 * sync of data.mdb with EIO, for N = 1, 2, ... until a run no longer reaches
 * N, in five variants: the Nth operation only ("once"), the Nth and every
 * later one ("sticky"), the Nth write cut short to half its length
 * ("short"), and the first two again with four appenders at once sending
 * batches of 40 events a stream ("concurrent", "concurrent-sticky": groups
 * are written while earlier ones are being synced, so a failed sync covers
 * several).  At exit the shim drops whatever was not synced (a power cut
 * right after the run: what a failed sync did not write is not on disk).
 *
 * Checked for every N: the failing append returns an error and every append
 * after it -- by the same appender, or begun after the failure was reported
 * -- fails too (EVL_EREADONLY: a failed commit or sync is never retried); the log then reopens, verifies, and holds every acknowledged
 * event exactly once.  Reported: runs, failures injected at open, failed
 * appends whose events are nonetheless in the log.
 *
 * EVL_IOERR_APPENDS scales the workload (appends per run and appender). */
#include <stdatomic.h>

#include "fault/fault.h"

static void make_id(uint8_t id[16], uint32_t gen, uint64_t n) {
    memset(id, 0, 16);
    id[0] = 0xE1;
    memcpy(id + 4, &gen, 4);
    memcpy(id + 8, &n, 8);
}

/* One appender of the child: appends until done or failed 3 times.
 * Returns 0, or the exit status of a broken rule. */
typedef struct appender {
    evl_log *log;
    uint32_t gen, thread, batch;
    uint64_t appends;
    atomic_int *failure_seen; /* some append of this process has failed */
    int status;
} appender;

static void *append_loop(void *arg) {
    appender *a = arg;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int failed = 0;
    uint8_t(*id)[16] = calloc(2 * a->batch, 16);
    evl_event_in *ev = calloc(2 * a->batch, sizeof *ev);
    CHECK(id && ev);
    for (uint64_t n = 0; n < a->appends && !a->status; n++) {
        /* an append that begins after a failure was reported must fail */
        int after_failure = atomic_load(a->failure_seen);
        pack_data(&sb, (int64_t)n, "i/o error sweep");
        for (uint32_t k = 0; k < 2 * a->batch; k++) {
            make_id(id[k], a->gen, ((uint64_t)a->thread << 40) + 2 * a->batch * n + k);
            ev[k] = (evl_event_in){.type = "Swept", .id = id[k], .data = sb.data, .data_len = sb.size};
        }
        char sa[32], sbn[32];
        snprintf(sa, sizeof sa, "sweep-a%u", a->thread);
        snprintf(sbn, sizeof sbn, "sweep-b%u", a->thread);
        evl_stream_in s[2] = {{.stream = sa, .expected = EVL_REV_ANY, .events = ev, .n_events = a->batch},
                              {.stream = sbn, .expected = EVL_REV_ANY, .events = ev + a->batch, .n_events = a->batch}};
        size_t ns = n % 2 + 1, nev = ns * a->batch;
        evl_append_result res;
        int rc = evl_log_append(a->log, s, ns, &res);
        evl_free(res.acks);
        if (rc == EVL_OK) {
            if (failed || after_failure) a->status = 6;
            for (size_t k = 0; k < nev; k++)
                if (write(3, id[k], 16) != 16) a->status = 4;
        } else {
            /* the ids of a failed append go on fd 4: the parent counts
             * those that are in the log all the same */
            for (size_t k = 0; k < nev; k++)
                if (write(4, id[k], 16) != 16) a->status = 4;
            if ((failed || after_failure) && rc != EVL_EREADONLY) a->status = 7;
            atomic_store(a->failure_seen, 1);
            if (++failed > 3) break;
        }
    }
    free(id);
    free(ev);
    msgpack_sbuffer_destroy(&sb);
    return NULL;
}

/* exit status: 0 done, 2 the open failed, 6 an append after a failure was
 * acknowledged, 7 the failing append was reported as a success elsewhere.
 * EVL_IOERR_THREADS=T: T appenders at once, batches of 40 events a stream
 * (the writer then writes groups while the syncer syncs earlier ones). */
static int child_main(char **argv) {
    evl_log *log;
    uint32_t gen = (uint32_t)strtoul(argv[3], NULL, 10);
    uint64_t appends = strtoull(argv[4], NULL, 10);
    const char *t = getenv("EVL_IOERR_THREADS");
    uint32_t threads = t ? (uint32_t)atoi(t) : 1;
    if (threads < 1 || threads > 64) threads = 1;
    if (evl_log_open(argv[2], NULL, &log)) exit(2); /* exit: the shim writes its stats */
    atomic_int failure_seen = 0;
    appender a[64];
    pthread_t th[64];
    for (uint32_t i = 0; i < threads; i++) {
        a[i] = (appender){log, gen, i, threads > 1 ? 40 : 1, appends, &failure_seen, 0};
        if (threads == 1) append_loop(&a[i]);
        else CHECK(pthread_create(&th[i], NULL, append_loop, &a[i]) == 0);
    }
    int status = 0;
    for (uint32_t i = 0; i < threads; i++) {
        if (threads > 1) pthread_join(th[i], NULL);
        if (a[i].status && !status) status = a[i].status;
    }
    if (status) _exit(status);
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
                      {"short", {"EVL_SHIM_FAIL_SHORT=1", NULL}},
                      {"concurrent", {"EVL_IOERR_THREADS=4", NULL}},
                      {"concurrent-sticky", {"EVL_IOERR_THREADS=4", "EVL_SHIM_FAIL_STICKY=1", NULL}}};
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

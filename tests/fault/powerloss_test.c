/* Power loss, simulated the way SQLite's crash tests do it (see ioshim.c).
 *
 * A child (this executable, the ioshim preloaded) appends from three threads
 * — single events and atomic two-stream batches — and writes each
 * acknowledged event id to a pipe.  The shim cuts the power at the Nth write
 * or sync to data.mdb (N random per iteration, over the whole run including
 * the environment's creation) and leaves the file as a disk could after a
 * power cut: every write since the last sync lost, all kept, an in-order
 * prefix kept with the next one torn, a random subset kept, or random
 * sectors kept.  The parent then reopens the log and checks that it opens,
 * that evl_log_verify() passes and which acknowledged ids are missing.
 *
 * sync full: no acknowledged event may be lost and nothing may be corrupt,
 * whatever the crash mode.
 * sync none: acknowledged events within the flush interval may be lost
 * (reported); with a disk that keeps write order (drop, keep, prefix) the
 * log must never be corrupt.  With reordering (subset, sectors) LMDB with
 * MDB_NOSYNC is not crash-safe — its meta page may reach the disk before the
 * pages it points to — and the test counts those outcomes instead of
 * failing on them (docs/reliability.md, "Power loss and I/O faults").
 * Half of the sync-none blocks use the ordered modes only, so that an
 * ordered cut never runs on a log an earlier reordering cut damaged.
 *
 * EVL_POWERLOSS_ITERS (per sync mode) scales the run; EVL_POWERLOSS_SEED
 * replays one. */
#include <time.h>

#include "fault/fault.h"

#define THREADS 3
#define FLUSH_MS 5

static const char *modes[] = {"drop", "keep", "prefix", "subset", "sectors"};
enum { N_MODES = 5 };

/* ------------------------------------------------------------ the child */

typedef struct cargs {
    evl_log *log;
    uint32_t gen, thread;
    uint64_t events;
} cargs;

static void make_id(uint8_t id[16], uint32_t gen, uint32_t thread, uint64_t n) {
    memset(id, 0, 16);
    id[0] = 0xEE;
    memcpy(id + 1, &gen, 4);
    memcpy(id + 5, &thread, 3);
    memcpy(id + 8, &n, 8);
}

static void *child_thread(void *p) {
    cargs *a = p;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (uint64_t n = 0; n < a->events; n += 2) {
        uint8_t id[2][16];
        char s0[32], s1[32];
        snprintf(s0, sizeof s0, "pwr-%u", (unsigned)(n / 2 % 7));
        snprintf(s1, sizeof s1, "other-%u", (unsigned)(n / 2 % 5));
        make_id(id[0], a->gen, a->thread, n);
        make_id(id[1], a->gen, a->thread, n + 1);
        pack_data(&sb, (int64_t)n, "power loss payload, a little longer than a few bytes");
        evl_event_in e0 = {.type = "Powered", .id = id[0], .data = sb.data, .data_len = sb.size};
        evl_event_in e1 = {.type = "Mirrored", .id = id[1], .data = sb.data, .data_len = sb.size};
        evl_stream_in s[2] = {{.stream = s0, .expected = EVL_REV_ANY, .events = &e0, .n_events = 1},
                              {.stream = s1, .expected = EVL_REV_ANY, .events = &e1, .n_events = 1}};
        size_t ns = (n / 2) % 3 == 0 ? 2 : 1; /* every third append is a two-stream batch */
        evl_append_result res;
        int arc = evl_log_append(a->log, s, ns, &res);
        if (arc != EVL_OK) {
            fprintf(stderr, "child: append: %s\n", evl_strerror(arc));
            _exit(3);
        }
        evl_free(res.acks);
        for (size_t k = 0; k < ns; k++)
            if (write(3, id[k], 16) != 16) _exit(4);
    }
    msgpack_sbuffer_destroy(&sb);
    return NULL;
}

static int child_main(char **argv) {
    /* argv: child DIR full|none GEN EVENTS_PER_THREAD */
    evl_log_options opt;
    evl_log_options_init(&opt);
    opt.sync = !strcmp(argv[3], "none") ? EVL_SYNC_NONE : EVL_SYNC_FULL;
    opt.flush_interval_ms = FLUSH_MS;
    opt.map_size = 64u << 20;
    evl_log *log;
    if (evl_log_open(argv[2], &opt, &log)) _exit(2);
    pthread_t t[THREADS];
    cargs a[THREADS];
    for (uint32_t i = 0; i < THREADS; i++) {
        a[i] = (cargs){log, (uint32_t)strtoul(argv[4], NULL, 10), i, strtoull(argv[5], NULL, 10)};
        pthread_create(&t[i], NULL, child_thread, &a[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    evl_log_close(log);
    return 0;
}

/* ------------------------------------------------------------ the parent */

typedef struct tally {
    uint64_t iters, crashes, completed, acked, lost, lost_max, corrupt[N_MODES], by_mode[N_MODES];
    uint64_t lost_by[N_MODES], lost_max_by[N_MODES];
    uint64_t ops_min, ops_max, point_max;
    char first_problem[800];
} tally;

/* One child run; returns its exit status (0 done, SHIM_CRASH_STATUS). */
static int run_child(const char *dir, const char *sync, uint32_t gen, uint64_t per_thread, uint64_t crash_at,
                     int mode, uint64_t seed, const char *stats, idset *acked) {
    char a_gen[16], a_ev[24], e_at[48], e_mode[48], e_seed[48], e_stats[700];
    snprintf(a_gen, sizeof a_gen, "%u", gen);
    snprintf(a_ev, sizeof a_ev, "%llu", (unsigned long long)per_thread);
    snprintf(e_at, sizeof e_at, "EVL_SHIM_CRASH_AT=%llu", (unsigned long long)crash_at);
    snprintf(e_mode, sizeof e_mode, "EVL_SHIM_CRASH_MODE=%s", modes[mode]);
    snprintf(e_seed, sizeof e_seed, "EVL_SHIM_SEED=%llu", (unsigned long long)seed);
    snprintf(e_stats, sizeof e_stats, "EVL_SHIM_STATS=%s", stats);
    char *argv[] = {"powerloss", "child", (char *)dir, (char *)sync, a_gen, a_ev, NULL};
    char *env[] = {e_at, e_mode, e_seed, e_stats, "EVL_SHIM_FAKE_SYNC=1", NULL};
    int fd, status;
    pid_t pid = spawn_child(EVL_IOSHIM_PATH, argv, env, &fd, -1);
    read_acks(fd, acked);
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != SHIM_CRASH_STATUS)) {
        fprintf(stderr, "child: status %#x (exit 2: the log did not open, 3: an append failed)\n", status);
        return -1;
    }
    return WEXITSTATUS(status);
}

typedef struct check_result {
    int rc;             /* 0: opens and verifies */
    uint64_t lost, dups;
    char problem[600];
} check_result;

/* Reopen and verify in a process of its own: LMDB trusts its pages, and a
 * log left corrupt by a power cut (sync none on a disk that reorders) can
 * crash the process that opens it.  The acknowledged ids that are missing
 * are removed from @p acked (counted once). */
static void check_log(const char *dir, const evl_log_options *opt, idset *acked, check_result *cr) {
    int p[2];
    memset(cr, 0, sizeof *cr);
    CHECK(pipe(p) == 0);
    idset_sort(acked);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        check_result r = {0};
        evl_log *log;
        idset inlog = {0};
        r.rc = evl_log_open(dir, opt, &log);
        if (r.rc) snprintf(r.problem, sizeof r.problem, "the log does not open: %s", evl_strerror(r.rc));
        else {
            uint64_t n;
            char problem[512] = "";
            r.rc = evl_log_verify(log, problem, sizeof problem, &n, NULL, NULL);
            if (r.rc) snprintf(r.problem, sizeof r.problem, "verify: %s: %s", evl_strerror(r.rc), problem);
        }
        if (!r.rc) {
            r.dups = log_ids(log, &inlog);
            for (size_t k = 0; k < acked->n; k++) r.lost += !idset_has(&inlog, acked->v[k]);
        }
        if (write(p[1], &r, sizeof r) != sizeof r) _exit(5);
        for (size_t k = 0; !r.rc && k < acked->n; k++)
            if (!idset_has(&inlog, acked->v[k]) && write(p[1], acked->v[k], 16) != 16) _exit(5);
        evl_log_close(log);
        _exit(0);
    }
    close(p[1]);
    ssize_t got = read(p[0], cr, sizeof *cr);
    idset lost = {0};
    if (got == (ssize_t)sizeof *cr && !cr->rc) read_acks(p[0], &lost);
    else close(p[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status) || got != (ssize_t)sizeof *cr) {
        cr->rc = EVL_ECORRUPT;
        snprintf(cr->problem, sizeof cr->problem, "opening and verifying the log killed the process (status %#x)",
                 status);
        return;
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(lost.n == cr->lost);
    idset_sort(&lost);
    size_t j = 0;
    for (size_t k = 0; k < acked->n; k++)
        if (!idset_has(&lost, acked->v[k])) memcpy(acked->v[j++], acked->v[k], 16);
    acked->n = j;
    free(lost.v);
}

static void corrupt_note(tally *t, const char *sync, uint64_t seed, uint64_t i, uint64_t at, int mode,
                         const char *problem) {
    t->corrupt[mode]++;
    if (!t->first_problem[0])
        snprintf(t->first_problem, sizeof t->first_problem, "iteration %llu, crash at op %llu, mode %s: %s",
                 (unsigned long long)i, (unsigned long long)at, modes[mode], problem);
    fprintf(stderr, "sync %s, iteration %llu (seed %llu), crash at op %llu, mode %s: %s\n", sync,
            (unsigned long long)i, (unsigned long long)seed, (unsigned long long)at, modes[mode], problem);
}

static void run_mode(const char *sync, uint64_t iters, uint64_t per_thread, uint64_t seed, tally *t) {
    int full = !strcmp(sync, "full");
    char dir[512], stats[600];
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), sync);
    snprintf(stats, sizeof stats, "%s/shim-%s.stats", test_tmpdir(), sync);
    idset acked = {0};
    memset(t, 0, sizeof *t);
    t->ops_min = UINT64_MAX;
    uint32_t gen = 0;
    uint64_t rng = seed, ops = 0;
    int fresh = 1, prev_mode = -1; /* a reordering cut happened to this log (sync none) */
    uint64_t prev_at = 0;
    evl_log_options opt;
    evl_log_options_init(&opt);
    opt.sync = full ? EVL_SYNC_FULL : EVL_SYNC_NONE;
    opt.flush_interval_ms = FLUSH_MS;
    opt.map_size = 64u << 20;
    for (uint64_t i = 0; i < iters; i++) {
        /* a fresh log every 25 iterations, so both the creation and a log
         * that has been through many power cuts get crashed */
        if (fresh || i % 25 == 0) {
            fresh = 0;
            rm_rf(dir);
            acked.n = 0;
            prev_mode = -1;
        }
        if (i % 5 == 0) {
            /* the workload's length in shim operations, from a run without a
             * crash (it grows with the log) */
            int st = run_child(dir, sync, gen++, per_thread, 0, 0, 0, stats, &acked);
            if (st < 0) {
                /* LMDB's free list was wrong after the last cut, though
                 * verify (which reads the records and indexes) passed */
                CHECK(!full && prev_mode >= 3);
                corrupt_note(t, sync, seed, i, prev_at, prev_mode, "the next writer aborted in LMDB");
                fresh = 1;
                continue;
            }
            ops = shim_stat(stats, "ops");
            CHECK(ops > 0);
            if (ops < t->ops_min) t->ops_min = ops;
            if (ops > t->ops_max) t->ops_max = ops;
        }
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t r = rng >> 17;
        /* N over the run and a little past it: some runs finish uncut */
        uint64_t at = 1 + r % (ops + ops / 10);
        /* sync none: every other block of 25 cuts keeps write order only, so
         * that no earlier reordering cut can have left the log damaged in a
         * way verify does not see (LMDB's free list) and a corruption there
         * is a real failure */
        int ordered_only = !full && (i / 25) % 2 == 0;
        int mode = (int)((r >> 32) % (ordered_only ? 3 : N_MODES));
        if (at > t->point_max) t->point_max = at;
        size_t before = acked.n;
        int st = run_child(dir, sync, gen++, per_thread, at, mode, rng, stats, &acked);
        if (st < 0) {
            CHECK(!full && prev_mode >= 3);
            corrupt_note(t, sync, seed, i, prev_at, prev_mode, "the next writer aborted in LMDB");
            fresh = 1;
            continue;
        }
        if (mode >= 3) { prev_mode = mode; prev_at = at; } /* the last reordering cut on this log */
        t->iters++;
        t->by_mode[mode]++;
        if (st == SHIM_CRASH_STATUS) t->crashes++;
        else t->completed++;
        t->acked += acked.n - before;

        size_t run_acks = acked.n - before;
        check_result cr;
        check_log(dir, &opt, &acked, &cr);
        if (cr.rc) {
            /* a corrupt log is only acceptable in sync none after a
             * reordering cut (this one or an earlier one on the same log):
             * counted against that cut's mode */
            int culprit = mode >= 3 ? mode : prev_mode;
            corrupt_note(t, sync, seed, i, mode >= 3 ? at : prev_at, culprit >= 0 ? culprit : mode, cr.problem);
            if (culprit != mode && culprit >= 0)
                fprintf(stderr, "  (found after a %s cut; the log had a %s cut at op %llu before)\n", modes[mode],
                        modes[culprit], (unsigned long long)prev_at);
            CHECK(!full && culprit >= 3);
            fresh = 1; /* go on with a new log */
            continue;
        }
        CHECK(cr.dups == 0);
        if (cr.lost && getenv("EVL_POWERLOSS_VERBOSE"))
            fprintf(stderr, "sync %s, iteration %llu: cut at op %llu (%s): %llu lost, %zu acknowledged by the run\n",
                    sync, (unsigned long long)i, (unsigned long long)at, modes[mode], (unsigned long long)cr.lost,
                    run_acks);
        t->lost += cr.lost;
        t->lost_by[mode] += cr.lost;
        if (cr.lost > t->lost_max) t->lost_max = cr.lost;
        if (cr.lost > t->lost_max_by[mode]) t->lost_max_by[mode] = cr.lost;
        if (full && cr.lost) {
            fprintf(stderr, "sync full, iteration %llu (seed %llu), crash at op %llu, mode %s: %llu acknowledged "
                    "events lost\n", (unsigned long long)i, (unsigned long long)seed, (unsigned long long)at,
                    modes[mode], (unsigned long long)cr.lost);
            CHECK(cr.lost == 0);
        }
    }
    free(acked.v);
}

static void report(const char *sync, const tally *t) {
    printf("sync %s: %llu iterations (%llu cut, %llu ran to the end), crash points 1..%llu over runs of "
           "%llu..%llu writes+syncs; %llu events acknowledged, %llu lost (at most %llu in one cut)\n",
           sync, (unsigned long long)t->iters, (unsigned long long)t->crashes, (unsigned long long)t->completed,
           (unsigned long long)t->point_max, (unsigned long long)t->ops_min, (unsigned long long)t->ops_max,
           (unsigned long long)t->acked, (unsigned long long)t->lost, (unsigned long long)t->lost_max);
    for (int m = 0; m < N_MODES; m++)
        printf("  mode %-7s: %3llu iterations, %llu corrupt, %llu acknowledged events lost (at most %llu in one cut)\n",
               modes[m], (unsigned long long)t->by_mode[m], (unsigned long long)t->corrupt[m],
               (unsigned long long)t->lost_by[m], (unsigned long long)t->lost_max_by[m]);
    if (t->first_problem[0]) printf("  first corruption: %s\n", t->first_problem);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "child")) return child_main(argv);
    uint64_t iters = env_or("EVL_POWERLOSS_ITERS", 300);
    uint64_t per_thread = env_or("EVL_POWERLOSS_EVENTS", 40);
    uint64_t seed = env_or("EVL_POWERLOSS_SEED", (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20);
    printf("seed %llu, %llu iterations per mode, %d threads x %llu events per run\n", (unsigned long long)seed,
           (unsigned long long)iters, THREADS, (unsigned long long)per_thread);
    tally full, none;
    run_mode("full", iters, per_thread, seed, &full);
    report("full", &full);
    run_mode("none", iters, per_thread, seed ^ 0x5bd1e995, &none);
    report("none", &none);
    /* the test would prove nothing if the cuts missed the interesting part */
    CHECK(full.crashes > full.iters / 2 && none.crashes > none.iters / 2);
    CHECK(full.lost == 0);
    for (int m = 0; m < N_MODES; m++) CHECK(full.corrupt[m] == 0);
    for (int m = 0; m < 3; m++) CHECK(none.corrupt[m] == 0);
    TEST_PASS();
}

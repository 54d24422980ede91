/** @file history.c
 * @brief bench/history: what `-- @history` costs the projector.
 *
 * N generated events (the jobs and tasks services) are appended once to a
 * fresh log (sync none); then each built-in projection (jobs, tasks) is
 * built from position 1 to the head by evl_proj_build() — the shadow
 * projector a rebuild and `evlog replay` use, one thread, timed — with
 * three versions of its spec, in alternating rounds (A B C A B C ...):
 *   off    the spec without its `-- @history` lines (no hook installed);
 *   other  history kept on a table no event touches (the hook runs for
 *          every changed row and returns at once): the price of the hook
 *          for the tables that do not ask for history;
 *   all    the built-in `-- @history` lines without their EXCEPT lists:
 *          every column recorded (jobs: each JobProgressed tick too);
 *   on     the built-in spec, history kept on the projection's table.
 * Reported: median events per CPU-second of the building thread (user +
 * system: the machine is shared, wall time measures the neighbours), the
 * ratios to `off`, and what the history adds to the file (rows, bytes) for
 * `all` and `on`.
 *
 * usage: history [--events N] [--rounds N]
 */
#include "bench.h"

#include <getopt.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <time.h>

#include "evlog/json.h"
#include "evlog/log.h"
#include "evlog/proj.h"
#include "gen.h"

static char *spec_text(const char *file, int mode) {
    size_t nb;
    const evl_proj_builtin *b = evl_proj_builtins(&nb);
    for (size_t i = 0; i < nb; i++) {
        if (strcmp(b[i].file, file)) continue;
        char *out = malloc(b[i].len + 256);
        size_t n = 0;
        const char *s = b[i].text, *end = s + b[i].len;
        while (s < end) {
            const char *eol = memchr(s, '\n', (size_t)(end - s));
            eol = eol ? eol + 1 : end;
            int hist = eol - s > 12 && !memcmp(s, "-- @history ", 12);
            const char *copy_end = eol;
            for (const char *x = s; mode == 2 && hist && eol - x > 8; x++)
                if (!memcmp(x, " EXCEPT ", 8)) copy_end = x; /* the line up to EXCEPT */
            if (!hist || mode >= 2) {
                memcpy(out + n, s, (size_t)(copy_end - s));
                n += (size_t)(copy_end - s);
                if (copy_end != eol) out[n++] = '\n';
            }
            if (mode == 1 && eol - s > 15 && !memcmp(s, "-- @projection ", 15)) {
                const char *extra = "-- @history bench_untouched\n"
                                    "CREATE TABLE bench_untouched (id INTEGER PRIMARY KEY, v TEXT);\n";
                memcpy(out + n, extra, strlen(extra));
                n += strlen(extra);
            }
            s = eol;
        }
        out[n] = 0;
        return out;
    }
    return NULL;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double file_mb(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
}

int main(int argc, char **argv) {
    uint64_t events = 200000;
    int rounds = 3;
    static const struct option lopts[] = {{"events", 1, 0, 'e'}, {"rounds", 1, 0, 'r'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        if (c == 'e') events = strtoull(optarg, NULL, 10);
        else if (c == 'r') rounds = atoi(optarg);
        else { fprintf(stderr, "usage: history [--events N] [--rounds N]\n"); return 2; }
    }
    if (rounds < 1 || rounds > 16) rounds = 3;
    char dir[512];
    const char *td = getenv("TMPDIR");
    if (bench_make_rundir(dir, sizeof dir, td ? td : "/tmp")) { perror("rundir"); return 1; }
    char logdir[600];
    snprintf(logdir, sizeof logdir, "%s/data", dir);
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    evl_log *log;
    evl_gen *g;
    if (evl_log_open(logdir, &lo, &log) || evl_gen_new(42, EVL_GEN_JOBS | EVL_GEN_TASKS, &g)) return 1;
    while (evl_log_head(log) < events) {
        const evl_stream_in *s;
        size_t n;
        evl_append_result r;
        if (evl_gen_next(g, &s, &n)) return 1;
        evl_log_append(log, s, n, &r);
        evl_free(r.acks);
    }
    evl_gen_free(g);
    uint64_t head = evl_log_head(log);
    printf("bench/history: %" PRIu64 " events (jobs + tasks services), %d rounds, evl_proj_build to the head\n\n", head, rounds);
    printf("%-6s %12s %12s %12s %12s %9s %9s %9s %11s %11s %8s %8s %8s\n", "proj", "off ev/cpu-s", "other", "all",
           "on", "other/off", "all/off", "on/off", "all rows", "on rows", "file MB", "+all MB", "+on MB");
    const char *files[] = {"jobs.sql", "tasks.sql"};
    static const char *const modes[] = {"off", "other", "all", "on"};
    for (size_t f = 0; f < 2; f++) {
        double rate[4][16];
        double mb[4] = {0};
        long long hrows[4] = {0};
        for (int r = 0; r < rounds; r++)
            for (int m = 0; m < 4; m++) {
                char *text = spec_text(files[f], m), err[512], out[700];
                evl_proj_spec *sp;
                if (!text || evl_proj_spec_parse(text, strlen(text), files[f], &sp, err, sizeof err)) {
                    fprintf(stderr, "spec %s (%s): %s\n", files[f], modes[m], text ? err : "not built in");
                    return 1;
                }
                snprintf(out, sizeof out, "%s/%s-%s.db", dir, evl_proj_spec_name(sp), modes[m]);
                double t0 = cpu_s();
                uint64_t at;
                if (evl_proj_build(log, sp, head, out, &at, err, sizeof err)) {
                    fprintf(stderr, "build: %s\n", err);
                    return 1;
                }
                rate[m][r] = (double)head / (cpu_s() - t0);
                mb[m] = file_mb(out);
                if (m >= 2) {
                    json_t *res;
                    if (evl_proj_query_file(out, "SELECT count(*) FROM _evl_history", NULL, NULL, &res, err, sizeof err) == EVL_OK) {
                        hrows[m] = (long long)json_integer_value(json_array_get(json_array_get(json_object_get(res, "rows"), 0), 0));
                        json_decref(res);
                    }
                }
                evl_proj_spec_free(sp);
                free(text);
            }
        double med[4];
        for (int m = 0; m < 4; m++) med[m] = bench_median(rate[m], (size_t)rounds);
        printf("%-6.*s %12.0f %12.0f %12.0f %12.0f %9.2f %9.2f %9.2f %11lld %11lld %8.1f %8.1f %8.1f\n",
               (int)(strlen(files[f]) - 4), files[f], med[0], med[1], med[2], med[3], med[1] / med[0], med[2] / med[0],
               med[3] / med[0], hrows[2], hrows[3], mb[0], mb[2] - mb[0], mb[3] - mb[0]);
    }
    evl_log_close(log);
    bench_rm_rf(dir);
    return 0;
}

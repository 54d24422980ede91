/* evlogd: the server.  It owns the data directory (the log's lock), runs the
 * projections and serves the HTTP API (server/srv.h, docs/http.md).
 *
 * Signals are blocked in every thread and taken here with sigwait(), so no
 * handler runs in the middle of anything: SIGTERM/SIGINT stop the server
 * gracefully (stop accepting, answer in-flight appends, end feeds, let the
 * projectors checkpoint) and exit 0; SIGHUP re-reads the projection files
 * (a changed spec is rebuilt beside the table that serves, a new file
 * starts a projection).  It logs one line per start, stop, fault, reload
 * and rebuild on stderr, never one per request.
 */
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evlog/log.h"
#include "evlog/proj.h"
#include "server/demo.h"
#include "server/options.h"
#include "server/srv.h"

/* One line per notable thing, with a UTC timestamp: the server's own log. */
static void say(void *arg, const char *line) {
    (void)arg;
    char t[40];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    evl_time_format((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, 3, t);
    fprintf(stderr, "%s evlogd: %s\n", t, line);
}

/* SIGHUP: the engine re-reads the --projections dirs it was opened with and
 * says per projection what it does (through say()); this line sums it up.
 * It runs on the signal thread: a reload parses every spec, which the
 * event loops must not wait for. */
static void reload(evl_proj_engine *eng) {
    size_t changed = 0;
    int rc = evl_proj_reload(eng, &changed);
    char line[256];
    if (rc)
        snprintf(line, sizeof line,
                 "SIGHUP: reloading projection files failed (%s); %zu projection(s) changed before that",
                 evl_strerror(rc), changed);
    else
        snprintf(line, sizeof line,
                 "SIGHUP: projection files reloaded; %zu projection(s) changed (new or rebuilding)", changed);
    say(NULL, line);
}

/* Command line over config file: the file (--config) is applied first, then
 * every other flag, so a flag wins over the same key in the file. */
/* A second evlogd (or any writer) on a data dir: say who holds it, and that
 * nothing was touched.  The log writes its pid into DATA/LOCK. */
static void busy_message(const char *data) {
    char path[4096], pid[32] = "";
    snprintf(path, sizeof path, "%s/LOCK", data);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(pid, sizeof pid, f)) pid[0] = 0;
        fclose(f);
    }
    pid[strcspn(pid, "\n")] = 0;
    fprintf(stderr,
            "evlogd: %s: %s (%s is locked%s%s): one evlogd per data directory; "
            "nothing was changed\n",
            data, evl_strerror(EVL_EBUSY), path, pid[0] ? " by pid " : "", pid);
}

static int parse_args(int argc, char **argv, evlogd_opts *o) {
    char err[512];
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i < argc; i++) {
            const char *a = argv[i];
            if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                evl__srv_opts_usage(stdout);
                exit(0);
            }
            if (strncmp(a, "--", 2)) {
                fprintf(stderr, "evlogd: unexpected argument '%s'\n", a);
                return 2;
            }
            char name[64];
            const char *eq = strchr(a, '='), *val = NULL;
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            if (n >= sizeof name) n = sizeof name - 1;
            memcpy(name, a + 2, n);
            name[n] = '\0';
            if (eq) val = eq + 1;
            else if (!evl__srv_opts_is_flag(name)) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "evlogd: --%s needs a value\n", name);
                    return 2;
                }
                val = argv[++i];
            }
            int is_config = !strcmp(name, "config");
            if (pass == 0 && is_config && evl__srv_opts_file(o, val, err, sizeof err)) {
                fprintf(stderr, "evlogd: %s\n", err);
                return 2;
            }
            if (pass == 1 && !is_config && evl__srv_opts_set(o, name, val, err, sizeof err)) {
                fprintf(stderr, "evlogd: %s\n", err);
                evl__srv_opts_usage(stderr);
                return 2;
            }
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    evlogd_opts o;
    evl__srv_opts_init(&o);
    int rc = parse_args(argc, argv, &o);
    if (rc) {
        evl__srv_opts_free(&o);
        return rc;
    }
    o.srv.report = say;
    /* The engine keeps these pointers and reads the dirs again on every
     * SIGHUP: o lives until main returns, its strings are argv's or owned by
     * o (freed after the engine is closed), and evlogd never changes its
     * working directory, so a relative --projections stays the same dir. */
    evl_proj_options po = {.dirs = o.dirs, .n_dirs = o.n_dirs, .no_builtin = o.no_builtin,
                           .report = say};
    /* Every connection is a descriptor: take all the system allows rather
     * than the usual soft limit of 1024, which is below --max-connections. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* A peer that closed its socket must be an error on write, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts */

    evl_log *log = NULL;
    evl_proj_engine *eng = NULL;
    evl_srv *srv = NULL;
    char err[512];
    if ((rc = evl_log_open(o.data, &o.log, &log))) {
        if (rc == EVL_EBUSY)
            busy_message(o.data);
        else
            fprintf(stderr, "evlogd: %s: %s\n", o.data, evl_strerror(rc));
        goto fail;
    }
    if ((rc = evl_proj_open(log, &po, &eng))) {
        fprintf(stderr, "evlogd: projections: %s\n", evl_strerror(rc));
        goto fail;
    }
    if ((rc = evl_srv_open(log, eng, &o.srv, &srv, err, sizeof err))) {
        fprintf(stderr, "evlogd: %s\n", err);
        goto fail;
    }
    evl_proj_status *st;
    size_t n = 0;
    if (evl_proj_status_get(eng, NULL, &st, &n) == EVL_OK) evl_proj_status_free(st, n);
    char line[640];
    snprintf(line, sizeof line,
             "started on %s (head %llu, sync %s, %zu projections); listening on http://%s "
             "(%u threads%s)",
             o.data, (unsigned long long)evl_log_head(log),
             o.log.sync == EVL_SYNC_FULL ? "full" : "none", n, evl_srv_address(srv), o.srv.threads,
             o.srv.token_file ? ", tokens required" : "");
    say(NULL, line);
    evlogd_demo *demo = NULL;
    if (o.demo) {
        if ((rc = evlogd_demo_start(log, o.demo_rate, say, &demo))) {
            fprintf(stderr, "evlogd: --demo: %s\n", evl_strerror(rc));
            goto fail;
        }
        snprintf(line, sizeof line,
                 "demo: appending generated events of the seed services, %u per second; "
                 "console at http://%s/",
                 o.demo_rate, evl_srv_address(srv));
        say(NULL, line);
    }
    int sig;
    for (;;) {
        sigwait(&set, &sig);
        if (sig != SIGHUP) break;
        reload(eng);
    }
    say(NULL, sig == SIGTERM ? "stopping (SIGTERM)" : "stopping (SIGINT)");
    evlogd_demo_stop(demo); /* before the server: its appends are answered, none is cut */
    evl_srv_stop(srv);
    evl_srv_close(srv);
    evl_proj_close(eng);
    evl_log_close(log);
    snprintf(line, sizeof line, "stopped (%s)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    say(NULL, line);
    evl__srv_opts_free(&o);
    return 0;
fail:
    evl_srv_close(srv);
    evl_proj_close(eng);
    evl_log_close(log);
    evl__srv_opts_free(&o);
    return 1;
}

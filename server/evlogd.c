/* evlogd: the server.  Until the HTTP API lands (issue 5) it owns the data
 * directory: opens the log (taking the lock, recovering readers), runs the
 * projections, logs one line per start/stop/fault/rebuild, and on
 * SIGTERM/SIGINT lets the projectors checkpoint and closes cleanly. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evlog/log.h"
#include "evlog/proj.h"

#define MAX_DIRS 16

static void usage(FILE *f) {
    fprintf(f, "usage: evlogd [--data DIR] [--listen HOST:PORT] [--projections DIR]... "
               "[--no-builtin]\n              [--sync full|none] [--token-file FILE] "
               "[--map-size BYTES]\n");
}

/* One line per notable thing, with a UTC timestamp: the server's own log. */
static void say(void *arg, const char *line) {
    (void)arg;
    char t[40];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    evl_time_format((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, 3, t);
    fprintf(stderr, "%s evlogd: %s\n", t, line);
}

int main(int argc, char **argv) {
    const char *dir = "./evlog-data";
    const char *dirs[MAX_DIRS];
    evl_proj_options po = {.dirs = dirs, .report = say};
    evl_log_options opt;
    evl_log_options_init(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--no-builtin")) { po.no_builtin = 1; continue; }
        if (!val) { usage(stderr); return 2; }
        if (!strcmp(a, "--data")) dir = val;
        else if (!strcmp(a, "--sync")) {
            if (!strcmp(val, "full")) opt.sync = EVL_SYNC_FULL;
            else if (!strcmp(val, "none")) opt.sync = EVL_SYNC_NONE;
            else { fprintf(stderr, "evlogd: --sync must be full or none\n"); return 2; }
        } else if (!strcmp(a, "--map-size")) opt.map_size = strtoull(val, NULL, 10);
        else if (!strcmp(a, "--projections")) {
            if (po.n_dirs == MAX_DIRS) { fprintf(stderr, "evlogd: at most %d --projections\n", MAX_DIRS); return 2; }
            dirs[po.n_dirs++] = val;
        } else if (!strcmp(a, "--listen") || !strcmp(a, "--token-file")) {
            /* accepted now so scripts keep working when the HTTP API lands */
        } else { usage(stderr); return 2; }
        i++;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts */
    evl_log *log;
    int rc = evl_log_open(dir, &opt, &log);
    if (rc) {
        fprintf(stderr, "evlogd: %s: %s\n", dir, evl_strerror(rc));
        return 1;
    }
    evl_proj_engine *eng;
    if ((rc = evl_proj_open(log, &po, &eng))) {
        fprintf(stderr, "evlogd: projections: %s\n", evl_strerror(rc));
        evl_log_close(log);
        return 1;
    }
    char line[512];
    evl_proj_status *st;
    size_t n = 0;
    if (evl_proj_status_get(eng, NULL, &st, &n) == EVL_OK) evl_proj_status_free(st, n);
    snprintf(line, sizeof line, "started on %s (head %llu, sync %s, %zu projections); HTTP API not built yet",
             dir, (unsigned long long)evl_log_head(log), opt.sync == EVL_SYNC_FULL ? "full" : "none", n);
    say(NULL, line);
    int sig;
    sigwait(&set, &sig);
    evl_proj_close(eng);
    evl_log_close(log);
    snprintf(line, sizeof line, "stopped (%s)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    say(NULL, line);
    return 0;
}

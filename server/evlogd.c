/* evlogd: the server.  Until the HTTP server lands (issue 5) it owns the data
 * directory: opens the log (taking the lock, recovering readers), reports
 * what it found, and holds it until SIGTERM/SIGINT, then closes cleanly so
 * the last flush happens in sync none. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evlog/log.h"

static void usage(FILE *f) {
    fprintf(f, "usage: evlogd [--data DIR] [--listen HOST:PORT] [--projections DIR]... "
               "[--no-builtin]\n              [--sync full|none] [--token-file FILE] "
               "[--map-size BYTES]\n");
}

int main(int argc, char **argv) {
    const char *dir = "./evlog-data";
    evl_log_options opt;
    evl_log_options_init(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--no-builtin")) continue;
        if (!val) { usage(stderr); return 2; }
        if (!strcmp(a, "--data")) dir = val;
        else if (!strcmp(a, "--sync")) {
            if (!strcmp(val, "full")) opt.sync = EVL_SYNC_FULL;
            else if (!strcmp(val, "none")) opt.sync = EVL_SYNC_NONE;
            else { fprintf(stderr, "evlogd: --sync must be full or none\n"); return 2; }
        } else if (!strcmp(a, "--map-size")) opt.map_size = strtoull(val, NULL, 10);
        else if (!strcmp(a, "--listen") || !strcmp(a, "--projections") || !strcmp(a, "--token-file")) {
            /* accepted now so scripts keep working when the server lands */
        } else { usage(stderr); return 2; }
        i++;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the writer thread starts */
    evl_log *log;
    int rc = evl_log_open(dir, &opt, &log);
    if (rc) {
        fprintf(stderr, "evlogd: %s: %s\n", dir, evl_strerror(rc));
        return 1;
    }
    fprintf(stderr, "evlogd: log open at %s (head %llu, sync %s); HTTP API not built yet\n", dir,
            (unsigned long long)evl_log_head(log), opt.sync == EVL_SYNC_FULL ? "full" : "none");
    int sig;
    sigwait(&set, &sig);
    evl_log_close(log);
    fprintf(stderr, "evlogd: stopped (%s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    return 0;
}

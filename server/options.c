/* evlogd's settings.  One table of keys serves the command line
 * (`--key VALUE` or `--key=VALUE`) and the config file (`key = value`), so
 * the two cannot drift apart. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/options.h"

enum kind { K_STR, K_DIR, K_BOOL, K_SYNC, K_SIZE, K_U32 };

typedef struct key {
    const char *name;
    enum kind kind;
    size_t off;                /* in evlogd_opts */
    const char *help;
} key;

#define O(f) offsetof(evlogd_opts, f)
static const key keys[] = {
    {"data", K_STR, O(data), "DIR data directory (./evlog-data)"},
    {"listen", K_STR, O(srv.listen), "HOST:PORT address (127.0.0.1:7070; port 0 picks one)"},
    {"projections", K_DIR, 0, "DIR add every *.sql in DIR (repeatable)"},
    {"no-builtin", K_BOOL, O(no_builtin), "leave the built-in projections out"},
    {"sync", K_SYNC, O(log.sync), "full|none durability of appends (full)"},
    {"token-file", K_STR, O(srv.token_file), "FILE bearer tokens: `SECRET ROLE [NAME]` or `sha256:HEX ROLE [NAME]`"},
    {"map-size", K_SIZE, O(log.map_size), "BYTES LMDB map size (256G)"},
    {"applier-nice", K_U32, O(log.applier_nice), "N run the thread that fills LMDB this much nicer (10; 0: no)"},
    {"threads", K_U32, O(srv.threads), "N HTTP worker threads (CPUs, at most 16)"},
    {"pool-threads", K_U32, O(srv.pool_threads), "N most threads for queries and waits (16; waits hold at most 3/4)"},
    {"max-body", K_SIZE, O(srv.max_body), "BYTES request body limit (16M)"},
    {"max-headers", K_SIZE, O(srv.max_headers), "BYTES request line + headers limit (32K)"},
    {"max-uri", K_SIZE, O(srv.max_uri), "BYTES request target limit (8K)"},
    {"max-connections", K_U32, O(srv.max_connections), "N open connections; above: 503 (4096)"},
    {"header-timeout-ms", K_U32, O(srv.header_timeout_ms), "MS to send a whole request (10000)"},
    {"idle-timeout-ms", K_U32, O(srv.idle_timeout_ms), "MS an idle connection stays open (60000)"},
    {"max-page", K_U32, O(srv.max_page), "N most events per read page (10000)"},
    {"sse-buffer", K_SIZE, O(srv.sse_buffer), "BYTES queued per subscriber before it reads from the log (1M)"},
    {"sse-heartbeat-ms", K_U32, O(srv.sse_heartbeat_ms), "MS between heartbeat comments (15000)"},
    {"sse-retry-ms", K_U32, O(srv.sse_retry_ms), "MS the retry: advice to clients (3000)"},
    {"sse-stall-ms", K_U32, O(srv.sse_stall_ms), "MS a subscriber may read nothing before it is dropped (60000)"},
    {"query-timeout-ms", K_U32, O(srv.query_timeout_ms), "MS default min_position wait (5000)"},
    {"query-max-timeout-ms", K_U32, O(srv.query_max_timeout_ms), "MS longest min_position wait (60000)"},
    {"demo", K_BOOL, O(demo), "append generated events of the seed services (a demo workload)"},
    {"demo-rate", K_U32, O(demo_rate), "N events per second of --demo (20)"},
    {"asof-cache-entries", K_U32, O(srv.asof_cache_entries), "N point-in-time builds kept for as_of queries (4)"},
    {"asof-cache-size", K_SIZE, O(srv.asof_cache_bytes), "BYTES their total size at most (1G)"},
};

void evl__srv_opts_init(evlogd_opts *o) {
    memset(o, 0, sizeof *o);
    o->data = "./evlog-data";
    o->demo_rate = 20;
    evl_log_options_init(&o->log);
    evl_srv_config_init(&o->srv);
}

void evl__srv_opts_free(evlogd_opts *o) {
    for (size_t i = 0; i < o->n_owned; i++) evl_free(o->owned[i]);
    evl_free(o->owned);
    o->owned = NULL;
    o->n_owned = 0;
}

static const key *find(const char *name) {
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(keys[i].name, name)) return &keys[i];
    return NULL;
}

int evl__srv_opts_is_flag(const char *name) {
    const key *k = find(name);
    return k && k->kind == K_BOOL;
}

/* 16, 16K, 16M, 16G (powers of 1024). */
static int parse_size(const char *s, uint64_t *v) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-') return -1;
    uint64_t mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1ull << 10; end++; break;
    case 'M': mul = 1ull << 20; end++; break;
    case 'G': mul = 1ull << 30; end++; break;
    case 'T': mul = 1ull << 40; end++; break;
    }
    if (toupper((unsigned char)*end) == 'B') end++;
    if (*end || (n && mul > UINT64_MAX / n)) return -1;
    *v = n * mul;
    return 0;
}

int evl__srv_opts_set(evlogd_opts *o, const char *name, const char *val, char *err, size_t errlen) {
    const key *k = find(name);
    if (!k) {
        snprintf(err, errlen, "unknown option '%s'", name);
        return -1;
    }
    void *p = (char *)o + k->off;
    uint64_t v;
    switch (k->kind) {
    case K_STR:
        *(const char **)p = val;
        return 0;
    case K_DIR:
        if (o->n_dirs == EVLOGD_MAX_DIRS) {
            snprintf(err, errlen, "at most %d --projections", EVLOGD_MAX_DIRS);
            return -1;
        }
        o->dirs[o->n_dirs++] = val;
        return 0;
    case K_BOOL:
        if (!val || !strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "1")) *(int *)p = 1;
        else if (!strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "0")) *(int *)p = 0;
        else break;
        return 0;
    case K_SYNC:
        if (!strcmp(val, "full")) *(evl_sync *)p = EVL_SYNC_FULL;
        else if (!strcmp(val, "none")) *(evl_sync *)p = EVL_SYNC_NONE;
        else break;
        return 0;
    case K_SIZE:
        if (parse_size(val, &v)) break;
        if (k->off == O(log.map_size)) *(uint64_t *)p = v;
        else *(size_t *)p = (size_t)v;
        return 0;
    case K_U32:
        if (parse_size(val, &v) || v > UINT32_MAX) break;
        *(unsigned *)p = (unsigned)v;
        return 0;
    }
    snprintf(err, errlen, "--%s: bad value '%s'", name, val ? val : "");
    return -1;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

int evl__srv_opts_file(evlogd_opts *o, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "--config %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        size_t kl = strcspn(s, " \t=");
        char *v = s + kl;
        if (*v) *v++ = '\0';
        v = trim(v);
        if (*v == '=') v = trim(v + 1);
        size_t vl = strlen(v);
        char *copy = evl_malloc(vl + 1);
        if (copy) memcpy(copy, v, vl + 1);
        char **no = copy ? evl_realloc(o->owned, (o->n_owned + 1) * sizeof *no) : NULL;
        if (!no) {
            evl_free(copy);
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        o->owned = no;
        o->owned[o->n_owned++] = copy;
        char e2[256];
        if (evl__srv_opts_set(o, s, *copy || !evl__srv_opts_is_flag(s) ? copy : NULL, e2, sizeof e2)) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, e2);
            rc = -1;
        }
    }
    fclose(f);
    return rc;
}

void evl__srv_opts_usage(FILE *f) {
    fprintf(f, "usage: evlogd [--data DIR] [--listen HOST:PORT] [--projections DIR]... [--no-builtin]\n"
               "              [--sync full|none] [--token-file FILE] [--config FILE] [more options]\n"
               "options (also as `key = value` lines in --config FILE):\n");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        fprintf(f, "  --%-22s %s\n", keys[i].name, keys[i].help);
}

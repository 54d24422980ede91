/* Point-in-time queries: a cache of temporary replays.
 *
 * A query `as_of` position P runs against the projection built to P by
 * evl_proj_build() (the shadow projector of `evlog replay --until`) from the
 * spec the served table is built with.  Building costs a replay of the log
 * up to P, so the last few builds are kept in DATA/asof/, keyed by
 * (projection, spec hash, position): an auditor's follow-up questions about
 * the same moment are answered from the file.  A spec change gives a new
 * hash, so a stale build is never served.
 *
 * Bounds: at most max_entries files and max_bytes in all; the least
 * recently used file that no query is reading goes first; a file being
 * read stays until its last reader is done, which evicts again.  The directory is
 * emptied at open (what a crash left) and at close.
 *
 * Builds run outside the lock: two queries missing on the same key both
 * build, the second to finish throws its file away and uses the first. */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "projections/proj_int.h"

typedef struct asof_entry {
    char name[EVL_PROJ_MAX_NAME + 1];
    char hash[17];
    uint64_t position;
    char *path;
    uint64_t bytes;
    unsigned refs;
    uint64_t used;              /* LRU clock */
    struct asof_entry *next;
} asof_entry;

struct evl_proj_asof {
    evl_proj_engine *eng;
    char *dir;
    size_t max_entries;
    uint64_t max_bytes;
    pthread_mutex_t mu;
    asof_entry *list;
    uint64_t clock, seq;
    evl_proj_asof_stats st;
};

static void empty_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char path[4096];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

int evl_proj_asof_open(evl_proj_engine *eng, size_t max_entries, uint64_t max_bytes, evl_proj_asof **out) {
    *out = NULL;
    evl_proj_asof *c = evl_calloc(1, sizeof *c);
    if (!c) return EVL_ENOMEM;
    const char *data = evl_log_dir(eng->log);
    size_t n = strlen(data) + 8;
    if (!(c->dir = evl_malloc(n))) {
        evl_free(c);
        return EVL_ENOMEM;
    }
    snprintf(c->dir, n, "%s/asof", data);
    if (mkdir(c->dir, 0755) != 0 && errno != EEXIST) {
        int rc = EVL_ESYS(errno);
        evl_free(c->dir);
        evl_free(c);
        return rc;
    }
    empty_dir(c->dir);
    c->eng = eng;
    c->max_entries = max_entries ? max_entries : 1;
    c->max_bytes = max_bytes;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return EVL_OK;
}

static void entry_free(asof_entry *e) {
    evl__proj_remove_db_files(e->path);
    evl_free(e->path);
    evl_free(e);
}

void evl_proj_asof_close(evl_proj_asof *c) {
    if (!c) return;
    for (asof_entry *e = c->list, *next; e; e = next) {
        next = e->next;
        entry_free(e);
    }
    empty_dir(c->dir);
    rmdir(c->dir);
    pthread_mutex_destroy(&c->mu);
    evl_free(c->dir);
    evl_free(c);
}

/* Under mu: drop least recently used idle entries until within bounds. */
static void evict(evl_proj_asof *c) {
    for (;;) {
        size_t n = 0;
        uint64_t bytes = 0;
        for (asof_entry *e = c->list; e; e = e->next) {
            n++;
            bytes += e->bytes;
        }
        c->st.entries = n;
        c->st.bytes = bytes;
        if (n <= c->max_entries && (!c->max_bytes || bytes <= c->max_bytes)) return;
        asof_entry **victim = NULL;
        for (asof_entry **pe = &c->list; *pe; pe = &(*pe)->next)
            if ((*pe)->refs == 0 && (!victim || (*pe)->used < (*victim)->used)) victim = pe;
        if (!victim) return; /* everything is being read: each reader evicts on release */
        asof_entry *e = *victim;
        *victim = e->next;
        c->st.evictions++;
        entry_free(e);
    }
}

static asof_entry *lookup(evl_proj_asof *c, const char *name, const char *hash, uint64_t pos) {
    for (asof_entry *e = c->list; e; e = e->next)
        if (e->position == pos && !strcmp(e->name, name) && !strcmp(e->hash, hash)) return e;
    return NULL;
}

static void release(evl_proj_asof *c, asof_entry *e) {
    pthread_mutex_lock(&c->mu);
    e->refs--;
    evict(c);
    pthread_mutex_unlock(&c->mu);
}

/* The served spec of projection name: its hash, and a copy when asked. */
static int served_spec(evl_proj_engine *eng, const char *name, char hash[17], evl_proj_spec **copy) {
    proj *p = evl__proj_find(eng, name);
    if (!p) return EVL_ENOTFOUND;
    pthread_mutex_lock(&eng->mu);
    memcpy(hash, p->spec->hash, 17);
    int rc = copy ? evl__proj_spec_copy(p->spec, copy) : EVL_OK;
    pthread_mutex_unlock(&eng->mu);
    return rc;
}

int evl_proj_asof_query(evl_proj_asof *c, const char *name, uint64_t position, const char *sql,
                        const json_t *params, const evl_proj_query_opts *opts, json_t **result, int *cached,
                        char *err, size_t errlen) {
    char hash[17];
    *result = NULL;
    *cached = 0;
    err[0] = 0;
    uint64_t head = evl_log_head(c->eng->log);
    if (position > head) position = head; /* what evl_proj_build does: the key must say the same */
    int rc = served_spec(c->eng, name, hash, NULL);
    if (rc) {
        snprintf(err, errlen, "no projection named %s", name);
        return rc;
    }
    pthread_mutex_lock(&c->mu);
    asof_entry *e = lookup(c, name, hash, position);
    if (e) {
        e->refs++;
        e->used = ++c->clock;
        c->st.hits++;
        *cached = 1;
    } else {
        c->st.misses++;
    }
    uint64_t seq = ++c->seq;
    pthread_mutex_unlock(&c->mu);
    if (!e) {
        evl_proj_spec *sp = NULL;
        if ((rc = served_spec(c->eng, name, hash, &sp))) {
            snprintf(err, errlen, "projection %s: %s", name, evl_strerror(rc));
            return rc;
        }
        asof_entry *ne = evl_calloc(1, sizeof *ne);
        size_t n = strlen(c->dir) + strlen(name) + 64;
        if (!ne || !(ne->path = evl_malloc(n))) {
            evl_free(ne);
            evl_proj_spec_free(sp);
            return EVL_ENOMEM;
        }
        snprintf(ne->path, n, "%s/%s-%s-%llu-%llu.db", c->dir, name, hash, (unsigned long long)position,
                 (unsigned long long)seq);
        snprintf(ne->name, sizeof ne->name, "%s", name);
        memcpy(ne->hash, hash, sizeof ne->hash);
        ne->position = position;
        uint64_t at = 0;
        rc = evl_proj_build(c->eng->log, sp, position, ne->path, &at, err, errlen);
        evl_proj_spec_free(sp);
        if (rc) {
            evl_free(ne->path);
            evl_free(ne);
            return rc;
        }
        struct stat sb;
        ne->bytes = stat(ne->path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        pthread_mutex_lock(&c->mu);
        c->st.builds++;
        e = lookup(c, name, hash, position);
        if (e) { /* another query built it meanwhile */
            entry_free(ne);
        } else {
            e = ne;
            e->next = c->list;
            c->list = e;
        }
        e->refs++;
        e->used = ++c->clock;
        pthread_mutex_unlock(&c->mu);
    }
    rc = evl_proj_query_file(e->path, sql, params, opts, result, err, errlen);
    release(c, e);
    return rc;
}

void evl_proj_asof_stats_get(evl_proj_asof *c, evl_proj_asof_stats *st) {
    pthread_mutex_lock(&c->mu);
    *st = c->st;
    pthread_mutex_unlock(&c->mu);
}

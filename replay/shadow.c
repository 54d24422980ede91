/* Shadows: a projector without a thread, building a file of its own.
 *
 * The same set-up, batches and binding as the live engine, so that what a
 * shadow builds is exactly what the live projector would have built: the
 * rebuild of a changed spec (rebuild.c) and the point-in-time file of
 * evl_proj_build() are both shadows.  Each has a private engine (its log,
 * its batch size, the mutex set-up publishes under) so that nothing it does
 * touches the running projections. */
#include "projections/proj_int.h"

int evl__proj_shadow_open(shadow *s, evl_log *log, evl_proj_spec *spec, const char *path, size_t batch,
                          char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->eng.log = log;
    s->eng.opt.batch_events = batch;
    pthread_mutex_init(&s->eng.mu, NULL);
    pthread_cond_init(&s->eng.wake, NULL);
    pthread_cond_init(&s->p.cv, NULL);
    s->p.eng = &s->eng;
    s->p.spec = spec;
    s->p.name = spec->name;
    s->p.path = (char *)path;
    err[0] = 0;
    int rc = evl__proj_setup(&s->p, SETUP_FRESH | SETUP_BULK, err, errlen);
    return rc ? rc : evl__proj_defer_indexes(s, err, errlen);
}

/* Closes the connection; the spec and the path stay the caller's. */
void evl__proj_shadow_close(shadow *s) {
    evl__proj_defer_forget(s);
    evl__proj_teardown(&s->p);
    pthread_cond_destroy(&s->p.cv);
    pthread_cond_destroy(&s->eng.wake);
    pthread_mutex_destroy(&s->eng.mu);
}

int evl_proj_build(evl_log *log, const evl_proj_spec *spec, uint64_t until, const char *out,
                   uint64_t *position, char *err, size_t errlen) {
    shadow s;
    uint64_t head = evl_log_head(log);
    if (until > head) until = head; /* 0: before the first event, the empty tables */
    int rc = evl__proj_shadow_open(&s, log, (evl_proj_spec *)spec, out, 100000, err, errlen);
    while (rc == EVL_OK && s.p.checkpoint < until) {
        uint64_t cp = s.p.checkpoint, failed = 0;
        int full;
        char type[EVL_MAX_NAME + 1] = "", why[768];
        rc = evl__proj_apply_batch(&s.p, until, 0, &cp, &failed, type, why, sizeof why, &full);
        if (rc) snprintf(err, errlen, "position %llu (%s): %s", (unsigned long long)failed, type, why);
        else if (cp == s.p.checkpoint) break; /* nothing more to read below until */
        s.p.checkpoint = cp;
    }
    if (rc == EVL_OK) rc = evl__proj_defer_restore(&s, err, errlen);
    /* a standalone file: a rollback journal, so that the stock sqlite3 tool
     * needs nothing beside it */
    if (rc == EVL_OK && evl__proj_exec(s.p.db, "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL", err, errlen) != SQLITE_OK)
        rc = EVL_ESQL;
    if (position) *position = s.p.checkpoint;
    evl__proj_shadow_close(&s);
    if (rc) evl__proj_remove_db_files(out);
    return rc;
}

/* The syncer: makes the frames the writer wrote durable and answers their
 * appenders (EVL_SYNC_FULL).
 *
 * WHY a thread of its own.  The writer used to check and encode a group,
 * write it, fdatasync, answer, and only then look at the queue again.  With
 * batches of 100 from 16 appenders it spent about half its time in
 * fdatasync (1.3-1.6 s of every 3 s) while the next groups waited for it,
 * and the other half encoding while the disk had nothing to do.  Now the
 * writer hands each written group here and goes on with the next while
 * this thread syncs; one fdatasync covers every frame written before it
 * began, so a sync that takes longer simply covers more groups.
 *
 * Only groups of EVL_PIPE_MIN_EVENTS events or more come here.  A smaller
 * one (single events from many appenders) the writer syncs and answers
 * itself, once this thread is idle: handing it over cost two thread
 * wake-ups per sync, and 64 appenders of single events lost 10% of their
 * throughput to them.
 *
 * ORDER.  Groups are answered in the order they were written, each once
 * every frame up to it is durable -- a group that wrote nothing too: its
 * answers (a repeat's original positions, a conflict's current revision)
 * may name events of the groups before it.  The applier takes a frame only
 * once it is durable (log->durable), so neither LMDB nor a reader ever holds
 * an event whose append may still fail.
 *
 * FAILURE.  A failed sync is never retried (writer.c says why).  The first
 * frame it covered in each file is voided, the appends of those groups and
 * of every group written after them fail (their frames voided too), and the
 * log turns read-only.
 * Frames past a voided one never join LMDB's head at the next open: the run
 * in that file ends at the void, and a run in the other file starts past
 * the positions the voided frames held.
 */
#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log/log_int.h"

int evl__sync_idle(evl_log *log) { return !log->sq_head && !log->s_busy; }

void evl__sync_submit(evl_log *log, evl_wgroup *g) {
    g->next = NULL;
    pthread_mutex_lock(&log->mu);
    if (log->sq_tail) log->sq_tail->next = g;
    else log->sq_head = g;
    log->sq_tail = g;
    pthread_cond_signal(&log->sync_cv);
    pthread_mutex_unlock(&log->mu);
}

/* Sync the files the groups' frames are in, in the order the frames were
 * written.  On failure, *bad is the first group whose frame is not durable
 * and the frames from there on are voided; NULL when all are.  With
 * @p refuse (the log is read-only already) nothing is synced and every
 * frame is voided: a sync that began before the failure may have taken
 * some of them to disk all the same, and their appends are answered as
 * failed. */
static int sync_groups(evl_log *log, evl_wgroup *list, int refuse, evl_wgroup **bad) {
    evl_wgroup *first[EVL_JNL_FILES] = {NULL};
    int order[EVL_JNL_FILES], n = 0;
    for (evl_wgroup *g = list; g; g = g->next)
        if (g->last && !first[g->file]) {
            first[g->file] = g;
            order[n++] = g->file;
        }
    *bad = refuse ? list : NULL;
    int err = refuse;
    for (int k = 0; k < n; k++) {
        evl_wgroup *g = first[order[k]];
        if (err) { /* after a failure: not synced, and voided all the same */
            evl__jnl_void(log, g->file, g->off);
            continue;
        }
        if ((err = evl__jnl_sync(log, g->file, g->off))) *bad = g;
    }
    return err;
}

/* Answer the groups of @p list in order: from @p bad on, every append that
 * would have succeeded fails with @p err.  Frees the list. */
static void answer(evl_log *log, evl_wgroup *list, const evl_wgroup *bad, int err) {
    int failing = 0;
    for (evl_wgroup *g = list, *next; g; g = next) {
        next = g->next;
        if (g == bad) failing = 1;
        if (g->last) evl__commit_timed(log, g->t0);
        evl__complete(log, g->reqs, g->n, failing ? err : EVL_OK);
        evl_free(g);
    }
}

void evl__sync_run(evl_log *log, evl_wgroup *list) {
    evl_wgroup *bad = NULL;
    pthread_mutex_lock(&log->mu);
    int refuse = log->ro_error ? EVL_EREADONLY : EVL_OK; /* never sync after a failed sync */
    pthread_mutex_unlock(&log->mu);
    int err = sync_groups(log, list, refuse, &bad);
    uint64_t durable = 0;
    for (const evl_wgroup *g = list; g != bad; g = g->next)
        if (g->last) durable = g->last;
    pthread_mutex_lock(&log->mu);
    if (durable) {
        atomic_store(&log->durable, durable);
        /* a lingering applier wakes on its own clock (apply.c) */
        if (!log->a_lingering || durable - atomic_load(&log->head) >= EVL_LINGER_MAX_EVENTS)
            pthread_cond_signal(&log->apply_cv);
    }
    if (err && !log->ro_error) {
        log->ro_error = err;
        pthread_cond_broadcast(&log->head_cv);
    }
    if (log->s_busy) {
        log->s_busy = 0;
        pthread_cond_signal(&log->queue_cv); /* the writer may be waiting for this sync (writer.c) */
    }
    pthread_mutex_unlock(&log->mu);
    answer(log, list, bad, err);
}

static void *syncer_main(void *arg) {
    evl_log *log = arg;
    /* on the path of every acknowledgement, like the writer (writer.c) */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -10);
    pthread_setname_np(pthread_self(), "evl-syncer");
    pthread_mutex_lock(&log->mu);
    for (;;) {
        if (!log->sq_head) {
            if (log->s_stop) break;
            pthread_cond_wait(&log->sync_cv, &log->mu);
            continue;
        }
        evl_wgroup *list = log->sq_head;
        log->sq_head = log->sq_tail = NULL;
        log->s_busy = 1;
        pthread_mutex_unlock(&log->mu);
        evl__sync_run(log, list);
        pthread_mutex_lock(&log->mu);
    }
    pthread_mutex_unlock(&log->mu);
    return NULL;
}

int evl__syncer_start(evl_log *log) {
    int e = pthread_create(&log->syncer, NULL, syncer_main, log);
    if (e) return EVL_ESYS(e);
    log->syncer_started = 1;
    return EVL_OK;
}

void evl__syncer_stop(evl_log *log) {
    if (!log->syncer_started) return;
    pthread_mutex_lock(&log->mu);
    log->s_stop = 1;
    pthread_cond_signal(&log->sync_cv);
    pthread_mutex_unlock(&log->mu);
    pthread_join(log->syncer, NULL);
    log->syncer_started = 0;
}

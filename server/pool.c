/* The pool: threads for work that may block, so that no event loop does.
 *
 * Projection queries run SQLite, a read-your-writes query waits for its
 * projector, and status counts rows: each becomes a job that a pool thread
 * runs and then posts back to its worker's mailbox.  Threads start lazily
 * when every running one is busy, up to max_threads; beyond that jobs wait
 * in FIFO order (their own deadlines still count from their arrival).
 *
 * Jobs that wait for a projector (job->waits) may hold a thread for their
 * whole timeout, so they have a queue of their own and may hold at most
 * wait_max threads: the rest stay free for queries, status, /metrics and
 * /readyz, which a pile of read-your-writes waits must not starve (a
 * readiness probe that timed out behind them would take the server out of
 * service because its clients were patient).
 */
#include <errno.h>

#include "server/srv_int.h"

typedef struct jobq {
    srv_job *head, *tail;
    unsigned n;
} jobq;

struct srv_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    jobq quick, waits;
    unsigned max, wait_max;
    unsigned n, idle, busy_waits;
    int stop;
    pthread_t *threads;
};

static void q_push(jobq *q, srv_job *j) {
    j->next = NULL;
    if (q->tail) q->tail->next = j;
    else q->head = j;
    q->tail = j;
    q->n++;
}

static srv_job *q_pop(jobq *q) {
    srv_job *j = q->head;
    if (j) {
        if (!(q->head = j->next)) q->tail = NULL;
        q->n--;
    }
    return j;
}

/* The next job this thread may run, or NULL; under mu. */
static srv_job *take(srv_pool *p) {
    srv_job *j = q_pop(&p->quick);
    if (!j && p->busy_waits < p->wait_max && (j = q_pop(&p->waits))) p->busy_waits++;
    return j;
}

static void *pool_main(void *arg) {
    srv_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        srv_job *j;
        while (!(j = take(p)) && !p->stop) {
            p->idle++;
            pthread_cond_wait(&p->cv, &p->mu);
            p->idle--;
        }
        /* Stopping: waits over their share still run, one after another. */
        if (!j && (j = q_pop(&p->waits))) p->busy_waits++;
        if (!j) break; /* stopping and nothing left */
        pthread_mutex_unlock(&p->mu);
        int waited = j->waits;
        j->work(j);
        evl__srv_mail(j->w, &j->msg); /* the worker answers and frees it */
        pthread_mutex_lock(&p->mu);
        if (waited) p->busy_waits--;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int evl__srv_pool_new(unsigned max_threads, srv_pool **out) {
    if (max_threads == 0) max_threads = 1;
    srv_pool *p = evl_calloc(1, sizeof *p);
    if (!p || !(p->threads = evl_calloc(max_threads, sizeof *p->threads))) {
        evl_free(p);
        return EVL_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->max = max_threads;
    /* a quarter (at least one) kept from waits; a single thread is shared */
    unsigned keep = max_threads / 4 ? max_threads / 4 : 1;
    p->wait_max = max_threads > keep ? max_threads - keep : max_threads;
    *out = p;
    return EVL_OK;
}

void evl__srv_pool_submit(srv_pool *p, srv_job *job) {
    job->w->inflight++;
    pthread_mutex_lock(&p->mu);
    q_push(job->waits ? &p->waits : &p->quick, job);
    /* A thread only when the idle ones (each takes one job when it wakes,
     * perhaps not yet) are fewer than the jobs that could run now: queries
     * are few and short, waits are the ones that pile up. */
    unsigned room = p->wait_max > p->busy_waits ? p->wait_max - p->busy_waits : 0;
    unsigned runnable = p->quick.n + (p->waits.n < room ? p->waits.n : room);
    if (runnable > p->idle && p->n < p->max && pthread_create(&p->threads[p->n], NULL, pool_main, p) == 0)
        p->n++;
    /* Broadcast: an idle thread may be one that cannot take a wait. */
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void evl__srv_pool_stats(srv_pool *p, srv_pool_stats *st) {
    pthread_mutex_lock(&p->mu);
    st->threads = p->n;
    st->busy = p->n - p->idle;
    st->waits = p->busy_waits;
    st->wait_max = p->wait_max;
    st->queued = p->quick.n + p->waits.n;
    pthread_mutex_unlock(&p->mu);
}

void evl__srv_pool_free(srv_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    evl_free(p->threads);
    evl_free(p);
}

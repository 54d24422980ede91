/* The pool: threads for work that may block, so that no event loop does.
 *
 * Projection queries run SQLite, a read-your-writes query waits for its
 * projector, and status counts rows: each becomes a job that a pool thread
 * runs and then posts back to its worker's mailbox.  Threads start lazily
 * when every running one is busy, up to max_threads; beyond that jobs wait
 * in FIFO order (their own deadlines still count from their arrival).
 */
#include <errno.h>

#include "server/srv_int.h"

struct srv_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_job *head, *tail;
    unsigned max, n, idle;
    int stop;
    pthread_t *threads;
};

static void *pool_main(void *arg) {
    srv_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop) {
            p->idle++;
            pthread_cond_wait(&p->cv, &p->mu);
            p->idle--;
        }
        srv_job *j = p->head;
        if (!j) break; /* stopping and nothing left */
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        j->work(j);
        evl__srv_mail(j->w, &j->msg); /* the worker answers and frees it */
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int evl__srv_pool_new(unsigned max_threads, srv_pool **out) {
    srv_pool *p = evl_calloc(1, sizeof *p);
    if (!p || !(p->threads = evl_calloc(max_threads, sizeof *p->threads))) {
        evl_free(p);
        return EVL_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->max = max_threads;
    *out = p;
    return EVL_OK;
}

void evl__srv_pool_submit(srv_pool *p, srv_job *job) {
    job->next = NULL;
    job->w->inflight++;
    pthread_mutex_lock(&p->mu);
    if (p->tail) p->tail->next = job;
    else p->head = job;
    p->tail = job;
    /* A thread only when none is idle: queries are few and short, waits are
     * the ones that pile up. */
    if (p->idle == 0 && p->n < p->max && pthread_create(&p->threads[p->n], NULL, pool_main, p) == 0)
        p->n++;
    pthread_cond_signal(&p->cv);
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

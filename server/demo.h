/* evlogd --demo: a thread that appends the workload generator's events
 * (bench/workloads/gen.h) at a gentle rate, so that a first run shows
 * events flowing, tables filling and queries answering. */
#ifndef EVLOG_SERVER_DEMO_H
#define EVLOG_SERVER_DEMO_H

#include "evlog/log.h"

typedef struct evlogd_demo evlogd_demo;

/* Start appending about @p rate events per second to @p log (borrowed; it
 * must outlive the demo).  @p say reports the start, a failure and the stop
 * (one line each).  @p out: stop and free with evlogd_demo_stop().
 * @return EVL_OK, EVL_ENOMEM, or EVL_EIO when the thread cannot start. */
int evlogd_demo_start(evl_log *log, double rate, void (*say)(void *, const char *),
                      evlogd_demo **out);

/* Stop the thread (an append in flight completes first), report, free.
 * NULL is a no-op. */
void evlogd_demo_stop(evlogd_demo *d);

#endif

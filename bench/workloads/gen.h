/** @file gen.h
 * @brief evlog workload generator: realistic event streams for the seed
 * services, for the tests, the benchmarks and the README's demo.
 *
 * Each call to evl_gen_next() returns the next batch of one entity's life: a
 * pull job queued, a task assigned to a node, a node's heartbeat, a benchmark
 * recorded ...  Many lifecycles are in flight at once and their batches
 * interleave, as they do in a real service.  Every event satisfies the
 * handlers of the built-in projections (the .sql files in projections/specs/, see
 * docs/events.md): no constraint violation, no missing NOT NULL field, parents
 * before children — provided the batches are appended in the order they are
 * returned.
 *
 * Events carry a simulated `at` time: a clock that starts at
 * 2025-12-18T10:30:00Z and advances a few tens of milliseconds per event, so
 * the rows show lifecycles of realistic duration and retention sweeps delete
 * something.  The output is a pure function of the seed and the service mask:
 * no wall clock, no global state.  Entity ids derive from the seed, so two
 * generators with different seeds can feed one log (up to rare id collisions
 * of the integer ids, about 1 in 90000 per pair of seeds).
 *
 * @note A generator is not thread-safe; use one per thread (with different
 *   seeds).
 */
#ifndef EVLOG_BENCH_GEN_H
#define EVLOG_BENCH_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "evlog/log.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evl_gen evl_gen;

/** @name Services (bit mask)
 * @{ */
#define EVL_GEN_JOBS 0x01u  /**< model-download job server: jobs */
#define EVL_GEN_TASKS 0x02u /**< KohakuRiver cluster: tasks and nodes */
#define EVL_GEN_AUTH 0x04u  /**< KohakuRiver auth: users, sessions, tokens, ... */
#define EVL_GEN_RUNS 0x08u  /**< FUSION simulation GUI: runs */
#define EVL_GEN_KARR 0x10u  /**< KITT benchmark harness (KARR) */
#define EVL_GEN_SAAS 0x20u  /**< SaaS simulation platform */
#define EVL_GEN_ALL 0x3fu
/** @} */

/** @brief Create a generator.
 * @param[in] seed any value; the same seed and services give the same events.
 * @param[in] services a non-empty mask of EVL_GEN_* bits.
 * @param[out] out the generator; the caller frees it with evl_gen_free().
 * @return EVL_OK, #EVL_EINVAL (empty or unknown service bits), #EVL_ENOMEM. */
int evl_gen_new(uint64_t seed, unsigned services, evl_gen **out);

/** @brief The next batch: usually one stream with one to a few events,
 * sometimes several streams that belong together (a registration that
 * redeems an invitation, a task batch, a quick test and the run it produced).
 *
 * Expected revisions are #EVL_REV_NO_STREAM for the stream that creates an
 * entity and #EVL_REV_ANY otherwise, so a batch appended on a log that already
 * holds an entity of the same id fails with a conflict instead of corrupting
 * it.  Event ids are left NULL (the log assigns them).
 * @param[out] streams the batch, borrowed until the next call or evl_gen_free().
 * @param[out] n its number of streams (at least 1).
 * @return EVL_OK or #EVL_ENOMEM (the generator is then unusable). */
int evl_gen_next(evl_gen *g, const evl_stream_in **streams, size_t *n);

/** @brief Free a generator. NULL is a no-op. */
void evl_gen_free(evl_gen *g);

/** @brief Parse a comma-separated list of service names ("jobs,tasks,auth,
 * runs,karr,saas" or "all") into a mask.
 * @return EVL_OK or #EVL_EINVAL (an unknown or empty name). */
int evl_gen_parse_services(const char *list, unsigned *mask);

/** @brief The name of one service bit ("jobs"), or NULL. */
const char *evl_gen_service_name(unsigned bit);

/** @brief The simulated clock: the `at` of the last event generated, ns since
 * the epoch (before the first call: the start of the clock). */
int64_t evl_gen_clock(const evl_gen *g);

#ifdef __cplusplus
}
#endif
#endif

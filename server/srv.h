/** @file srv.h
 * @brief evlog's HTTP server (libevent): what evlogd's main() drives.
 *
 * The server is a set of worker threads, each with its own event_base and
 * evhttp, all accepting on one address through SO_REUSEPORT sockets, plus a
 * small pool of threads for work that may block (projection queries and
 * their read-your-writes waits, projection status).  Appends are handed to
 * the log's writer and answered from its completion; feeds are woken by the
 * log's commit notifications.  No event loop thread ever waits.
 *
 * The API it serves is described in docs/http.md.
 */
#ifndef EVLOG_SERVER_SRV_H
#define EVLOG_SERVER_SRV_H

#include <stddef.h>
#include <stdint.h>

#include "evlog/log.h"
#include "evlog/proj.h"

typedef struct evl_srv evl_srv;

/** Receives one line per notable thing (start, stop, a fault, a rebuild,
 * a warning).  Called from any thread. */
typedef void (*evl_srv_report_fn)(void *arg, const char *line);

/** Everything that can be configured; fill with evl_srv_config_init(). */
typedef struct evl_srv_config {
    const char *listen;          /**< "HOST:PORT"; default 127.0.0.1:7070; port 0 picks one */
    const char *token_file;      /**< NULL: no authentication */
    unsigned threads;            /**< HTTP workers; default: online CPUs, at most 16 */
    unsigned pool_threads;       /**< most threads for blocking work; default 16 */
    size_t max_body;             /**< request body, bytes; default 16 MiB */
    size_t max_headers;          /**< request line + headers, bytes; default 32 KiB */
    size_t max_uri;              /**< request target, bytes; default 8 KiB */
    unsigned max_connections;    /**< open connections; above it requests get 503; default 4096 */
    unsigned header_timeout_ms;  /**< a request must arrive whole within this; default 10 s */
    unsigned idle_timeout_ms;    /**< an idle keep-alive connection is closed; default 60 s */
    unsigned max_page;           /**< most events per read page; default 10000 */
    size_t sse_buffer;           /**< queued output per subscriber before it is fed from
                                      the log instead; default 1 MiB */
    unsigned sse_heartbeat_ms;   /**< comment line on idle feeds; default 15 s */
    unsigned sse_retry_ms;       /**< the `retry:` advice; default 3 s */
    unsigned sse_stall_ms;       /**< a subscriber that reads nothing for this long is
                                      disconnected; default 60 s */
    unsigned query_timeout_ms;   /**< default min_position wait; default 5 s */
    unsigned query_max_timeout_ms; /**< longest min_position wait; default 60 s */
    unsigned asof_cache_entries; /**< point-in-time builds kept for `as_of` queries; default 4 */
    size_t asof_cache_bytes;     /**< their total size at most; default 1 GiB */
    evl_srv_report_fn report;
    void *report_arg;
} evl_srv_config;

/** @brief Fill @p cfg with the defaults. */
void evl_srv_config_init(evl_srv_config *cfg);

/** @brief Load the token file, bind the listening sockets and start the
 * workers.  @p log and @p eng are borrowed: they must outlive the server
 * (close it first).
 * @param[out] out the server; stop it with evl_srv_stop(), then free it with
 *   evl_srv_close().
 * @param[out] err a sentence on failure (NUL-terminated, at most @p errlen).
 * @return EVL_OK, #EVL_EINVAL (bad address or token file), #EVL_ENOMEM,
 *   EVL_ESYS(errno) (bind, threads). */
int evl_srv_open(evl_log *log, evl_proj_engine *eng, const evl_srv_config *cfg,
                 evl_srv **out, char *err, size_t errlen);

/** @brief The address the server listens on, e.g. "127.0.0.1:7070" (borrowed). */
const char *evl_srv_address(const evl_srv *srv);

/** @brief Graceful stop: stop accepting, answer the appends already handed to
 * the log, end every feed with a closing comment, let open responses flush
 * (a few seconds at most), then join the workers and the pool.  Blocks. */
void evl_srv_stop(evl_srv *srv);

/** @brief Free a stopped server.  NULL is a no-op. */
void evl_srv_close(evl_srv *srv);

#endif

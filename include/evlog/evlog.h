/** @file evlog.h
 * @brief evlog: shared definitions — version, the error enum, allocation.
 *
 * Every libevlog function that can fail returns an `int` that is either
 * #EVL_OK (0) or one of the `EVL_E*` codes below.  Codes that come from the
 * operating system are wrapped as `EVL_ESYS_BASE + errno` so that nothing is
 * lost; evl_strerror() turns any code into a sentence and evl_errname() into
 * its symbolic name ("EVL_ECONFLICT").
 *
 * Naming rule for the whole code base: public names are `evl_<module>_<verb>`
 * (evl_log_append, evl_mp_check); functions shared between files of one
 * module but not public are `evl__<module>_<verb>`; file-local helpers are
 * `static` with no prefix.
 */
#ifndef EVLOG_EVLOG_H
#define EVLOG_EVLOG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EVL_VERSION_MAJOR 0
#define EVL_VERSION_MINOR 1
#define EVL_VERSION_PATCH 0
#define EVL_VERSION_STRING "0.1.0"

/** The error table: symbol, message.  One table makes the enum, the
 * messages and the names, so they cannot drift apart. */
#define EVL_ERRORS(X)                                                          \
    X(OK, "success")                                                           \
    X(END, "no more events")                                                   \
    X(EINVAL, "invalid argument")                                              \
    X(ENOMEM, "out of memory")                                                 \
    X(EIO, "I/O error")                                                        \
    X(EFULL, "log is full: the disk or the LMDB map size is exhausted")        \
    X(ECONFLICT, "wrong expected revision")                                    \
    X(EIDMIX, "batch mixes event ids already in the log with new ones")        \
    X(EIDREUSE, "event id already belongs to a different event")               \
    X(EDUPID, "the same event id appears twice in one batch")                  \
    X(EDUPSTREAM, "the same stream appears twice in one batch")                \
    X(ENOTFOUND, "not found")                                                  \
    X(EBUSY, "data directory in use by another process")                       \
    X(EREADONLY, "log is read-only after a failed sync; restart required")     \
    X(ERDONLY, "log was opened read-only")                                     \
    X(ECORRUPT, "corrupt record or index")                                     \
    X(ESTREAM, "invalid stream name: must be 1..255 bytes of printable UTF-8") \
    X(ETYPE, "invalid event type: must be 1..255 bytes of printable UTF-8")    \
    X(EID, "invalid event id: must be a UUID")                                 \
    X(EDATA, "event data must be a msgpack map with string keys")              \
    X(EMETA, "event meta must be a msgpack map with string keys")              \
    X(ETOOBIG, "event exceeds the maximum event size")                         \
    X(EEMPTY, "batch has no events")                                           \
    X(EMSGPACK, "malformed msgpack")                                           \
    X(EDEPTH, "msgpack nested deeper than the limit (16)")                     \
    X(EUTF8, "string is not valid UTF-8")                                      \
    X(EJSON, "malformed JSON")                                                 \
    X(ETIMEDOUT, "timed out")                                                  \
    X(ECLOSED, "log is closing")                                               \
    X(EVERSION, "unsupported data format version")                            \
    X(ESPEC, "projection file is invalid")                                     \
    X(ESQL, "SQL error")                                                       \
    X(EWRITESQL, "only read-only SQL is allowed here")                         \
    X(EFAULTED, "projection is faulted")                                       \
    X(ELIMIT, "query exceeded its row or time limit")

#define EVL__ENUM(sym, msg) EVL_##sym,
typedef enum evl_err { EVL_ERRORS(EVL__ENUM) EVL__ELAST } evl_err;
#undef EVL__ENUM

/** Codes >= EVL_ESYS_BASE carry an errno: `code - EVL_ESYS_BASE`. */
#define EVL_ESYS_BASE 0x10000
#define EVL_ESYS(e) (EVL_ESYS_BASE + (e))

/** @brief A sentence for any code returned by libevlog (never NULL; static storage). */
const char *evl_strerror(int err);
/** @brief The symbolic name of a code, e.g. "EVL_ECONFLICT" (static storage). */
const char *evl_errname(int err);

/** @brief Allocation used by libevlog.  Buffers that libevlog hands to the
 * caller ("the caller frees with evl_free") come from evl_malloc. */
void *evl_malloc(size_t n);
void *evl_calloc(size_t n, size_t size);
void *evl_realloc(void *p, size_t n);
void evl_free(void *p);

#ifdef __cplusplus
}
#endif
#endif

/** @file json.h
 * @brief evlog: JSON at the edges (CLI, HTTP) — CloudEvents in and out.
 *
 * msgpack stays the storage format; JSON is converted at the edge.  An event
 * goes out as a CloudEvents 1.0 structured-mode object:
 * `{"specversion":"1.0","id":UUID,"source":"evlog","type":T,"subject":STREAM,
 *   "time":"2026-11-23T10:30:00.123456789Z","data":{...},"position":P,
 *   "revision":R,"meta":{...}}`.
 * An event comes in as `{"type":T,"data":{...},"id"?:UUID,"meta"?:{...}}`
 * or as a full CloudEvents object (then `subject` names the stream and
 * `source`, `time`, `position`, `revision`, `specversion` are ignored:
 * the log assigns its own).
 */
#ifndef EVLOG_JSON_H
#define EVLOG_JSON_H

#include <jansson.h>
#include <msgpack.h>

#include "log.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief A stored event as a CloudEvents object.
 * @return a new reference the caller releases with json_decref(), or NULL on
 *   allocation failure or undecodable data. */
json_t *evl_json_event(const evl_event *ev);

/** @brief Convert one msgpack value to JSON.  bin and ext become base64
 * strings; integers beyond int64 become reals.  Bounded by EVL_MAX_DEPTH.
 * @param[out] out a new reference (caller json_decref()s it).
 * @return EVL_OK, #EVL_EMSGPACK, #EVL_EDEPTH, #EVL_ENOMEM. */
int evl_json_from_msgpack(const uint8_t *mp, size_t len, json_t **out);

/** @brief Append the msgpack form of @p j to @p sb.  Nesting deeper than
 * EVL_MAX_DEPTH is refused.  @return EVL_OK, #EVL_EDEPTH, #EVL_ENOMEM. */
int evl_json_to_msgpack(const json_t *j, msgpack_sbuffer *sb);

/** An event parsed from JSON; owns its buffers. */
typedef struct evl_json_in {
    char *stream;           /**< from CloudEvents `subject`, or NULL */
    char *type;
    int has_id;
    uint8_t id[16];
    msgpack_sbuffer data;   /**< msgpack map (empty map when absent) */
    msgpack_sbuffer meta;   /**< msgpack map, size 0 when absent */
} evl_json_in;

/** @brief Parse one input event object.
 * @param[out] in filled on success; release with evl_json_in_free() (also
 *   safe after a failure).
 * @param[out] why a static sentence naming the problem on failure (may be NULL).
 * @return EVL_OK, #EVL_EJSON (not an object, type missing or not a string),
 *   #EVL_EDATA (data not an object), #EVL_EMETA, #EVL_EID, #EVL_EDEPTH, #EVL_ENOMEM. */
int evl_json_parse_event(const json_t *obj, evl_json_in *in, const char **why);
void evl_json_in_free(evl_json_in *in);

/** @brief Fill an evl_event_in that borrows from @p in (valid while @p in lives). */
void evl_json_in_view(const evl_json_in *in, evl_event_in *ev);

/** @brief Parse an expected-revision word or number: "any", "no_stream",
 * "exists", or a decimal revision.  @return EVL_OK or #EVL_EINVAL. */
int evl_json_parse_expected(const char *s, uint64_t *expected);

#ifdef __cplusplus
}
#endif
#endif

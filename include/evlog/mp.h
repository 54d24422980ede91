/** @file mp.h
 * @brief evlog: a bounded, zero-copy msgpack reader and the pre-scan that
 * every msgpack value from outside goes through.
 *
 * msgpack-c trusts the counts in array and map headers: it allocates
 * `count x 24` bytes before reading a single element (its issue #1013 — the
 * five bytes `dd ff 00 00 00` ask for ~96 GB) and has no length limits.  So
 * nothing from the network or a file reaches msgpack-c (or any other code)
 * before evl_mp_check() has accepted it: every count and length fits in the
 * bytes that remain, nesting is at most @p max_depth, 0xc1 never appears,
 * strings are valid UTF-8, and no bytes trail the value.
 *
 * The cursor functions (evl_mp_read_*) are safe on any input too: they never
 * read past `end` and fail with EVL_EMSGPACK instead.
 */
#ifndef EVLOG_MP_H
#define EVLOG_MP_H

#include "evlog.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Kinds of msgpack values. */
typedef enum evl_mp_kind {
    EVL_MP_NIL, EVL_MP_BOOL, EVL_MP_UINT, EVL_MP_INT, EVL_MP_FLOAT, EVL_MP_STR,
    EVL_MP_BIN, EVL_MP_ARRAY, EVL_MP_MAP, EVL_MP_EXT
} evl_mp_kind;

/** A cursor over a msgpack buffer; `p` advances as values are read. */
typedef struct evl_mp {
    const uint8_t *p;
    const uint8_t *end;
} evl_mp;

/** One decoded scalar or container header. */
typedef struct evl_mp_val {
    evl_mp_kind kind;
    union {
        int b;              /**< BOOL */
        uint64_t u;         /**< UINT (non-negative integers) */
        int64_t i;          /**< INT (negative integers) */
        double f;           /**< FLOAT (float32 widened) */
        uint32_t n;         /**< ARRAY: elements, MAP: pairs */
        struct { const char *ptr; uint32_t len; } s;   /**< STR, BIN */
        struct { const uint8_t *ptr; uint32_t len; int8_t type; } ext; /**< EXT */
    } v;
} evl_mp_val;

/** Options of evl_mp_check(). */
#define EVL_MP_STRING_KEYS 1  /**< every map key must be a string */

/** @brief Pre-scan: is [buf, buf+len) exactly one well-formed msgpack value?
 * @param[in] max_depth containers may nest this deep (EVL_MAX_DEPTH = 16).
 * @param[in] flags EVL_MP_STRING_KEYS or 0.
 * @param[out] bad_offset where the problem is (may be NULL).
 * @return EVL_OK, #EVL_EMSGPACK (truncated, trailing bytes, 0xc1, a count or
 *   length beyond the input, a non-string key), #EVL_EDEPTH, #EVL_EUTF8. */
int evl_mp_check(const void *buf, size_t len, int max_depth, int flags, size_t *bad_offset);

/** @brief Does any map in the value [buf, buf+len) (one that
 * evl_mp_check() accepted) have the same key twice?  Keys are compared by
 * their encoding.  JSON bodies are parsed with duplicates refused; this
 * gives msgpack bodies the same rule, so no reader has to guess which of
 * two values counts.
 * @param[out] bad_offset where the offending map starts (may be NULL).
 * @return EVL_OK, #EVL_EMSGPACK (a duplicate), #EVL_ENOMEM. */
int evl_mp_unique_keys(const void *buf, size_t len, size_t *bad_offset);

/** @brief evl_mp_check() with EVL_MP_STRING_KEYS and evl_mp_unique_keys()
 * in one walk (a request body is read once, not twice).
 * @param[out] dup set to 1 when the failure is a duplicate key (@p bad_offset
 *   then names the map), else 0.
 * @return as evl_mp_check(); a duplicate is #EVL_EMSGPACK; #EVL_ENOMEM. */
int evl_mp_check_unique(const void *buf, size_t len, int max_depth, size_t *bad_offset, int *dup);

/** @brief Read the next value header at @p m into @p v (containers: only the
 * header; their elements follow).  @return EVL_OK or #EVL_EMSGPACK. */
int evl_mp_read(evl_mp *m, evl_mp_val *v);

/** @brief Skip one whole value (with its elements).  Bounded by @p max_depth
 * and by the buffer, but strings are not checked for UTF-8: use it on
 * values evl_mp_check() has accepted.
 * @return EVL_OK, #EVL_EMSGPACK or #EVL_EDEPTH. */
int evl_mp_skip(evl_mp *m, int max_depth);

/** @brief Are [a, a+alen) and [b, b+blen) the same msgpack value?  Equal
 * bytes, or the same structure with equal scalars however they are encoded
 * (an integer in any width, a float32 or float64 of the same value); maps
 * compare in their stored key order.  Safe on any input (malformed: not
 * equal).  @return 1 or 0. */
int evl_mp_equal(const void *a, size_t alen, const void *b, size_t blen);

/** @brief Is @p s valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)? */
int evl_utf8_valid(const char *s, size_t len);

/** @brief Find top-level key @p key in the map [buf, buf+len); on success
 * @p val is a cursor positioned on its value.  @return EVL_OK, #EVL_ENOTFOUND,
 * or #EVL_EMSGPACK when @p buf is not a map. */
int evl_mp_map_find(const uint8_t *buf, size_t len, const char *key, size_t key_len,
                    evl_mp *val);

#ifdef __cplusplus
}
#endif
#endif

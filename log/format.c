/* The on-disk format of the log.  Version 1.  Never reorder or reuse.
 *
 * One LMDB environment in DATA/log/ with these named databases (keys are
 * big-endian so LMDB's default byte order is numeric order):
 *
 *   events      be64(position) -> record (below).  Written with MDB_APPEND.
 *   streams     stream -> be64(revision), be64(position), MDB_DUPSORT|MDB_DUPFIXED:
 *               one key per stream (the name stored once, not per event), its
 *               entries sorted by revision; the last entry is the stream's head.
 *               (A separate heads table would cost a second randomly placed
 *               page per event in every commit: measured 17k -> 27k events/s
 *               with 64 appenders in sync full without it.)
 *   ids         16-byte event id -> be64(position)        (idempotency)
 *   types       type -> be64(position), MDB_DUPSORT|MDB_DUPFIXED
 *   categories  category -> be64(position), MDB_DUPSORT|MDB_DUPFIXED
 *               (category = the stream name before its first '-')
 *   actors, correlations
 *               meta.actor / meta.correlation_id -> be64(position), DUPSORT:
 *               added within format 1, see meta_idx.c
 *   times       be64(commit time ns) -> be64(first position of that commit).
 *               One entry per commit whose time is later than the previous
 *               one; time never decreases with position, so the first key
 *               >= T gives the first position at or after T.
 *   info        "format" -> "1"
 *
 * Beside them, DATA/log/data.mdb-journal and -journal-1 hold the groups
 * acknowledged but perhaps not yet in LMDB (journal.c has its format); an
 * open applies them.
 *
 * A record is one msgpack map that any msgpack decoder reads, keys in this
 * order:
 *
 *   "chain": bin(32), "position": uint, "stream": str, "revision": uint,
 *   "id": bin(16), "type": str, "time": int (ns since epoch, UTC),
 *   "meta": map, "data": map, "crc": uint32 (always 0xce + 4 bytes)
 *
 * "chain" is the record's link in the log's hash chain (added within
 * format 1; records from before it have no "chain" and 9 keys):
 *
 *   h_0 = 32 zero bytes
 *   h_n = SHA-256(h_{n-1} || raw_n[41 .. len-9])
 *
 * where raw_n[41 .. len-9] is every byte of record n after the chain value
 * and before the crc trailer.  The record starts with the fixed 9 bytes
 * 8a a5 "chain" c4 20, so its chain value is raw[9 .. 41] and the hashed
 * bytes never need a msgpack walk: an auditor recomputes the chain from
 * mdb_dump output with any SHA-256 (docs/audit.md).  Each record carries
 * its own h_n rather than only h_{n-1}, so a record changed in place shows
 * at its own position (its stored hash no longer matches), not at the next
 * one, and the last record is covered too.  The CRC covers the chain value.
 * An unchained (older) record counts as h = 32 zero bytes for the next.
 *
 * "data" comes last before "crc", whose 9 bytes end the record: a reader
 * finds the payload's extent without walking it (replay reads millions).
 * "crc" is CRC-32C of every byte of the record before the "crc" key, and it
 * is the last key: anything after it would be unprotected, so a reader
 * rejects that.  Readers skip keys they do not know, which leaves room for
 * later versions to add fields before "crc".
 */
#include <errno.h>
#include <msgpack.h>

#include "log/log_int.h"

static const char K_POS[] = "position", K_STREAM[] = "stream", K_REV[] = "revision",
                  K_ID[] = "id", K_TYPE[] = "type", K_TIME[] = "time", K_DATA[] = "data",
                  K_META[] = "meta", K_CRC[] = "crc", K_CHAIN[] = "chain";

#define PACK_KEY(pk, k) (msgpack_pack_str(pk, sizeof(k) - 1) || msgpack_pack_str_body(pk, k, sizeof(k) - 1))

/* Encode a record into the msgpack_sbuffer @p sbuf (cleared first), chained
 * after @p prev (h_{n-1}); its own chain hash h_n goes to @p hash. */
int evl__fmt_encode(void *sbuf, evl_sha256 *hasher, const uint8_t prev[EVL_CHAIN_LEN],
                    uint8_t hash[EVL_CHAIN_LEN], uint64_t pos, const char *stream,
                    size_t stream_len, uint64_t rev, const uint8_t id[16], const char *type,
                    size_t type_len, int64_t time_ns, const uint8_t *data, size_t data_len,
                    const uint8_t *meta, size_t meta_len) {
    msgpack_sbuffer *sb = sbuf;
    msgpack_packer pk;
    static const uint8_t empty_map = 0x80;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (!meta || !meta_len) { meta = &empty_map; meta_len = 1; }
    /* the chain slot holds h_{n-1} while hashing: then the hashed bytes,
     * h_{n-1} || raw[41 .. len-9], are one contiguous run */
    int bad = msgpack_pack_map(&pk, 10) ||
              PACK_KEY(&pk, K_CHAIN) || msgpack_pack_bin(&pk, EVL_CHAIN_LEN) ||
              msgpack_pack_bin_body(&pk, prev, EVL_CHAIN_LEN) ||
              PACK_KEY(&pk, K_POS) || msgpack_pack_uint64(&pk, pos) ||
              PACK_KEY(&pk, K_STREAM) || msgpack_pack_str(&pk, stream_len) ||
              msgpack_pack_str_body(&pk, stream, stream_len) ||
              PACK_KEY(&pk, K_REV) || msgpack_pack_uint64(&pk, rev) ||
              PACK_KEY(&pk, K_ID) || msgpack_pack_bin(&pk, 16) || msgpack_pack_bin_body(&pk, id, 16) ||
              PACK_KEY(&pk, K_TYPE) || msgpack_pack_str(&pk, type_len) ||
              msgpack_pack_str_body(&pk, type, type_len) ||
              PACK_KEY(&pk, K_TIME) || msgpack_pack_int64(&pk, time_ns) ||
              PACK_KEY(&pk, K_META) || msgpack_sbuffer_write(sb, (const char *)meta, meta_len) ||
              PACK_KEY(&pk, K_DATA) || msgpack_sbuffer_write(sb, (const char *)data, data_len);
    if (bad) return EVL_ENOMEM;
    evl_assert(memcmp(sb->data, EVL_CHAIN_PREFIX, EVL_CHAIN_AT) == 0);
    int rc = evl__sha256_2(hasher, sb->data + EVL_CHAIN_AT, sb->size - EVL_CHAIN_AT, NULL, 0, hash);
    if (rc) return rc;
    memcpy(sb->data + EVL_CHAIN_AT, hash, EVL_CHAIN_LEN);
    uint32_t crc = evl__crc32c(0, sb->data, sb->size);
    uint8_t tail[4 + 5] = {0xa3, 'c', 'r', 'c', 0xce};
    evl__put_be32(tail + 5, crc);
    if (msgpack_sbuffer_write(sb, (const char *)tail, sizeof tail)) return EVL_ENOMEM;
    return EVL_OK;
}

int evl__fmt_chain(evl_sha256 *hasher, const uint8_t prev[EVL_CHAIN_LEN], const uint8_t *raw,
                   size_t len, uint8_t hash[EVL_CHAIN_LEN]) {
    if (len < EVL_CHAIN_END + 9 || memcmp(raw, EVL_CHAIN_PREFIX, EVL_CHAIN_AT)) return EVL_ECORRUPT;
    return evl__sha256_2(hasher, prev, EVL_CHAIN_LEN, raw + EVL_CHAIN_END, len - 9 - EVL_CHAIN_END, hash);
}

#define KEY_IS(val, name) ((val).v.s.len == sizeof(name) - 1 && memcmp((val).v.s.ptr, name, sizeof(name) - 1) == 0)

/* Does the record end with the 9-byte trailer "crc": 0xce XX XX XX XX? */
static int crc_trailer(const uint8_t *raw, size_t len) {
    return len >= 9 && memcmp(raw + len - 9, "\xa3" "crc" "\xce", 5) == 0;
}

/* ---- the common case, read straight off the bytes
 *
 * Every record this version writes has the same shape: the ten keys in the
 * order above, each as a fixstr, and the CRC trailer.  A replay decodes
 * millions of them, so that shape is matched byte by byte here instead of
 * through a generic walk: the CRC first (every byte up to the trailer), then
 * the keys as literal byte strings and the values in the forms the writer
 * produces, each read checked against the end of the record.  Anything else
 * (an older record without "chain", a later one with more keys, other
 * integer forms, a CRC that does not match) returns 0 and goes the generic
 * way below, which decides: so both ways accept and reject the same
 * records, and the generic way stays the one definition of the format. */

typedef struct rd {
    const uint8_t *p, *end;
} rd;

/* Are the @p n (1..16) bytes at @p p those of @p lit?  Every call has a
 * constant n and literal, so on a little-endian machine this is one or two
 * 8-byte loads, a mask and a compare (memcmp of 5 or 9 bytes is a library
 * call).  It reads 8 (n <= 8) or 16 bytes from @p p: every caller has at
 * least that much of the record left (the 9-byte trailer follows whatever
 * it compares). */
static inline __attribute__((always_inline)) int same_bytes(const uint8_t *p, const char *lit, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t w[2], want[2] = {0, 0}, mask[2];
    memcpy(w, p, n > 8 ? 16 : 8);
    for (size_t i = 0; i < n; i++) want[i / 8] |= (uint64_t)(uint8_t)lit[i] << (8 * (i % 8));
    mask[0] = n >= 8 ? ~0ull : (1ull << (8 * n)) - 1;
    mask[1] = n >= 16 ? ~0ull : n > 8 ? (1ull << (8 * (n - 8))) - 1 : 0;
    return ((w[0] ^ want[0]) & mask[0]) == 0 && (n <= 8 || ((w[1] ^ want[1]) & mask[1]) == 0);
#else
    return memcmp(p, lit, n) == 0;
#endif
}

/* The literal key @p lit (its fixstr header included) next? */
#define RD_KEY(r, lit)                                                                   \
    ((size_t)((r)->end - (r)->p) >= sizeof(lit) - 1 && same_bytes((r)->p, lit, sizeof(lit) - 1) && \
     ((r)->p += sizeof(lit) - 1, 1))

/* An unsigned integer as the writer packs one (msgpack_pack_uint64: the
 * shortest of fixint, uint8..64). */
static inline int rd_uint(rd *r, uint64_t *u) {
    size_t left = (size_t)(r->end - r->p);
    if (left < 1) return 0;
    uint8_t b = *r->p;
    if (b <= 0x7f) { *u = b; r->p++; return 1; }
    if (b < 0xcc || b > 0xcf) return 0;
    size_t n = (size_t)1 << (b - 0xcc);
    if (left < 1 + n) return 0;
    uint64_t v = 0;
    for (size_t i = 1; i <= n; i++) v = (v << 8) | r->p[i];
    *u = v;
    r->p += 1 + n;
    return 1;
}

/* A string of up to 65535 bytes (names are at most 255). */
static inline int rd_str(rd *r, const char **s, size_t *len) {
    size_t left = (size_t)(r->end - r->p), h, n;
    if (left < 1) return 0;
    uint8_t b = *r->p;
    if (b >= 0xa0 && b <= 0xbf) { h = 1; n = b & 0x1f; }
    else if (b == 0xd9 && left >= 2) { h = 2; n = r->p[1]; }
    else if (b == 0xda && left >= 3) { h = 3; n = (size_t)r->p[1] << 8 | r->p[2]; }
    else return 0;
    if (left - h < n) return 0;
    *s = (const char *)r->p + h;
    *len = n;
    r->p += h + n;
    return 1;
}

static inline int is_map_head(uint8_t b) {
    return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
}

/* 1: decoded; 0: not the common shape or not intact, ask the generic way. */
static int decode_fast(const uint8_t *raw, size_t len, evl_event *ev) {
    if (len < EVL_CHAIN_END + 9 || !same_bytes(raw + len - 9, "\xa3" "crc" "\xce", 5) ||
        !same_bytes(raw, EVL_CHAIN_PREFIX, sizeof EVL_CHAIN_PREFIX - 1))
        return 0;
    if (evl__crc32c(0, raw, len - 9) != evl__get_be32(raw + len - 4)) return 0;
    rd r = {raw + EVL_CHAIN_END, raw + len - 9};
    uint64_t t;
    if (!RD_KEY(&r, "\xa8" "position") || !rd_uint(&r, &ev->position)) return 0;
    if (!RD_KEY(&r, "\xa6" "stream") || !rd_str(&r, &ev->stream, &ev->stream_len)) return 0;
    if (!RD_KEY(&r, "\xa8" "revision") || !rd_uint(&r, &ev->revision)) return 0;
    if (!RD_KEY(&r, "\xa2" "id" "\xc4\x10") || r.end - r.p < 16) return 0;
    memcpy(ev->id, r.p, 16);
    r.p += 16;
    if (!RD_KEY(&r, "\xa4" "type") || !rd_str(&r, &ev->type, &ev->type_len)) return 0;
    if (!RD_KEY(&r, "\xa4" "time") || r.p >= r.end) return 0;
    if (*r.p == 0xd3 && r.end - r.p >= 9) { /* msgpack_pack_int64 of a time before 1970 or a big one */
        ev->time_ns = (int64_t)evl__get_be64(r.p + 1);
        r.p += 9;
    } else if (rd_uint(&r, &t) && t <= INT64_MAX) {
        ev->time_ns = (int64_t)t;
    } else {
        return 0;
    }
    if (!RD_KEY(&r, "\xa4" "meta") || r.p >= r.end || !is_map_head(*r.p)) return 0;
    evl_mp m = {r.p, r.end};
    if (evl_mp_skip(&m, 63)) return 0;
    ev->meta = r.p;
    ev->meta_len = (size_t)(m.p - r.p);
    r.p = m.p;
    if (!RD_KEY(&r, "\xa4" "data") || r.p >= r.end || !is_map_head(*r.p)) return 0;
    ev->data = r.p;
    ev->data_len = (size_t)(r.end - r.p);
    ev->chain = raw + EVL_CHAIN_AT;
    return 1;
}

static int decode_generic(const uint8_t *raw, size_t len, evl_event *ev);

int evl_log_decode(const uint8_t *raw, size_t len, evl_event *ev) {
    memset(ev, 0, sizeof *ev);
    ev->raw = raw;
    ev->raw_len = len;
    if (decode_fast(raw, len, ev)) return EVL_OK;
    return decode_generic(raw, len, ev);
}

static int decode_generic(const uint8_t *raw, size_t len, evl_event *ev) {
    evl_mp m = {raw, raw + len};
    evl_mp_val v, k;
    unsigned seen = 0;
    memset(ev, 0, sizeof *ev);
    ev->raw = raw;
    ev->raw_len = len;
    if (evl_mp_read(&m, &v) || v.kind != EVL_MP_MAP) return EVL_ECORRUPT;
    uint32_t n_keys = v.v.n;
    for (uint32_t i = 0; i < n_keys; i++) {
        const uint8_t *key_at = m.p;
        if (evl_mp_read(&m, &k) || k.kind != EVL_MP_STR) return EVL_ECORRUPT;
        if (KEY_IS(k, K_DATA) && raw + len - m.p > 9 && i + 2 == n_keys && crc_trailer(raw, len)) {
            /* the payload runs up to the CRC trailer: checked by the CRC below
             * instead of by a walk (it was pre-scanned when appended) */
            const uint8_t *at = m.p;
            if (*at < 0x80 || (*at > 0x8f && *at != 0xde && *at != 0xdf)) return EVL_ECORRUPT;
            ev->data = at;
            ev->data_len = (size_t)(raw + len - 9 - at);
            seen |= 1;
            m.p = raw + len - 9;
            continue;
        }
        if (KEY_IS(k, K_DATA) || KEY_IS(k, K_META)) {
            const uint8_t *at = m.p;
            if (evl_mp_skip(&m, 63)) return EVL_ECORRUPT;
            if (*at < 0x80 || (*at > 0x8f && *at != 0xde && *at != 0xdf)) return EVL_ECORRUPT;
            if (KEY_IS(k, K_DATA)) { ev->data = at; ev->data_len = (size_t)(m.p - at); seen |= 1; }
            else { ev->meta = at; ev->meta_len = (size_t)(m.p - at); seen |= 2; }
            continue;
        }
        if (evl_mp_read(&m, &v)) return EVL_ECORRUPT;
        if (KEY_IS(k, K_POS) && v.kind == EVL_MP_UINT) { ev->position = v.v.u; seen |= 4; }
        else if (KEY_IS(k, K_REV) && v.kind == EVL_MP_UINT) { ev->revision = v.v.u; seen |= 8; }
        else if (KEY_IS(k, K_STREAM) && v.kind == EVL_MP_STR) {
            ev->stream = v.v.s.ptr; ev->stream_len = v.v.s.len; seen |= 16;
        } else if (KEY_IS(k, K_TYPE) && v.kind == EVL_MP_STR) {
            ev->type = v.v.s.ptr; ev->type_len = v.v.s.len; seen |= 32;
        } else if (KEY_IS(k, K_ID) && v.kind == EVL_MP_BIN && v.v.s.len == 16) {
            memcpy(ev->id, v.v.s.ptr, 16); seen |= 64;
        } else if (KEY_IS(k, K_TIME) && (v.kind == EVL_MP_UINT || v.kind == EVL_MP_INT)) {
            ev->time_ns = v.kind == EVL_MP_UINT ? (int64_t)v.v.u : v.v.i; seen |= 128;
        } else if (KEY_IS(k, K_CHAIN) && v.kind == EVL_MP_BIN && v.v.s.len == EVL_CHAIN_LEN) {
            ev->chain = (const uint8_t *)v.v.s.ptr;
        } else if (KEY_IS(k, K_CRC) && v.kind == EVL_MP_UINT) {
            if (m.p != raw + len) return EVL_ECORRUPT; /* must be last: nothing unprotected */
            if (evl__crc32c(0, raw, (size_t)(key_at - raw)) != (uint32_t)v.v.u) return EVL_ECORRUPT;
            seen |= 256;
        } else if (v.kind == EVL_MP_ARRAY || v.kind == EVL_MP_MAP) {
            /* an unknown container from a later version: skip its elements */
            uint64_t n = v.kind == EVL_MP_MAP ? (uint64_t)v.v.n * 2 : v.v.n;
            for (uint64_t j = 0; j < n; j++)
                if (evl_mp_skip(&m, 63)) return EVL_ECORRUPT;
        }
    }
    if (seen != 511 || m.p != raw + len) return EVL_ECORRUPT;
    return EVL_OK;
}

int evl_name_check(const char *s, size_t len) {
    if (len < 1 || len > EVL_MAX_NAME) return EVL_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return EVL_EINVAL;
    }
    if (!evl_utf8_valid(s, len)) return EVL_EINVAL;
    /* C1 controls (U+0080..U+009F) are not printable either: C2 80..C2 9F */
    for (size_t i = 0; i + 1 < len; i++)
        if ((unsigned char)s[i] == 0xc2 && (unsigned char)s[i + 1] < 0xa0) return EVL_EINVAL;
    return EVL_OK;
}

size_t evl_stream_category(const char *stream, size_t len) {
    const char *dash = memchr(stream, '-', len);
    return dash ? (size_t)(dash - stream) : len;
}

int evl__stream_head(MDB_cursor *c, const char *stream, size_t len, uint64_t *rev, uint64_t *pos) {
    MDB_val k = {len, (void *)stream}, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
    if (rc == 0) rc = mdb_cursor_get(c, &k, &v, MDB_LAST_DUP);
    if (rc) return evl__lmdb_err(rc);
    if (v.mv_size != 16) return EVL_ECORRUPT;
    *rev = evl__get_be64(v.mv_data);
    if (pos) *pos = evl__get_be64((uint8_t *)v.mv_data + 8);
    return EVL_OK;
}

int evl__lmdb_err(int rc) {
    switch (rc) {
    case MDB_SUCCESS: return EVL_OK;
    case MDB_NOTFOUND: return EVL_ENOTFOUND;
    case MDB_MAP_FULL: case ENOSPC: case EDQUOT: return EVL_EFULL;
    case MDB_TXN_FULL: return EVL_ETOOBIG;
    case MDB_CORRUPTED: case MDB_PAGE_NOTFOUND: case MDB_BAD_TXN: case MDB_INVALID: return EVL_ECORRUPT;
    /* LMDB panics after a failed write of the meta page (it cannot tell
     * what reached the disk): the environment refuses every transaction
     * until it is reopened, but the file is intact (tests/fault).  Saying
     * "corrupt" would send operators to their backups for nothing. */
    case MDB_PANIC: return EVL_EREADONLY;
    case MDB_VERSION_MISMATCH: return EVL_EVERSION;
    case ENOMEM: return EVL_ENOMEM;
    default:
        if (rc > 0) return EVL_ESYS(rc);
        return EVL_EIO;
    }
}

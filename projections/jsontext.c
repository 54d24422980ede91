/* msgpack -> JSON text for maps and arrays bound to statements. */
#include <locale.h>
#include <math.h>
#include <string.h>

#include "evlog/mp.h"
#include "projections/proj_int.h"
/* ------------------------------------------------------------ msgpack -> JSON text
 *
 * Maps and arrays bind as JSON text.  The reference conversion is
 * evl_json_from_msgpack() + json_dumps(JSON_COMPACT | JSON_ENCODE_ANY)
 * (evl__proj_bind_mp in sqlite.c): a jansson tree, one allocation per node,
 * then printf for every number.  This writes the same bytes straight into a
 * reused buffer.  Shapes where matching jansson byte for byte would take
 * more code than they are worth (bin/ext, repeated keys, big maps, NUL in a
 * key) answer JW_OTHER and go through the reference instead.
 *
 * It runs for every map or array an event binds (a node heartbeat's GPU
 * list: ~40 values), so the writer never checks for room: the buffer is
 * grown once, before writing, to a bound of the output (JW_PER_BYTE bytes
 * per msgpack byte read, plus JW_SLACK), and everything below writes
 * through a bare pointer.  The slack also lets short strings and digits be
 * stored eight or sixteen bytes at a time past their end. */

#define JW_MAX_KEYS 32
/* Output per input byte, at most: a string byte escaped as \u00XX is 6, and
 * every other value writes at most 6 bytes per byte it was read from,
 * counting the ',' or ':' after it ("false," from 0xc2; "[],", "{}," from a
 * one-byte header; 3 digits and a comma from a fixint; 20 from 9 bytes of
 * int64; 25 from a 5-byte float32 or a 9-byte float64). */
#define JW_PER_BYTE 6
#define JW_SLACK 64
/* Above this, bound the value's own length rather than the rest of the
 * buffer (a small field of a large event must not grow the buffer to 6x
 * the event). */
#define JW_BIG_BOUND (256u << 10)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__SIZEOF_INT128__)
#define JW_FAST_DIGITS 1
#endif

#ifdef JW_FAST_DIGITS
/* Numbers are written with whole-word stores: digits made in a register
 * (eight at a time) and stored once.  Writing them a byte or two at a time
 * and then copying the lot stalls: a load that spans several recent small
 * stores cannot be forwarded from them. */
#define ASCII0 0x3030303030303030ull

/* The 8 decimal digits of v < 10^8, zero-padded, as byte values 0-9, the
 * first digit in the lowest byte.  Each step splits every lane in two:
 * 32-bit lanes / 100 ((x * 5243) >> 19 is x / 100 for x < 43699), then
 * 16-bit lanes / 10 ((y * 103) >> 10 is y / 10 for y < 179); the masks drop
 * what the shift brings down from the lane above. */
static inline uint64_t swar8(uint32_t v) {
    uint64_t z = (v / 10000) | ((uint64_t)(v % 10000) << 32);
    uint64_t q = ((z * 5243) >> 19) & 0x0000007F0000007Full;
    z = q | ((z - q * 100) << 16);
    uint64_t t = ((z * 103) >> 10) & 0x000F000F000F000Full;
    return t | ((z - t * 10) << 8);
}

/* 1 <= v < 10^8 without leading zeros at o (8 bytes stored); returns the end. */
static inline char *put_upto8(char *o, uint32_t v) {
    uint64_t z = swar8(v);
    int lead = __builtin_ctzll(z) >> 3;                   /* the leading zero digits */
    z = (z + ASCII0) >> (8 * lead);
    memcpy(o, &z, 8);
    return o + 8 - lead;
}

static inline char *put_u64(char *o, uint64_t v) {
    if (v < 10) { *o = (char)('0' + v); return o + 1; }
    if (v < 100000000) return put_upto8(o, (uint32_t)v);
    uint64_t hi = v / 100000000, lo;
    uint32_t low = (uint32_t)(v - hi * 100000000);
    if (hi < 100000000) {
        o = put_upto8(o, (uint32_t)hi);
    } else {
        uint64_t top = hi / 100000000;                    /* < 1845 */
        o = put_upto8(o, (uint32_t)top);
        lo = swar8((uint32_t)(hi - top * 100000000)) + ASCII0;
        memcpy(o, &lo, 8);
        o += 8;
    }
    lo = swar8(low) + ASCII0;
    memcpy(o, &lo, 8);
    return o + 8;
}
#else
static inline char *put_u64(char *o, uint64_t v) {
    char tmp[20], *end = tmp + sizeof tmp, *s = end;
    do { *--s = (char)('0' + v % 10); v /= 10; } while (v);
    memcpy(o, s, (size_t)(end - s));
    return o + (end - s);
}
#endif

static inline char *put_i64(char *o, int64_t v) {
    if (v < 0) { *o++ = '-'; return put_u64(o, 0 - (uint64_t)v); }
    return put_u64(o, (uint64_t)v);
}

/* A double as jansson writes it (jsonp_dtostr): printf's "%.17g", then ".0"
 * when that looks like an integer, and the exponent without '+' or leading
 * zeros.  "%.17g" is correctly rounded (ties to even) and for 1e-4 <= |v| <
 * 1e17 uses plain notation; there the 17 digits come exactly from 128-bit
 * integer arithmetic instead of printf's multi-precision code.  Elsewhere,
 * printf itself.  Writes at out, which must have 40 bytes of room; returns
 * the length (no NUL), 0 when printf fails. */
static size_t fmt_real(double v, char *out) {
    size_t n = 0;
#ifdef JW_FAST_DIGITS
    double a = v < 0 ? -v : v;
    if (a >= 1e-4 && a < 1e17) {
        static const uint64_t pow10[20] = {
            1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
            1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
            100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
            1000000000000000000ull, 10000000000000000000ull};
        /* 10^k for k in -4..16, as doubles, to settle the guess of
         * floor(log10(a)) with one comparison (the inexact negative powers
         * can be off by one at a boundary: the range check below corrects) */
        static const double p10d[21] = {1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6,
                                        1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16};
        uint64_t bits;
        memcpy(&bits, &a, sizeof bits);
        uint64_t m = (bits & ((1ull << 52) - 1)) | (1ull << 52);
        int e2 = (int)(bits >> 52) - 1075;                /* a = m * 2^e2 (a is normal here) */
        int l2 = e2 + 52;                                  /* floor(log2(a)) */
        /* floor(l2 * log10(2)): floor(log10(a)) or one less */
        int x = l2 >= 0 ? (l2 * 78913) >> 18 : -((-l2 * 78913 + 262143) >> 18);
        if (x < -4) x = -4;
        if (x < 16 && a >= p10d[x + 5]) x++;
        uint64_t d = 0;
        for (int tries = 0; tries < 3; tries++) {
            int p = 16 - x;                               /* d = round(a * 10^p): 17 digits */
            if (p < 0 || p > 21) goto slow;               /* cannot happen in range; be safe */
            unsigned __int128 num = (unsigned __int128)m * pow10[p < 19 ? p : 19];
            if (p > 19) num *= pow10[p - 19];             /* < 2^53 * 10^21 < 2^123 */
            if (e2 >= 0) {
                num <<= e2;                               /* e2 <= 4 here: no overflow */
            } else {
                unsigned s = (unsigned)-e2;               /* <= 66 in range */
                unsigned __int128 q = num >> s, r = num - (q << s), half = (unsigned __int128)1 << (s - 1);
                num = q + (r > half || (r == half && (q & 1)));
            }
            d = (uint64_t)num;
            if (d >= 100000000000000000ull) x++;
            else if (d < 10000000000000000ull) x--;
            else break;
        }
        if (d < 10000000000000000ull || d >= 100000000000000000ull || x < -4 || x > 16) goto slow;
        /* the 17 digits: c0, then 16 as byte values in w (c0 is not 0) */
        uint64_t c0 = d / 10000000000000000ull, rest = d - c0 * 10000000000000000ull;
        uint64_t hi8 = rest / 100000000;
        uint64_t w1 = swar8((uint32_t)hi8), w2 = swar8((uint32_t)(rest - hi8 * 100000000));
        /* the last digit that is not 0: %g drops trailing zeros */
        int last = w2 ? 9 + ((63 - __builtin_clzll(w2)) >> 3) : w1 ? 1 + ((63 - __builtin_clzll(w1)) >> 3) : 0;
        unsigned __int128 dig = (unsigned __int128)(w1 + ASCII0) | (unsigned __int128)(w2 + ASCII0) << 64;
        if (v < 0) out[n++] = '-';
        if (x >= 0) {
            /* d[0..x] '.' d[x+1..last]: the 17 digits, then the fraction
             * again one byte further on, then the point between them */
            out[n] = (char)('0' + c0);
            memcpy(out + n + 1, &dig, 16);
            unsigned __int128 frac = x < 16 ? dig >> (8 * x) : 0;
            memcpy(out + n + x + 2, &frac, 16);
            out[n + x + 1] = '.';
            if (last > x) {
                n += (size_t)last + 2;
            } else {
                out[n + x + 2] = '0';                     /* jansson: "85" -> "85.0" */
                n += (size_t)x + 3;
            }
        } else {
            memcpy(out + n, "0.000000", 8);               /* "0." and up to 3 zeros */
            n += (size_t)(1 - x);
            out[n] = (char)('0' + c0);
            memcpy(out + n + 1, &dig, 16);
            n += (size_t)last + 1;
        }
        return n;
    }
slow:
#endif
    n = (size_t)snprintf(out, 40, "%.17g", v);
    if (n >= 40) return 0;
    const char *point = localeconv()->decimal_point;      /* as jansson's from_locale() */
    if (*point != '.') {
        char *at = strchr(out, *point);
        if (at) *at = '.';
    }
    if (!strchr(out, '.') && !strchr(out, 'e')) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = 0;
    }
    char *e = strchr(out, 'e');
    if (e) {
        char *start = e + 1, *end = start + 1;
        if (*start == '-') start++;
        while (*end == '0') end++;
        if (end != start) {
            memmove(start, end, n + 1 - (size_t)(end - out));
            n -= (size_t)(end - start);
        }
    }
    return n;
}

/* What a byte needs inside a JSON string, as jansson's dump_string() writes
 * it: 0 nothing (printable ASCII, DEL and '/' included), 1 non-ASCII (kept
 * as is, the string's UTF-8 checked once at the end), else the letter after
 * the backslash ('u' for \u00XX). */
static const uint8_t ESC[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* Does any of the 8 bytes of w need a look (control, '"', '\\', non-ASCII)?
 * Exact: a borrow only crosses from a byte that is itself flagged. */
static inline int special8(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
    return (((w - ones * 0x20) | (q - ones) | (bs - ones) | w) & highs) != 0;
}

#if defined(__SSE2__) && defined(JW_FAST_DIGITS)
#include <emmintrin.h>
/* Bit i set when byte i of the 16 at p needs a look: a signed compare with
 * 0x20 catches control characters and every byte >= 0x80 at once. */
static inline unsigned special16(const char *p) {
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i bad = _mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(0x20)),
                               _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                                            _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))));
    return (unsigned)_mm_movemask_epi8(bad);
}
#endif

/* The string s[0, n) as a JSON string at *op.  lim: the end of the msgpack
 * buffer s lies in: a string with at least 16 bytes after its start is
 * checked and copied 16 bytes at a time (bytes past its end are copied into
 * the slack and ignored).  Invalid UTF-8 fails the conversion; *nul tells
 * whether the string holds a NUL byte. */
/* Inlined into each caller: a call per string (two per map entry) costs
 * more than the short keys it writes. */
#if defined(__GNUC__)
#define JW_INLINE static inline __attribute__((always_inline))
#else
#define JW_INLINE static inline
#endif

JW_INLINE int put_string(char **op, const char *s, size_t n, const uint8_t *lim, int *nul) {
    char *o = *op;
    size_t i = 0;
    *o++ = '"';
#if defined(__SSE2__) && defined(JW_FAST_DIGITS)
    while ((size_t)((const char *)lim - (s + i)) >= 16) {
        unsigned bad = special16(s + i);
        size_t left = n - i;
        if (left < 16) bad &= (1u << left) - 1;
        if (bad) {                                /* copy up to the first byte that needs a look */
            unsigned k = (unsigned)__builtin_ctz(bad);
            memcpy(o, s + i, 16);
            o += k;
            i += k;
            break;
        }
        memcpy(o, s + i, 16);
        if (left <= 16) {
            o += left;
            i = n;
            break;
        }
        o += 16;
        i += 16;
    }
#endif
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (special8(w)) break;
        memcpy(o, &w, 8);
        o += 8;
    }
    unsigned high = 0;
    for (; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        uint8_t e = ESC[c];
        if (e <= 1) {
            *o++ = (char)c;
            high |= e;
            continue;
        }
        *o++ = '\\';
        *o++ = (char)e;
        if (e == 'u') {
            static const char hex[] = "0123456789ABCDEF";
            if (c == 0) *nul = 1;
            o[0] = '0';
            o[1] = '0';
            o[2] = hex[c >> 4];
            o[3] = hex[c & 15];
            o += 4;
        }
    }
    if (high && !evl_utf8_valid(s, n)) return JW_INVALID;
    *o++ = '"';
    *op = o;
    return JW_OK;
}

/* The first byte of a msgpack value, classified for one jump: the shapes
 * events are made of are decoded right here; the rest (float32, str32,
 * array16/32, map16/32, bin, ext, the bytes msgpack leaves unused) by
 * evl__proj_mp_next(). */
enum { K_OTHER, K_POS, K_NEG, K_FSTR, K_FMAP, K_FARR, K_NIL, K_FALSE, K_TRUE, K_F64,
       K_U8, K_U16, K_U32, K_U64, K_I8, K_I16, K_I32, K_I64, K_STR8, K_STR16 };
static const uint8_t KIND[256] = {
#define R16(k) k, k, k, k, k, k, k, k, k, k, k, k, k, k, k, k
    R16(K_POS), R16(K_POS), R16(K_POS), R16(K_POS), R16(K_POS), R16(K_POS), R16(K_POS), R16(K_POS),
    R16(K_FMAP), R16(K_FARR), R16(K_FSTR), R16(K_FSTR),
    /* 0xc0 */ K_NIL, K_OTHER, K_FALSE, K_TRUE, K_OTHER, K_OTHER, K_OTHER, K_OTHER,
    /* 0xc8 */ K_OTHER, K_OTHER, K_OTHER, K_F64, K_U8, K_U16, K_U32, K_U64,
    /* 0xd0 */ K_I8, K_I16, K_I32, K_I64, K_OTHER, K_OTHER, K_OTHER, K_OTHER,
    /* 0xd8 */ K_OTHER, K_STR8, K_STR16, K_OTHER, K_OTHER, K_OTHER, K_OTHER, K_OTHER,
    R16(K_NEG), R16(K_NEG),
#undef R16
};

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
/* (compilers turn these into one load and a byte swap) */
static inline uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

static int map_body(char **op, evl_mp *m, uint32_t n, int depth);
static int array_body(char **op, evl_mp *m, uint32_t n, int depth);
JW_INLINE int value_in(char **op, evl_mp *m, int depth);

/* A map of n entries (its header read), written at *op. */
static int map_body(char **op, evl_mp *m, uint32_t n, int depth) {
    if (depth > EVL_MAX_DEPTH) return JW_INVALID;
    if (n > JW_MAX_KEYS) return JW_OTHER;
    const char *key[JW_MAX_KEYS];
    uint32_t len[JW_MAX_KEYS];
    uint64_t seen = 0;      /* a bit per (length, first byte) of the keys so far */
    char *o = *op;
    int rc;
    *o++ = '{';
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *kp = m->p;
        const char *ks;
        uint32_t kn;
        if (kp < m->end && (*kp & 0xe0) == 0xa0 && (kn = *kp & 0x1f) < (size_t)(m->end - kp)) {
            ks = (const char *)kp + 1; /* a fixstr: nearly every key */
            m->p = kp + 1 + kn;
        } else {
            evl_mp_val k;
            if (evl__proj_mp_next(m, &k) || k.kind != EVL_MP_STR) return JW_INVALID;
            ks = k.v.s.ptr;
            kn = k.v.s.len;
        }
        /* jansson keeps a repeated key once (first place, last value): the
         * reference's business; only keys that share a bit are compared */
        uint64_t bit = 1ull << ((kn * 7 + (kn ? (uint8_t)ks[0] : 0)) & 63);
        if (seen & bit)
            for (uint32_t j = 0; j < i; j++)
                if (len[j] == kn && !memcmp(key[j], ks, kn)) return JW_OTHER;
        seen |= bit;
        key[i] = ks;
        len[i] = kn;
        int nul = 0;
        if (i) *o++ = ',';
        if ((rc = put_string(&o, ks, kn, m->end, &nul))) return rc;
        if (nul) return JW_OTHER; /* how jansson writes a key with a NUL: not worth matching */
        *o++ = ':';
        if ((rc = value_in(&o, m, depth + 1))) return rc;
    }
    *o++ = '}';
    *op = o;
    return JW_OK;
}

static int array_body(char **op, evl_mp *m, uint32_t n, int depth) {
    if (depth > EVL_MAX_DEPTH) return JW_INVALID;
    char *o = *op;
    int rc;
    *o++ = '[';
    for (uint32_t i = 0; i < n; i++) {
        if (i) *o++ = ',';
        if ((rc = value_in(&o, m, depth + 1))) return rc;
    }
    *o++ = ']';
    *op = o;
    return JW_OK;
}

static int real(char **op, double f) {
    if (!isfinite(f)) { memcpy(*op, "null", 4); *op += 4; return JW_OK; }
    size_t n = fmt_real(f, *op);   /* in place: the slack covers its 40 bytes */
    if (!n) return JW_OTHER;
    *op += n;
    return JW_OK;
}

/* One value at m, written at *op; depth as evl_json_from_msgpack() counts
 * it (the top is 1).  The room is the caller's (see the top).  Inlined into
 * the map and array bodies, so a scalar costs no call. */
JW_INLINE int value_in(char **op, evl_mp *m, int depth) {
    const uint8_t *p = m->p;
    if (EVL_UNLIKELY(p >= m->end)) return JW_INVALID;
    uint8_t b = *p;
    size_t left = (size_t)(m->end - p) - 1;  /* bytes after the first */
    char *o = *op;
    int nul = 0, rc;
    uint32_t n;
    switch (KIND[b]) {
    case K_POS: m->p = p + 1; o = put_u64(o, b); break;
    case K_NEG: m->p = p + 1; o = put_i64(o, (int8_t)b); break;
    case K_FSTR:
        n = b & 0x1f;
        if (n > left) return JW_INVALID;
        m->p = p + 1 + n;
        if ((rc = put_string(&o, (const char *)p + 1, n, m->end, &nul))) return rc;
        break;
    case K_STR8:
        if (left < 1 || (n = p[1]) > left - 1) return JW_INVALID;
        m->p = p + 2 + n;
        if ((rc = put_string(&o, (const char *)p + 2, n, m->end, &nul))) return rc;
        break;
    case K_STR16:
        if (left < 2 || (n = be16(p + 1)) > left - 2) return JW_INVALID;
        m->p = p + 3 + n;
        if ((rc = put_string(&o, (const char *)p + 3, n, m->end, &nul))) return rc;
        break;
    case K_FMAP:
        n = b & 0x0f;
        if ((uint64_t)n * 2 > left) return JW_INVALID;
        m->p = p + 1;
        if ((rc = map_body(&o, m, n, depth))) return rc;
        break;
    case K_FARR:
        n = b & 0x0f;
        if (n > left) return JW_INVALID;
        m->p = p + 1;
        if ((rc = array_body(&o, m, n, depth))) return rc;
        break;
    case K_NIL: m->p = p + 1; memcpy(o, "null", 4); o += 4; break;
    case K_TRUE: m->p = p + 1; memcpy(o, "true", 4); o += 4; break;
    case K_FALSE: m->p = p + 1; memcpy(o, "false", 5); o += 5; break;
    case K_U8: if (left < 1) return JW_INVALID; m->p = p + 2; o = put_u64(o, p[1]); break;
    case K_U16: if (left < 2) return JW_INVALID; m->p = p + 3; o = put_u64(o, be16(p + 1)); break;
    case K_U32: if (left < 4) return JW_INVALID; m->p = p + 5; o = put_u64(o, be32(p + 1)); break;
    case K_I8: if (left < 1) return JW_INVALID; m->p = p + 2; o = put_i64(o, (int8_t)p[1]); break;
    case K_I16: if (left < 2) return JW_INVALID; m->p = p + 3; o = put_i64(o, (int16_t)be16(p + 1)); break;
    case K_I32: if (left < 4) return JW_INVALID; m->p = p + 5; o = put_i64(o, (int32_t)be32(p + 1)); break;
    case K_I64: if (left < 8) return JW_INVALID; m->p = p + 9; o = put_i64(o, (int64_t)be64(p + 1)); break;
    case K_U64: {
        if (left < 8) return JW_INVALID;
        m->p = p + 9;
        uint64_t u = be64(p + 1);
        if (u <= (uint64_t)INT64_MAX) o = put_u64(o, u);
        else if ((rc = real(&o, (double)u))) return rc; /* jansson has no unsigned integers: a real, as the reference */
        break;
    }
    case K_F64: {
        if (left < 8) return JW_INVALID;
        m->p = p + 9;
        uint64_t u = be64(p + 1);
        double f;
        memcpy(&f, &u, sizeof f);
        if ((rc = real(&o, f))) return rc;
        break;
    }
    default: { /* everything else, through the general reader */
        evl_mp_val v;
        if (evl__proj_mp_next(m, &v)) return JW_INVALID;
        switch (v.kind) {
        case EVL_MP_NIL: memcpy(o, "null", 4); o += 4; break;
        case EVL_MP_BOOL:
            if (v.v.b) { memcpy(o, "true", 4); o += 4; }
            else { memcpy(o, "false", 5); o += 5; }
            break;
        case EVL_MP_UINT:
            if (v.v.u <= (uint64_t)INT64_MAX) o = put_u64(o, v.v.u);
            else if ((rc = real(&o, (double)v.v.u))) return rc;
            break;
        case EVL_MP_INT: o = put_i64(o, v.v.i); break;
        case EVL_MP_FLOAT: if ((rc = real(&o, v.v.f))) return rc; break;
        case EVL_MP_STR:
            if ((rc = put_string(&o, v.v.s.ptr, v.v.s.len, m->end, &nul))) return rc;
            break;
        case EVL_MP_BIN: case EVL_MP_EXT: return JW_OTHER;
        case EVL_MP_ARRAY: if ((rc = array_body(&o, m, v.v.n, depth))) return rc; break;
        case EVL_MP_MAP: if ((rc = map_body(&o, m, v.v.n, depth))) return rc; break;
        default: return JW_INVALID;
        }
    }
    }
    *op = o;
    return JW_OK;
}

static int value(char **op, evl_mp *m, int depth) { return value_in(op, m, depth); }

/* The length of the value at m (its msgpack bytes), or 0 when it is not
 * well formed.  Iterative and bounded by the buffer, like the writer. */
static size_t value_len(const evl_mp *at) {
    evl_mp m = *at;
    uint64_t left = 1;
    while (left) {
        evl_mp_val v;
        if (evl__proj_mp_next(&m, &v)) return 0;
        left--;
        if (v.kind == EVL_MP_ARRAY) left += v.v.n;
        else if (v.kind == EVL_MP_MAP) left += 2ull * v.v.n;
    }
    return (size_t)(m.p - at->p);
}

int evl__proj_json_text(buf *b, evl_mp *m, int depth) {
    size_t in = (size_t)(m->end - m->p);
    if (in > JW_BIG_BOUND / JW_PER_BYTE && !(in = value_len(m))) return JW_INVALID;
    if (in > (SIZE_MAX - JW_SLACK - b->len) / JW_PER_BYTE) return JW_NOMEM;
    size_t need = in * JW_PER_BYTE + JW_SLACK;
    if (b->cap - b->len < need) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < need) cap *= 2;
        char *g = evl_realloc(b->p, cap);
        if (!g) return JW_NOMEM;
        b->p = g;
        b->cap = cap;
    }
    char *o = b->p + b->len;
    int rc = value(&o, m, depth);
    if (rc == JW_OK) b->len = (size_t)(o - b->p);
    return rc;
}

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
 * key) answer JW_OTHER and go through the reference instead. */

#define JW_MAX_KEYS 32

static int buf_reserve(buf *b, size_t n) {
    if (b->cap - b->len >= n) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) cap *= 2;
    char *g = evl_realloc(b->p, cap);
    if (!g) return -1;
    b->p = g;
    b->cap = cap;
    return 0;
}

static int put(buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n)) return JW_NOMEM;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return JW_OK;
}

/* Decimal digits of v, right-aligned ending at end; returns the start. */
static char *u64_digits(uint64_t v, char *end) {
    do { *--end = (char)('0' + v % 10); v /= 10; } while (v);
    return end;
}

static int put_i64(buf *b, int64_t v) {
    char tmp[24], *end = tmp + sizeof tmp;
    char *s = u64_digits(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, end);
    if (v < 0) *--s = '-';
    return put(b, s, (size_t)(end - s));
}

/* A double as jansson writes it (jsonp_dtostr): printf's "%.17g", then ".0"
 * when that looks like an integer, and the exponent without '+' or leading
 * zeros.  "%.17g" is correctly rounded (ties to even) and for 1e-4 <= |v| <
 * 1e17 uses plain notation; there the 17 digits come exactly from 128-bit
 * integer arithmetic instead of printf's multi-precision code.  Elsewhere,
 * printf itself. */
static size_t fmt_real(double v, char out[40]) {
    size_t n = 0;
#ifdef __SIZEOF_INT128__
    double a = v < 0 ? -v : v;
    if (a >= 1e-4 && a < 1e17) {
        uint64_t bits;
        memcpy(&bits, &a, sizeof bits);
        uint64_t m = (bits & ((1ull << 52) - 1)) | (1ull << 52);
        int e2 = (int)(bits >> 52) - 1075;                /* a = m * 2^e2 */
        int l2 = e2 + 52;                                  /* floor(log2(a)) */
        /* floor(l2 * log10(2)), i.e. floor(log10(a)) or one less; no shift of a negative */
        int x = l2 >= 0 ? (l2 * 78913) >> 18 : -((-l2 * 78913 + 262143) >> 18);
        uint64_t d = 0;
        for (int tries = 0; tries < 3; tries++) {
            int p = 16 - x;                               /* d = round(a * 10^p): 17 digits */
            if (p < 0 || p > 21) goto slow;               /* cannot happen in range; be safe */
            static const uint64_t pow10[20] = {
                1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
                1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
                100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
                1000000000000000000ull, 10000000000000000000ull};
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
        char dig[17];
        u64_digits(d, dig + 17);
        int last = 16;
        while (last > 0 && dig[last] == '0') last--;      /* %g drops trailing zeros */
        if (v < 0) out[n++] = '-';
        if (x >= 0) {
            for (int i = 0; i <= x; i++) out[n++] = dig[i];
            out[n++] = '.';
            if (last > x) for (int i = x + 1; i <= last; i++) out[n++] = dig[i];
            else out[n++] = '0';                          /* jansson: "85" -> "85.0" */
        } else {
            out[n++] = '0';
            out[n++] = '.';
            for (int i = 0; i < -x - 1; i++) out[n++] = '0';
            for (int i = 0; i <= last; i++) out[n++] = dig[i];
        }
        out[n] = 0;
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

static int put_real(buf *b, double v) {
    char tmp[40];
    size_t n = fmt_real(v, tmp);
    return n ? put(b, tmp, n) : JW_OTHER;
}

/* A JSON string as jansson's dump_string() writes it: '"' and '\\'
 * escaped, control characters as \b \f \n \r \t or \u00XX, everything else
 * (DEL, '/', non-ASCII) as is.  Invalid UTF-8 fails the conversion.
 * *nul tells whether the string holds a NUL byte. */
static int put_string(buf *b, const char *s, size_t n, int *nul) {
    static const char hex[] = "0123456789ABCDEF";
    if (buf_reserve(b, 6 * n + 2)) return JW_NOMEM;
    char *o = b->p + b->len;
    unsigned high = 0;
    size_t i = 0;
    *o++ = '"';
    /* eight bytes at a time while none needs a look: no control character,
     * quote, backslash or non-ASCII byte */
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
        uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
        if (((w - ones * 0x20) | (q - ones) | (bs - ones) | w) & highs) break;
        memcpy(o, &w, 8);
        o += 8;
    }
    for (; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            high |= c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            if (c == 0) *nul = 1;
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
        }
    }
    if ((high & 0x80) && !evl_utf8_valid(s, n)) return JW_INVALID;
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return JW_OK;
}

/* One value at m; depth as evl_json_from_msgpack() counts it (the top is 1). */
int evl__proj_json_text(buf *b, evl_mp *m, int depth) {
    evl_mp_val v;
    int rc;
    if (evl__proj_mp_next(m, &v)) return JW_INVALID;
    switch (v.kind) {
    case EVL_MP_NIL: return put(b, "null", 4);
    case EVL_MP_BOOL: return v.v.b ? put(b, "true", 4) : put(b, "false", 5);
    case EVL_MP_UINT:
        return v.v.u > (uint64_t)INT64_MAX ? put_real(b, (double)v.v.u) : put_i64(b, (int64_t)v.v.u);
    case EVL_MP_INT: return put_i64(b, v.v.i);
    case EVL_MP_FLOAT: return isfinite(v.v.f) ? put_real(b, v.v.f) : put(b, "null", 4);
    case EVL_MP_STR: {
        int nul = 0;
        return put_string(b, v.v.s.ptr, v.v.s.len, &nul);
    }
    case EVL_MP_BIN: case EVL_MP_EXT: return JW_OTHER;
    case EVL_MP_ARRAY:
        if (depth > EVL_MAX_DEPTH) return JW_INVALID;
        if ((rc = put(b, "[", 1))) return rc;
        for (uint32_t i = 0; i < v.v.n; i++)
            if ((i && (rc = put(b, ",", 1))) || (rc = evl__proj_json_text(b, m, depth + 1))) return rc;
        return put(b, "]", 1);
    case EVL_MP_MAP: {
        if (depth > EVL_MAX_DEPTH) return JW_INVALID;
        if (v.v.n > JW_MAX_KEYS) return JW_OTHER;
        const char *key[JW_MAX_KEYS];
        uint32_t len[JW_MAX_KEYS];
        if ((rc = put(b, "{", 1))) return rc;
        for (uint32_t i = 0; i < v.v.n; i++) {
            evl_mp_val k;
            if (evl__proj_mp_next(m, &k) || k.kind != EVL_MP_STR) return JW_INVALID;
            /* jansson keeps a repeated key once (first place, last value) */
            for (uint32_t j = 0; j < i; j++)
                if (len[j] == k.v.s.len && (!len[j] || key[j][0] == k.v.s.ptr[0]) &&
                    !memcmp(key[j], k.v.s.ptr, k.v.s.len))
                    return JW_OTHER;
            key[i] = k.v.s.ptr;
            len[i] = k.v.s.len;
            int nul = 0;
            if ((i && (rc = put(b, ",", 1))) || (rc = put_string(b, k.v.s.ptr, k.v.s.len, &nul))) return rc;
            if (nul) return JW_OTHER; /* how jansson writes a key with a NUL: not worth matching */
            if ((rc = put(b, ":", 1)) || (rc = evl__proj_json_text(b, m, depth + 1))) return rc;
        }
        return put(b, "}", 1);
    }
    }
    return JW_INVALID;
}
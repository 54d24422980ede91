/* Maps and arrays bind as JSON text, and the engine writes that text itself
 * (projections/jsontext.c) instead of building a jansson tree: the text
 * must be byte for byte what the reference conversion writes —
 * evl_json_from_msgpack() + json_dumps(JSON_COMPACT | JSON_ENCODE_ANY), the
 * one the limit of bench/project uses — for every value, or the tables of
 * the engine and of a replay elsewhere would differ.  Doubles in
 * particular: "%.17g" (17 significant digits, round-trip exact), ".0" after
 * an integral value, no '+' or leading zeros in an exponent.
 *
 * Generated events (a fixed seed) carry random nested values: integers of
 * every msgpack width, uint64 above INT64_MAX, doubles from random bits and
 * from around the edges of the writer's fast range (powers of ten and their
 * neighbours, 1e-4 and 1e17), float32, NaN/inf, strings of every length up
 * to 40 with quotes, backslashes, control characters, NUL and multi-byte
 * UTF-8 (short strings at the very end of the record too), repeated keys,
 * big maps, bin.  A spec binds the field :v, a field :w that ends the map,
 * and the whole data (@data); the rows are read back with sqlite3 from the
 * projection's file and compared with the reference text. */
#include <math.h>
#include <msgpack.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "evlog/json.h"
#include "evlog/proj.h"
#include "test.h"

static const char SPEC[] =
    "-- @projection js\n"
    "CREATE TABLE out (pos INTEGER PRIMARY KEY, v, w, data);\n"
    "-- @on V\n"
    "INSERT INTO out VALUES (@position, :v, :w, @data);\n";

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

static double edge_double(void) {
    switch (rnd() % 6) {
    case 0: { /* random bits: mostly outside the fast range, subnormals, NaN, inf */
        uint64_t b = rnd();
        double d;
        memcpy(&d, &b, sizeof d);
        return d;
    }
    case 1: { /* random mantissa, exponent around the fast range [1e-4, 1e17) */
        double d = ldexp(1.0 + (double)(rnd() >> 11) / 9007199254740992.0, (int)(rnd() % 80) - 18);
        return rnd() & 1 ? -d : d;
    }
    case 2: { /* a power of ten and its neighbours, 1e-6 .. 1e18 */
        double d = pow(10, (int)(rnd() % 25) - 6);
        for (int u = (int)(rnd() % 7) - 3; u; u += u > 0 ? -1 : 1) d = nextafter(d, u > 0 ? INFINITY : 0);
        return d;
    }
    case 3: /* the values services send: a few decimals */
        return (double)(int64_t)(rnd() % 2000001 - 1000000) / pow(10, (double)(rnd() % 7));
    case 4: /* integral doubles: "85.0" */
        return (double)(int64_t)(rnd() % 200001 - 100000);
    default: {
        static const double fixed[] = {0.0, -0.0, 1e-4, 9.9999999999999991e-5, 1e17, 99999999999999984.0,
                                       0.1, 0.30000000000000004, 5e-324, 1.7976931348623157e308,
                                       2.2250738585072014e-308, 4503599627370496.5, 0.5, 1e16};
        return fixed[rnd() % (sizeof fixed / sizeof fixed[0])];
    }
    }
}

static void pack_string(msgpack_packer *pk) {
    static const char *const pieces[] = {"a", "Z", " ", "\"", "\\", "/", "\n", "\t", "\b", "\f", "\r",
                                         "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80", "NVIDIA", "0123456789"};
    char s[64];
    size_t n = 0, want = rnd() % 41;
    int plain = rnd() % 3 == 0; /* the 8-byte fast path needs long runs of plain ASCII */
    while (n < want) {
        const char *p = plain ? "abcdefgh" : pieces[rnd() % (sizeof pieces / sizeof pieces[0])];
        size_t k = strlen(p);
        if (n + k > sizeof s) break;
        memcpy(s + n, p, k);
        n += k;
    }
    if (!plain && rnd() % 16 == 0 && n < sizeof s) s[n++] = 0; /* a NUL inside */
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_value(msgpack_packer *pk, int depth);

static void pack_map(msgpack_packer *pk, int depth) {
    uint32_t n = rnd() % 8 == 0 ? 33 + (uint32_t)(rnd() % 4) : (uint32_t)(rnd() % 7); /* > 32 keys: the reference */
    msgpack_pack_map(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        char key[48];
        unsigned r = (unsigned)(rnd() % 10);
        int k = r == 0 ? snprintf(key, sizeof key, "dup")                                    /* repeated keys */
              : r == 1 ? snprintf(key, sizeof key, "k\"\\\n%u", i)                         /* escaped keys */
              : r == 2 ? snprintf(key, sizeof key, "memory_total_mib_%u", i)                  /* 16+ bytes */
              : r == 3 ? snprintf(key, sizeof key, "a_key_longer_than_a_fixstr_holds_%u", i)  /* str8 */
                       : snprintf(key, sizeof key, "key_%u_%u", i, (unsigned)(rnd() % 1000));
        msgpack_pack_str(pk, (size_t)k);
        msgpack_pack_str_body(pk, key, (size_t)k);
        pack_value(pk, depth + 1);
    }
}

static void pack_value(msgpack_packer *pk, int depth) {
    unsigned k = (unsigned)(rnd() % (depth >= 4 ? 10 : 13));
    switch (k) {
    case 0: msgpack_pack_nil(pk); break;
    case 1: if (rnd() & 1) msgpack_pack_true(pk); else msgpack_pack_false(pk); break;
    case 2: msgpack_pack_int64(pk, (int64_t)(rnd() % 256) - 128); break;   /* fixints, int8, uint8 */
    case 3: { /* every width, both signs, the extremes */
        static const int64_t ext[] = {INT64_MIN, INT64_MAX, -32769, 65536, 4294967295LL, -2147483649LL,
                                      99999999, 100000000, 9999999999999999LL, 10000000000000000LL};
        int64_t v = rnd() % 4 == 0 ? ext[rnd() % 10] : (int64_t)(rnd() >> (rnd() % 64));
        msgpack_pack_int64(pk, rnd() & 1 ? v : (int64_t)(0 - (uint64_t)v)); /* INT64_MIN stays itself */
        break;
    }
    case 4: msgpack_pack_uint64(pk, 9223372036854775808ull + rnd() % 1000000); break; /* above INT64_MAX */
    case 5: case 6: msgpack_pack_double(pk, edge_double()); break;
    case 7: msgpack_pack_float(pk, (float)edge_double()); break;
    case 8: case 9: pack_string(pk); break;
    case 10: { /* bin: the reference's business */
        msgpack_pack_bin(pk, 3);
        msgpack_pack_bin_body(pk, "\x00\x01\x02", 3);
        break;
    }
    case 11: {
        uint32_t n = (uint32_t)(rnd() % 6);
        msgpack_pack_array(pk, n);
        for (uint32_t i = 0; i < n; i++) pack_value(pk, depth + 1);
        break;
    }
    default: pack_map(pk, depth); break;
    }
}

/* What the reference writes for the msgpack value [p, p + n): NULL (the
 * column is NULL) when it does not convert. */
static char *reference(const char *p, size_t n) {
    json_t *j;
    if (evl_json_from_msgpack((const uint8_t *)p, n, &j) != EVL_OK) return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    CHECK(s);
    return s;
}

typedef struct sent {
    uint64_t pos;
    char *v, *w, *data; /* reference texts */
} sent;

static int same(const char *want, sqlite3_stmt *st, int col) {
    if (!want) return sqlite3_column_type(st, col) == SQLITE_NULL;
    return sqlite3_column_type(st, col) == SQLITE_TEXT && (size_t)sqlite3_column_bytes(st, col) == strlen(want) &&
           !memcmp(sqlite3_column_text(st, col), want, strlen(want));
}

int main(void) {
    const char *data = test_path("data"), *specs = test_path("specs");
    char path[600];
    mkdir(specs, 0755);
    snprintf(path, sizeof path, "%s/js.sql", specs);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(SPEC, f) >= 0);
    fclose(f);
    evl_log *log;
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE; /* 6000 appends: no fsync each */
    OK(evl_log_open(data, &lo, &log));
    const char *dirs[] = {specs};
    evl_proj_options opt = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1};
    evl_proj_engine *e;
    OK(evl_proj_open(log, &opt, &e));

    size_t n_events = 6000, n = 0;
    sent *want = calloc(n_events, sizeof *want);
    CHECK(want);
    msgpack_sbuffer vb, wb, db;
    msgpack_sbuffer_init(&vb);
    msgpack_sbuffer_init(&wb);
    msgpack_sbuffer_init(&db);
    msgpack_packer vp, wp, dp;
    msgpack_packer_init(&vp, &vb, msgpack_sbuffer_write);
    msgpack_packer_init(&wp, &wb, msgpack_sbuffer_write);
    msgpack_packer_init(&dp, &db, msgpack_sbuffer_write);
    size_t refused = 0, fast_doubles = 0;
    for (size_t i = 0; i < n_events; i++) {
        vb.size = wb.size = db.size = 0;
        if (rnd() % 2) pack_map(&vp, 1);
        else pack_value(&vp, 1);
        /* w ends the record: a short string last exercises the writer's
         * word-at-a-time tail right at the end of the data */
        if (rnd() % 2) {
            msgpack_pack_array(&wp, 1);
            pack_string(&wp);
        } else {
            pack_value(&wp, 1);
        }
        msgpack_pack_map(&dp, 2);
        msgpack_pack_str(&dp, 1);
        msgpack_pack_str_body(&dp, "v", 1);
        msgpack_sbuffer_write(&db, vb.data, vb.size);
        msgpack_pack_str(&dp, 1);
        msgpack_pack_str_body(&dp, "w", 1);
        msgpack_sbuffer_write(&db, wb.data, wb.size);
        evl_event_in ev = {.type = "V", .data = db.data, .data_len = db.size};
        evl_stream_in s = {.stream = "v-1", .expected = EVL_REV_ANY, .events = &ev, .n_events = 1};
        evl_append_result r;
        int rc = evl_log_append(log, &s, 1, &r);
        if (rc != EVL_OK) { /* e.g. a NUL the log refuses somewhere: not this test's matter */
            if (refused < 3) fprintf(stderr, "append refused: %s\n", evl_strerror(rc));
            refused++;
            continue;
        }
        want[n].pos = r.acks[0].position;
        evl_free(r.acks);
        /* a scalar :field binds natively, not as JSON: only maps and arrays are compared as text */
        uint8_t v0 = (uint8_t)vb.data[0], w0 = (uint8_t)wb.data[0];
        int v_is_container = (v0 >= 0x80 && v0 <= 0x9f) || v0 == 0xdc || v0 == 0xdd || v0 == 0xde || v0 == 0xdf;
        int w_is_container = (w0 >= 0x80 && w0 <= 0x9f) || w0 == 0xdc || w0 == 0xdd || w0 == 0xde || w0 == 0xdf;
        want[n].v = v_is_container ? reference(vb.data, vb.size) : strdup("-");
        want[n].w = w_is_container ? reference(wb.data, wb.size) : strdup("-");
        want[n].data = reference(db.data, db.size);
        if (want[n].v && strstr(want[n].v, ".")) fast_doubles++;
        n++;
    }
    CHECK(refused < n_events / 10); /* most values are accepted by the log */
    CHECK(fast_doubles > n / 10);   /* and plenty of them carry reals */
    OK(evl_proj_wait(e, "js", want[n - 1].pos, 60000));

    snprintf(path, sizeof path, "%s/projections/js.db", data);
    sqlite3 *db3;
    CHECK(sqlite3_open_v2(path, &db3, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db3, "SELECT pos, v, w, data FROM out ORDER BY pos", -1, &st, NULL) == SQLITE_OK);
    size_t k = 0, bad = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        CHECK(k < n && (uint64_t)sqlite3_column_int64(st, 0) == want[k].pos);
        const sent *w = &want[k];
        int ok_v = !strcmp(w->v ? w->v : "", "-") || same(w->v, st, 1);
        int ok_w = !strcmp(w->w ? w->w : "", "-") || same(w->w, st, 2);
        int ok_d = same(w->data, st, 3);
        if ((!ok_v || !ok_w || !ok_d) && bad++ < 5)
            fprintf(stderr, "position %llu differs from the reference:\n  v    want %s\n       got  %s\n"
                            "  w    want %s\n       got  %s\n  data want %s\n       got  %s\n",
                    (unsigned long long)w->pos, w->v ? w->v : "NULL", (const char *)sqlite3_column_text(st, 1),
                    w->w ? w->w : "NULL", (const char *)sqlite3_column_text(st, 2), w->data ? w->data : "NULL",
                    (const char *)sqlite3_column_text(st, 3));
        k++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db3);
    CHECK(k == n);
    CHECK(bad == 0);
    printf("%zu events compared (%zu refused by the log)\n", n, refused);

    for (size_t i = 0; i < n; i++) {
        free(want[i].v);
        free(want[i].w);
        free(want[i].data);
    }
    free(want);
    msgpack_sbuffer_destroy(&vb);
    msgpack_sbuffer_destroy(&wb);
    msgpack_sbuffer_destroy(&db);
    evl_proj_close(e);
    evl_log_close(log);
    TEST_PASS();
}

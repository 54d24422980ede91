/* The audit indexes (meta.actor, meta.correlation_id): every query on them,
 * forward and backward, with time and position bounds and combined with the
 * other filters, gives exactly what a filtered scan of the whole log gives;
 * verify checks them; a log from before them opens (read-only: queries
 * scan; read-write: the indexes are filled) and a damaged index is named. */
#include <lmdb.h>

#include "util.h"

#define N 40

static char long_actor[EVL_MAX_META_INDEXED + 2];

/* Event i's meta: mostly alice, every fifth bob, a request id shared by
 * four events, and the odd cases an index must not trip on. */
static void pack_meta(msgpack_sbuffer *sb, int i) {
    msgpack_packer pk;
    char corr[16];
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (i == 13) { /* no meta keys at all */
        msgpack_pack_map(&pk, 0);
        return;
    }
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "source", 6);
    msgpack_pack_str_with_body(&pk, "test", 4);
    msgpack_pack_str_with_body(&pk, "actor", 5);
    if (i == 7) msgpack_pack_int(&pk, 42);                    /* not a string: not indexed */
    else if (i == 11) msgpack_pack_str_with_body(&pk, long_actor, strlen(long_actor)); /* too long */
    else if (i == 17) msgpack_pack_str_with_body(&pk, "", 0); /* empty: not indexed */
    else if (i % 5 == 0) msgpack_pack_str_with_body(&pk, "bob", 3);
    else msgpack_pack_str_with_body(&pk, "alice", 5);
    snprintf(corr, sizeof corr, "req-%d", i / 4);
    msgpack_pack_str_with_body(&pk, "correlation_id", 14);
    msgpack_pack_str_with_body(&pk, corr, strlen(corr));
}

static void fill(evl_log *log) {
    msgpack_sbuffer data, meta;
    msgpack_sbuffer_init(&data);
    msgpack_sbuffer_init(&meta);
    static const char *streams[] = {"task-1", "task-2", "job-7"};
    for (int i = 0; i < N; i++) {
        pack_data(&data, i, "x");
        pack_meta(&meta, i);
        evl_event_in ev = {.type = i % 2 ? "Updated" : "Created", .data = data.data,
                           .data_len = data.size, .meta = meta.data, .meta_len = meta.size};
        evl_stream_in s = {.stream = streams[i % 3], .expected = EVL_REV_ANY, .events = &ev, .n_events = 1};
        evl_append_result res;
        OK(evl_log_append(log, &s, 1, &res)); /* one commit each: times increase */
        evl_free(res.acks);
    }
    msgpack_sbuffer_destroy(&data);
    msgpack_sbuffer_destroy(&meta);
}

static int meta_eq(const evl_event *ev, const char *key, const char *want) {
    evl_mp m;
    evl_mp_val v;
    return evl_mp_map_find(ev->meta, ev->meta_len, key, strlen(key), &m) == EVL_OK &&
           evl_mp_read(&m, &v) == EVL_OK && v.kind == EVL_MP_STR && v.v.s.len == strlen(want) &&
           memcmp(v.v.s.ptr, want, v.v.s.len) == 0;
}

static int str_eq(const char *s, size_t n, const char *want) { return strlen(want) == n && !memcmp(s, want, n); }

/* What @p q must give, from a scan of every event. */
static size_t reference(evl_log *log, const evl_query *q, uint64_t *out) {
    evl_iter *it;
    evl_event ev;
    size_t n = 0;
    OK(evl_iter_open(log, &(evl_query){0}, &it));
    while (evl_iter_next(it, &ev) == EVL_OK) {
        if ((q->stream && !str_eq(ev.stream, ev.stream_len, q->stream)) ||
            (q->type && !str_eq(ev.type, ev.type_len, q->type)) ||
            (q->category && !str_eq(ev.stream, evl_stream_category(ev.stream, ev.stream_len), q->category)) ||
            (q->actor && !meta_eq(&ev, "actor", q->actor)) ||
            (q->correlation_id && !meta_eq(&ev, "correlation_id", q->correlation_id)) ||
            (q->since_ns && ev.time_ns < q->since_ns) || (q->until_ns && ev.time_ns > q->until_ns) ||
            (q->until_position && ev.position > q->until_position))
            continue;
        if (q->from_position && (q->backward ? ev.position > q->from_position : ev.position < q->from_position))
            continue;
        out[n++] = ev.position;
    }
    evl_iter_close(it);
    if (q->backward)
        for (size_t i = 0; i < n / 2; i++) {
            uint64_t t = out[i];
            out[i] = out[n - 1 - i];
            out[n - 1 - i] = t;
        }
    if (q->limit && n > q->limit) n = q->limit;
    return n;
}

static size_t run(evl_log *log, const evl_query *q, uint64_t *out) {
    evl_iter *it;
    evl_event ev;
    size_t n = 0;
    int rc;
    OK(evl_iter_open(log, q, &it));
    while ((rc = evl_iter_next(it, &ev)) == EVL_OK) out[n++] = ev.position;
    CHECK_RC(rc, EVL_END);
    evl_iter_close(it);
    return n;
}

/* @p q and its variants (backward, limited) against the reference. */
static size_t check_query(evl_log *log, evl_query q) {
    uint64_t got[N], want[N];
    size_t n_all = 0;
    for (int backward = 0; backward < 2; backward++)
        for (uint64_t limit = 0; limit < 4; limit += 3) {
            q.backward = backward;
            q.limit = limit;
            if (q.stream) q.from_revision = backward ? EVL_REV_ANY : 0;
            size_t n = run(log, &q, got), m = reference(log, &q, want);
            if (n != m || memcmp(got, want, n * sizeof *got)) {
                fprintf(stderr, "query actor=%s corr=%s type=%s cat=%s stream=%s backward=%d limit=%llu: "
                        "%zu events, want %zu\n", q.actor ? q.actor : "-",
                        q.correlation_id ? q.correlation_id : "-", q.type ? q.type : "-",
                        q.category ? q.category : "-", q.stream ? q.stream : "-", backward,
                        (unsigned long long)limit, n, m);
                exit(1);
            }
            if (!backward && !limit) n_all = n;
        }
    return n_all;
}

static int64_t time_at(evl_log *log, uint64_t pos) {
    uint8_t *raw;
    size_t len;
    evl_event ev;
    OK(evl_log_get(log, pos, &raw, &len));
    OK(evl_log_decode(raw, len, &ev));
    int64_t t = ev.time_ns;
    evl_free(raw);
    return t;
}

static void check_all(evl_log *log) {
    /* counts worked out by hand, so that the reference is checked too */
    CHECK(check_query(log, (evl_query){.actor = "bob"}) == 8);
    CHECK(check_query(log, (evl_query){.actor = "alice"}) == N - 8 - 4);
    CHECK(check_query(log, (evl_query){.actor = long_actor}) == 1);
    CHECK(check_query(log, (evl_query){.actor = ""}) == 1);
    CHECK(check_query(log, (evl_query){.actor = "nobody"}) == 0);
    CHECK(check_query(log, (evl_query){.correlation_id = "req-2"}) == 4);
    CHECK(check_query(log, (evl_query){.correlation_id = "req-3"}) == 3); /* 13 has no meta */
    CHECK(check_query(log, (evl_query){.correlation_id = "req-99"}) == 0);
    /* combined: bob is the smaller index under Created, Created under alice */
    CHECK(check_query(log, (evl_query){.actor = "bob", .type = "Created"}) == 4);
    CHECK(check_query(log, (evl_query){.actor = "alice", .type = "Updated"}) > 0);
    CHECK(check_query(log, (evl_query){.actor = "alice", .correlation_id = "req-2"}) == 2);
    CHECK(check_query(log, (evl_query){.actor = "bob", .correlation_id = "req-2"}) == 1);
    CHECK(check_query(log, (evl_query){.actor = "alice", .category = "task"}) > 0);
    CHECK(check_query(log, (evl_query){.actor = "alice", .stream = "task-2"}) > 0);
    CHECK(check_query(log, (evl_query){.actor = "bob", .stream = "job-7", .type = "Updated"}) > 0);
    CHECK(check_query(log, (evl_query){.actor = long_actor, .type = "Updated"}) == 1);
    CHECK(check_query(log, (evl_query){.type = "Updated", .category = "task"}) > 0);
    /* bounds: time and position, alone and together */
    int64_t t6 = time_at(log, 6), t30 = time_at(log, 30);
    CHECK(t6 < t30);
    CHECK(check_query(log, (evl_query){.actor = "alice", .since_ns = t6, .until_ns = t30}) > 0);
    CHECK(check_query(log, (evl_query){.correlation_id = "req-5", .since_ns = t30}) == 0);
    CHECK(check_query(log, (evl_query){.actor = "bob", .until_ns = t6}) == 2);
    CHECK(check_query(log, (evl_query){.actor = "alice", .from_position = 10, .until_position = 25}) > 0);
    CHECK(check_query(log, (evl_query){.actor = "bob", .from_position = 16}) > 0);
    CHECK(check_query(log, (evl_query){.actor = "alice", .type = "Created", .from_position = 3,
                                       .since_ns = t6, .until_ns = t30}) > 0);
}

/* Remove the audit indexes, as a log written before them has none. */
static void drop_audit_dbs(const char *dir) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    char path[600];
    snprintf(path, sizeof path, "%s/log", dir);
    CHECK(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, (size_t)1 << 30);
    CHECK(mdb_env_open(env, path, 0, 0644) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "actors", 0, &dbi) == 0 && mdb_drop(txn, dbi, 1) == 0);
    CHECK(mdb_dbi_open(txn, "correlations", 0, &dbi) == 0 && mdb_drop(txn, dbi, 1) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
}

/* Damage the actors index: @p del removes bob's entry for @p pos, else an
 * entry is added that no record backs. */
static void damage_actors(const char *dir, uint64_t pos, int del) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    char path[600];
    uint8_t pk[8];
    for (int i = 0; i < 8; i++) pk[i] = (uint8_t)(pos >> (56 - 8 * i));
    MDB_val k = {3, "bob"}, v = {8, pk};
    snprintf(path, sizeof path, "%s/log", dir);
    CHECK(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, (size_t)1 << 30);
    CHECK(mdb_env_open(env, path, 0, 0644) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "actors", MDB_DUPSORT | MDB_DUPFIXED, &dbi) == 0);
    CHECK((del ? mdb_del(txn, dbi, &k, &v) : mdb_put(txn, dbi, &k, &v, 0)) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
}

static void verify_fails(evl_log *log, const char *want) {
    char problem[512];
    CHECK_RC(evl_log_verify(log, problem, sizeof problem, NULL, NULL, NULL), EVL_ECORRUPT);
    if (!strstr(problem, want)) {
        fprintf(stderr, "verify said '%s', want '%s'\n", problem, want);
        exit(1);
    }
}

int main(void) {
    evl_log *log;
    evl_log_options rw, ro;
    evl_log_options_init(&rw);
    rw.sync = EVL_SYNC_NONE;
    rw.map_size = (uint64_t)1 << 30;
    ro = rw;
    ro.read_only = 1;
    memset(long_actor, 'x', sizeof long_actor - 1);
    const char *dir = test_path("data");

    OK(evl_log_open(dir, &rw, &log));
    fill(log);
    verify_ok(log, N);
    check_all(log);
    evl_log_close(log);

    /* a log from before the audit indexes: read-only answers by scanning */
    drop_audit_dbs(dir);
    OK(evl_log_open(dir, &ro, &log));
    verify_ok(log, N);
    check_all(log);
    evl_log_close(log);
    /* read-write creates and fills them; new appends go on indexing */
    OK(evl_log_open(dir, &rw, &log));
    verify_ok(log, N);
    check_all(log);
    evl_log_close(log);
    OK(evl_log_open(dir, &ro, &log));
    verify_ok(log, N);
    check_all(log);
    evl_log_close(log);

    /* verify names a missing and an extra entry (bob is at positions 1, 6, ...) */
    damage_actors(dir, 6, 1);
    OK(evl_log_open(dir, &ro, &log));
    verify_fails(log, "position 6: actors index lacks it (actor bob)");
    evl_log_close(log);
    damage_actors(dir, 6, 0);
    damage_actors(dir, 2, 0);
    OK(evl_log_open(dir, &ro, &log));
    verify_fails(log, "actors index has");
    evl_log_close(log);
    printf("ok audit_index_test\n");
    return 0;
}

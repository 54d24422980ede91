/* Projections: GET /projections[/{name}], POST /projections/{name}/rebuild,
 * GET|POST /projections/{name}/query, GET /projections/{name}/history/{table}/{key}.
 *
 * Status counts rows and a query runs SQLite, both possibly for a while, and
 * `min_position` waits for a projector: all of it runs on the pool, never
 * on an event loop.  The wait is taken in slices of 100 ms so that a stop
 * does not have to outlast a 60-second read-your-writes timeout.  Asking for
 * a rebuild parses the spec (every statement is prepared), so it runs on the
 * pool too; the rebuild itself runs on the engine's threads, and the answer
 * (202) only says where to follow it.
 */
#include <inttypes.h>
#include <stdio.h>

#include "server/srv_int.h"

#define WAIT_SLICE_MS 100

typedef struct pjob {
    srv_job job;
    srv_rsp rsp;
    char name[EVL_PROJ_MAX_NAME + 1];
    int one;                   /* status of `name` only */
    char *sql;
    json_t *params;
    char *table, *key, *column; /* history */
    uint64_t min_position;
    int has_min;
    int has_asof;              /* as_of: a position, or a time (asof_time) to resolve */
    uint64_t asof_pos;
    int64_t asof_time;
    int asof_is_time, asof_cached;
    int64_t deadline;          /* monotonic ns, for the wait */
    evl_proj_query_opts opts;
    int rc;
    json_t *result;
    char err[512];
} pjob;

static void pjob_free(pjob *p) {
    evl_free(p->sql);
    evl_free(p->table);
    evl_free(p->key);
    evl_free(p->column);
    json_decref(p->params);
    json_decref(p->result);
    evl_free(p);
}

/* A job for the pool; NULL (answered 503) without memory.  The caller fills
 * it and submits it; its run() answers on the worker and frees it. */
static pjob *pjob_new(srv_req *q, void (*work)(srv_job *), void (*run)(srv_worker *, srv_msg *)) {
    pjob *p = evl_calloc(1, sizeof *p);
    if (!p) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return NULL;
    }
    p->job.msg.run = run;
    p->job.w = q->rsp.w;
    p->job.work = work;
    p->rsp = q->rsp;
    if (q->n_seg > 1) snprintf(p->name, sizeof p->name, "%s", q->seg[1]);
    return p;
}

/* 0: the projection exists; -1: answered 404. */
static int known(srv_req *q) {
    evl_proj_engine *eng = q->rsp.w->srv->eng;
    if (eng && strlen(q->seg[1]) <= EVL_PROJ_MAX_NAME && evl_proj_db_path(eng, q->seg[1])) return 0;
    evl__srv_problem(&q->rsp, 404, "not-found", NULL, "no projection named %s", q->seg[1]);
    return -1;
}

/* ------------------------------------------------------------- status */

/* Seconds to the millisecond: status is dumped with STATUS_DIGITS
 * significant digits, so that 0.1 reads 0.1 rather than 0.10000000000000001. */
#define STATUS_DIGITS 10
static json_t *seconds(double s) {
    return json_real((double)(int64_t)(s * 1000 + 0.5) / 1000);
}

/* The engine's figures are never negative, except an unknown ETA (-1). */
static json_int_t rounded(double v) { return (json_int_t)(v + 0.5); }
static json_int_t rounded_up(double v) { return (json_int_t)v + ((double)(json_int_t)v < v); }

/* Progress of the rebuild in flight.  The engine's rate counts positions of
 * the log (events read), not only the events its handlers applied: that is
 * what the ETA divides. */
static json_t *rebuild_json(const evl_proj_status *st) {
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:o,s:o}", "spec_hash", st->rebuild_hash, "position",
                     (json_int_t)st->rebuild_position, "head", (json_int_t)st->head, "applied",
                     (json_int_t)st->rebuild_applied, "events_per_second",
                     rounded(st->rebuild_rate), "eta_seconds",
                     st->rebuild_eta < 0 ? json_null() : json_integer(rounded_up(st->rebuild_eta)),
                     "elapsed_seconds", seconds(st->rebuild_seconds));
}

static json_t *status_json(const evl_proj_status *st) {
    json_t *tabs = json_object();
    for (size_t t = 0; tabs && t < st->n_tables; t++)
        json_object_set_new(tabs, st->tables[t].name, json_integer((json_int_t)st->tables[t].rows));
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:o*}", "name", st->name, "file", st->file,
                          "state", evl_proj_state_name(st->state), "checkpoint", (json_int_t)st->checkpoint,
                          "head", (json_int_t)st->head, "lag", (json_int_t)st->lag, "events_applied",
                          (json_int_t)st->events_applied, "spec_hash", st->spec_hash, "tables", tabs);
    if (o && st->state == EVL_PROJ_FAULTED) {
        json_object_set_new(o, "fault_position", json_integer((json_int_t)st->fault_position));
        json_object_set_new(o, "fault_type", st->fault_type ? json_string(st->fault_type) : json_null());
    }
    if (o) json_object_set_new(o, "error", st->error ? json_string(st->error) : json_null());
    if (o) json_object_set_new(o, "generation", json_integer((json_int_t)st->generation));
    if (o && st->rebuild_active) json_object_set_new(o, "rebuild", rebuild_json(st));
    if (o && st->rebuild_error) json_object_set_new(o, "rebuild_error", json_string(st->rebuild_error));
    return o;
}

static void status_work(srv_job *j) {
    pjob *p = (pjob *)j;
    evl_proj_status *st;
    size_t n;
    p->rc = evl_proj_status_get(j->w->srv->eng, p->one ? p->name : NULL, &st, &n);
    if (p->rc) return;
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) json_array_append_new(list, status_json(&st[i]));
    evl_proj_status_free(st, n);
    if (p->one && list) {
        p->result = json_incref(json_array_get(list, 0));
        json_decref(list);
    } else {
        p->result = list;
    }
    if (!p->result) p->rc = EVL_ENOMEM;
}

static void status_run(srv_worker *w, srv_msg *m) {
    pjob *p = (pjob *)m;
    w->inflight--;
    if (p->rc == EVL_OK) {
        evl__srv_reply_json_digits(&p->rsp, 200, p->result, STATUS_DIGITS);
    } else if (p->rc == EVL_ENOTFOUND) {
        evl__srv_problem(&p->rsp, 404, "not-found", NULL, "no projection named %s", p->name);
    } else {
        const char *slug;
        int code = evl__srv_err_status(p->rc, &slug);
        evl__srv_problem(&p->rsp, code, slug, NULL, "projection status: %s", evl_strerror(p->rc));
    }
    pjob_free(p);
}

void evl__srv_proj_list(srv_req *q) {
    if (!q->rsp.w->srv->eng) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "projections are not running");
        return;
    }
    if (q->n_seg == 2 && known(q)) return;
    pjob *p = pjob_new(q, status_work, status_run);
    if (!p) return;
    p->one = q->n_seg == 2;
    evl__srv_pool_submit(q->rsp.w->srv->pool, &p->job);
}

/* ------------------------------------------------------------ rebuild */

static void rebuild_work(srv_job *j) {
    pjob *p = (pjob *)j;
    evl_srv *srv = j->w->srv;
    p->rc = evl_proj_rebuild(srv->eng, p->name);
    /* The engine logs the start and the end of the rebuild (and nothing
     * when one is already on its way); this line says it was asked for. */
    if (p->rc == EVL_OK)
        evl__srv_say(srv, "projection %s: rebuild requested (POST /projections/%s/rebuild)", p->name,
                     p->name);
    else
        evl__srv_say(srv, "projection %s: rebuild refused: %s", p->name, evl_strerror(p->rc));
}

/* 202 with where to follow it: the status shows `rebuilding` with a
 * `rebuild` object until the new table takes over (generation + 1) or the
 * rebuild fails (`rebuild_error`, the old table still serving). */
static void rebuild_accepted(pjob *p) {
    char status[sizeof p->name + 16];
    snprintf(status, sizeof status, "/projections/%s", p->name);
    json_t *body = json_pack("{s:s,s:s,s:s}", "projection", p->name, "state", "rebuilding", "status", status);
    if (!body) {
        evl__srv_problem(&p->rsp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    evl__srv_add_header(p->rsp.req, "Location", status);
    evl__srv_reply_json(&p->rsp, 202, body);
    json_decref(body);
}

static void rebuild_run(srv_worker *w, srv_msg *m) {
    pjob *p = (pjob *)m;
    w->inflight--;
    if (p->rc == EVL_OK) {
        rebuild_accepted(p);
    } else if (p->rc == EVL_ENOTFOUND) {
        evl__srv_problem(&p->rsp, 404, "not-found", NULL, "no projection named %s", p->name);
    } else {
        const char *slug;
        int code = evl__srv_err_status(p->rc, &slug);
        evl__srv_problem(&p->rsp, code, slug, json_pack("{s:s}", "projection", p->name),
                         "rebuild of projection %s: %s", p->name, evl_strerror(p->rc));
    }
    pjob_free(p);
}

void evl__srv_proj_rebuild(srv_req *q) {
    if (!q->rsp.w->srv->eng) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "projections are not running");
        return;
    }
    if (known(q)) return;
    pjob *p = pjob_new(q, rebuild_work, rebuild_run);
    if (p) evl__srv_pool_submit(q->rsp.w->srv->pool, &p->job);
}

/* -------------------------------------------------------------- query */

/* as_of: the projection as it stood at a position, or at the last event
 * committed at or before a time (the time index, as `evlog replay --until
 * TIME`), from the cache of point-in-time builds. */
static void asof_work(pjob *p, evl_srv *srv) {
    if (p->asof_is_time) {
        uint64_t first_after;
        if ((p->rc = evl_log_position_at(srv->log, p->asof_time + 1, &first_after))) return;
        p->asof_pos = first_after - 1;
    }
    p->rc = evl_proj_asof_query(srv->asof, p->name, p->asof_pos, p->sql, p->params, &p->opts, &p->result,
                                &p->asof_cached, p->err, sizeof p->err);
    if (p->rc == EVL_OK) {
        json_t *pos = json_object_get(p->result, "position");
        json_object_set_new(p->result, "as_of", json_pack("{s:O,s:b}", "position", pos, "cached", p->asof_cached));
    }
}

static void query_work(srv_job *j) {
    pjob *p = (pjob *)j;
    evl_srv *srv = j->w->srv;
    if (p->has_asof) {
        asof_work(p, srv);
        return;
    }
    if (p->has_min) {
        for (;;) {
            int64_t left = (p->deadline - evl__srv_mono_ns()) / 1000000;
            if (left <= 0) {
                p->rc = EVL_ETIMEDOUT;
                break;
            }
            p->rc = evl_proj_wait(srv->eng, p->name, p->min_position,
                                  left < WAIT_SLICE_MS ? (int)left : WAIT_SLICE_MS);
            if (p->rc != EVL_ETIMEDOUT) break;
            if (atomic_load(&srv->stopping)) {
                p->rc = EVL_ECLOSED;
                break;
            }
        }
        if (p->rc) return;
    }
    /* timeout_ms bounds the whole request: what the wait left is what the
     * statement may run (its progress handler stops it there) */
    int64_t left_ms = (p->deadline - evl__srv_mono_ns()) / 1000000;
    p->opts.timeout_ms = left_ms < 1 ? 1 : left_ms > INT32_MAX ? INT32_MAX : (int)left_ms;
    p->rc = evl_proj_query(srv->eng, p->name, p->sql, p->params, &p->opts, &p->result, p->err,
                           sizeof p->err);
}

static void query_run(srv_worker *w, srv_msg *m) {
    pjob *p = (pjob *)m;
    w->inflight--;
    const char *slug;
    int code = evl__srv_err_status(p->rc, &slug);
    if (p->rc == EVL_OK)
        evl__srv_reply_json(&p->rsp, 200, p->result);
    else if (p->rc == EVL_ETIMEDOUT)
        evl__srv_problem(&p->rsp, 504, "timeout",
                         json_pack("{s:s,s:I}", "projection", p->name, "min_position",
                                   (json_int_t)p->min_position),
                         "projection %s did not reach position %" PRIu64 " in time", p->name,
                         p->min_position);
    else if (p->rc == EVL_EFAULTED)
        evl__srv_problem(&p->rsp, code, slug, json_pack("{s:s}", "projection", p->name),
                         "projection %s is faulted before position %" PRIu64
                         "; GET /projections/%s says why", p->name, p->min_position, p->name);
    else
        evl__srv_problem(&p->rsp, code, slug, NULL, "%s", p->err[0] ? p->err : evl_strerror(p->rc));
    pjob_free(p);
}

/* A GET parameter p.NAME: JSON when it parses as a scalar (42, true, null,
 * "x"), else text, like the CLI's --param. */
static json_t *param_value(const char *v) {
    json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
    if (j && (json_is_object(j) || json_is_array(j))) {
        json_decref(j);
        j = NULL;
    }
    return j ? j : json_string(v);
}

static int bad(srv_req *q, const char *msg) {
    evl__srv_problem(&q->rsp, 400, "bad-request", NULL, "%s", msg);
    return -1;
}

/* The request as JSON: the POST body, or the GET parameters. */
static int query_input(srv_req *q, json_t **out) {
    *out = NULL;
    if (q->method == EVHTTP_REQ_POST) {
        size_t len;
        const uint8_t *body = evl__srv_body(q->rsp.req, &len);
        if (evl__srv_body_is_mp(q->rsp.req)) {
            if (evl_mp_check(body, len, EVL_MAX_DEPTH, 0, NULL) ||
                evl_json_from_msgpack(body, len, out))
                return bad(q, "malformed msgpack body");
        } else {
            json_error_t je;
            if (!(*out = json_loadb((const char *)body, len, 0, &je))) {
                char msg[300];
                snprintf(msg, sizeof msg, "malformed JSON: %s (line %d, column %d)", je.text, je.line,
                         je.column);
                return bad(q, msg);
            }
        }
        if (!json_is_object(*out)) return bad(q, "the body must be {\"sql\": ..., \"params\"?: {...}}");
        return 0;
    }
    json_t *o = json_object(), *params = json_object();
    for (int i = 0; o && params && i < q->n_param; i++) {
        const srv_kv *kv = &q->param[i];
        if (!strncmp(kv->key, "p.", 2)) json_object_set_new(params, kv->key + 2, param_value(kv->val));
        else if (!strcmp(kv->key, "sql")) json_object_set_new(o, "sql", json_string(kv->val));
        else json_object_set_new(o, kv->key, param_value(kv->val));
    }
    if (!o || !params) {
        json_decref(o);
        json_decref(params);
        return bad(q, "out of memory");
    }
    json_object_set_new(o, "params", params);
    *out = o;
    return 0;
}

static int uint_member(srv_req *q, json_t *in, const char *name, uint64_t max, uint64_t *v, int *given) {
    json_t *j = json_object_get(in, name);
    *given = j && !json_is_null(j);
    if (!*given) return 0;
    if (json_is_integer(j) && json_integer_value(j) >= 0 && (uint64_t)json_integer_value(j) <= max) {
        *v = (uint64_t)json_integer_value(j);
        return 0;
    }
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be an integer 0..%" PRIu64, name, max);
    return bad(q, msg);
}

void evl__srv_proj_query(srv_req *q) {
    const evl_srv_config *cfg = &q->rsp.w->srv->cfg;
    if (known(q)) return;
    json_t *in;
    if (query_input(q, &in)) {
        json_decref(in);
        return;
    }
    json_t *sql = json_object_get(in, "sql"), *params = json_object_get(in, "params");
    uint64_t min = 0, timeout = cfg->query_timeout_ms, rows = 0;
    int has_min, has_t, has_rows;
    json_t *asof = json_object_get(in, "as_of");
    int64_t asof_time = 0;
    int asof_bad = asof && !json_is_null(asof) &&
                   !(json_is_integer(asof) && json_integer_value(asof) >= 0) &&
                   !(json_is_string(asof) &&
                     evl_time_parse(json_string_value(asof), json_string_length(asof), &asof_time) == EVL_OK);
    int has_asof = asof && !json_is_null(asof) && !asof_bad;
    if (!json_is_string(sql) || !json_string_length(sql)) {
        bad(q, "sql is missing: one read-only SQL statement");
    } else if (asof_bad) {
        bad(q, "as_of must be a position (an integer >= 0) or an ISO-8601 UTC time");
    } else if (has_asof && json_object_get(in, "min_position") && !json_is_null(json_object_get(in, "min_position"))) {
        bad(q, "as_of and min_position do not combine: as_of reads the log, not the live table");
    } else if (params && !json_is_null(params) && !json_is_object(params) && !json_is_array(params)) {
        bad(q, "params must be an object (named) or an array (positional)");
    } else if (!uint_member(q, in, "min_position", UINT64_MAX >> 1, &min, &has_min) &&
               !uint_member(q, in, "timeout_ms", cfg->query_max_timeout_ms, &timeout, &has_t) &&
               !uint_member(q, in, "max_rows", 1000000, &rows, &has_rows)) {
        pjob *p = pjob_new(q, query_work, query_run);
        size_t n = json_string_length(sql);
        if (p && (p->sql = evl_malloc(n + 1))) {
            memcpy(p->sql, json_string_value(sql), n + 1);
            p->params = params && !json_is_null(params) ? json_incref(params) : NULL;
            p->has_min = has_min && min > 0;
            p->job.waits = p->has_min;
            p->min_position = min;
            p->deadline = q->rsp.t0 + (int64_t)timeout * 1000000;
            p->opts.max_rows = has_rows ? (size_t)rows : 0;
            p->has_asof = has_asof;
            p->asof_is_time = has_asof && json_is_string(asof);
            p->asof_time = asof_time;
            p->asof_pos = has_asof && json_is_integer(asof) ? (uint64_t)json_integer_value(asof) : 0;
            evl__srv_pool_submit(q->rsp.w->srv->pool, &p->job);
        } else if (p) {
            pjob_free(p);
            evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        }
    }
    json_decref(in);
}

/* ------------------------------------------------------------ history */

static void history_work(srv_job *j) {
    pjob *p = (pjob *)j;
    p->rc = evl_proj_history(j->w->srv->eng, p->name, p->table, p->key, p->column, &p->result, p->err,
                             sizeof p->err);
    if (p->rc == EVL_OK) json_object_set_new(p->result, "projection", json_string(p->name));
}

static void history_run(srv_worker *w, srv_msg *m) {
    pjob *p = (pjob *)m;
    w->inflight--;
    const char *slug;
    int code = evl__srv_err_status(p->rc, &slug);
    if (p->rc == EVL_OK)
        evl__srv_reply_json(&p->rsp, 200, p->result);
    else if (p->rc == EVL_ENOTFOUND)
        evl__srv_problem(&p->rsp, 404, "not-found", json_pack("{s:s,s:s}", "projection", p->name, "table", p->table),
                         "%s", p->err[0] ? p->err : evl_strerror(p->rc));
    else if (p->rc == EVL_EINVAL)
        evl__srv_problem(&p->rsp, 400, "bad-request", NULL, "%s", p->err);
    else
        evl__srv_problem(&p->rsp, code, slug, NULL, "%s", p->err[0] ? p->err : evl_strerror(p->rc));
    pjob_free(p);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = evl_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* GET /projections/{name}/history/{table}/{key}[?column=NAME] */
void evl__srv_proj_history(srv_req *q) {
    if (!q->rsp.w->srv->eng) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "projections are not running");
        return;
    }
    if (known(q)) return;
    const char *column = NULL;
    for (int i = 0; i < q->n_param; i++) {
        if (!strcmp(q->param[i].key, "column")) column = q->param[i].val;
        else {
            evl__srv_problem(&q->rsp, 400, "bad-request", NULL, "unknown parameter %s (known: column)", q->param[i].key);
            return;
        }
    }
    if (column && !*column) {
        evl__srv_problem(&q->rsp, 400, "bad-request", NULL, "column is empty");
        return;
    }
    pjob *p = pjob_new(q, history_work, history_run);
    if (!p) return;
    if (!(p->table = dup_str(q->seg[3])) || !(p->key = dup_str(q->seg[4])) || (column && !(p->column = dup_str(column)))) {
        pjob_free(p);
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    evl__srv_pool_submit(q->rsp.w->srv->pool, &p->job);
}

/* ------------------------------------------------------------- digest */

/* GET /projections/{name}/digest: evl_proj_digest_get() on the pool (it reads
 * every row), the same JSON as `evlog digest --projection NAME`. */
static void digest_work(srv_job *j) {
    pjob *p = (pjob *)j;
    evl_proj_digest d;
    p->rc = evl_proj_digest_get(j->w->srv->eng, p->name, &d, p->err, sizeof p->err);
    if (p->rc) return;
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d.hash[i]);
    p->result = json_pack("{s:s,s:I,s:s,s:I,s:I}", "projection", p->name, "position", (json_int_t)d.position,
                          "hash", hex, "tables", (json_int_t)d.tables, "rows", (json_int_t)d.rows);
    if (!p->result) p->rc = EVL_ENOMEM;
}

static void digest_run(srv_worker *w, srv_msg *m) {
    pjob *p = (pjob *)m;
    w->inflight--;
    if (p->rc == EVL_OK) {
        evl__srv_reply_json(&p->rsp, 200, p->result);
    } else {
        const char *slug;
        int code = evl__srv_err_status(p->rc, &slug);
        evl__srv_problem(&p->rsp, code, slug, NULL, "digest of %s: %s", p->name,
                         p->err[0] ? p->err : evl_strerror(p->rc));
    }
    pjob_free(p);
}

void evl__srv_proj_digest(srv_req *q) {
    if (!q->rsp.w->srv->eng) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "projections are not running");
        return;
    }
    if (known(q)) return;
    pjob *p = pjob_new(q, digest_work, digest_run);
    if (!p) return;
    evl__srv_pool_submit(q->rsp.w->srv->pool, &p->job);
}

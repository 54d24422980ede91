/* The workload generator (API in gen.h, event catalogue in docs/events.md).
 *
 * Design: each service keeps a pool of entities in flight, each with a small
 * state machine and a "fate" drawn when it is created (succeed, fail at this
 * step, be killed ...).  evl_gen_next() picks a service by weight, then either
 * creates an entity (when its pool is below target) or advances a random one
 * by one step, which emits that step's events.  Random choice of the entity
 * is what interleaves lifecycles.  Every step emits at least one event, so a
 * call always returns a batch.
 *
 * The generator must never emit an event the projections would reject, so
 * the pools mirror what the tables hold: parents exist before children
 * (foreign keys are enforced by the engine), unique names stay unique, and
 * an entity deleted from a table is dropped from every pool that could
 * reference it.
 *
 * Events are packed straight into msgpack-c sbuffers, one per event, reused
 * from call to call.  A data map's size is only known once its fields are
 * written, so its header is reserved as a map32 and shrunk to the minimal
 * form when the event is closed (the stored record stays canonical). */
#include "gen.h"

#include <msgpack.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "evlog/evlog.h"

#define MAX_STREAMS 6
#define MAX_EVENTS 16
#define NAME_LEN 128

#define MS 1000000LL
#define SEC (1000 * MS)
#define MINUTE (60 * SEC)
#define HOUR (60 * MINUTE)
#define DAY (24 * HOUR)

/* 2025-12-18T10:30:00Z, the creation time of the seed's example job. */
#define CLOCK_START (1766053800LL * SEC)

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ================================================================ state */

/* ---- jobs */
enum { JOB_QUEUED, JOB_RUNNING };
enum { JF_OK, JF_NOTFOUND, JF_NETWORK, JF_EARLY };
#define JOBS_MAX 64
typedef struct job {
    char id[37];
    uint8_t model, state, fate;
    int64_t total, done;
} job;
typedef struct jobs_state {
    job a[JOBS_MAX];
    size_t n;
    uint64_t steps, next_purge;
} jobs_state;

/* ---- tasks and nodes */
#define NODES_N 12
typedef struct node {
    char host[24];
    int gpus, cores, numa, vm;
    int64_t mem;
    bool registered, online;
    uint32_t restarts;
} node;
enum { T_PENDING_APPROVAL, T_PENDING, T_ASSIGNING, T_RUNNING, T_PAUSED };
#define TASKS_MAX 96
typedef struct task {
    int64_t id;
    uint8_t state, vps, qemu, gpu;
    int node, work, susp, owner;
} task;
typedef struct tasks_state {
    node nodes[NODES_N];
    size_t n_registered;
    task a[TASKS_MAX];
    size_t n;
    uint32_t seq, worker;
    int64_t batch_seq;
} tasks_state;

/* ---- auth */
#define USERS_MAX 256
#define GROUPS_MAX 12
#define INVS_MAX 32
#define SESS_MAX 128
#define TOKENS_MAX 96
#define GRANTS_MAX 64
#define VPS_IDS 24
typedef struct auser { int64_t id; uint8_t role, active; } auser;
typedef struct agroup { int64_t id; } agroup;
typedef struct ainv { int64_t id, group; int max, used; int64_t expires; uint8_t role; } ainv;
typedef struct asess { int64_t id, user, expires; } asess;
typedef struct atoken { int64_t id, user; } atoken;
typedef struct agrant { int64_t user, vps; } agrant;
typedef struct auth_state {
    int64_t base, next_user, next_group, next_inv, next_sess, next_token;
    auser users[USERS_MAX];
    size_t n_users;
    agroup groups[GROUPS_MAX];
    size_t n_groups;
    ainv invs[INVS_MAX];
    size_t n_invs;
    asess sess[SESS_MAX];
    size_t n_sess;
    atoken tokens[TOKENS_MAX];
    size_t n_tokens;
    agrant grants[GRANTS_MAX];
    size_t n_grants;
    int64_t vps_ids[VPS_IDS];
    uint64_t steps, next_sweep;
} auth_state;

/* ---- FUSION runs */
enum { FR_PENDING, FR_RUNNING };
enum { FRF_OK, FRF_FAIL_START, FRF_CANCEL_START, FRF_FAIL, FRF_CANCEL };
#define FRUNS_MAX 16
#define FDONE_MAX 32
typedef struct frun {
    char id[13];
    uint8_t state, fate;
    int erlangs, iters, cur_e, cur_i, fail_at;
    int erlang_start, erlang_step;
} frun;
typedef struct fruns_state {
    frun a[FRUNS_MAX];
    size_t n;
    char done[FDONE_MAX][13];
    size_t n_done;
} fruns_state;

/* ---- KARR */
#define AGENTS_N 6
#define KRUNS_MAX 8
#define KCAMP_MAX 3
#define KQT_MAX 4
#define KDONE_MAX 32
typedef struct kagent { char id[37], name[48]; int profile; bool registered; } kagent;
typedef struct krun {
    char id[37];
    int agent, suite, next, total, passed, model, engine;
    double secs;
} krun;
typedef struct kcamp {
    char id[37];
    int agent, total, ok, bad, skip, started, fail;
} kcamp;
typedef struct kqt { char id[37]; int agent, started, model, engine, bench; } kqt;
typedef struct karr_state {
    kagent agents[AGENTS_N];
    size_t n_registered;
    krun runs[KRUNS_MAX];
    size_t n_runs;
    kcamp camps[KCAMP_MAX];
    size_t n_camps;
    kqt qts[KQT_MAX];
    size_t n_qts;
    char done[KDONE_MAX][37];
    size_t n_done;
} karr_state;

/* ---- SaaS */
enum { SJ_DRAFT, SJ_PENDING, SJ_PROVISIONING, SJ_RUNNING, SJ_REPORTING, SJ_STORED };
#define SJOBS_MAX 24
#define ACCTS_MAX 128
typedef struct sjob {
    int64_t id, user, retry_of;
    uint8_t state, enrich, enriched, tier;
    int retry_count, stage, beats, fail_at;
} sjob;
typedef struct saas_state {
    int64_t base, next_acct, next_job;
    int64_t accts[ACCTS_MAX];
    uint8_t verified[ACCTS_MAX];
    size_t n_accts;
    sjob a[SJOBS_MAX];
    size_t n;
    int routing_done, experimental;
    int64_t done[16];
    size_t n_done;
} saas_state;

struct evl_gen {
    uint64_t s[4];           /* xoshiro256** */
    unsigned services;
    int64_t clock;           /* simulated time of the last event, ns */

    /* the batch being built / returned */
    evl_stream_in streams[MAX_STREAMS];
    evl_event_in events[MAX_EVENTS];
    msgpack_sbuffer data[MAX_EVENTS], meta[MAX_EVENTS];
    bool has_meta[MAX_EVENTS];
    char names[MAX_STREAMS][NAME_LEN];
    size_t n_streams, n_events;
    bool open;               /* the last event's map is still being written */
    uint32_t nfields;
    msgpack_sbuffer *cur;
    msgpack_packer pk;
    bool oom;
    char tmp[1024];

    jobs_state jobs;
    tasks_state tasks;
    auth_state auth;
    fruns_state fruns;
    karr_state karr;
    saas_state saas;
};

/* ================================================================ random */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rnd(evl_gen *g) {
    uint64_t *s = g->s, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, n); the modulo bias is irrelevant for a workload. */
static uint64_t below(evl_gen *g, uint64_t n) { return n ? rnd(g) % n : 0; }
static int64_t range(evl_gen *g, int64_t lo, int64_t hi) { return lo + (int64_t)below(g, (uint64_t)(hi - lo + 1)); }
static bool chance(evl_gen *g, unsigned permille) { return below(g, 1000) < permille; }
static double frand(evl_gen *g) { return (double)(rnd(g) >> 11) * 0x1.0p-53; }
static double round_to(double x, double unit) { return (double)(int64_t)(x / unit + 0.5) * unit; }
#define PICK(g, arr) ((arr)[below((g), COUNT(arr))])

static void hexs(evl_gen *g, char *out, size_t n) {
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) out[i] = hx[rnd(g) & 15];
    out[n] = 0;
}

/* A random (version 4) UUID. */
static void uuid4(evl_gen *g, char out[37]) {
    uint8_t b[16];
    uint64_t a = rnd(g), c = rnd(g);
    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    evl_uuid_format(b, out);
}

/* ================================================================ batch builder */

static int sb_write(void *data, const char *buf, size_t len) {
    evl_gen *g = data;
    int rc = msgpack_sbuffer_write(g->cur, buf, len);
    if (rc) g->oom = true;
    return rc;
}

/* Close the open event: shrink the reserved map32 header to the minimal one. */
static void ev_close(evl_gen *g) {
    if (!g->open) return;
    g->open = false;
    size_t i = g->n_events - 1;
    msgpack_sbuffer *sb = &g->data[i];
    if (!g->oom && sb->size >= 5) {
        uint32_t n = g->nfields;
        size_t hdr = n <= 15 ? 1 : n <= 0xffff ? 3 : 5;
        if (hdr == 1) {
            sb->data[0] = (char)(0x80 | n);
        } else if (hdr == 3) {
            sb->data[0] = (char)0xde;
            sb->data[1] = (char)(n >> 8);
            sb->data[2] = (char)n;
        } else {
            sb->data[1] = (char)(n >> 24);
            sb->data[2] = (char)(n >> 16);
            sb->data[3] = (char)(n >> 8);
            sb->data[4] = (char)n;
        }
        if (hdr < 5) {
            memmove(sb->data + hdr, sb->data + 5, sb->size - 5);
            sb->size -= 5 - hdr;
        }
    }
    g->events[i].data = sb->data;
    g->events[i].data_len = sb->size;
    if (g->has_meta[i]) {
        g->events[i].meta = g->meta[i].data;
        g->events[i].meta_len = g->meta[i].size;
    }
}

static void b_reset(evl_gen *g) {
    g->n_streams = g->n_events = 0;
    g->open = false;
}

/* Start a new stream in the batch. */
__attribute__((format(printf, 3, 4))) static void b_stream(evl_gen *g, uint64_t expected,
                                                            const char *fmt, ...) {
    ev_close(g);
    size_t i = g->n_streams++;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->names[i], NAME_LEN, fmt, ap);
    va_end(ap);
    g->streams[i] = (evl_stream_in){.stream = g->names[i], .expected = expected,
                                    .events = &g->events[g->n_events], .n_events = 0};
}

static void pk_str(evl_gen *g, const char *s) { msgpack_pack_str_with_body(&g->pk, s, strlen(s)); }

static void key(evl_gen *g, const char *k) {
    g->nfields++;
    pk_str(g, k);
}

static void f_str(evl_gen *g, const char *k, const char *v) {
    key(g, k);
    if (v) pk_str(g, v);
    else msgpack_pack_nil(&g->pk);
}

__attribute__((format(printf, 3, 4))) static void f_fmt(evl_gen *g, const char *k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->tmp, sizeof g->tmp, fmt, ap);
    va_end(ap);
    f_str(g, k, g->tmp);
}

__attribute__((format(printf, 2, 3))) static void p_fmt(evl_gen *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->tmp, sizeof g->tmp, fmt, ap);
    va_end(ap);
    pk_str(g, g->tmp);
}

static void f_int(evl_gen *g, const char *k, int64_t v) {
    key(g, k);
    msgpack_pack_int64(&g->pk, v);
}
static void f_dbl(evl_gen *g, const char *k, double v) {
    key(g, k);
    msgpack_pack_double(&g->pk, v);
}
static void f_bool(evl_gen *g, const char *k, bool v) {
    key(g, k);
    if (v) msgpack_pack_true(&g->pk);
    else msgpack_pack_false(&g->pk);
}
static void f_nil(evl_gen *g, const char *k) {
    key(g, k);
    msgpack_pack_nil(&g->pk);
}
static void f_time(evl_gen *g, const char *k, int64_t ns) {
    char t[40];
    evl_time_format(ns, 3, t);
    f_str(g, k, t);
}
/* A nested map or array under key k; its elements follow (not counted). */
static void f_map(evl_gen *g, const char *k, uint32_t n) {
    key(g, k);
    msgpack_pack_map(&g->pk, n);
}
static void f_arr(evl_gen *g, const char *k, uint32_t n) {
    key(g, k);
    msgpack_pack_array(&g->pk, n);
}
/* key/value pairs inside a nested map */
static void m_str(evl_gen *g, const char *k, const char *v) {
    pk_str(g, k);
    pk_str(g, v);
}
static void m_int(evl_gen *g, const char *k, int64_t v) {
    pk_str(g, k);
    msgpack_pack_int64(&g->pk, v);
}
static void m_dbl(evl_gen *g, const char *k, double v) {
    pk_str(g, k);
    msgpack_pack_double(&g->pk, v);
}
static void m_bool(evl_gen *g, const char *k, bool v) {
    pk_str(g, k);
    if (v) msgpack_pack_true(&g->pk);
    else msgpack_pack_false(&g->pk);
}

/* Start an event in the current stream.  Each event advances the simulated
 * clock and carries it as `at`. */
static void ev(evl_gen *g, const char *type) {
    ev_close(g);
    size_t i = g->n_events++;
    g->streams[g->n_streams - 1].n_events++;
    g->events[i] = (evl_event_in){.type = type};
    g->has_meta[i] = false;
    g->cur = &g->data[i];
    msgpack_sbuffer_clear(g->cur);
    msgpack_packer_init(&g->pk, g, sb_write);
    static const char map32[5] = {(char)0xdf, 0, 0, 0, 0};
    sb_write(g, map32, sizeof map32);
    g->nfields = 0;
    g->open = true;
    g->clock += range(g, 1, 40) * MS;
    f_time(g, "at", g->clock);
}

/* The person or component behind the current event, in its meta map. */
__attribute__((format(printf, 2, 3))) static void ev_actor(evl_gen *g, const char *fmt, ...) {
    size_t i = g->n_events - 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->tmp, sizeof g->tmp, fmt, ap);
    va_end(ap);
    msgpack_sbuffer *keep = g->cur;
    g->cur = &g->meta[i];
    msgpack_sbuffer_clear(g->cur);
    msgpack_packer mp;
    msgpack_packer_init(&mp, g, sb_write);
    msgpack_pack_map(&mp, 1);
    msgpack_pack_str_with_body(&mp, "actor", 5);
    msgpack_pack_str_with_body(&mp, g->tmp, strlen(g->tmp));
    g->cur = keep;
    g->has_meta[i] = true;
}

/* ================================================================ jobs */

static const struct {
    const char *name;
    int64_t bytes;
} MODELS[] = {
    {"gpt2", 548118077},
    {"Qwen/Qwen3-0.6B", 1503300328},
    {"Qwen/Qwen3-4B", 8044982080},
    {"meta-llama/Llama-3.2-1B", 2471645608},
    {"TinyLlama/TinyLlama-1.1B-Chat-v1.0", 2200119864},
    {"microsoft/phi-2", 5564892352},
    {"google/gemma-2b", 5012344832},
    {"mistralai/Mistral-7B-Instruct-v0.3", 14496078512},
    {"invalid/model-name", 0},
};
#define MODEL_INVALID (COUNT(MODELS) - 1)

static const char *const QUANTIZE[] = {"auto", "auto", "q4", "fp16", "no"};

static void job_remove(jobs_state *js, size_t i) { js->a[i] = js->a[--js->n]; }

static void jobs_step(evl_gen *g) {
    jobs_state *js = &g->jobs;
    js->steps++;
    if (js->steps >= js->next_purge) {
        /* delete_old_jobs: rows created more than 10 simulated minutes ago */
        js->next_purge = js->steps + (uint64_t)range(g, 700, 1300);
        b_stream(g, EVL_REV_ANY, "retention-jobs");
        ev(g, "JobsPurged");
        f_time(g, "before", g->clock - 10 * MINUTE);
        ev_actor(g, "job-server/retention");
        return;
    }
    if (js->n < 48 && (js->n == 0 || chance(g, 200))) {
        job *j = &js->a[js->n++];
        uuid4(g, j->id);
        j->model = (uint8_t)(chance(g, 50) ? MODEL_INVALID : below(g, MODEL_INVALID));
        j->state = JOB_QUEUED;
        j->total = MODELS[j->model].bytes;
        j->done = 0;
        j->fate = j->model == MODEL_INVALID ? JF_NOTFOUND
                  : chance(g, 70)           ? JF_NETWORK
                  : chance(g, 20)           ? JF_EARLY
                                            : JF_OK;
        b_stream(g, EVL_REV_NO_STREAM, "job-%s", j->id);
        ev(g, "JobQueued");
        f_str(g, "id", j->id);
        f_str(g, "model", MODELS[j->model].name);
        f_str(g, "quantize", PICK(g, QUANTIZE));
        f_bool(g, "init", chance(g, 600));
        return;
    }
    size_t i = below(g, js->n);
    job *j = &js->a[i];
    b_stream(g, EVL_REV_ANY, "job-%s", j->id);
    if (j->state == JOB_QUEUED) {
        if (j->fate == JF_EARLY) {
            ev(g, "JobFailed");
            f_str(g, "id", j->id);
            f_str(g, "error", "Job cancelled: the server shut down before the job started");
            f_nil(g, "traceback");
            job_remove(js, i);
            return;
        }
        ev(g, "JobStarted");
        f_str(g, "id", j->id);
        if (j->total) {
            f_int(g, "total_bytes", j->total);
            f_int(g, "size_bytes", j->total);
        }
        j->state = JOB_RUNNING;
        return;
    }
    if (j->fate == JF_NOTFOUND) {
        ev(g, "JobFailed");
        f_str(g, "id", j->id);
        f_fmt(g, "error", "Repository Not Found for url: https://huggingface.co/%s", MODELS[j->model].name);
        f_fmt(g, "traceback",
              "Traceback (most recent call last):\n"
              "  File \"/srv/ai-server/server/jobs.py\", line 142, in run_pull_job\n"
              "    path = snapshot_download(repo_id=job[\"model\"], cache_dir=MODELS_DIR)\n"
              "  File \"/usr/lib/python3/dist-packages/huggingface_hub/_snapshot_download.py\", "
              "line 235, in snapshot_download\n"
              "    raise RepositoryNotFoundError(...)\n"
              "huggingface_hub.errors.RepositoryNotFoundError: 404 Client Error. "
              "Repository Not Found for url: https://huggingface.co/%s",
              MODELS[j->model].name);
        job_remove(js, i);
        return;
    }
    int64_t chunk = j->total / range(g, 4, 12) + 1;
    j->done = j->done + chunk > j->total ? j->total : j->done + chunk;
    if (j->fate == JF_NETWORK && j->done * 10 > j->total * 4) {
        ev(g, "JobFailed");
        f_str(g, "id", j->id);
        f_str(g, "error", "ConnectionError: ('Connection broken: IncompleteRead', "
                          "IncompleteRead(0 bytes read))");
        f_fmt(g, "traceback",
              "Traceback (most recent call last):\n"
              "  File \"/srv/ai-server/server/jobs.py\", line 142, in run_pull_job\n"
              "    path = snapshot_download(repo_id=job[\"model\"], cache_dir=MODELS_DIR)\n"
              "  File \"/usr/lib/python3/dist-packages/requests/models.py\", line 822, in generate\n"
              "    raise ChunkedEncodingError(e)\n"
              "requests.exceptions.ChunkedEncodingError: ('Connection broken: IncompleteRead', "
              "IncompleteRead(%lld bytes read))",
              (long long)j->done);
        job_remove(js, i);
        return;
    }
    ev(g, "JobProgressed");
    f_str(g, "id", j->id);
    f_int(g, "downloaded_bytes", j->done);
    f_int(g, "total_bytes", j->total);
    f_dbl(g, "progress", round_to((double)j->done / (double)j->total, 0.0001));
    if (j->done < j->total) return;
    char snap[41], repo[96];
    hexs(g, snap, 40);
    snprintf(repo, sizeof repo, "%s", MODELS[j->model].name);
    for (char *c = repo; *c; c++)
        if (*c == '/') *c = '-';
    ev(g, "JobSucceeded");
    f_str(g, "id", j->id);
    f_fmt(g, "local_path", "/srv/ai-server/models/hub/models--%s/snapshots/%s", repo, snap);
    f_int(g, "size_bytes", j->total);
    f_int(g, "downloaded_bytes", j->total);
    f_int(g, "total_bytes", j->total);
    f_dbl(g, "progress", 1.0);
    f_bool(g, "preferred_quantized", j->total > 4000000000LL && chance(g, 700));
    job_remove(js, i);
}

/* ================================================================ tasks and nodes */

static const char *const GPU_NAMES[] = {"NVIDIA A100-SXM4-80GB", "NVIDIA RTX 6000 Ada Generation",
                                        "NVIDIA H100 80GB HBM3"};

static void pack_gpu_info(evl_gen *g, const node *n, bool live) {
    f_arr(g, "gpu_info", (uint32_t)n->gpus);
    const char *name = GPU_NAMES[(size_t)(n - g->tasks.nodes) % COUNT(GPU_NAMES)];
    for (int i = 0; i < n->gpus; i++) {
        msgpack_pack_map(&g->pk, live ? 6 : 4);
        m_int(g, "id", i);
        m_str(g, "name", name);
        m_int(g, "memory_total_mib", 81920);
        m_str(g, "driver_version", "550.127.05");
        if (live) {
            m_int(g, "memory_used_mib", range(g, 0, 81920));
            m_dbl(g, "gpu_utilization", round_to(frand(g) * 100, 0.1));
        }
    }
}

static void node_register(evl_gen *g, node *n) {
    b_stream(g, EVL_REV_ANY, "node-%s", n->host);
    ev(g, "NodeRegistered");
    f_str(g, "hostname", n->host);
    f_fmt(g, "url", "http://10.0.1.%d:8001", (int)(n - g->tasks.nodes) + 11);
    f_int(g, "total_cores", n->cores);
    f_int(g, "memory_total_bytes", n->mem);
    f_map(g, "numa_topology", (uint32_t)n->numa);
    for (int z = 0; z < n->numa; z++) {
        char k[12];
        snprintf(k, sizeof k, "%d", z);
        pk_str(g, k);
        int per = n->cores / n->numa;
        msgpack_pack_array(&g->pk, (size_t)per);
        for (int c = 0; c < per; c++) msgpack_pack_int(&g->pk, z * per + c);
    }
    if (n->gpus) pack_gpu_info(g, n, false);
    else f_nil(g, "gpu_info");
    f_bool(g, "vm_capable", n->vm);
    if (n->vm && n->gpus) {
        f_arr(g, "vfio_gpus", 2);
        for (int i = 0; i < 2; i++) {
            msgpack_pack_map(&g->pk, 3);
            pk_str(g, "pci");
            p_fmt(g, "0000:%02x:00.0", 0x41 + i);
            m_str(g, "vendor", "10de");
            m_str(g, "iommu_group", i ? "47" : "46");
        }
    } else {
        f_nil(g, "vfio_gpus");
    }
    f_fmt(g, "runner_version", "0.4.%u", 1 + n->restarts / 2);
    n->online = true;
    n->restarts++;
}

static void node_heartbeat(evl_gen *g, node *n) {
    b_stream(g, EVL_REV_ANY, "node-%s", n->host);
    ev(g, "NodeHeartbeatReceived");
    f_str(g, "hostname", n->host);
    double mem = 10 + frand(g) * 80;
    f_dbl(g, "cpu_percent", round_to(frand(g) * 100, 0.1));
    f_dbl(g, "memory_percent", round_to(mem, 0.1));
    f_int(g, "memory_used_bytes", (int64_t)((double)n->mem * mem / 100));
    double t = 38 + frand(g) * 35;
    f_dbl(g, "current_avg_temp", round_to(t, 0.1));
    /* not a column of nodes: kept in the log for when the table grows one */
    f_dbl(g, "current_max_temp", round_to(t + 3 + frand(g) * 9, 0.1));
    if (n->gpus) pack_gpu_info(g, n, true);
}

static node *online_node(evl_gen *g, bool want_gpu) {
    tasks_state *ts = &g->tasks;
    for (int tries = 0; tries < 16; tries++) {
        node *n = &ts->nodes[below(g, NODES_N)];
        if (n->online && (!want_gpu || n->gpus)) return n;
    }
    for (size_t i = 0; i < NODES_N; i++)
        if (ts->nodes[i].online && (!want_gpu || ts->nodes[i].gpus)) return &ts->nodes[i];
    return NULL;
}

static int64_t task_id(evl_gen *g) {
    tasks_state *ts = &g->tasks;
    /* snowflake: ms since 2020-01-01 | 10-bit worker (from the seed) | 12-bit sequence */
    int64_t ms = (g->clock - 1577836800LL * SEC) / MS;
    return (ms << 22) | ((int64_t)ts->worker << 12) | (int64_t)(ts->seq++ & 0xfff);
}

static const char *const ENVS[] = {"pytorch-2.5", "jax-0.4", "vllm-0.6", "base-ubuntu"};
static const char *const SCRIPTS[] = {"train.py", "finetune_lora.py", "eval_mmlu.py",
                                      "preprocess.py", "sweep.py"};

static void task_submit_one(evl_gen *g, int64_t batch) {
    tasks_state *ts = &g->tasks;
    task *t = &ts->a[ts->n++];
    memset(t, 0, sizeof *t);
    t->id = task_id(g);
    t->vps = chance(g, 150);
    t->qemu = t->vps && chance(g, 300);
    t->gpu = chance(g, 600);
    t->work = (int)range(g, 2, t->vps ? 30 : 14);
    t->owner = (int)range(g, 0, 40);
    t->node = -1;
    bool needs_approval = chance(g, 250);
    t->state = needs_approval ? T_PENDING_APPROVAL : T_PENDING;

    b_stream(g, EVL_REV_NO_STREAM, "task-%lld", (long long)t->id);
    ev(g, "TaskSubmitted");
    f_int(g, "task_id", t->id);
    f_str(g, "task_type", t->vps ? "vps" : "command");
    if (batch) f_int(g, "batch_id", batch);
    else f_nil(g, "batch_id");
    if (chance(g, 600)) f_fmt(g, "name", "%s-%lld", t->vps ? "dev-box" : "train", (long long)(t->id & 0xffff));
    f_int(g, "owner_id", g->auth.base + t->owner);
    if (needs_approval) f_str(g, "approval_status", "pending");
    else f_nil(g, "approval_status");
    if (t->vps) {
        char k[44];
        hexs(g, k, 43);
        f_fmt(g, "command", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5%s user%d@laptop", k, t->owner);
        f_arr(g, "arguments", 0);
        f_map(g, "env_vars", 0);
    } else {
        f_str(g, "command", chance(g, 500) ? "python" : "torchrun");
        f_arr(g, "arguments", 5);
        pk_str(g, PICK(g, SCRIPTS));
        pk_str(g, "--lr");
        p_fmt(g, "%g", PICK(g, ((const double[]){1e-3, 3e-4, 1e-4, 5e-5})));
        pk_str(g, "--batch-size");
        p_fmt(g, "%d", 8 << below(g, 4));
        f_map(g, "env_vars", 2);
        m_str(g, "WANDB_MODE", "offline");
        m_str(g, "HF_HOME", "/shared/hf-cache");
    }
    f_int(g, "required_cores", 1 << below(g, 5));
    int ngpu = t->gpu ? 1 << below(g, 3) : 0;
    f_arr(g, "required_gpus", (uint32_t)ngpu);
    for (int i = 0; i < ngpu; i++) msgpack_pack_int(&g->pk, i);
    if (chance(g, 500)) f_int(g, "required_memory_bytes", (int64_t)(8 << below(g, 5)) << 30);
    if (chance(g, 200)) f_int(g, "target_numa_node_id", (int64_t)below(g, 2));
    if (t->qemu) {
        f_str(g, "vps_backend", "qemu");
        f_str(g, "vm_image", chance(g, 500) ? "ubuntu-24.04" : "debian-12");
        f_fmt(g, "vm_disk_size", "%dG", 50 << below(g, 3));
    } else {
        const char *env = PICK(g, ENVS);
        f_str(g, "container_name", env);
        if (chance(g, 300)) f_str(g, "registry_image", "nvcr.io/nvidia/pytorch:24.10-py3");
        f_bool(g, "docker_privileged", chance(g, 30));
        f_arr(g, "docker_mount_dirs", 2);
        pk_str(g, "/shared/datasets");
        pk_str(g, "/shared/checkpoints");
        if (t->vps) f_str(g, "vps_backend", "docker");
    }
    f_fmt(g, "stdout_path", "/shared/kohakuriver/logs/%lld.out", (long long)t->id);
    f_fmt(g, "stderr_path", "/shared/kohakuriver/logs/%lld.err", (long long)t->id);
    ev_actor(g, "user-%lld", (long long)(g->auth.base + t->owner));
}

static void task_remove(tasks_state *ts, size_t i) { ts->a[i] = ts->a[--ts->n]; }

static void task_finish(evl_gen *g, size_t i) {
    tasks_state *ts = &g->tasks;
    task *t = &ts->a[i];
    unsigned r = (unsigned)below(g, 1000);
    if (t->vps) {
        if (r < 850) {
            ev(g, "TaskStopped");
            f_int(g, "task_id", t->id);
            f_int(g, "exit_code", 0);
            ev_actor(g, "user-%lld", (long long)(g->auth.base + t->owner));
        } else {
            ev(g, "TaskKilled");
            f_int(g, "task_id", t->id);
            f_bool(g, "oom", false);
            ev_actor(g, "operator");
        }
    } else if (r < 760) {
        ev(g, "TaskCompleted");
        f_int(g, "task_id", t->id);
        f_int(g, "exit_code", 0);
    } else if (r < 880) {
        int code = (int)PICK(g, ((const int[]){1, 1, 2, 127}));
        ev(g, "TaskFailed");
        f_int(g, "task_id", t->id);
        f_int(g, "exit_code", code);
        if (code == 127) f_str(g, "error_message", "/bin/sh: 1: torchrun: not found");
        else f_fmt(g, "error_message", "Process exited with code %d", code);
    } else if (r < 960) {
        ev(g, "TaskKilled");
        f_int(g, "task_id", t->id);
        f_bool(g, "oom", false);
        ev_actor(g, "user-%lld", (long long)(g->auth.base + t->owner));
    } else {
        ev(g, "TaskKilled");
        f_int(g, "task_id", t->id);
        f_bool(g, "oom", true);
        f_int(g, "exit_code", 137);
        f_str(g, "error_message", "Container killed: out of memory (cgroup memory.max reached)");
    }
    task_remove(ts, i);
}

static void tasks_step(evl_gen *g) {
    tasks_state *ts = &g->tasks;
    if (ts->n_registered < NODES_N) {
        node_register(g, &ts->nodes[ts->n_registered++]);
        return;
    }
    unsigned r = (unsigned)below(g, 1000);
    if (r < 300) {
        node *n = online_node(g, false);
        if (n) node_heartbeat(g, n);
        else node_register(g, &ts->nodes[below(g, NODES_N)]);
        return;
    }
    if (r < 306) {
        /* a runner stops answering; its tasks become suspect, then lost */
        size_t online = 0;
        for (size_t i = 0; i < NODES_N; i++) online += ts->nodes[i].online;
        node *n = online_node(g, false);
        if (n && online > NODES_N / 2) {
            n->online = false;
            b_stream(g, EVL_REV_ANY, "node-%s", n->host);
            ev(g, "NodeMarkedOffline");
            f_str(g, "hostname", n->host);
            return;
        }
    }
    if (r < 320) {
        for (size_t k = 0; k < NODES_N; k++) {
            node *n = &ts->nodes[(k + r) % NODES_N];
            if (!n->online) {
                node_register(g, n); /* the runner restarted */
                return;
            }
        }
    }
    if (ts->n < 72 && (ts->n == 0 || chance(g, 180))) {
        if (ts->n + 4 <= TASKS_MAX && chance(g, 120)) {
            /* a batch submission: several tasks, one atomic append */
            int64_t batch = task_id(g);
            int k = (int)range(g, 2, 4);
            for (int i = 0; i < k; i++) task_submit_one(g, batch);
        } else {
            task_submit_one(g, 0);
        }
        return;
    }
    size_t i = below(g, ts->n);
    task *t = &ts->a[i];
    node *n = t->node >= 0 ? &ts->nodes[t->node] : NULL;
    if (t->state == T_RUNNING || t->state == T_PAUSED || t->state == T_ASSIGNING) {
        if (n && !n->online) {
            b_stream(g, EVL_REV_ANY, "task-%lld", (long long)t->id);
            if (t->susp < 2) {
                t->susp++;
                ev(g, "TaskAssignmentSuspected");
                f_int(g, "task_id", t->id);
                f_str(g, "assigned_node", n->host);
            } else {
                ev(g, "TaskLost");
                f_int(g, "task_id", t->id);
                f_fmt(g, "error_message", "Runner %s stopped sending heartbeats", n->host);
                task_remove(ts, i);
            }
            return;
        }
    }
    node *to = NULL;
    if (t->state == T_PENDING) {
        to = online_node(g, t->gpu);
        if (!to) to = online_node(g, false);
        if (!to) {
            node_register(g, &ts->nodes[below(g, NODES_N)]); /* a runner comes back first */
            return;
        }
    }
    if (t->state == T_RUNNING && t->susp == 0 && t->work > 1 && chance(g, 800)) {
        /* nothing to report for the task: its runner's heartbeat is the tick */
        t->work--;
        node_heartbeat(g, n);
        return;
    }
    b_stream(g, EVL_REV_ANY, "task-%lld", (long long)t->id);
    switch (t->state) {
    case T_PENDING_APPROVAL:
        if (chance(g, 850)) {
            ev(g, "TaskApproved");
            f_int(g, "task_id", t->id);
            f_int(g, "approved_by_id", g->auth.base);
            t->state = T_PENDING;
        } else {
            ev(g, "TaskRejected");
            f_int(g, "task_id", t->id);
            f_int(g, "rejected_by_id", g->auth.base);
            f_str(g, "rejection_reason",
                  PICK(g, ((const char *const[]){"Requests more GPUs than the group quota allows",
                                                 "Duplicate of an already running job",
                                                 "Please use the shared dataset mount"})));
            task_remove(ts, i);
        }
        ev_actor(g, "user-%lld", (long long)g->auth.base);
        return;
    case T_PENDING:
        if (chance(g, 40)) {
            ev(g, "TaskKilled");
            f_int(g, "task_id", t->id);
            f_bool(g, "oom", false);
            ev_actor(g, "user-%lld", (long long)(g->auth.base + t->owner));
            task_remove(ts, i);
            return;
        }
        t->node = (int)(to - ts->nodes);
        t->state = T_ASSIGNING;
        ev(g, "TaskAssigned");
        f_int(g, "task_id", t->id);
        f_str(g, "assigned_node", to->host);
        return;
    case T_ASSIGNING:
        if (chance(g, 40)) {
            ev(g, "TaskFailed");
            f_int(g, "task_id", t->id);
            f_int(g, "exit_code", -1);
            f_str(g, "error_message", "Failed to start container: image pull failed (manifest unknown)");
            task_remove(ts, i);
            return;
        }
        t->state = T_RUNNING;
        ev(g, "TaskStarted");
        f_int(g, "task_id", t->id);
        f_str(g, "assigned_node", n->host);
        if (t->qemu) {
            f_fmt(g, "vm_ip", "10.128.%d.%d", (int)range(g, 0, 15), (int)range(g, 2, 254));
            f_int(g, "ssh_port", 22);
        } else {
            f_fmt(g, "container_name", "kohakuriver-task-%lld", (long long)t->id);
            f_fmt(g, "docker_image_name", "kohakuriver/%s:base", PICK(g, ENVS));
            if (t->vps) f_int(g, "ssh_port", range(g, 20000, 29999));
        }
        return;
    case T_RUNNING:
        if (t->susp > 0) {
            t->susp = 0;
            ev(g, "TaskAssignmentConfirmed");
            f_int(g, "task_id", t->id);
            return;
        }
        if (t->work <= 1) {
            task_finish(g, i);
            return;
        }
        if (chance(g, 500)) {
            t->susp++; /* a heartbeat raced the task's start; the next one confirms it */
            ev(g, "TaskAssignmentSuspected");
            f_int(g, "task_id", t->id);
            f_str(g, "assigned_node", n->host);
            return;
        }
        t->state = T_PAUSED;
        ev(g, "TaskPaused");
        f_int(g, "task_id", t->id);
        ev_actor(g, "user-%lld", (long long)(g->auth.base + t->owner));
        return;
    case T_PAUSED:
        if (chance(g, 800)) {
            t->state = T_RUNNING;
            ev(g, "TaskResumed");
            f_int(g, "task_id", t->id);
            ev_actor(g, "user-%lld", (long long)(g->auth.base + t->owner));
        } else {
            ev(g, "TaskKilled");
            f_int(g, "task_id", t->id);
            f_bool(g, "oom", false);
            ev_actor(g, "operator");
            task_remove(ts, i);
        }
        return;
    }
}

/* ================================================================ auth */

static const char *const ROLES[] = {"anony", "viewer", "user", "operator", "admin"};
enum { R_ANONY, R_VIEWER, R_USER, R_OPERATOR, R_ADMIN };

static void pw_hash(evl_gen *g, char out[61]) {
    /* the shape of a bcrypt hash: $2b$12$ + 53 characters */
    static const char b64[] = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    memcpy(out, "$2b$12$", 7);
    for (int i = 7; i < 60; i++) out[i] = b64[rnd(g) % 64];
    out[60] = 0;
}

static auser *auth_user(evl_gen *g, bool active_only) {
    auth_state *as = &g->auth;
    for (int tries = 0; tries < 8; tries++) {
        auser *u = &as->users[below(g, as->n_users)];
        if (u->active || !active_only) return u;
    }
    return &as->users[0]; /* the admin is never deactivated */
}

static void auth_register(evl_gen *g, uint8_t role, const ainv *inv) {
    auth_state *as = &g->auth;
    auser *u = &as->users[as->n_users++];
    u->id = as->next_user++;
    u->role = role;
    u->active = 1;
    char pw[61];
    pw_hash(g, pw);
    b_stream(g, EVL_REV_NO_STREAM, "user-%lld", (long long)u->id);
    ev(g, "UserRegistered");
    f_int(g, "id", u->id);
    if (u->id == as->base) f_fmt(g, "username", "admin%lld", (long long)u->id);
    else f_fmt(g, "username", "user%lld", (long long)u->id);
    if (chance(g, 700)) f_fmt(g, "display_name", "User %lld", (long long)(u->id - as->base));
    f_str(g, "password_hash", pw);
    f_str(g, "role", ROLES[role]);
    if (inv) f_int(g, "invitation_id", inv->id);
}

static void auth_drop_user(auth_state *as, int64_t id) {
    for (size_t i = 0; i < as->n_sess;)
        if (as->sess[i].user == id) as->sess[i] = as->sess[--as->n_sess];
        else i++;
    for (size_t i = 0; i < as->n_tokens;)
        if (as->tokens[i].user == id) as->tokens[i] = as->tokens[--as->n_tokens];
        else i++;
    for (size_t i = 0; i < as->n_grants;)
        if (as->grants[i].user == id) as->grants[i] = as->grants[--as->n_grants];
        else i++;
    for (size_t i = 0; i < as->n_users; i++)
        if (as->users[i].id == id) {
            as->users[i] = as->users[--as->n_users];
            break;
        }
}

static void auth_step(evl_gen *g) {
    auth_state *as = &g->auth;
    as->steps++;
    if (as->n_users == 0) {
        auth_register(g, R_ADMIN, NULL);
        return;
    }
    if (as->n_groups < 3) {
        static const char *const names[] = {"ml-research", "students", "infra"};
        agroup *gr = &as->groups[as->n_groups];
        gr->id = as->next_group++;
        b_stream(g, EVL_REV_NO_STREAM, "group-%lld", (long long)gr->id);
        ev(g, "GroupCreated");
        f_int(g, "id", gr->id);
        f_fmt(g, "name", "%s-%lld", names[as->n_groups], (long long)gr->id);
        f_int(g, "tier", (int64_t)as->n_groups);
        f_map(g, "limits", 3);
        m_int(g, "max_tasks", 4 << as->n_groups);
        m_int(g, "max_vps", 1 + (int64_t)as->n_groups);
        m_int(g, "gpu_cap", 2 << as->n_groups);
        ev_actor(g, "user-%lld", (long long)as->base);
        as->n_groups++;
        return;
    }
    if (as->steps >= as->next_sweep) {
        as->next_sweep = as->steps + (uint64_t)range(g, 200, 400);
        int64_t before = g->clock + 50 * MS;
        b_stream(g, EVL_REV_ANY, "retention-sessions");
        ev(g, "SessionsExpired");
        f_time(g, "before", before);
        for (size_t i = 0; i < as->n_sess;)
            if (as->sess[i].expires < before) as->sess[i] = as->sess[--as->n_sess];
            else i++;
        return;
    }
    /* used-up and expired invitations stay in the table; the pool forgets them */
    for (size_t i = 0; i < as->n_invs;)
        if (as->invs[i].used >= as->invs[i].max || as->invs[i].expires <= g->clock)
            as->invs[i] = as->invs[--as->n_invs];
        else
            i++;
    unsigned r = (unsigned)below(g, 1000);
    if (r < 200 && as->n_sess < SESS_MAX) { /* login */
        auser *u = auth_user(g, true);
        asess *s = &as->sess[as->n_sess++];
        s->id = as->next_sess++;
        s->user = u->id;
        s->expires = g->clock + range(g, 15, 60) * MINUTE;
        char h[65];
        hexs(g, h, 64);
        b_stream(g, EVL_REV_NO_STREAM, "session-%lld", (long long)s->id);
        ev(g, "SessionStarted");
        f_int(g, "id", s->id);
        f_str(g, "session_id", h);
        f_int(g, "user_id", u->id);
        f_time(g, "expires_at", s->expires);
        return;
    }
    if (r < 300 && as->n_sess) { /* logout */
        size_t i = below(g, as->n_sess);
        b_stream(g, EVL_REV_ANY, "session-%lld", (long long)as->sess[i].id);
        ev(g, "SessionEnded");
        f_int(g, "id", as->sess[i].id);
        as->sess[i] = as->sess[--as->n_sess];
        return;
    }
    if (r < 500 && as->n_tokens) {
        atoken *t = &as->tokens[below(g, as->n_tokens)];
        b_stream(g, EVL_REV_ANY, "token-%lld", (long long)t->id);
        ev(g, "TokenUsed");
        f_int(g, "id", t->id);
        return;
    }
    if (r < 560 && as->n_tokens < TOKENS_MAX) {
        auser *u = auth_user(g, true);
        atoken *t = &as->tokens[as->n_tokens++];
        t->id = as->next_token++;
        t->user = u->id;
        char h[129];
        hexs(g, h, 128);
        b_stream(g, EVL_REV_NO_STREAM, "token-%lld", (long long)t->id);
        ev(g, "TokenCreated");
        f_int(g, "id", t->id);
        f_int(g, "user_id", u->id);
        f_str(g, "token_hash", h);
        f_str(g, "name", PICK(g, ((const char *const[]){"ci", "laptop", "notebook", "cron-sweeps"})));
        return;
    }
    if (r < 580 && as->n_tokens) {
        size_t i = below(g, as->n_tokens);
        b_stream(g, EVL_REV_ANY, "token-%lld", (long long)as->tokens[i].id);
        ev(g, "TokenRevoked");
        f_int(g, "id", as->tokens[i].id);
        as->tokens[i] = as->tokens[--as->n_tokens];
        return;
    }
    if (r < 640 && as->n_invs < INVS_MAX) {
        ainv *v = &as->invs[as->n_invs++];
        v->id = as->next_inv++;
        v->group = chance(g, 600) ? as->groups[below(g, as->n_groups)].id : 0;
        v->max = (int)range(g, 1, 5);
        v->used = 0;
        v->expires = g->clock + range(g, 30, 180) * MINUTE;
        v->role = chance(g, 150) ? R_VIEWER : chance(g, 50) ? R_OPERATOR : R_USER;
        char h[65];
        hexs(g, h, 64);
        b_stream(g, EVL_REV_NO_STREAM, "invitation-%lld", (long long)v->id);
        ev(g, "InvitationCreated");
        f_int(g, "id", v->id);
        f_str(g, "token_hash", h);
        f_str(g, "role", ROLES[v->role]);
        if (v->group) f_int(g, "group_id", v->group);
        else f_nil(g, "group_id");
        f_int(g, "max_usage", v->max);
        f_time(g, "expires_at", v->expires);
        f_int(g, "created_by_id", as->base);
        ev_actor(g, "user-%lld", (long long)as->base);
        return;
    }
    if (r < 740 && as->n_users < USERS_MAX) {
        /* registration through a valid invitation: user, invitation, group, atomically */
        for (size_t k = 0; k < as->n_invs; k++) {
            ainv *v = &as->invs[(k + r) % as->n_invs];
            if (v->used >= v->max || v->expires <= g->clock) continue;
            ainv inv = *v;
            v->used++;
            auth_register(g, inv.role, &inv);
            int64_t uid = as->users[as->n_users - 1].id;
            b_stream(g, EVL_REV_ANY, "invitation-%lld", (long long)inv.id);
            ev(g, "InvitationRedeemed");
            f_int(g, "id", inv.id);
            f_int(g, "user_id", uid);
            if (inv.group) {
                b_stream(g, EVL_REV_ANY, "group-%lld", (long long)inv.group);
                ev(g, "GroupMemberAdded");
                f_int(g, "group_id", inv.group);
                f_int(g, "user_id", uid);
                f_nil(g, "role_override");
            }
            return;
        }
        auth_register(g, R_USER, NULL); /* created by an admin */
        ev_actor(g, "user-%lld", (long long)as->base);
        return;
    }
    if (r < 760 && as->n_invs) {
        size_t i = below(g, as->n_invs);
        b_stream(g, EVL_REV_ANY, "invitation-%lld", (long long)as->invs[i].id);
        ev(g, "InvitationRevoked");
        f_int(g, "id", as->invs[i].id);
        as->invs[i] = as->invs[--as->n_invs];
        return;
    }
    if (r < 820) {
        auser *u = auth_user(g, false);
        b_stream(g, EVL_REV_ANY, "user-%lld", (long long)u->id);
        /* the admin account only edits its profile: it must stay an active admin */
        unsigned w = u->id == as->base ? 3 : (unsigned)below(g, 5);
        if (w == 0) {
            u->role = (uint8_t)range(g, R_VIEWER, R_OPERATOR);
            ev(g, "UserRoleChanged");
            f_int(g, "id", u->id);
            f_str(g, "role", ROLES[u->role]);
        } else if (w == 1) {
            u->active = !u->active;
            ev(g, u->active ? "UserReactivated" : "UserDeactivated");
            f_int(g, "id", u->id);
        } else if (w == 2) {
            char pw[61];
            pw_hash(g, pw);
            ev(g, "UserPasswordChanged");
            f_int(g, "id", u->id);
            f_str(g, "password_hash", pw);
        } else {
            ev(g, "UserProfileUpdated");
            f_int(g, "id", u->id);
            if (u->id == as->base) f_str(g, "display_name", "Cluster Admin");
            else f_fmt(g, "display_name", "User %lld (%s)", (long long)(u->id - as->base), ROLES[u->role]);
        }
        ev_actor(g, "user-%lld", (long long)(w >= 2 ? u->id : as->base));
        return;
    }
    if (r < 880) {
        auser *u = auth_user(g, false);
        agroup *gr = &as->groups[below(g, as->n_groups)];
        b_stream(g, EVL_REV_ANY, "group-%lld", (long long)gr->id);
        if (chance(g, 700)) {
            ev(g, "GroupMemberAdded");
            f_int(g, "group_id", gr->id);
            f_int(g, "user_id", u->id);
            if (chance(g, 200)) f_str(g, "role_override", "operator");
            else f_nil(g, "role_override");
        } else {
            ev(g, "GroupMemberRemoved");
            f_int(g, "group_id", gr->id);
            f_int(g, "user_id", u->id);
        }
        ev_actor(g, "user-%lld", (long long)as->base);
        return;
    }
    if (r < 940) {
        auser *u = auth_user(g, false);
        if (as->n_grants < GRANTS_MAX && (as->n_grants == 0 || chance(g, 650))) {
            agrant *gr = &as->grants[as->n_grants++];
            gr->user = u->id;
            gr->vps = as->vps_ids[below(g, VPS_IDS)];
            b_stream(g, EVL_REV_ANY, "user-%lld", (long long)u->id);
            ev(g, "VpsAccessGranted");
            f_int(g, "user_id", gr->user);
            f_int(g, "vps_task_id", gr->vps);
        } else {
            size_t i = below(g, as->n_grants);
            b_stream(g, EVL_REV_ANY, "user-%lld", (long long)as->grants[i].user);
            ev(g, "VpsAccessRevoked");
            f_int(g, "user_id", as->grants[i].user);
            f_int(g, "vps_task_id", as->grants[i].vps);
            as->grants[i] = as->grants[--as->n_grants];
        }
        ev_actor(g, "user-%lld", (long long)as->base);
        return;
    }
    if (r < 960) {
        agroup *gr = &as->groups[below(g, as->n_groups)];
        b_stream(g, EVL_REV_ANY, "group-%lld", (long long)gr->id);
        ev(g, "GroupUpdated");
        f_int(g, "id", gr->id);
        f_int(g, "tier", range(g, 0, 3));
        f_map(g, "limits", 3);
        m_int(g, "max_tasks", 4 << below(g, 4));
        m_int(g, "max_vps", range(g, 1, 4));
        m_int(g, "gpu_cap", 2 << below(g, 3));
        ev_actor(g, "user-%lld", (long long)as->base);
        return;
    }
    if (r < 975 && as->n_groups < GROUPS_MAX) {
        agroup *gr = &as->groups[as->n_groups++];
        gr->id = as->next_group++;
        b_stream(g, EVL_REV_NO_STREAM, "group-%lld", (long long)gr->id);
        ev(g, "GroupCreated");
        f_int(g, "id", gr->id);
        f_fmt(g, "name", "project-%lld", (long long)gr->id);
        f_map(g, "limits", 1);
        m_int(g, "max_tasks", 8);
        ev_actor(g, "user-%lld", (long long)as->base);
        return;
    }
    if (r < 985 && as->n_groups > 3) {
        /* a project group is deleted: invitations naming it lose their group */
        size_t i = 3 + below(g, as->n_groups - 3);
        int64_t id = as->groups[i].id;
        as->groups[i] = as->groups[--as->n_groups];
        for (size_t k = 0; k < as->n_invs; k++)
            if (as->invs[k].group == id) as->invs[k].group = 0;
        b_stream(g, EVL_REV_ANY, "group-%lld", (long long)id);
        ev(g, "GroupDeleted");
        f_int(g, "id", id);
        ev_actor(g, "user-%lld", (long long)as->base);
        return;
    }
    if (r < 990 && as->n_users > 8) {
        auser *u = &as->users[1 + below(g, as->n_users - 1)]; /* never the admin (index 0) */
        int64_t id = u->id;
        auth_drop_user(as, id);
        b_stream(g, EVL_REV_ANY, "user-%lld", (long long)id);
        ev(g, "UserDeleted");
        f_int(g, "id", id);
        ev_actor(g, "user-%lld", (long long)as->base);
        return;
    }
    /* the fallback, always possible: someone logs in */
    auser *u = auth_user(g, true);
    if (as->n_sess == SESS_MAX) as->sess[0] = as->sess[--as->n_sess];
    asess *s = &as->sess[as->n_sess++];
    s->id = as->next_sess++;
    s->user = u->id;
    s->expires = g->clock + range(g, 15, 60) * MINUTE;
    char h[65];
    hexs(g, h, 64);
    b_stream(g, EVL_REV_NO_STREAM, "session-%lld", (long long)s->id);
    ev(g, "SessionStarted");
    f_int(g, "id", s->id);
    f_str(g, "session_id", h);
    f_int(g, "user_id", u->id);
    f_time(g, "expires_at", s->expires);
}

/* ================================================================ FUSION runs */

static const char *const TEMPLATES[] = {"minimal.ini", "default.ini", "xtar_example.ini",
                                        "cross_traffic.ini"};
static const char *const NETWORKS[] = {"NSFNet", "USNet", "Pan-European", "COST239"};

static void fruns_done(fruns_state *fs, const char *id) {
    if (fs->n_done == FDONE_MAX) {
        memmove(fs->done[0], fs->done[1], sizeof fs->done[0] * (FDONE_MAX - 1));
        fs->n_done--;
    }
    memcpy(fs->done[fs->n_done++], id, 13);
}

static void fruns_step(evl_gen *g) {
    fruns_state *fs = &g->fruns;
    if (fs->n_done && chance(g, 25)) {
        size_t i = below(g, fs->n_done);
        b_stream(g, EVL_REV_ANY, "fusionrun-%s", fs->done[i]);
        ev(g, "FusionRunDeleted");
        f_str(g, "id", fs->done[i]);
        ev_actor(g, "gui");
        memmove(fs->done[i], fs->done[i + 1], sizeof fs->done[0] * (fs->n_done - i - 1));
        fs->n_done--;
        return;
    }
    if (fs->n < 12 && (fs->n == 0 || chance(g, 150))) {
        frun *r = &fs->a[fs->n++];
        memset(r, 0, sizeof *r);
        hexs(g, r->id, 12);
        r->state = FR_PENDING;
        r->erlang_start = (int)range(g, 2, 6) * 50;
        r->erlang_step = (int)PICK(g, ((const int[]){25, 50, 100}));
        r->erlangs = (int)range(g, 3, 9);
        r->iters = (int)range(g, 4, 12);
        unsigned f = (unsigned)below(g, 1000);
        r->fate = f < 30 ? FRF_FAIL_START : f < 60 ? FRF_CANCEL_START : f < 120 ? FRF_FAIL
                  : f < 160                                          ? FRF_CANCEL
                                                                     : FRF_OK;
        r->fail_at = (int)range(g, 1, r->erlangs * r->iters - 1);
        const char *net = PICK(g, NETWORKS);
        b_stream(g, EVL_REV_NO_STREAM, "fusionrun-%s", r->id);
        ev(g, "FusionRunCreated");
        f_str(g, "id", r->id);
        if (chance(g, 700)) f_fmt(g, "name", "%s sweep %d-%d", net, r->erlang_start,
                                  r->erlang_start + (r->erlangs - 1) * r->erlang_step);
        else f_nil(g, "name");
        f_str(g, "template", PICK(g, TEMPLATES));
        f_map(g, "config", 2);
        pk_str(g, "general_settings");
        msgpack_pack_map(&g->pk, 7);
        m_int(g, "erlang_start", r->erlang_start);
        m_int(g, "erlang_stop", r->erlang_start + (r->erlangs - 1) * r->erlang_step);
        m_int(g, "erlang_step", r->erlang_step);
        m_int(g, "max_iters", r->iters);
        m_int(g, "num_requests", 2000 << below(g, 3));
        m_str(g, "route_method", chance(g, 500) ? "k_shortest_path" : "xt_aware");
        m_str(g, "allocation_method", chance(g, 500) ? "first_fit" : "best_fit");
        pk_str(g, "topology_settings");
        msgpack_pack_map(&g->pk, 3);
        m_str(g, "network", net);
        m_int(g, "cores_per_link", (int64_t)PICK(g, ((const int[]){1, 4, 7})));
        m_bool(g, "bw_per_slot_fixed", true);
        ev_actor(g, "gui");
        return;
    }
    size_t i = below(g, fs->n);
    frun *r = &fs->a[i];
    b_stream(g, EVL_REV_ANY, "fusionrun-%s", r->id);
    if (r->state == FR_PENDING) {
        if (r->fate == FRF_FAIL_START || r->fate == FRF_CANCEL_START) {
            if (r->fate == FRF_FAIL_START) {
                ev(g, "FusionRunFailed");
                f_str(g, "id", r->id);
                f_str(g, "error_message",
                      "Simulation process exited with code 1 before reporting progress: "
                      "FileNotFoundError: data/raw/topology.txt");
            } else {
                ev(g, "FusionRunCancelled");
                f_str(g, "id", r->id);
                ev_actor(g, "gui");
            }
            fruns_done(fs, r->id);
            fs->a[i] = fs->a[--fs->n];
            return;
        }
        int pid = (int)range(g, 2000, 60000);
        ev(g, "FusionRunStarted");
        f_str(g, "id", r->id);
        f_int(g, "pid", pid);
        f_int(g, "pgid", pid);
        f_int(g, "total_erlangs", r->erlangs);
        f_int(g, "total_iterations", r->iters);
        r->state = FR_RUNNING;
        return;
    }
    int done = r->cur_e * r->iters + r->cur_i;
    if ((r->fate == FRF_FAIL || r->fate == FRF_CANCEL) && done >= r->fail_at) {
        if (r->fate == FRF_FAIL) {
            ev(g, "FusionRunFailed");
            f_str(g, "id", r->id);
            f_fmt(g, "error_message", "ValueError: no feasible spectrum assignment at Erlang %d "
                                      "(iteration %d)",
                  r->erlang_start + r->cur_e * r->erlang_step, r->cur_i + 1);
        } else {
            ev(g, "FusionRunCancelled");
            f_str(g, "id", r->id);
            ev_actor(g, "gui");
        }
        fruns_done(fs, r->id);
        fs->a[i] = fs->a[--fs->n];
        return;
    }
    /* one progress line covers one to three iterations */
    int adv = (int)range(g, 1, 3);
    for (int k = 0; k < adv && r->cur_e < r->erlangs; k++) {
        if (++r->cur_i == r->iters) {
            r->cur_i = 0;
            r->cur_e++;
        }
    }
    ev(g, "FusionRunProgressed");
    f_str(g, "id", r->id);
    if (r->cur_e < r->erlangs) {
        f_dbl(g, "current_erlang", (double)(r->erlang_start + r->cur_e * r->erlang_step));
        f_int(g, "current_iteration", r->cur_i + 1);
        return;
    }
    f_dbl(g, "current_erlang", (double)(r->erlang_start + (r->erlangs - 1) * r->erlang_step));
    f_int(g, "current_iteration", r->iters);
    ev(g, "FusionRunCompleted");
    f_str(g, "id", r->id);
    fruns_done(fs, r->id);
    fs->a[i] = fs->a[--fs->n];
}

/* ================================================================ KARR */

static const struct {
    const char *host, *gpu, *cpu, *env;
    int vram, gpus, cores, ram;
} PROFILES[] = {
    {"dgx-spark-01", "NVIDIA GB10", "ARM Cortex-X925", "dgx", 128, 1, 20, 128},
    {"rtx4090-ws", "NVIDIA GeForce RTX 4090", "AMD Ryzen 9 7950X", "native_linux", 24, 1, 16, 64},
    {"a100-node-3", "NVIDIA A100-SXM4-80GB", "AMD EPYC 7763", "native_linux", 80, 8, 64, 1024},
    {"gamer-pc-wsl", "NVIDIA GeForce RTX 3080", "Intel Core i7-12700K", "wsl2", 10, 1, 12, 32},
    {"h100-pod-1", "NVIDIA H100 80GB HBM3", "Intel Xeon Platinum 8480+", "native_linux", 80, 4, 56, 512},
    {"mac-studio", "Apple M2 Ultra", "Apple M2 Ultra", "macos", 192, 1, 24, 192},
};
static const char *const KMODELS[] = {"Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct",
                                      "mistralai/Mistral-7B-Instruct-v0.3", "google/gemma-2-9b-it"};
static const char *const KENGINES[] = {"vllm", "llama_cpp", "ollama", "tgi"};
static const struct {
    const char *name;
    int n;
    const char *tests[6];
} SUITES[] = {
    {"quick", 2, {"throughput", "latency"}},
    {"standard", 4, {"throughput", "latency", "memory_usage", "mmlu"}},
    {"accuracy", 4, {"mmlu", "gsm8k", "hellaswag", "truthfulqa"}},
    {"full", 6, {"throughput", "latency", "memory_usage", "mmlu", "gsm8k", "humaneval"}},
};
#define KITT_VERSION "1.4.2"

static void karr_register(evl_gen *g, kagent *a) {
    int p = a->profile;
    char tok[65];
    hexs(g, tok, 64);
    b_stream(g, EVL_REV_ANY, "kittagent-%s", a->id);
    ev(g, "AgentRegistered");
    f_str(g, "id", a->id);
    f_str(g, "name", a->name);
    f_str(g, "hostname", PROFILES[p].host);
    f_int(g, "port", 8090);
    f_str(g, "token_hash", tok);
    f_fmt(g, "gpu_info", "%dx %s (%d GB)", PROFILES[p].gpus, PROFILES[p].gpu, PROFILES[p].vram);
    f_int(g, "gpu_count", PROFILES[p].gpus);
    f_fmt(g, "cpu_info", "%s (%d cores)", PROFILES[p].cpu, PROFILES[p].cores);
    f_int(g, "ram_gb", PROFILES[p].ram);
    f_str(g, "environment_type", PROFILES[p].env);
    f_fmt(g, "fingerprint", "%s|%s|%dc|%dg", PROFILES[p].gpu, PROFILES[p].cpu, PROFILES[p].cores,
          PROFILES[p].ram);
    f_str(g, "kitt_version", KITT_VERSION);
    if (!a->registered) f_str(g, "tags", p == 0 ? "dgx,arm" : p == 5 ? "apple" : "x86,cuda");
    a->registered = true;
}

static void karr_done(karr_state *ks, const char *id) {
    if (ks->n_done == KDONE_MAX) {
        memmove(ks->done[0], ks->done[1], sizeof ks->done[0] * (KDONE_MAX - 1));
        ks->n_done--;
    }
    memcpy(ks->done[ks->n_done++], id, 37);
}

/* BenchmarkRunStarted for run r (in the current stream). */
static void karr_run_started(evl_gen *g, krun *r) {
    int p = g->karr.agents[r->agent].profile;
    ev(g, "BenchmarkRunStarted");
    f_str(g, "id", r->id);
    f_str(g, "model", KMODELS[r->model]);
    f_str(g, "engine", KENGINES[r->engine]);
    f_str(g, "suite_name", SUITES[r->suite].name);
    f_time(g, "timestamp", g->clock);
    f_str(g, "kitt_version", KITT_VERSION);
    f_map(g, "hardware", 8);
    m_str(g, "gpu_model", PROFILES[p].gpu);
    m_int(g, "gpu_vram_gb", PROFILES[p].vram);
    m_int(g, "gpu_count", PROFILES[p].gpus);
    m_str(g, "cpu_model", PROFILES[p].cpu);
    m_int(g, "cpu_cores", PROFILES[p].cores);
    m_int(g, "ram_gb", PROFILES[p].ram);
    m_str(g, "environment_type", PROFILES[p].env);
    pk_str(g, "fingerprint");
    p_fmt(g, "%s|%s|%dc|%dg", PROFILES[p].gpu, PROFILES[p].cpu, PROFILES[p].cores, PROFILES[p].ram);
}

/* BenchmarkRecorded: the run's next benchmark, running @p test. */
static void karr_benchmark(evl_gen *g, krun *r, const char *test) {
    bool passed = chance(g, 900);
    double secs = 5 + frand(g) * 120;
    r->secs += secs;
    r->passed += passed;
    ev(g, "BenchmarkRecorded");
    f_str(g, "run_id", r->id);
    f_str(g, "test_name", test);
    f_str(g, "test_version", "1.0.0");
    f_int(g, "run_number", r->next + 1);
    f_bool(g, "passed", passed);
    f_time(g, "timestamp", g->clock);
    if (!strcmp(test, "throughput")) {
        f_map(g, "metrics", 3);
        m_dbl(g, "tokens_per_second", round_to(20 + frand(g) * 180, 0.01));
        m_dbl(g, "requests_per_second", round_to(0.5 + frand(g) * 8, 0.01));
        m_dbl(g, "total_time_seconds", round_to(secs, 0.01));
    } else if (!strcmp(test, "latency")) {
        f_map(g, "metrics", 3);
        double ttft = 20 + frand(g) * 300;
        m_dbl(g, "ttft_ms_p50", round_to(ttft, 0.1));
        m_dbl(g, "ttft_ms_p99", round_to(ttft * (1.5 + frand(g)), 0.1));
        m_dbl(g, "itl_ms_p50", round_to(5 + frand(g) * 40, 0.1));
    } else if (!strcmp(test, "memory_usage")) {
        f_map(g, "metrics", 2);
        m_dbl(g, "peak_vram_gb", round_to(4 + frand(g) * 60, 0.01));
        m_dbl(g, "peak_ram_gb", round_to(2 + frand(g) * 30, 0.01));
    } else {
        f_map(g, "metrics", 2);
        m_dbl(g, "accuracy", round_to(0.3 + frand(g) * 0.6, 0.0001));
        m_dbl(g, "samples", (double)range(g, 200, 14000));
    }
    r->next++;
}

static void karr_run_finished(evl_gen *g, krun *r) {
    ev(g, "BenchmarkRunFinished");
    f_str(g, "id", r->id);
    f_bool(g, "passed", r->passed == r->next);
    f_dbl(g, "total_time_seconds", round_to(r->secs + 3 + frand(g) * 10, 0.01));
    f_int(g, "total_benchmarks", r->next);
    f_int(g, "passed_count", r->passed);
    f_int(g, "failed_count", r->next - r->passed);
}

static void karr_step(evl_gen *g) {
    karr_state *ks = &g->karr;
    if (ks->n_registered < AGENTS_N) {
        karr_register(g, &ks->agents[ks->n_registered++]);
        return;
    }
    unsigned r = (unsigned)below(g, 1000);
    kagent *a = &ks->agents[below(g, AGENTS_N)];
    if (r < 200) {
        b_stream(g, EVL_REV_ANY, "kittagent-%s", a->id);
        ev(g, "AgentHeartbeatReceived");
        f_str(g, "id", a->id);
        f_str(g, "status", chance(g, 300) ? "busy" : "online");
        return;
    }
    if (r < 215) {
        b_stream(g, EVL_REV_ANY, "kittagent-%s", a->id);
        ev(g, "AgentStatusChanged");
        f_str(g, "id", a->id);
        f_str(g, "status", "offline");
        return;
    }
    if (r < 222) {
        karr_register(g, a); /* the agent daemon restarted */
        return;
    }
    if (r < 228) {
        b_stream(g, EVL_REV_ANY, "kittagent-%s", a->id);
        ev(g, "AgentUpdated");
        f_str(g, "id", a->id);
        f_fmt(g, "notes", "Driver updated; rerun the %s suite", SUITES[below(g, COUNT(SUITES))].name);
        ev_actor(g, "web-ui");
        return;
    }
    if (r < 236 && ks->n_done > 8) {
        size_t i = below(g, ks->n_done);
        b_stream(g, EVL_REV_ANY, "kittrun-%s", ks->done[i]);
        ev(g, "BenchmarkRunDeleted");
        f_str(g, "id", ks->done[i]);
        ev_actor(g, "web-ui");
        memmove(ks->done[i], ks->done[i + 1], sizeof ks->done[0] * (ks->n_done - i - 1));
        ks->n_done--;
        return;
    }
    if (r < 320) { /* campaigns */
        if (ks->n_camps < KCAMP_MAX && (ks->n_camps == 0 || chance(g, 250))) {
            kcamp *c = &ks->camps[ks->n_camps++];
            memset(c, 0, sizeof *c);
            uuid4(g, c->id);
            c->agent = (int)below(g, AGENTS_N);
            c->total = (int)range(g, 4, 16);
            c->fail = chance(g, 80);
            b_stream(g, EVL_REV_NO_STREAM, "kittcampaign-%s", c->id);
            ev(g, "CampaignCreated");
            f_str(g, "id", c->id);
            f_fmt(g, "name", "%s nightly sweep", PROFILES[ks->agents[c->agent].profile].host);
            f_str(g, "description", "Every model x engine on the standard suite");
            f_map(g, "config", 3);
            pk_str(g, "models");
            msgpack_pack_array(&g->pk, 2);
            pk_str(g, KMODELS[0]);
            pk_str(g, KMODELS[1 + below(g, COUNT(KMODELS) - 1)]);
            pk_str(g, "engines");
            msgpack_pack_array(&g->pk, 2);
            pk_str(g, "vllm");
            pk_str(g, "llama_cpp");
            m_str(g, "suite", "standard");
            f_str(g, "agent_id", ks->agents[c->agent].id);
            f_int(g, "total_runs", c->total);
            ev_actor(g, "web-ui");
            return;
        }
        size_t i = below(g, ks->n_camps);
        kcamp *c = &ks->camps[i];
        b_stream(g, EVL_REV_ANY, "kittcampaign-%s", c->id);
        if (!c->started) {
            c->started = 1;
            ev(g, "CampaignStarted");
            f_str(g, "id", c->id);
            f_str(g, "agent_id", ks->agents[c->agent].id);
            return;
        }
        if (c->fail && c->ok + c->bad + c->skip >= c->total / 2) {
            ev(g, "CampaignFailed");
            f_str(g, "id", c->id);
            f_fmt(g, "error", "Agent %s stopped responding", ks->agents[c->agent].name);
            ks->camps[i] = ks->camps[--ks->n_camps];
            return;
        }
        unsigned o = (unsigned)below(g, 10);
        if (o < 8) c->ok++;
        else if (o < 9) c->bad++;
        else c->skip++;
        bool last = c->ok + c->bad + c->skip >= c->total;
        ev(g, last ? "CampaignCompleted" : "CampaignProgressed");
        f_str(g, "id", c->id);
        f_int(g, "succeeded", c->ok);
        f_int(g, "failed", c->bad);
        f_int(g, "skipped", c->skip);
        if (last) ks->camps[i] = ks->camps[--ks->n_camps];
        return;
    }
    if (r < 420) { /* quick tests */
        if (ks->n_qts < KQT_MAX && (ks->n_qts == 0 || chance(g, 300))) {
            kqt *q = &ks->qts[ks->n_qts++];
            memset(q, 0, sizeof *q);
            uuid4(g, q->id);
            q->agent = (int)below(g, AGENTS_N);
            q->model = (int)below(g, COUNT(KMODELS));
            q->engine = (int)below(g, COUNT(KENGINES));
            q->bench = (int)below(g, 2);
            b_stream(g, EVL_REV_NO_STREAM, "kittquicktest-%s", q->id);
            ev(g, "QuickTestQueued");
            f_str(g, "id", q->id);
            f_str(g, "agent_id", ks->agents[q->agent].id);
            f_str(g, "model_path", KMODELS[q->model]);
            f_str(g, "engine_name", KENGINES[q->engine]);
            f_str(g, "benchmark_name", SUITES[0].tests[q->bench]);
            f_str(g, "suite_name", "quick");
            ev_actor(g, "web-ui");
            return;
        }
        size_t i = below(g, ks->n_qts);
        kqt *q = &ks->qts[i];
        if (!q->started) {
            q->started = 1;
            b_stream(g, EVL_REV_ANY, "kittquicktest-%s", q->id);
            ev(g, "QuickTestStarted");
            f_str(g, "id", q->id);
            return;
        }
        if (chance(g, 100)) {
            b_stream(g, EVL_REV_ANY, "kittquicktest-%s", q->id);
            ev(g, "QuickTestFailed");
            f_str(g, "id", q->id);
            f_fmt(g, "error", "%s failed to load the model: CUDA out of memory", KENGINES[q->engine]);
        } else {
            /* the run the test produced, then the test pointing at it: one atomic batch */
            krun run = {.agent = q->agent, .suite = 0, .model = q->model, .engine = q->engine};
            uuid4(g, run.id);
            b_stream(g, EVL_REV_NO_STREAM, "kittrun-%s", run.id);
            karr_run_started(g, &run);
            karr_benchmark(g, &run, SUITES[0].tests[q->bench]);
            karr_run_finished(g, &run);
            karr_done(ks, run.id);
            b_stream(g, EVL_REV_ANY, "kittquicktest-%s", q->id);
            ev(g, "QuickTestCompleted");
            f_str(g, "id", q->id);
            f_str(g, "result_id", run.id);
        }
        ks->qts[i] = ks->qts[--ks->n_qts];
        return;
    }
    /* benchmark runs */
    if (ks->n_runs < KRUNS_MAX && (ks->n_runs == 0 || chance(g, 150))) {
        krun *k = &ks->runs[ks->n_runs++];
        memset(k, 0, sizeof *k);
        uuid4(g, k->id);
        k->agent = (int)below(g, AGENTS_N);
        k->suite = (int)below(g, COUNT(SUITES));
        k->model = (int)below(g, COUNT(KMODELS));
        k->engine = (int)below(g, COUNT(KENGINES));
        k->total = SUITES[k->suite].n;
        b_stream(g, EVL_REV_NO_STREAM, "kittrun-%s", k->id);
        karr_run_started(g, k);
        ev_actor(g, "kitt-agent/%s", ks->agents[k->agent].name);
        return;
    }
    size_t i = below(g, ks->n_runs);
    krun *k = &ks->runs[i];
    b_stream(g, EVL_REV_ANY, "kittrun-%s", k->id);
    if (k->next < k->total) {
        karr_benchmark(g, k, SUITES[k->suite].tests[k->next]);
        return;
    }
    karr_run_finished(g, k);
    karr_done(ks, k->id);
    ks->runs[i] = ks->runs[--ks->n_runs];
}

/* ================================================================ SaaS */

static const struct {
    const char *tier, *model, *gpu;
    int rounds, agents;
} TIERS[] = {
    {"small", "Qwen/Qwen3-4B", "NVIDIA L4", 100, 3},
    {"standard", "Qwen/Qwen3-14B", "NVIDIA L40S", 200, 5},
    {"large", "Qwen/Qwen3-32B", "NVIDIA A100 80GB", 300, 8},
    {"xl", "meta-llama/Llama-3.3-70B-Instruct", "NVIDIA H100 80GB", 400, 12},
};
static const char *const SEEDS[] = {
    "Q3 earnings call transcript of a mid-cap semiconductor firm; supply constraints easing.",
    "City council debate on congestion pricing; three council members undecided.",
    "Draft EU regulation on open-weight model disclosure, leaked 2025-11 version.",
    "Local election: incumbent mayor vs. two challengers, housing as the main issue.",
    "Product launch of a budget e-bike brand entering the German market.",
};

static void saas_routing(evl_gen *g, size_t t, bool experimental) {
    b_stream(g, EVL_REV_ANY, "modelrouting-%s", experimental ? "experimental" : TIERS[t].tier);
    ev(g, "ModelRoutingConfigured");
    f_str(g, "sim_tier", experimental ? "experimental" : TIERS[t].tier);
    f_str(g, "model_id", TIERS[t].model);
    f_str(g, "gpu_type", TIERS[t].gpu);
    f_int(g, "max_rounds", TIERS[t].rounds);
    if (chance(g, 500)) f_fmt(g, "vllm_args", "--max-model-len %d --gpu-memory-utilization 0.9",
                              8192 << below(g, 3));
    else f_nil(g, "vllm_args");
    f_int(g, "target_agents", TIERS[t].agents);
    ev_actor(g, "operator");
}

static void saas_error(evl_gen *g, const char *source, const sjob *j, const char *msg) {
    b_stream(g, EVL_REV_ANY, "saaserrors-%s", source);
    ev(g, "ErrorCaptured");
    f_str(g, "level", chance(g, 900) ? "ERROR" : "CRITICAL");
    f_str(g, "source", source);
    f_str(g, "message", msg);
    f_fmt(g, "traceback", "Traceback (most recent call last):\n  File \"/app/saas/%s.py\", line %d, "
                          "in run\n%s",
          source, (int)range(g, 20, 400), msg);
    if (j) {
        f_fmt(g, "user_id", "%lld", (long long)j->user);
        f_int(g, "job_id", j->id);
    }
}

static void saas_submit(evl_gen *g, sjob *j, bool from_draft) {
    b_stream(g, from_draft ? EVL_REV_ANY : EVL_REV_NO_STREAM, "simjob-%lld", (long long)j->id);
    ev(g, "SimulationJobSubmitted");
    f_int(g, "id", j->id);
    f_fmt(g, "user_id", "%lld", (long long)j->user);
    f_str(g, "seed_text", SEEDS[j->id % COUNT(SEEDS)]);
    f_str(g, "goal", chance(g, 700) ? "Predict the outcome and its probability" : NULL);
    f_str(g, "tier", TIERS[j->tier].tier);
    f_bool(g, "enrich_web", j->enrich);
    f_int(g, "forecast_days", 7 << below(g, 3));
    f_arr(g, "markets_config", 2);
    msgpack_pack_map(&g->pk, 2);
    m_str(g, "question", "Will the main proposal pass?");
    m_str(g, "type", "binary");
    msgpack_pack_map(&g->pk, 2);
    m_str(g, "question", "Support level after 30 days");
    m_str(g, "type", "scalar");
    if (j->retry_of) {
        f_int(g, "retry_of", j->retry_of);
        f_int(g, "retry_count", j->retry_count);
    }
    ev_actor(g, "user-%lld", (long long)j->user);
}

static void saas_new_job(evl_gen *g, int64_t retry_of, int retry_count, int64_t user) {
    saas_state *ss = &g->saas;
    sjob *j = &ss->a[ss->n++];
    memset(j, 0, sizeof *j);
    j->id = ss->next_job++;
    j->user = user;
    j->retry_of = retry_of;
    j->retry_count = retry_count;
    j->tier = (uint8_t)below(g, COUNT(TIERS));
    j->enrich = chance(g, 700);
    j->fail_at = chance(g, 100) ? (int)range(g, SJ_PENDING, SJ_REPORTING) : -1;
    if (!retry_of && chance(g, 150)) {
        j->state = SJ_DRAFT;
        b_stream(g, EVL_REV_NO_STREAM, "simjob-%lld", (long long)j->id);
        ev(g, "SimulationJobDrafted");
        f_int(g, "id", j->id);
        f_fmt(g, "user_id", "%lld", (long long)j->user);
        f_str(g, "seed_text", SEEDS[j->id % COUNT(SEEDS)]);
        f_nil(g, "goal");
        f_str(g, "tier", TIERS[j->tier].tier);
        f_bool(g, "enrich_web", j->enrich);
        ev_actor(g, "user-%lld", (long long)j->user);
        return;
    }
    j->state = SJ_PENDING;
    saas_submit(g, j, false);
}

static void saas_step(evl_gen *g) {
    saas_state *ss = &g->saas;
    if (ss->routing_done < (int)COUNT(TIERS)) {
        saas_routing(g, (size_t)ss->routing_done++, false);
        return;
    }
    unsigned r = (unsigned)below(g, 1000);
    if (r < 8) {
        if (ss->experimental) {
            b_stream(g, EVL_REV_ANY, "modelrouting-experimental");
            ev(g, "ModelRoutingRemoved");
            f_str(g, "sim_tier", "experimental");
            ev_actor(g, "operator");
        } else {
            saas_routing(g, below(g, COUNT(TIERS)), true);
        }
        ss->experimental = !ss->experimental;
        return;
    }
    if (r < 16) {
        saas_routing(g, below(g, COUNT(TIERS)), false);
        return;
    }
    if (r < 30) {
        b_stream(g, EVL_REV_ANY, "saaserrors-api");
        ev(g, "ErrorCaptured");
        f_str(g, "source", "api");
        f_str(g, "message", "sqlalchemy.exc.OperationalError: connection to server was lost");
        f_nil(g, "traceback");
        if (ss->n_accts) f_fmt(g, "user_id", "%lld", (long long)ss->accts[below(g, ss->n_accts)]);
        f_str(g, "request_path", PICK(g, ((const char *const[]){"/api/jobs", "/api/jobs/share",
                                                               "/api/auth/login"})));
        return;
    }
    if (ss->n_accts < 3 || (r < 110 && ss->n_accts < ACCTS_MAX)) {
        int64_t id = ss->next_acct++;
        ss->verified[ss->n_accts] = 0;
        ss->accts[ss->n_accts++] = id;
        char pw[61], h[65];
        pw_hash(g, pw);
        hexs(g, h, 64);
        b_stream(g, EVL_REV_NO_STREAM, "account-%lld", (long long)id);
        ev(g, "AccountRegistered");
        f_int(g, "id", id);
        f_fmt(g, "email", "researcher%lld@example.org", (long long)id);
        f_str(g, "password_hash", pw);
        f_str(g, "verification_token_hash", h);
        return;
    }
    if (r < 150) {
        size_t i = below(g, ss->n_accts);
        int64_t id = ss->accts[i];
        b_stream(g, EVL_REV_ANY, "account-%lld", (long long)id);
        if (!ss->verified[i]) {
            ss->verified[i] = 1;
            ev(g, "AccountEmailVerified");
            f_int(g, "id", id);
        } else if (chance(g, 500)) {
            char h[65];
            hexs(g, h, 64);
            ev(g, "AccountPasswordResetRequested");
            f_int(g, "id", id);
            f_str(g, "reset_token_hash", h);
            f_time(g, "reset_token_expires", g->clock + HOUR);
        } else {
            char pw[61];
            pw_hash(g, pw);
            ev(g, "AccountPasswordReset");
            f_int(g, "id", id);
            f_str(g, "password_hash", pw);
        }
        return;
    }
    if (r < 170 && ss->n_done) {
        /* a finished job gets a public share link */
        int64_t id = ss->done[below(g, ss->n_done)];
        char h[65];
        hexs(g, h, 64);
        b_stream(g, EVL_REV_ANY, "simjob-%lld", (long long)id);
        ev(g, "SimulationJobShared");
        f_int(g, "id", id);
        f_str(g, "share_token_hash", h);
        return;
    }
    if (ss->n < 20 && (ss->n == 0 || chance(g, 150))) {
        saas_new_job(g, 0, 0, ss->accts[below(g, ss->n_accts)]);
        return;
    }
    size_t i = below(g, ss->n);
    sjob *j = &ss->a[i];
    if (j->fail_at == j->state) {
        sjob dead = *j;
        ss->a[i] = ss->a[--ss->n];
        static const char *const why[] = {
            "", "Temporal workflow start timed out",
            "GPU provider returned no capacity for the requested GPU type",
            "Pipeline crashed: CUDA error: an illegal memory access was encountered",
            "Report generation failed: model output was not valid JSON"};
        b_stream(g, EVL_REV_ANY, "simjob-%lld", (long long)dead.id);
        ev(g, "SimulationJobFailed");
        f_int(g, "id", dead.id);
        f_str(g, "error_message", why[dead.state]);
        if (dead.state >= SJ_RUNNING) f_dbl(g, "gpu_cost_usd", round_to(frand(g) * 4, 0.0001));
        saas_error(g, dead.state >= SJ_RUNNING ? "gpu" : "worker", &dead, why[dead.state]);
        if (ss->n < SJOBS_MAX && chance(g, 500)) {
            /* the user retries: a new job that names the failed one, next call */
            sjob *rj = &ss->a[ss->n++];
            memset(rj, 0, sizeof *rj);
            rj->id = ss->next_job++;
            rj->user = dead.user;
            rj->retry_of = dead.id;
            rj->retry_count = dead.retry_count + 1;
            rj->tier = dead.tier;
            rj->enrich = dead.enrich;
            rj->fail_at = -1;
            rj->state = SJ_DRAFT; /* marks "not submitted yet": submitted on its first step */
            rj->beats = -1;
        }
        return;
    }
    switch (j->state) {
    case SJ_DRAFT:
        if (j->beats == -1) { /* a retry waiting to be submitted */
            j->beats = 0;
            j->state = SJ_PENDING;
            saas_submit(g, j, false);
            return;
        }
        j->state = SJ_PENDING;
        saas_submit(g, j, true);
        return;
    case SJ_PENDING:
        b_stream(g, EVL_REV_ANY, "simjob-%lld", (long long)j->id);
        if (j->enrich && !j->enriched) {
            j->enriched = 1;
            ev(g, "SimulationJobSeedEnriched");
            f_int(g, "id", j->id);
            f_fmt(g, "enriched_seed", "%s\n\nContext from the web: recent coverage, polling and filings.",
                  SEEDS[j->id % COUNT(SEEDS)]);
            f_arr(g, "enrichment_citations", 2);
            p_fmt(g, "https://news.example.com/articles/%lld", (long long)(j->id * 7 % 100000));
            p_fmt(g, "https://data.example.org/polls/%lld", (long long)(j->id * 13 % 100000));
            return;
        }
        {
            char wf[37];
            uuid4(g, wf);
            ev(g, "SimulationJobProvisioningStarted");
            f_int(g, "id", j->id);
            f_str(g, "gpu_provider", PICK(g, ((const char *const[]){"runpod", "lambda", "vast"})));
            f_fmt(g, "workflow_id", "simulation-%lld", (long long)j->id);
            f_str(g, "workflow_run_id", wf);
            j->state = SJ_PROVISIONING;
        }
        return;
    case SJ_PROVISIONING: {
        char pod[15];
        hexs(g, pod, 14);
        b_stream(g, EVL_REV_ANY, "simjob-%lld", (long long)j->id);
        ev(g, "SimulationJobStarted");
        f_int(g, "id", j->id);
        f_fmt(g, "pod_id", "pod-%s", pod);
        f_int(g, "provision_seconds", range(g, 40, 420));
        f_int(g, "pipeline_stage", 1);
        j->state = SJ_RUNNING;
        j->stage = 1;
        return;
    }
    case SJ_RUNNING:
        b_stream(g, EVL_REV_ANY, "simjob-%lld", (long long)j->id);
        if (chance(g, 30)) {
            char t[37];
            uuid4(g, t);
            ev(g, "SimulationJobResumed");
            f_int(g, "id", j->id);
            f_str(g, "resume_task_id", t);
            return;
        }
        if (j->beats < 6 + (int)(j->id % 5)) {
            j->beats++;
            if (j->beats % 2 == 0 && j->stage < 5) j->stage++;
            ev(g, "SimulationJobHeartbeatReceived");
            f_int(g, "id", j->id);
            f_int(g, "pipeline_stage", j->stage);
            f_map(g, "live_status", 4);
            m_str(g, "phase", PICK(g, ((const char *const[]){"simulating", "agents_talking", "graph_building"})));
            m_int(g, "round", j->beats * TIERS[j->tier].rounds / 12);
            m_int(g, "total_rounds", TIERS[j->tier].rounds);
            m_int(g, "agents_active", TIERS[j->tier].agents);
            return;
        }
        ev(g, "SimulationJobReportingStarted");
        f_int(g, "id", j->id);
        f_int(g, "pipeline_seconds", range(g, 300, 5400));
        f_int(g, "pipeline_stage", 6);
        j->state = SJ_REPORTING;
        return;
    case SJ_REPORTING:
        b_stream(g, EVL_REV_ANY, "simjob-%lld", (long long)j->id);
        ev(g, "SimulationJobArtifactsStored");
        f_int(g, "id", j->id);
        j->state = SJ_STORED;
        return;
    case SJ_STORED: {
        double p = round_to(0.05 + frand(g) * 0.9, 0.01);
        b_stream(g, EVL_REV_ANY, "simjob-%lld", (long long)j->id);
        ev(g, "SimulationJobCompleted");
        f_int(g, "id", j->id);
        f_fmt(g, "result_report", "# Forecast\n\nThe simulation gives the main proposal a %.0f%% "
                                  "chance of passing within the horizon.\n",
              p * 100);
        f_arr(g, "result_chat_log", 2);
        msgpack_pack_map(&g->pk, 3);
        m_str(g, "agent", "analyst");
        m_int(g, "round", 1);
        m_str(g, "message", "Base rates favour the status quo.");
        msgpack_pack_map(&g->pk, 3);
        m_str(g, "agent", "contrarian");
        m_int(g, "round", 2);
        m_str(g, "message", "The coalition arithmetic changed last week.");
        f_map(g, "result_graph", 2);
        pk_str(g, "nodes");
        msgpack_pack_array(&g->pk, 2);
        pk_str(g, "proposal");
        pk_str(g, "council");
        pk_str(g, "edges");
        msgpack_pack_array(&g->pk, 1);
        msgpack_pack_array(&g->pk, 2);
        pk_str(g, "council");
        pk_str(g, "proposal");
        f_map(g, "result_structured", 2);
        pk_str(g, "predictions");
        msgpack_pack_array(&g->pk, 1);
        msgpack_pack_map(&g->pk, 2);
        m_str(g, "market", "Will the main proposal pass?");
        m_dbl(g, "probability", p);
        m_dbl(g, "confidence", round_to(0.4 + frand(g) * 0.5, 0.01));
        f_fmt(g, "key_insight", "Main proposal passes with p=%.2f", p);
        f_dbl(g, "gpu_cost_usd", round_to(0.2 + frand(g) * 6, 0.0001));
        if (ss->n_done == COUNT(ss->done)) memmove(ss->done, ss->done + 1, sizeof ss->done[0] * --ss->n_done);
        ss->done[ss->n_done++] = j->id;
        ss->a[i] = ss->a[--ss->n];
        return;
    }
    }
}

/* ================================================================ API */

static const struct {
    unsigned bit;
    const char *name;
    unsigned weight; /* share of the batches when every service runs */
    void (*step)(evl_gen *);
} SERVICES[] = {
    {EVL_GEN_JOBS, "jobs", 30, jobs_step},  {EVL_GEN_TASKS, "tasks", 28, tasks_step},
    {EVL_GEN_AUTH, "auth", 10, auth_step},  {EVL_GEN_RUNS, "runs", 10, fruns_step},
    {EVL_GEN_KARR, "karr", 10, karr_step},  {EVL_GEN_SAAS, "saas", 12, saas_step},
};

int evl_gen_new(uint64_t seed, unsigned services, evl_gen **out) {
    *out = NULL;
    if (!services || (services & ~EVL_GEN_ALL)) return EVL_EINVAL;
    evl_gen *g = evl_calloc(1, sizeof *g);
    if (!g) return EVL_ENOMEM;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) g->s[i] = splitmix64(&x);
    g->services = services;
    g->clock = CLOCK_START;
    for (size_t i = 0; i < MAX_EVENTS; i++) {
        msgpack_sbuffer_init(&g->data[i]);
        msgpack_sbuffer_init(&g->meta[i]);
    }
    /* Integer ids start at a seed-dependent base so that generators with
     * different seeds can share a log. */
    uint64_t h = splitmix64(&x);
    int64_t base = 1 + (int64_t)(h % 90000) * 100000;
    g->auth.base = g->auth.next_user = base;
    g->auth.next_group = g->auth.next_inv = g->auth.next_sess = g->auth.next_token = base;
    g->auth.next_sweep = 300;
    for (size_t i = 0; i < VPS_IDS; i++) g->auth.vps_ids[i] = (int64_t)(rnd(g) >> 2);
    g->saas.base = g->saas.next_acct = g->saas.next_job = base;
    g->jobs.next_purge = 1000;
    g->tasks.worker = (uint32_t)(h >> 40) & 0x3ff;
    for (size_t i = 0; i < NODES_N; i++) {
        node *n = &g->tasks.nodes[i];
        bool gpu = i < 8;
        snprintf(n->host, sizeof n->host, "kr-%s-%02zu", gpu ? "gpu" : "cpu", gpu ? i + 1 : i - 7);
        n->gpus = gpu ? (i % 2 ? 8 : 4) : 0;
        n->cores = gpu ? 128 : 64;
        n->numa = 2;
        n->mem = (int64_t)(gpu ? 1024 : 256) << 30;
        n->vm = i % 3 == 0;
    }
    for (size_t i = 0; i < AGENTS_N; i++) {
        kagent *a = &g->karr.agents[i];
        uuid4(g, a->id);
        a->profile = (int)i;
        char idp[7]; /* a copy: GCC cannot tell a->id from a->name apart (-Wrestrict) */
        memcpy(idp, a->id, 6);
        idp[6] = 0;
        snprintf(a->name, sizeof a->name, "karr-%s-%s", PROFILES[i].host, idp);
    }
    *out = g;
    return EVL_OK;
}

int evl_gen_next(evl_gen *g, const evl_stream_in **streams, size_t *n) {
    if (g->oom) return EVL_ENOMEM;
    unsigned total = 0;
    for (size_t i = 0; i < COUNT(SERVICES); i++)
        if (g->services & SERVICES[i].bit) total += SERVICES[i].weight;
    unsigned pick = (unsigned)below(g, total);
    size_t s = 0;
    for (; s < COUNT(SERVICES); s++) {
        if (!(g->services & SERVICES[s].bit)) continue;
        if (pick < SERVICES[s].weight) break;
        pick -= SERVICES[s].weight;
    }
    b_reset(g);
    g->clock += range(g, 0, 30) * MS;
    SERVICES[s].step(g);
    ev_close(g);
    if (g->oom) return EVL_ENOMEM;
    /* every step emits events into every stream it opens; a gap here is a bug */
    for (size_t i = 0; i < g->n_streams; i++)
        if (!g->streams[i].n_events) return EVL_EINVAL;
    if (!g->n_streams) return EVL_EINVAL;
    *streams = g->streams;
    *n = g->n_streams;
    return EVL_OK;
}

void evl_gen_free(evl_gen *g) {
    if (!g) return;
    for (size_t i = 0; i < MAX_EVENTS; i++) {
        msgpack_sbuffer_destroy(&g->data[i]);
        msgpack_sbuffer_destroy(&g->meta[i]);
    }
    evl_free(g);
}

int evl_gen_parse_services(const char *list, unsigned *mask) {
    unsigned m = 0;
    const char *p = list;
    if (!list || !*list) return EVL_EINVAL;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        bool found = false;
        if (len == 3 && !memcmp(p, "all", 3)) {
            m |= EVL_GEN_ALL;
            found = true;
        }
        for (size_t i = 0; i < COUNT(SERVICES) && !found; i++)
            if (strlen(SERVICES[i].name) == len && !memcmp(p, SERVICES[i].name, len)) {
                m |= SERVICES[i].bit;
                found = true;
            }
        if (!found) return EVL_EINVAL;
        p += len;
        if (*p == ',') p++;
    }
    *mask = m;
    return m ? EVL_OK : EVL_EINVAL;
}

const char *evl_gen_service_name(unsigned bit) {
    for (size_t i = 0; i < COUNT(SERVICES); i++)
        if (SERVICES[i].bit == bit) return SERVICES[i].name;
    return NULL;
}

int64_t evl_gen_clock(const evl_gen *g) { return g->clock; }

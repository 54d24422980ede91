/* evlog-compare's output: medians, ratios per round, the targets, the table,
 * the JSON and the chart's data.  Nothing here measures. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmp_run.h"

/* Latency (workload 6) is compared by p99, higher is worse: the ratio is
 * baseline / evlog so that above 1 means evlog is better, as for throughput. */
static double round_ratio(const cmp_case *c, int a, int b, int k)
{
    const cmp_res *ra = &c->r[a][k], *rb = &c->r[b][k];
    if (!ra->valid || !rb->valid)
        return 0;
    if (c->workload == 6)
        return ra->p99_ms > 0 ? rb->p99_ms / ra->p99_ms : 0;
    return rb->ev_s > 0 ? ra->ev_s / rb->ev_s : 0;
}

static double pair_median(const cmp_case *c, int a, int b, double *per_round)
{
    double v[CMP_MAX_ROUNDS];
    int n = 0;
    for (int k = 0; k < c->rounds; k++) {
        double x = round_ratio(c, a, b, k);
        if (per_round)
            per_round[k] = x;
        if (x > 0)
            v[n++] = x;
    }
    return bench_median(v, (size_t)n);
}

void cmp_summarise(cmp_case *c)
{
    for (int s = 0; s < c->n_sys; s++) {
        double ev[CMP_MAX_ROUNDS], p50[CMP_MAX_ROUNDS], p99[CMP_MAX_ROUNDS];
        int n = 0;
        c->valid[s] = 1;
        for (int k = 0; k < c->rounds; k++) {
            const cmp_res *r = &c->r[s][k];
            if (!r->valid) {
                c->valid[s] = 0;
                continue;
            }
            ev[n] = r->ev_s, p50[n] = r->p50_ms, p99[n] = r->p99_ms;
            n++;
        }
        c->ev[s] = bench_median(ev, (size_t)n);
        c->p50[s] = bench_median(p50, (size_t)n);
        c->p99[s] = bench_median(p99, (size_t)n);
        c->ratio_med[s] = c->ref[s] >= 0 ? pair_median(c, c->ref[s], s, c->ratio[s]) : 0;
    }
}

static int sys_index(const cmp_case *c, const char *name)
{
    for (int i = 0; name && i < c->n_sys; i++)
        if (!strcmp(c->sys[i]->name, name))
            return i;
    return -1;
}

void cmp_targets(const cmp_case *cs, int n, cmp_target *t, int nt)
{
    for (int i = 0; i < nt; i++) {
        t[i].measured = t[i].met = 0;
        for (int j = 0; j < n; j++) {
            const cmp_case *c = &cs[j];
            if (strcmp(c->id, t[i].case_id))
                continue;
            int a = sys_index(c, t[i].a), b = sys_index(c, t[i].b);
            if (a < 0 || (t[i].b && b < 0) || !c->valid[a] || (b >= 0 && !c->valid[b]))
                break;
            t[i].value = b >= 0 ? pair_median(c, a, b, NULL) : c->ev[a];
            t[i].measured = t[i].value > 0;
            /* latency: "below" means a ratio above 1 */
            t[i].met = c->workload == 6 ? t[i].value > t[i].min : t[i].value >= t[i].min;
        }
    }
}

static const char *dtag(const cmp_env *env, const cmp_case *c, const cmp_sys *s)
{
    if (c->workload == 5) /* projection files, not the log */
        return strcmp(s->name, "postgres") ? "sync NORMAL/txn" : "WAL flush/txn";
    if (!strcmp(s->name, "evlog") || !strcmp(s->name, "evlog-http"))
        return "fsync/commit";
    if (!strcmp(s->name, "evlog-http-nosync"))
        return "no fsync";
    if (!strcmp(s->name, "sqlite"))
        return "fsync/txn";
    if (!strcmp(s->name, "postgres"))
        return "WAL flush/commit";
    if (!strcmp(s->name, "nats-durable"))
        return env->nats_durable_how == CMP_NATS_SYNC_INTERVAL ? "fsync/msg" : "sync write/msg";
    return "no fsync";
}

static void fmt_num(char *out, size_t n, double v)
{
    if (v <= 0)
        snprintf(out, n, "-");
    else if (v >= 100)
        snprintf(out, n, "%.0f", v);
    else
        snprintf(out, n, "%.1f", v);
}

void cmp_print(FILE *f, const cmp_env *env, const cmp_case *cs, int n, const cmp_target *t, int nt)
{
    bench_table tb;
    bench_table_init(&tb, 9);
    size_t r = bench_table_row(&tb);
    const char *hdr[] = {"workload", "system", "durability", "events/s", "p50 ms", "p99 ms",
                         "evlog/x per round", "median", "vs"};
    for (int i = 0; i < 9; i++)
        bench_table_set(&tb, r, (size_t)i, "%s", hdr[i]);
    const cmp_sys *seen[16];
    int n_seen = 0;
    for (int j = 0; j < n; j++) {
        const cmp_case *c = &cs[j];
        for (int s = 0; s < c->n_sys; s++) {
            int known = 0;
            for (int q = 0; q < n_seen; q++)
                known |= seen[q] == c->sys[s];
            if (!known && n_seen < 16)
                seen[n_seen++] = c->sys[s];
            r = bench_table_row(&tb);
            bench_table_set(&tb, r, 0, "%s", s ? "" : c->title);
            bench_table_set(&tb, r, 1, "%s", c->sys[s]->name);
            bench_table_set(&tb, r, 2, "%s", dtag(env, c, c->sys[s]));
            char ev[32];
            fmt_num(ev, sizeof ev, c->ev[s]);
            bench_table_set(&tb, r, 3, "%s", c->workload == 6 ? "-" : ev);
            if (c->workload == 4 || c->workload == 5) {
                bench_table_set(&tb, r, 4, "-");
                bench_table_set(&tb, r, 5, "-");
            } else {
                bench_table_set(&tb, r, 4, "%.3f", c->p50[s]);
                bench_table_set(&tb, r, 5, "%.3f", c->p99[s]);
            }
            if (c->ref[s] >= 0) {
                char per[BENCH_CELL] = "";
                size_t used = 0;
                for (int k = 0; k < c->rounds && used + 12 < sizeof per; k++)
                    used += (size_t)snprintf(per + used, sizeof per - used, "%s%.2f", k ? " " : "",
                                             c->ratio[s][k]);
                bench_table_set(&tb, r, 6, "%s", per);
                bench_table_set(&tb, r, 7, "%.2fx", c->ratio_med[s]);
                bench_table_set(&tb, r, 8, "%s", c->sys[c->ref[s]]->name);
            }
            if (!c->valid[s])
                bench_table_tail(&tb, r, "INVALID (see stderr)");
        }
    }
    fprintf(f, "\nevlog-compare (%s, %d round%s, %ld CPUs; ratios: evlog / baseline events/s, "
               "feed: baseline p99 / evlog p99; above 1 = evlog ahead)\n\n",
            env->quick ? "quick" : "full", env->rounds, env->rounds > 1 ? "s" : "",
            sysconf(_SC_NPROCESSORS_ONLN));
    bench_table_print(&tb, f);
    bench_table_free(&tb);
    fputs("\ndurability:\n", f);
    for (int q = 0; q < n_seen; q++)
        fprintf(f, "  %-18s %s\n", seen[q]->name, seen[q]->durability(env));
    fputs("\noptimistic concurrency (workload 3):\n", f);
    for (int j = 0; j < n; j++)
        if (cs[j].workload == 3)
            for (int s = 0; s < cs[j].n_sys; s++) {
                uint64_t calls = 0, conf = 0;
                for (int k = 0; k < cs[j].rounds; k++)
                    calls += cs[j].r[s][k].calls, conf += cs[j].r[s][k].conflicts;
                fprintf(f, "  %s %s: %.1f%% of the calls were conflicts\n", cs[j].id,
                        cs[j].sys[s]->name, calls ? 100.0 * (double)conf / (double)calls : 0);
            }
    for (int j = 0; j < n; j++)
        if (cs[j].workload == 5) {
            fputs("\nmaterialize (workload 5): median of the rounds; CPU = the system's own "
                  "(evlog: the engine's threads; sqlite: the loop; postgres: client + its backend)\n", f);
            for (int s = 0; s < cs[j].n_sys; s++) {
                double sec[CMP_MAX_ROUNDS], cpu[CMP_MAX_ROUNDS];
                int m = 0;
                for (int k = 0; k < cs[j].rounds; k++)
                    if (cs[j].r[s][k].valid)
                        sec[m] = cs[j].r[s][k].seconds, cpu[m++] = cs[j].r[s][k].cpu_s;
                const cmp_res *r0 = &cs[j].r[s][0];
                fprintf(f, "  %-9s %8.2f s  CPU %8.2f s (%.2f us/event)  rows jobs/tasks/nodes/runs "
                           "%llu/%llu/%llu/%llu  digest %016llx%s\n",
                        cs[j].sys[s]->name, bench_median(sec, (size_t)m), bench_median(cpu, (size_t)m),
                        cs[j].events ? 1e6 * bench_median(cpu, (size_t)m) / (double)cs[j].events : 0,
                        (unsigned long long)r0->rows[0], (unsigned long long)r0->rows[1],
                        (unsigned long long)r0->rows[2], (unsigned long long)r0->rows[3],
                        (unsigned long long)r0->digest, cs[j].valid[s] ? "" : "  INVALID");
            }
            fputs("  every system: 10000 events per transaction; evlog and sqlite: the engine's SQLite "
                  "files (WAL, synchronous=NORMAL); postgres: synchronous_commit=on, one round trip per "
                  "statement; both baselines get each event's values decoded before the clock starts\n",
                  f);
        }
    fputs("\ntargets (issue 6):\n", f);
    for (int i = 0; i < nt; i++) {
        if (!t[i].measured)
            fprintf(f, "  NOT MEASURED  %s%s%s\n", t[i].text, t[i].note ? ": " : "",
                    t[i].note ? t[i].note : "");
        else
            fprintf(f, "  %-12s  %s: %.2f%s%s%s%s\n", t[i].met ? "MET" : "NOT MET", t[i].text,
                    t[i].value, t[i].b ? "x" : " events/s", t[i].note ? "  (" : "",
                    t[i].note ? t[i].note : "", t[i].note ? ")" : "");
    }
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
    }
    fputc('"', f);
}

int cmp_write_json(const char *path, const cmp_env *env, const cmp_case *cs, int n,
                   const cmp_target *t, int nt, double total_s)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\"benchmark\": \"compare\", \"date\": \"%s\", \"quick\": %s, \"cpus\": %ld,\n", date,
            env->quick ? "true" : "false", sysconf(_SC_NPROCESSORS_ONLN));
    fprintf(f, " \"rounds\": %d, \"seconds_per_run\": %.2f, \"total_seconds\": %.1f,\n", env->rounds,
            env->seconds, total_s);
    fputs(" \"cases\": [\n", f);
    for (int j = 0; j < n; j++) {
        const cmp_case *c = &cs[j];
        fprintf(f, "  {\"id\": \"%s\", \"title\": ", c->id);
        json_str(f, c->title);
        fprintf(f, ", \"workload\": %d, \"clients\": %d, \"batch\": %d, \"hot_streams\": %d, "
                   "\"events\": %llu,\n   \"systems\": [\n",
                c->workload, c->clients, c->batch, c->hot, (unsigned long long)c->events);
        for (int s = 0; s < c->n_sys; s++) {
            fprintf(f, "    {\"name\": \"%s\", \"durability\": ", c->sys[s]->name);
            json_str(f, c->sys[s]->durability(env));
            fprintf(f, ", \"valid\": %s, \"events_per_s\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f",
                    c->valid[s] ? "true" : "false", c->ev[s], c->p50[s], c->p99[s]);
            if (c->workload == 4)
                fprintf(f, ", \"load_seconds\": %.2f", c->load_s[s]);
            if (c->workload == 5)
                fprintf(f, ", \"table_digest\": \"%016llx\", \"rows\": {\"jobs\": %llu, \"tasks\": %llu, "
                           "\"nodes\": %llu, \"runs\": %llu}",
                        (unsigned long long)c->r[s][0].digest, (unsigned long long)c->r[s][0].rows[0],
                        (unsigned long long)c->r[s][0].rows[1], (unsigned long long)c->r[s][0].rows[2],
                        (unsigned long long)c->r[s][0].rows[3]);
            if (c->ref[s] >= 0) {
                fprintf(f, ", \"compared_with\": \"%s\", \"ratio_per_round\": [",
                        c->sys[c->ref[s]]->name);
                for (int k = 0; k < c->rounds; k++)
                    fprintf(f, "%s%.3f", k ? ", " : "", c->ratio[s][k]);
                fprintf(f, "], \"median_ratio\": %.3f", c->ratio_med[s]);
            }
            fputs(",\n     \"rounds\": [", f);
            for (int k = 0; k < c->rounds; k++) {
                const cmp_res *r = &c->r[s][k];
                fprintf(f, "%s{\"valid\": %s, \"events_per_s\": %.1f, \"p50_ms\": %.4f, "
                           "\"p99_ms\": %.4f, \"events\": %llu, \"calls\": %llu, \"conflicts\": %llu",
                        k ? ", " : "", r->valid ? "true" : "false", r->ev_s, r->p50_ms, r->p99_ms,
                        (unsigned long long)r->events, (unsigned long long)r->calls,
                        (unsigned long long)r->conflicts);
                if (c->workload == 5)
                    fprintf(f, ", \"seconds\": %.3f, \"cpu_seconds\": %.3f, \"digest\": \"%016llx\"",
                            r->seconds, r->cpu_s, (unsigned long long)r->digest);
                if (r->err[0]) {
                    fputs(", \"error\": ", f);
                    json_str(f, r->err);
                }
                fputc('}', f);
            }
            fprintf(f, "]}%s\n", s + 1 < c->n_sys ? "," : "");
        }
        fprintf(f, "   ]}%s\n", j + 1 < n ? "," : "");
    }
    fputs(" ],\n \"targets\": [\n", f);
    for (int i = 0; i < nt; i++) {
        fputs("  {\"target\": ", f);
        json_str(f, t[i].text);
        fprintf(f, ", \"threshold\": %g, \"measured\": %s", t[i].min, t[i].measured ? "true" : "false");
        if (t[i].measured)
            fprintf(f, ", \"value\": %.3f, \"met\": %s", t[i].value, t[i].met ? "true" : "false");
        if (t[i].note) {
            fputs(", \"note\": ", f);
            json_str(f, t[i].note);
        }
        fprintf(f, "}%s\n", i + 1 < nt ? "," : "");
    }
    fputs(" ]\n}\n", f);
    return fclose(f) == 0 ? 0 : -1;
}

/* Two blocks for gnuplot: events/s per case and system (workloads 1-4),
 * then the feed's p50 and p99 per system.  Columns are fixed so the chart
 * script needs no knowledge of which systems ran. */
int cmp_write_chart(const char *path, const cmp_case *cs, int n)
{
    static const char *const cols[] = {"evlog", "evlog-http", "evlog-http-nosync", "sqlite",
                                       "postgres", "nats-durable", "nats"};
    const int n_cols = (int)(sizeof cols / sizeof cols[0]);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    fputs("case", f);
    for (int i = 0; i < n_cols; i++)
        fprintf(f, " %s", cols[i]);
    fputc('\n', f);
    for (int j = 0; j < n; j++) {
        if (cs[j].workload == 6)
            continue;
        fprintf(f, "%s", cs[j].id);
        for (int i = 0; i < n_cols; i++) {
            int s = sys_index(&cs[j], cols[i]);
            if (s >= 0 && cs[j].valid[s] && cs[j].ev[s] > 0)
                fprintf(f, " %.1f", cs[j].ev[s]);
            else
                fputs(" 0.001", f); /* below the chart: gnuplot rejects an all-NaN column */
        }
        fputc('\n', f);
    }
    fputs("\n\nsystem p50 p99\n", f);
    int feeds = 0;
    for (int j = 0; j < n; j++)
        feeds += cs[j].workload == 6;
    if (!feeds) /* gnuplot needs the block */
        fputs("none 0 0\n", f);
    for (int j = 0; j < n; j++)
        if (cs[j].workload == 6)
            for (int s = 0; s < cs[j].n_sys; s++)
                fprintf(f, "%s %.3f %.3f\n", cs[j].sys[s]->name, cs[j].valid[s] ? cs[j].p50[s] : 0,
                        cs[j].valid[s] ? cs[j].p99[s] : 0);
    return fclose(f) == 0 ? 0 : -1;
}

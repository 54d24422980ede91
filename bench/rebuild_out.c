/** @file rebuild_out.c
 * @brief bench/rebuild: medians and ratios, the table, the targets, JSON.
 */
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "evlog/evlog.h"
#include "rebuild.h"

static const char *const ph_name[N_PH] = {"live", "rebuild", "limit"};

static double mb(uint64_t kb)
{
    return (double)kb / 1024.0;
}

static void keep_max(uint64_t *dst, uint64_t v)
{
    if (v > *dst)
        *dst = v;
}

void rb_summarise(rb_set *s)
{
    double v[N_PH][RB_MAX_ROUNDS], secs[N_PH][RB_MAX_ROUNDS], rl[RB_MAX_ROUNDS], rv[RB_MAX_ROUNDS],
        cr[RB_MAX_ROUNDS], cl[RB_MAX_ROUNDS];
    s->valid = 1;
    for (int k = 0; k < s->rounds; k++) {
        for (int p = 0; p < N_PH; p++) {
            const rb_phase *r = &s->ph[p][k];
            v[p][k] = r->events_per_s;
            secs[p][k] = r->secs;
            s->valid &= r->valid;
            keep_max(&s->hwm_kb[p], r->rss.hwm_kb);
            keep_max(&s->anon_kb[p], r->rss.anon_kb);
            keep_max(&s->file_kb[p], r->rss.file_kb);
        }
        const rb_phase *live = &s->ph[PH_LIVE][k], *rb = &s->ph[PH_REBUILD][k], *lim = &s->ph[PH_LIMIT][k];
        /* within one round: the systems ran minutes apart, not hours */
        s->ratio_limit[k] = rl[k] = lim->events_per_s > 0 ? rb->events_per_s / lim->events_per_s : 0;
        s->ratio_live[k] = rv[k] = live->events_per_s > 0 ? rb->events_per_s / live->events_per_s : 0;
        s->cpu_ratio[k] = cr[k] = rb->cpu_secs > 0 ? lim->cpu_secs / rb->cpu_secs : 0;
        s->cpu_live_ratio[k] = cl[k] = rb->cpu_secs > 0 ? live->cpu_secs / rb->cpu_secs : 0;
    }
    for (int p = 0; p < N_PH; p++) {
        s->med[p] = bench_median(v[p], (size_t)s->rounds);
        s->med_secs[p] = bench_median(secs[p], (size_t)s->rounds);
    }
    s->ratio_limit_med = bench_median(rl, (size_t)s->rounds);
    s->ratio_live_med = bench_median(rv, (size_t)s->rounds);
    s->cpu_ratio_med = bench_median(cr, (size_t)s->rounds);
    s->cpu_live_ratio_med = bench_median(cl, (size_t)s->rounds);
}

void rb_scan_summarise(rb_scan *sc)
{
    double v[RB_MAX_ROUNDS];
    for (int k = 0; k < sc->rounds; k++) {
        v[k] = sc->r[k].events_per_s;
        keep_max(&sc->hwm_kb, sc->r[k].rss.hwm_kb);
        keep_max(&sc->anon_kb, sc->r[k].rss.anon_kb);
        keep_max(&sc->file_kb, sc->r[k].rss.file_kb);
    }
    sc->med = bench_median(v, (size_t)sc->rounds);
}

static void set_label(const rb_set *s, char *out, size_t n)
{
    if (s->n_proj == 1)
        snprintf(out, n, "%s (%s)", s->name, s->proj[0]);
    else
        snprintf(out, n, "%s (%d)", s->name, s->n_proj);
}

static int limit_met(const rb_set *s)
{
    return s->ratio_limit_med >= RB_RATIO_TARGET;
}

static int live_met(const rb_set *s)
{
    return s->ratio_live_med > 1.0;
}

static int scan_met(const rb_scan *sc)
{
    return sc->med >= RB_SCAN_TARGET;
}

static const char *met(int ok)
{
    return ok ? "MET" : "NOT MET";
}

void rb_print(FILE *f, const rb_run *run, const rb_scan *sc, const rb_set *sets, int n)
{
    enum { NCOL = 15 };
    static const char *const hdr[NCOL] = {"set", "events", "scan ev/s", "live ev/s", "rebuild ev/s", "limit ev/s",
                                          "rebuild/limit", "rebuild/live", "cpu limit/rb", "cpu live/rb",
                                          "rebuild s", "RSS MB scan", "live", "rebuild", "limit"};
    bench_table t;
    bench_table_init(&t, NCOL);
    size_t h = bench_table_row(&t);
    for (size_t i = 0; i < NCOL; i++)
        bench_table_set(&t, h, i, "%s", hdr[i]);
    for (int i = 0; i < n; i++) {
        const rb_set *s = &sets[i];
        char label[64], tail[160];
        size_t r = bench_table_row(&t);
        set_label(s, label, sizeof label);
        bench_table_set(&t, r, 0, "%s", label);
        bench_table_set(&t, r, 1, "%" PRIu64, run->head);
        bench_table_set(&t, r, 2, "%.0f", sc->med);
        bench_table_set(&t, r, 3, "%.0f", s->med[PH_LIVE]);
        bench_table_set(&t, r, 4, "%.0f", s->med[PH_REBUILD]);
        bench_table_set(&t, r, 5, "%.0f", s->med[PH_LIMIT]);
        bench_table_set(&t, r, 6, "%.2fx", s->ratio_limit_med);
        bench_table_set(&t, r, 7, "%.2fx", s->ratio_live_med);
        bench_table_set(&t, r, 8, "%.2fx", s->cpu_ratio_med);
        bench_table_set(&t, r, 9, "%.2fx", s->cpu_live_ratio_med);
        bench_table_set(&t, r, 10, "%.2f", s->med_secs[PH_REBUILD]);
        bench_table_set(&t, r, 11, "%.0f", mb(sc->hwm_kb));
        for (int p = 0; p < N_PH; p++)
            bench_table_set(&t, r, 12 + (size_t)p, "%.0f", mb(s->hwm_kb[p]));
        snprintf(tail, sizeof tail, "<== >= %.1fx limit: %s; faster than live: %s%s", RB_RATIO_TARGET,
                 met(limit_met(s)), met(live_met(s)),
                 !s->valid ? "  [INVALID: see stderr]" : !s->same_tables ? "  [TABLES DIFFER]" : "");
        bench_table_tail(&t, r, tail);
    }
    fprintf(f, "\nRebuild vs live projector vs limit on one log of %" PRIu64 " events (%.0f MB); medians over %d "
               "round%s (live, rebuild, limit alternately); ratios: median of each round's ratio\n",
            run->head, run->log_mb, run->rounds, run->rounds == 1 ? "" : "s");
    bench_table_print(&t, f);
    bench_table_free(&t);

    double scan_cpu[RB_MAX_ROUNDS];
    for (int k = 0; k < sc->rounds; k++)
        scan_cpu[k] = sc->r[k].cpu_secs > 0 ? (double)run->head / sc->r[k].cpu_secs : 0;
    fprintf(f, "\nTARGET  log scan (read + decode, no SQL): %.0f ev/s (target >= %.0f ev/s): %s  "
               "[events per CPU second: %.0f]\n", sc->med, RB_SCAN_TARGET, met(scan_met(sc)),
            bench_median(scan_cpu, (size_t)sc->rounds));
    for (int i = 0; i < n; i++) {
        const rb_set *s = &sets[i];
        char label[64];
        set_label(s, label, sizeof label);
        /* the ratios are medians of each round's ratio, as in bench/project:
         * the medians of the rates need not divide to them */
        fprintf(f, "TARGET  %-12s rebuild %.0f vs limit %.0f ev/s: %.2fx (target >= %.1fx): %s  "
                   "[CPU s: limit / rebuild = %.2fx]\n", label, s->med[PH_REBUILD], s->med[PH_LIMIT],
                s->ratio_limit_med, RB_RATIO_TARGET, met(limit_met(s)), s->cpu_ratio_med);
        fprintf(f, "TARGET  %-12s rebuild %.0f vs live projector %.0f ev/s: %.2fx (target > 1x): %s  "
                   "[CPU s: live / rebuild = %.2fx]\n", label, s->med[PH_REBUILD], s->med[PH_LIVE],
                s->ratio_live_med, met(live_met(s)), s->cpu_live_ratio_med);
    }

    fprintf(f, "\nPeak RSS per phase, MB (largest over rounds): VmHWM = the kernel's peak; anon / file = the largest "
               "RssAnon / RssFile sampled every 5 ms (file: the LMDB map of the log; anon: heap, SQLite's cache)\n");
    fprintf(f, "  %-12s %-8s %9s %9s %9s\n", "set", "phase", "VmHWM", "anon", "file");
    fprintf(f, "  %-12s %-8s %9.1f %9.1f %9.1f\n", "-", "scan", mb(sc->hwm_kb), mb(sc->anon_kb), mb(sc->file_kb));
    for (int i = 0; i < n; i++) {
        const rb_set *s = &sets[i];
        char label[64];
        set_label(s, label, sizeof label);
        for (int p = 0; p < N_PH; p++)
            fprintf(f, "  %-12s %-8s %9.1f %9.1f %9.1f\n", label, ph_name[p], mb(s->hwm_kb[p]), mb(s->anon_kb[p]),
                    mb(s->file_kb[p]));
    }
    fprintf(f, "(peak RSS independent of the log's length: compare the anon figures of runs with different --events)\n");

    for (int i = 0; i < n; i++) {
        const rb_set *s = &sets[i];
        if (s->n_proj < 2)
            continue;
        fprintf(f, "\n%s, per projection (median over rounds): rebuild s (the engine's own figure; the rebuilds "
                   "run concurrently) / limit s (one after the other)\n", s->name);
        for (int j = 0; j < s->n_proj; j++) {
            double rs[RB_MAX_ROUNDS], ls[RB_MAX_ROUNDS];
            for (int k = 0; k < s->rounds; k++) {
                rs[k] = s->pf[j][k].rebuild_secs;
                ls[k] = s->pf[j][k].limit_secs;
            }
            fprintf(f, "  %-6s rebuild %8.2f s   limit %8.2f s   matched %" PRIu64 "\n", s->proj[j],
                    bench_median(rs, (size_t)s->rounds), bench_median(ls, (size_t)s->rounds), s->pf[j][0].matched);
        }
    }
    fprintf(f, "(total %.0f s, filling the log %.0f s)\n", run->total_secs, run->fill_secs);
}

/* ------------------------------------------------------------------ JSON */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fputc('\\', f);
        fputc((unsigned char)*p < 0x20 ? ' ' : *p, f);
    }
    fputc('"', f);
}

static void json_phase(FILE *f, const rb_phase *r)
{
    fprintf(f, "{\"valid\": %s, \"seconds\": %.6f, \"cpu_seconds\": %.6f, \"events_per_s\": %.1f, "
               "\"rss_mb\": {\"vm_hwm\": %.1f, \"anon_peak\": %.1f, \"file_peak\": %.1f, \"at_start\": %.1f, "
               "\"reset\": %s, \"samples\": %" PRIu64 "}",
            r->valid ? "true" : "false", r->secs, r->cpu_secs, r->events_per_s, mb(r->rss.hwm_kb),
            mb(r->rss.anon_kb), mb(r->rss.file_kb), mb(r->rss.start_kb), r->rss.reset_ok ? "true" : "false",
            r->rss.samples);
    if (r->error[0]) {
        fputs(", \"error\": ", f);
        json_str(f, r->error);
    }
    fputc('}', f);
}

static void json_set(FILE *f, const rb_set *s, const rb_run *run)
{
    fprintf(f, "    {\"set\": \"%s\", \"projections\": [", s->name);
    for (int j = 0; j < s->n_proj; j++)
        fprintf(f, "%s\"%s\"", j ? ", " : "", s->proj[j]);
    fprintf(f, "], \"events\": %" PRIu64 ", \"valid\": %s, \"same_tables\": %s,\n", run->head,
            s->valid ? "true" : "false", s->same_tables ? "true" : "false");
    for (int p = 0; p < N_PH; p++)
        fprintf(f, "     \"%s_events_per_s\": %.1f, \"%s_seconds\": %.3f,\n", ph_name[p], s->med[p], ph_name[p],
                s->med_secs[p]);
    fprintf(f, "     \"rebuild_vs_limit\": %.4f, \"rebuild_vs_live\": %.4f, \"cpu_limit_vs_rebuild\": %.4f, "
               "\"cpu_live_vs_rebuild\": %.4f,\n",
            s->ratio_limit_med, s->ratio_live_med, s->cpu_ratio_med, s->cpu_live_ratio_med);
    fprintf(f, "     \"limit_target_met\": %s, \"live_target_met\": %s,\n", limit_met(s) ? "true" : "false",
            live_met(s) ? "true" : "false");
    fputs("     \"peak_rss_mb\": {", f);
    for (int p = 0; p < N_PH; p++)
        fprintf(f, "%s\"%s\": {\"vm_hwm\": %.1f, \"anon\": %.1f, \"file\": %.1f}", p ? ", " : "", ph_name[p],
                mb(s->hwm_kb[p]), mb(s->anon_kb[p]), mb(s->file_kb[p]));
    fputs("},\n     \"rounds\": [", f);
    for (int k = 0; k < s->rounds; k++) {
        fprintf(f, "%s\n       {\"rebuild_vs_limit\": %.4f, \"rebuild_vs_live\": %.4f", k ? "," : "",
                s->ratio_limit[k], s->ratio_live[k]);
        for (int p = 0; p < N_PH; p++) {
            fprintf(f, ",\n        \"%s\": ", ph_name[p]);
            json_phase(f, &s->ph[p][k]);
        }
        fputs(",\n        \"projections\": [", f);
        for (int j = 0; j < s->n_proj; j++) {
            const rb_proj_fig *pf = &s->pf[j][k];
            fprintf(f, "%s{\"name\": \"%s\", \"rebuild_seconds\": %.3f, \"limit_seconds\": %.6f, "
                       "\"limit_cpu_seconds\": %.6f, \"matched\": %" PRIu64 ", \"statements\": %" PRIu64 ", "
                       "\"rows\": %" PRIu64 ", \"digest_live\": \"%016" PRIx64 "\", \"digest_rebuild\": \"%016" PRIx64
                       "\", \"digest_limit\": \"%016" PRIx64 "\"}",
                    j ? ", " : "", s->proj[j], pf->rebuild_secs, pf->limit_secs, pf->limit_cpu, pf->matched,
                    pf->statements, pf->live_rows, pf->live_digest, pf->rebuild_digest, pf->limit_digest);
        }
        fputs("]}", f);
    }
    fputs("]}", f);
}

int rb_write_json(const char *file, const rb_run *run, const rb_scan *sc, const rb_set *sets, int n)
{
    FILE *f = fopen(file, "w");
    if (!f) {
        fprintf(stderr, "rebuild: cannot write %s: %s\n", file, strerror(errno));
        return -1;
    }
    fprintf(f, "{\n  \"benchmark\": \"rebuild\",\n  \"date\": \"%s\",\n  \"evlog_version\": \"%s\",\n", run->date,
            EVL_VERSION_STRING);
    fprintf(f, "  \"sqlite_version\": \"%s\",\n  \"cpus\": %ld,\n  \"tmp\": ", sqlite3_libversion(), run->cpus);
    json_str(f, run->tmp);
    fprintf(f, ",\n  \"events\": %" PRIu64 ",\n  \"log_mb\": %.1f,\n  \"fill_seconds\": %.1f,\n", run->head,
            run->log_mb, run->fill_secs);
    fprintf(f, "  \"rounds\": %d,\n  \"quick\": %s,\n  \"seed\": %" PRIu64 ",\n", run->rounds,
            run->quick ? "true" : "false", run->seed);
    fprintf(f, "  \"live_batch_events\": %d,\n  \"limit_batch_events\": %d,\n  \"total_seconds\": %.1f,\n",
            run->live_batch, run->limit_batch, run->total_secs);
    fprintf(f, "  \"targets\": {\"rebuild_vs_limit\": %.2f, \"rebuild_vs_live\": 1.0, \"scan_events_per_s\": %.0f},\n",
            RB_RATIO_TARGET, RB_SCAN_TARGET);
    fprintf(f, "  \"scan\": {\"events_per_s\": %.1f, \"fields\": %" PRIu64 ", \"target_met\": %s, "
               "\"peak_rss_mb\": {\"vm_hwm\": %.1f, \"anon\": %.1f, \"file\": %.1f},\n    \"rounds\": [",
            sc->med, sc->fields, scan_met(sc) ? "true" : "false", mb(sc->hwm_kb), mb(sc->anon_kb), mb(sc->file_kb));
    for (int k = 0; k < sc->rounds; k++) {
        fputs(k ? ", " : "", f);
        json_phase(f, &sc->r[k]);
    }
    fputs("]},\n  \"sets\": [\n", f);
    for (int i = 0; i < n; i++) {
        json_set(f, &sets[i], run);
        fputs(i + 1 < n ? ",\n" : "\n", f);
    }
    fputs("  ]\n}\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, "rebuild: writing %s: %s\n", file, strerror(errno));
        return -1;
    }
    return 0;
}

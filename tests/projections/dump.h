/* Projection files compared whole: for tests that check a table built one
 * way equals the same table built another way. */
#ifndef EVL_TEST_PROJ_DUMP_H
#define EVL_TEST_PROJ_DUMP_H

#include "evlog/proj.h"
#include "test.h"

/* Every table of a projection file as one JSON text, rows in rowid order. */
static inline char *dump(const char *path) {
    json_t *res, *all = json_object();
    char err[256];
    CHECK(evl_proj_query_file(path, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
                                    "AND name <> '_evl_checkpoint' ORDER BY name", NULL, NULL, &res, err, sizeof err) == EVL_OK);
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(res, "rows"), i, row) {
        const char *t = json_string_value(json_array_get(row, 0));
        char sql[256];
        json_t *rows;
        evl_proj_query_opts o = {.max_rows = 1000000, .timeout_ms = 30000};
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\" ORDER BY rowid", t);
        int rc = evl_proj_query_file(path, sql, NULL, &o, &rows, err, sizeof err);
        if (rc) { /* WITHOUT ROWID tables: order by every column */
            snprintf(sql, sizeof sql, "SELECT * FROM \"%s\" ORDER BY 1, 2", t);
            CHECK(evl_proj_query_file(path, sql, NULL, &o, &rows, err, sizeof err) == EVL_OK);
        }
        json_object_set(all, t, json_object_get(rows, "rows"));
        json_decref(rows);
    }
    json_decref(res);
    /* the schema too: a rebuild or a replay builds some indexes only after
     * its bulk load, and the file it hands over must have all of them */
    CHECK(evl_proj_query_file(path, "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite%' "
                                    "AND tbl_name <> '_evl_checkpoint' ORDER BY type, name", NULL, NULL, &res, err,
                              sizeof err) == EVL_OK);
    json_object_set(all, "_schema", json_object_get(res, "rows"));
    json_decref(res);
    char *s = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(all);
    return s;
}

#endif

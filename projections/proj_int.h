/* Private structures of projections/: the parsed spec and the engine. */
#ifndef EVL_PROJ_INT_H
#define EVL_PROJ_INT_H

#include <pthread.h>
#include <sqlite3.h>

#include "common/common_int.h"
#include "evlog/proj.h"

/* Where a parameter's value comes from. */
typedef enum param_kind {
    P_DATA, P_META, P_STREAM, P_TYPE, P_POSITION, P_REVISION, P_ID, P_TIME, P_TIME_NS,
    P_CATEGORY, P_DATA_JSON, P_META_JSON
} param_kind;

typedef struct spec_param {
    param_kind kind;
    char *key;           /* P_DATA / P_META: the field name */
    size_t key_len;
} spec_param;

typedef struct spec_stmt {
    char *sql;
    int line;            /* in the spec file, for messages */
    size_t n_params;     /* = sqlite3_bind_parameter_count(); params[i] binds index i+1 */
    spec_param *params;
} spec_stmt;

typedef struct spec_handler {
    char **types;        /* the @on types (not "*") */
    size_t n_types;
    int wildcard;        /* has "@on *" */
    int line;
    spec_stmt *stmts;
    size_t n_stmts;
} spec_handler;

struct evl_proj_spec {
    char *name;
    char *file;
    char hash[17];
    char *ddl;
    spec_handler *handlers;
    size_t n_handlers;
    char **tables;       /* tables the DDL creates (for row counts) */
    size_t n_tables;
};

/* sqlite.c */
int evl__proj_sqlite_err(int rc);
/* Open a projection file for writing (the projector) with our PRAGMAs. */
int evl__proj_open_writer(const char *path, sqlite3 **out, char *err, size_t errlen);
/* Refuse what specs and queries may not do (ATTACH, PRAGMA, transactions). */
int evl__proj_authorizer(void *arg, int action, const char *a, const char *b, const char *c,
                         const char *d);
/* Read the checkpoint row: position, spec hash, events applied. */
int evl__proj_read_checkpoint(sqlite3 *db, uint64_t *pos, char hash[17], uint64_t *applied);
/* Bind one msgpack value read at m to parameter i. */
int evl__proj_bind_mp(sqlite3_stmt *st, int i, const uint8_t *p, const uint8_t *end);

#endif

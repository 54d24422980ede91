/* evlogd's settings: command-line flags and the same keys in a config file. */
#ifndef EVLOG_SERVER_OPTIONS_H
#define EVLOG_SERVER_OPTIONS_H

#include <stdio.h>

#include "server/srv.h"

#define EVLOGD_MAX_DIRS 16

typedef struct evlogd_opts {
    const char *data;
    const char *dirs[EVLOGD_MAX_DIRS];
    size_t n_dirs;
    int no_builtin;
    int demo;                  /* --demo: append generated events (server/demo.h) */
    unsigned demo_rate;        /* their events per second */
    evl_log_options log;
    evl_srv_config srv;
    char **owned;              /* strings read from a config file */
    size_t n_owned;
} evlogd_opts;

void evl__srv_opts_init(evlogd_opts *o);
void evl__srv_opts_free(evlogd_opts *o);
/* Set option @p key (a flag name without "--") to @p val; @p val is
 * borrowed and must outlive @p o.  @return 0, or -1 with a sentence in err. */
int evl__srv_opts_set(evlogd_opts *o, const char *key, const char *val, char *err, size_t errlen);
/* Does @p key take no value on the command line? */
int evl__srv_opts_is_flag(const char *key);
/* Apply a config file: `key = value` (or `key value`) lines, # comments. */
int evl__srv_opts_file(evlogd_opts *o, const char *path, char *err, size_t errlen);
void evl__srv_opts_usage(FILE *f);

#endif

/* evlog command-line tool: what the command files share. */
#ifndef EVLOG_CLI_H
#define EVLOG_CLI_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "evlog/json.h"
#include "evlog/log.h"

/* Exit statuses are part of the contract (DESIGN.md): scripts test them. */
enum {
    CLI_OK = 0,
    CLI_ERR = 1,
    CLI_USAGE = 2,
    CLI_CONFLICT = 3,
    /* Internal only: stdout was closed by the reader (EPIPE).  Not an error
     * for `evlog export | head`, so main() turns it into CLI_OK. */
    CLI_CLOSED = 100
};

#define CLI_DEFAULT_DATA "./evlog-data"

#define CLI_MAX_PROJ_DIRS 16

typedef struct cli {
    const char *data_dir;
    const char *proj_dirs[CLI_MAX_PROJ_DIRS]; /* --projections DIR, repeatable */
    size_t n_proj_dirs;
    int no_builtin;                           /* --no-builtin */
    /* Set asynchronously by SIGINT/SIGTERM once cli_catch_signals() ran. */
    volatile sig_atomic_t *stop;
} cli;

typedef struct cli_command {
    const char *name;
    const char *usage; /* the arguments after "evlog [--data DIR] NAME" */
    const char *summary;
    int (*run)(cli *c, const struct cli_command *cmd, int argc, char **argv);
} cli_command;

/* ---- argument scanning (cli/args.c) */

typedef struct cli_flag {
    const char *name;  /* "--from", or a short "-f" */
    int takes_value;
    int id;            /* > 0, returned by cli_arg_next() */
} cli_flag;

typedef struct cli_args {
    cli *c;
    const cli_command *cmd;
    int argc;
    char **argv;
    int i;
    int only_positional; /* after "--" */
} cli_args;

enum { CLI_ARG_END = -1, CLI_ARG_POS = 0, CLI_ARG_FAIL = -2, CLI_ARG_HELP = -3 };

/* Starts after argv[0] (the command name). */
void cli_args_init(cli_args *a, cli *c, const cli_command *cmd, int argc, char **argv);
/* The next flag id (its value in *val), CLI_ARG_POS (the word in *val),
 * CLI_ARG_END, CLI_ARG_HELP, or CLI_ARG_FAIL (usage already printed).
 * `--data DIR` is accepted anywhere and handled here. */
int cli_arg_next(cli_args *a, const cli_flag *flags, const char **val);
/* Turn a scanner result that is not a flag or positional into an exit code. */
int cli_arg_finish(cli_args *a, int r);

int cli_parse_u64(const char *s, uint64_t *v);
/* Parse a numeric flag value, printing a usage error on failure. */
int cli_flag_u64(const cli_command *cmd, const char *flag, const char *s, uint64_t *v);

/* ---- messages and output (cli/util.c) */

/* "evlog: MESSAGE" on stderr; returns CLI_ERR. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "evlog: MESSAGE" then the command's one-line usage; returns CLI_USAGE. */
int cli_usage(const cli_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The command's usage on stdout (for --help); returns CLI_OK. */
int cli_help(const cli_command *cmd);

/* Open the log of c->data_dir; prints why it failed.  Returns a CLI_ code. */
int cli_open(cli *c, int read_only, evl_log **log);

/* One event as a compact CloudEvents JSON line. Returns CLI_OK, CLI_ERR or
 * CLI_CLOSED. */
int cli_print_event(FILE *out, const evl_event *ev);
/* Print a JSON value on one line. */
int cli_print_json(FILE *out, const json_t *j, size_t flags);
/* Flush and classify write errors the same way. */
int cli_flush(FILE *out);

/* "any", "no_stream", "exists" or the number. */
const char *cli_rev_name(uint64_t rev, char buf[24]);

/* Install SIGINT/SIGTERM handlers that set *c->stop. */
void cli_catch_signals(cli *c);

/* The spec that builds projection NAME (built-ins, then --projections), or
 * NULL; the caller frees it with evl_proj_spec_free() (cli/cmd_proj.c). */
struct evl_proj_spec *cli_find_spec(cli *c, const char *name);

/* evlog digest --projection NAME (cli/cmd_proj.c). */
int cli_proj_digest(cli *c, const char *name);

/* ---- commands */

int cmd_append(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_import(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_read(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_tail(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_export(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_verify(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_digest(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_stats(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_replay(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_rebuild(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_backup(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_query(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_projections(cli *c, const cli_command *cmd, int argc, char **argv);
int cmd_history(cli *c, const cli_command *cmd, int argc, char **argv);

#endif

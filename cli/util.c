/* Messages, opening the log, and writing NDJSON safely. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("evlog: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_ERR;
}

int cli_usage(const cli_command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("evlog: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "usage: evlog [--data DIR] %s%s%s\n", cmd->name, *cmd->usage ? " " : "",
                cmd->usage);
    else
        fputs("usage: evlog [--data DIR] COMMAND [ARGS...]   (evlog --help lists the "
              "commands)\n",
              stderr);
    return CLI_USAGE;
}

int cli_help(const cli_command *cmd)
{
    printf("usage: evlog [--data DIR] %s%s%s\n\n%s\n", cmd->name, *cmd->usage ? " " : "",
           cmd->usage, cmd->summary);
    return CLI_OK;
}

int cli_open(cli *c, int read_only, evl_log **log)
{
    evl_log_options opt;
    evl_log_options_init(&opt);
    opt.read_only = read_only;
    int rc = evl_log_open(c->data_dir, &opt, log);
    if (rc == EVL_OK)
        return CLI_OK;
    *log = NULL;
    if (rc == EVL_ENOTFOUND && read_only)
        return cli_fail("no event log in %s (nothing has been appended there yet)",
                        c->data_dir);
    if (rc == EVL_EBUSY)
        return cli_fail("%s: %s", evl_strerror(rc), c->data_dir);
    return cli_fail("cannot open %s: %s", c->data_dir, evl_strerror(rc));
}

static int out_status(FILE *out)
{
    if (!ferror(out))
        return CLI_OK;
    if (errno == EPIPE)
        return CLI_CLOSED;
    return cli_fail("cannot write output: %s", strerror(errno));
}

int cli_print_json(FILE *out, const json_t *j, size_t flags)
{
    char *s = json_dumps(j, flags);
    if (!s)
        return cli_fail("%s", evl_strerror(EVL_ENOMEM));
    fputs(s, out);
    fputc('\n', out);
    free(s);
    return out_status(out);
}

int cli_print_event(FILE *out, const evl_event *ev)
{
    json_t *j = evl_json_event(ev);
    if (!j)
        return cli_fail("event at position %" PRIu64 " cannot be shown as JSON "
                        "(corrupt data?)",
                        ev->position);
    int rc = cli_print_json(out, j, JSON_COMPACT);
    json_decref(j);
    return rc;
}

int cli_flush(FILE *out)
{
    if (fflush(out) != 0 && errno == EPIPE)
        return CLI_CLOSED;
    return out_status(out);
}

const char *cli_rev_name(uint64_t rev, char buf[24])
{
    switch (rev) {
    case EVL_REV_ANY:
        return "any";
    case EVL_REV_NO_STREAM:
        return "no_stream";
    case EVL_REV_EXISTS:
        return "exists";
    }
    snprintf(buf, 24, "%" PRIu64, rev);
    return buf;
}

/* The only process-wide mutable state: a signal handler cannot be given a
 * context pointer. */
static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

void cli_catch_signals(cli *c)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking call should return so the loop sees the flag. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    c->stop = &stop_flag;
}

/* A tiny argument scanner: flags may come before, between or after the
 * positional words, as `--flag VALUE` or `--flag=VALUE`, and `--` ends them.
 * getopt_long would permute argv and needs global state; this does neither. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_args_init(cli_args *a, cli *c, const cli_command *cmd, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->c = c;
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
    a->i = 1;
}

static const cli_flag data_flag = {"--data", 1, 0};

int cli_arg_next(cli_args *a, const cli_flag *flags, const char **val)
{
    for (;;) {
        if (a->i >= a->argc)
            return CLI_ARG_END;
        const char *arg = a->argv[a->i++];
        if (a->only_positional || arg[0] != '-' || arg[1] == '\0') {
            *val = arg; /* "-" is a word: stdin for import */
            return CLI_ARG_POS;
        }
        if (!strcmp(arg, "--")) {
            a->only_positional = 1;
            continue;
        }
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
            return CLI_ARG_HELP;

        const char *eq = strchr(arg, '=');
        size_t nlen = eq && arg[1] == '-' ? (size_t)(eq - arg) : strlen(arg);
        const cli_flag *f = NULL;
        if (nlen == strlen(data_flag.name) && !strncmp(arg, data_flag.name, nlen))
            f = &data_flag;
        for (const cli_flag *g = flags; !f && g && g->name; g++)
            if (strlen(g->name) == nlen && !strncmp(arg, g->name, nlen))
                f = g;
        if (!f) {
            cli_usage(a->cmd, "unknown option '%.*s'", (int)nlen, arg);
            return CLI_ARG_FAIL;
        }
        const char *v = NULL;
        if (f->takes_value) {
            if (eq && arg[1] == '-')
                v = eq + 1;
            else if (a->i < a->argc)
                v = a->argv[a->i++];
            else {
                cli_usage(a->cmd, "option '%s' needs a value", f->name);
                return CLI_ARG_FAIL;
            }
        } else if (eq && arg[1] == '-') {
            cli_usage(a->cmd, "option '%s' takes no value", f->name);
            return CLI_ARG_FAIL;
        }
        if (f == &data_flag) {
            if (!*v) {
                cli_usage(a->cmd, "--data needs a directory");
                return CLI_ARG_FAIL;
            }
            a->c->data_dir = v;
            continue;
        }
        *val = v;
        return f->id;
    }
}

int cli_arg_finish(cli_args *a, int r)
{
    if (r == CLI_ARG_HELP)
        return cli_help(a->cmd);
    return CLI_USAGE;
}

int cli_parse_u64(const char *s, uint64_t *v)
{
    if (!s || *s < '0' || *s > '9')
        return -1; /* strtoull would accept "-1" and " 1" */
    errno = 0;
    char *end = NULL;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *v = (uint64_t)x;
    return 0;
}

int cli_flag_u64(const cli_command *cmd, const char *flag, const char *s, uint64_t *v)
{
    if (cli_parse_u64(s, v) != 0) {
        cli_usage(cmd, "%s needs a non-negative number, got '%s'", flag, s);
        return -1;
    }
    return 0;
}

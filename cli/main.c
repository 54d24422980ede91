/* evlog: the command-line tool over a data directory (embedded, no server). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const cli_command commands[] = {
    {"append", "STREAM TYPE [DATA_JSON] [--expected REV] [--id UUID] [--meta JSON]",
     "Append one event and print its acknowledgement as JSON.\n"
     "  DATA_JSON       a JSON object (default {})\n"
     "  --expected REV  any | no_stream | exists | the stream's last revision\n"
     "  --id UUID       the event id; appending the same id again is idempotent\n"
     "  --meta JSON     a JSON object of metadata",
     cmd_append},
    {"read", "[STREAM] [--actor A] [--correlation-id ID] [--type T] [--category C] "
     "[--from REV|POS] [--since TIME] [--until POS|TIME] [--limit N] [--backward]",
     "Print a stream's events, or the whole log's events that match the filters\n"
     "(at least one without STREAM; filters combine), one CloudEvents JSON object\n"
     "per line.\n"
     "  --actor A             only events whose meta.actor is A\n"
     "  --correlation-id ID   only events whose meta.correlation_id is ID\n"
     "  --type T              only events of type T\n"
     "  --category C          only streams whose name starts with C-\n"
     "  --from REV|POS        first revision of STREAM, or first position of the log\n"
     "                        (with --backward: the last; default: the start/end)\n"
     "  --since TIME          only events committed at or after TIME (ISO-8601)\n"
     "  --until POS|TIME      nothing after this position or commit time\n"
     "  --limit N             at most N events\n"
     "  --backward            newest first",
     cmd_read},
    {"tail", "[--from POS] [--type T] [--category C] [--actor A] [--correlation-id ID] "
     "[--limit N] [-f]",
     "Print the last events of the whole log (10 unless --limit), or every event\n"
     "from position POS, one JSON object per line.\n"
     "  --type T              only events of type T\n"
     "  --category C          only streams whose name starts with C-\n"
     "  --actor A             only events whose meta.actor is A\n"
     "  --correlation-id ID   only events whose meta.correlation_id is ID\n"
     "  -f, --follow          keep printing new events as they are committed",
     cmd_tail},
    {"export", "[--from POS] [--until POS]",
     "Print every event (optionally from/until a position) as NDJSON, for import.",
     cmd_export},
    {"import", "FILE.ndjson   (- reads stdin)",
     "Append the events of an NDJSON file (- for stdin), keeping their ids:\n"
     "importing the same file twice adds nothing the second time.",
     cmd_import},
    {"verify", "",
     "Check every record, checksum, index and the hash chain of the log; a broken\n"
     "chain is reported at the first position whose record no longer matches.", cmd_verify},
    {"digest", "[--at POS] [--projection NAME]",
     "Print the log's hash-chain head as JSON {\"position\": P, \"hash\": HEX}: the\n"
     "SHA-256 chain value that stands for every event up to P (docs/audit.md).\n"
     "Write it down elsewhere; later, `evlog verify` and the same digest at P\n"
     "prove that positions 1..P were not rewritten.\n"
     "  --at POS           the digest at position POS (default: the head)\n"
     "  --projection NAME  instead, a content hash of projection NAME's tables\n"
     "                     (canonical order), brought up to date first without\n"
     "                     evlogd: {\"projection\", \"position\", \"hash\", \"tables\", \"rows\"}",
     cmd_digest},
    {"stats", "[--json]", "Show the size and contents of the log.", cmd_stats},
    {"backup", "DEST_DIR",
     "Copy the log, consistent and compacted, into DEST_DIR/log while it is in use,\n"
     "and the projection specs in use (not built in) into DEST_DIR/specs.\n"
     "Projections are not copied: they are rebuilt from the log.  Restore by\n"
     "starting evlogd with --data DEST_DIR [--projections DEST_DIR/specs].",
     cmd_backup},
    {"query", "PROJECTION SQL [--param NAME=VALUE]... [--json] [--limit N]",
     "Run one read-only SQL statement against a projection and print the rows.\n"
     "  --param NAME=VALUE  bind :NAME (VALUE is JSON when it parses, else text)\n"
     "  --json              print {\"columns\":[...],\"rows\":[[...]],\"position\":P}\n"
     "Without a running evlogd the projections are first brought up to date.",
     cmd_query},
    {"history", "PROJECTION TABLE KEY [--column NAME] [--json]",
     "Show every change to one row of a table kept with `-- @history TABLE`: per\n"
     "change a line POSITION TIME TYPE ACTOR OP (from the event that made it),\n"
     "then one line per column changed, COLUMN: OLD -> NEW (values as JSON).\n"
     "  --column NAME  only the changes of that column\n"
     "  --json         print the answer of GET /projections/P/history/TABLE/KEY",
     cmd_history},
    {"replay", "--projection NAME --until POS|TIME --out FILE.db",
     "Build projection NAME as it stood at position POS (or at an ISO-8601 time,\n"
     "found through the time index) into FILE.db, a standalone SQLite file that\n"
     "the stock sqlite3 tool reads: \"what did the jobs table say at 10:30?\"",
     cmd_replay},
    {"rebuild", "NAME",
     "Rebuild projection NAME from position 1 with its current spec file, beside\n"
     "the old table, which keeps answering queries until the new one takes over;\n"
     "a progress bar on a terminal.  Without a running evlogd only (with one, use\n"
     "POST /projections/NAME/rebuild).",
     cmd_rebuild},
    {"projections", "[--json]",
     "Show each projection: state, checkpoint, lag, events applied, rows per table.",
     cmd_projections},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_help(FILE *f)
{
    fputs("evlog " EVL_VERSION_STRING " - event-sourced append-only log store\n\n"
          "usage: evlog [--data DIR] COMMAND [ARGS...]\n\n"
          "  --data DIR         the data directory (default " CLI_DEFAULT_DATA ")\n"
          "  --projections DIR  also load every *.sql projection in DIR (repeatable)\n"
          "  --no-builtin       leave the built-in projections out\n\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  evlog [--data DIR] %s%s%s\n", commands[i].name,
                *commands[i].usage ? " " : "", commands[i].usage);
    fputs("  evlog help | --help | --version\n\n"
          "Exit status: 0 success, 1 error, 2 usage, 3 conflict (wrong expected revision).\n"
          "`evlog COMMAND --help` describes one command.\n",
          f);
}

int main(int argc, char **argv)
{
    cli c = {.data_dir = CLI_DEFAULT_DATA};
    /* A closed stdout must show up as EPIPE from write, so that
     * `evlog export | head` ends quietly instead of dying on a signal. */
    signal(SIGPIPE, SIG_IGN);

    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help(stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
            printf("evlog %s\n", EVL_VERSION_STRING);
            return CLI_OK;
        }
        if (!strcmp(a, "--data")) {
            if (i + 1 >= argc || !*argv[i + 1])
                return cli_usage(NULL, "--data needs a directory");
            c.data_dir = argv[++i];
        } else if (!strcmp(a, "--projections")) {
            if (i + 1 >= argc || !*argv[i + 1])
                return cli_usage(NULL, "--projections needs a directory");
            if (c.n_proj_dirs == CLI_MAX_PROJ_DIRS)
                return cli_usage(NULL, "at most %d --projections directories", CLI_MAX_PROJ_DIRS);
            c.proj_dirs[c.n_proj_dirs++] = argv[++i];
        } else if (!strcmp(a, "--no-builtin")) {
            c.no_builtin = 1;
        } else if (!strncmp(a, "--data=", 7) && a[7]) {
            c.data_dir = a + 7;
        } else if (!strcmp(a, "--url") || !strncmp(a, "--url=", 6)) {
            return cli_usage(NULL, "--url: this build only works on a data directory "
                                   "(use --data DIR)");
        } else {
            return cli_usage(NULL, "unknown option '%s'", a);
        }
    }
    if (i >= argc)
        return cli_usage(NULL, "missing command");
    const char *name = argv[i];
    if (!strcmp(name, "help")) {
        for (size_t k = 0; i + 1 < argc && k < N_COMMANDS; k++)
            if (!strcmp(argv[i + 1], commands[k].name))
                return cli_help(&commands[k]);
        print_help(stdout);
        return CLI_OK;
    }
    for (size_t k = 0; k < N_COMMANDS; k++) {
        if (strcmp(name, commands[k].name))
            continue;
        int rc = commands[k].run(&c, &commands[k], argc - i, argv + i);
        if (rc == CLI_OK || rc == CLI_CLOSED) {
            /* Buffered output can still fail here (full disk, closed pipe). */
            int fr = cli_flush(stdout);
            rc = fr == CLI_ERR ? CLI_ERR : CLI_OK;
        }
        return rc;
    }
    return cli_usage(NULL, "unknown command '%s'", name);
}

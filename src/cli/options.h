/* One option parser for every command: a table per command, getopt_long
 * underneath, --help generated from the table, the same errors everywhere:
 *
 *   corpuslens predict: --top needs a value
 *   corpuslens predict: --top: -1 is out of range 0..2097152
 *   corpuslens predict: --top: 'x' is not an integer
 *   corpuslens predict: unknown option --tpo (did you mean --top?)
 *   Try 'corpuslens predict --help'.            (exit status 2)
 *
 * --opt=value and --opt value are both accepted; abbreviations are not (a
 * new option must not change what an old abbreviation meant). Options and
 * positional arguments may be mixed; after "--" everything is positional.
 *
 * HOW TO ADD AN OPTION to a command (src/cli/cmd_<name>.c):
 *   1. declare the variable that receives it, initialised to its default:
 *        long for CLI_INT, double for CLI_DOUBLE, int for CLI_FLAG,
 *        const char * for CLI_STRING and CLI_CHOICE, cli_strings for
 *        CLI_STRINGS (repeatable), cli_doubles for CLI_DOUBLES (a,b,c);
 *   2. add one line to the command's table (before CLI_END), e.g.
 *        CLI_OPT_INT("top", 0, "K", &top, 0, 1 << 21, "print the K most likely tokens; 0 = all"),
 *      --help lists it with its default (read from the variable; a value
 *      outside the range, NULL or NaN counts as "no default"), the parser
 *      checks the range;
 *   3. say it in README.md where the command is described.
 *   tests/cli_options.sh checks that --help lists every option of the table;
 *   an option for tests only has help NULL (not listed) and, on its line, a
 *   trailing comment that starts with "hidden".
 *
 * HOW TO ADD A COMMAND:
 *   1. src/cli/cmd_<name>.c: its texts (USAGE, ABOUT) at file scope, and
 *        int cmd_<name>(int argc, char **argv) {   // argv[0] = "<name>"
 *            long top = 10;                      // the options' variables
 *            const cli_option opts[] = {CLI_OPT_INT("top", ...), CLI_END};
 *            const cli_command cmd = {"<name>", USAGE, ABOUT, opts, NULL, "TEXT", 1, 1, NULL};
 *            int first, rc = cli_parse(&cmd, argc, argv, &first);
 *            if (rc != CLI_PARSED) return rc;
 *            ... argv[first .. argc-1] are the positional arguments ...
 *   2. an X(name, "summary") line in CLI_COMMANDS (cli.h);
 *   3. MPI starts only under a launcher of several ranks (mpi_start.h): a
 *      command that works on one process runs through cli_on_rank0 (cli.h)
 *      so that under mpirun one rank works; code that runs with and without
 *      MPI uses cli_rank(), cli_bcast_int() and corpuslens/par/par.h.
 */
#ifndef CORPUSLENS_CLI_OPTIONS_H
#define CORPUSLENS_CLI_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
    CLI_FLAG,    /* no value; sets an int to 1 */
    CLI_INT,     /* long in [lo, hi] */
    CLI_DOUBLE,  /* double in [lo, hi] (finite) */
    CLI_STRING,  /* const char *, pointing into argv */
    CLI_CHOICE,  /* const char *, one of choices ("mean|last") */
    CLI_STRINGS, /* repeatable: every value, in order, into a cli_strings */
    CLI_DOUBLES, /* a comma-separated list of finite numbers into a cli_doubles */
} cli_kind;

#define CLI_MAX_STRINGS 4096
#define CLI_MAX_DOUBLES 1024

typedef struct {
    const char *v[CLI_MAX_STRINGS];
    int n;
} cli_strings;

typedef struct {
    double v[CLI_MAX_DOUBLES];
    size_t n;
    int set; /* given on the command line */
} cli_doubles;

typedef struct {
    const char *name;    /* long name without "--" */
    char short_name;     /* one-letter alias (-o) or 0 */
    cli_kind kind;
    void *dest;          /* see cli_kind */
    const char *metavar; /* the value's name in --help (K, FILE); NULL for flags */
    long ilo, ihi;       /* CLI_INT: the accepted range */
    double lo, hi;       /* CLI_DOUBLE: the accepted range */
    const char *choices; /* CLI_CHOICE: "a|b|c"; CLI_STRINGS: NULL */
    int max;             /* CLI_STRINGS: most values (0: CLI_MAX_STRINGS) */
    const char *help;    /* help text; '\n' starts an indented new line; NULL: hidden */
} cli_option;

/* Table rows. */
#define CLI_OPT_FLAG(name, sh, dest, help) {name, sh, CLI_FLAG, dest, NULL, 0, 0, 0, 0, NULL, 0, help}
#define CLI_OPT_INT(name, sh, meta, dest, lo, hi, help) {name, sh, CLI_INT, dest, meta, lo, hi, 0, 0, NULL, 0, help}
#define CLI_OPT_DOUBLE(name, sh, meta, dest, lo, hi, help) \
    {name, sh, CLI_DOUBLE, dest, meta, 0, 0, lo, hi, NULL, 0, help}
#define CLI_OPT_STRING(name, sh, meta, dest, help) {name, sh, CLI_STRING, dest, meta, 0, 0, 0, 0, NULL, 0, help}
#define CLI_OPT_CHOICE(name, sh, dest, choices, help) \
    {name, sh, CLI_CHOICE, dest, choices, 0, 0, 0, 0, choices, 0, help} /* --help shows "--name a|b" */
#define CLI_OPT_STRINGS(name, sh, meta, dest, max, help) \
    {name, sh, CLI_STRINGS, dest, meta, 0, 0, 0, 0, NULL, max, help}
#define CLI_OPT_DOUBLES(name, sh, meta, dest, help) {name, sh, CLI_DOUBLES, dest, meta, 0, 0, 0, 0, NULL, 0, help}
#define CLI_END {NULL, 0, CLI_FLAG, NULL, NULL, 0, 0, 0, 0, NULL, 0, NULL}

typedef struct {
    const char *name;        /* as typed: "demo-corpus" */
    const char *usage;       /* "corpuslens predict --model MODEL.h5 [--top K] TEXT" (lines) */
    const char *about;       /* paragraphs printed before the options, or NULL */
    const cli_option *opts;  /* ends with CLI_END */
    const char *epilog;      /* printed after the options, or NULL */
    /* positional arguments: how many (max -1: any number) and their name for
     * "TEXT is required" (or the whole message in `missing`); more than max:
     * "unexpected argument 'X'". args NULL: none are taken. */
    const char *args;
    int min_args, max_args;
    const char *missing;
} cli_command;

/* cli_parse's result when the command goes on (else: its exit status). */
#define CLI_PARSED (-1)

/* Parse argv[1..argc-1] (argv[0] is the command's name) into the table's
 * variables and check the number of positional arguments. Positional
 * arguments are moved, in order, to the end of argv; *first is the index of
 * the first. Returns CLI_PARSED, or the command's exit status: 0 after
 * --help/-h (the help printed on stdout), 2 after a usage error (the message
 * printed on stderr, by rank 0 only under MPI). Resets getopt's state first,
 * so commands can run one after another in one process (corpuslens run). */
int cli_parse(const cli_command *cmd, int argc, char **argv, int *first);

/* The command whose messages go to stderr now: every message on stderr (an
 * error, a warning, progress) starts "corpuslens <command>: ". cli_parse sets
 * it (so a stage that `run` calls in-process speaks as itself); NULL before
 * any command ("corpuslens: "). */
void cli_set_current_command(const char *name);
const char *cli_current_command(void);

/* Print "corpuslens <cmd>: <message>" and "Try 'corpuslens <cmd> --help'."
 * on stderr (rank 0 only under MPI); returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...);

/* What --help prints (main.c sets it to build the manual and the shell
 * completion from the option tables, so neither can drift from the code):
 * the text; the command's section of corpuslens(1) in roff; or one line,
 * "name --opt -o ... --help". */
enum { CLI_HELP_TEXT, CLI_HELP_MAN, CLI_HELP_WORDS };
extern int cli_help_format;

/* Optimal string alignment distance between a[0..la) and b (an adjacent
 * swap costs 1); SIZE_MAX past 64 characters. For "did you mean". */
size_t cli_edit_distance(const char *a, size_t la, const char *b);

/* Print the command's --help on f. */
void cli_print_help(const cli_command *cmd, FILE *f);

/* The same check as a CLI_INT option, for values that come from elsewhere
 * (an environment variable): 0, or -1 after the usage message. */
int cli_parse_long(const char *cmd, const char *what, const char *s, long lo, long hi, long *out);

/* 1 if argv[1..] names option `name` (without "--"; as --name or
 * --name=...) before any "--": for decisions taken before parsing (which
 * option table?). */
int cli_argv_has(int argc, char **argv, const char *name);

#endif

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/base/error.h"
#include "corpuslens/model/model.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/corpus/corpus.h"

int cli_fail(void) {
    const char *cmd = cli_current_command();
    fprintf(stderr, "corpuslens%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "",
            cl_last_error()[0] ? cl_last_error() : "unknown error");
    return 1;
}

int cli_stderr_is_tty(void) { return isatty(2); }

int cli_on_rank0(int (*fn)(int, char **), int argc, char **argv) {
    if (!cli_mpi_active()) return fn(argc, argv);
    int rc = cli_rank() == 0 ? fn(argc, argv) : 0;
    fflush(stdout);
    fflush(stderr);
    return cli_bcast_int(rc);
}

typedef struct {
    const char *name, *summary;
    int (*fn)(int, char **);
} command;

#define CLI_ENTRY(name, summary) {#name, summary, cmd_##name},
static const command commands[] = {CLI_COMMANDS(CLI_ENTRY)};
#undef CLI_ENTRY

/* Command names are C identifiers in the table; users type '-' for '_'
 * ("demo-corpus" runs cmd_demo_corpus). Both spellings are accepted. */
static int command_is(const char *typed, const char *name) {
    for (; *typed && *name; typed++, name++)
        if (*typed != *name && !(*typed == '-' && *name == '_')) return 0;
    return *typed == *name;
}

static void usage(FILE *to) {
    fprintf(to, "usage: corpuslens <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        char shown[64];
        snprintf(shown, sizeof shown, "%s", commands[i].name);
        for (char *c = shown; *c; c++)
            if (*c == '_') *c = '-';
        fprintf(to, "  %-11s %s\n", shown, commands[i].summary);
    }
    fprintf(to, "\n'corpuslens <command> --help' describes a command.\n");
}

static const char *shown_name(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s", name);
    for (char *c = buf; *c; c++)
        if (*c == '_') *c = '-';
    return buf;
}

/* Each command's --help in another form (options.h, cli_help_format): the
 * manual and the completion are generated from the option tables at build
 * time (src/CMakeLists.txt), so that they cannot drift from the code. */
static void each_help(int format) {
    cli_help_format = format;
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        char name[64], help[] = "--help";
        char *av[] = {name, help, NULL};
        snprintf(name, sizeof name, "%s", commands[i].name);
        fflush(stdout);
        commands[i].fn(2, av);
    }
    fflush(stdout);
    cli_help_format = CLI_HELP_TEXT;
}

static const char MAN_HEAD[] =
    ".TH CORPUSLENS 1 \"\" \"corpuslens " CL_VERSION "\" \"User Commands\"\n"
    ".SH NAME\ncorpuslens \\- which training strings make a small GPT predict what it predicts\n"
    ".SH SYNOPSIS\n.B corpuslens\n.I command\n[\\fIoptions\\fR] [\\fIarguments\\fR]\n.br\n"
    ".B corpuslens help\n.I command\n.br\n.B mpirun \\-n\n.I R\n.B corpuslens\n.IR scan | index | explain | "
    "train | ... \n"
    ".ad l\n.SH DESCRIPTION\ncorpuslens runs a small GPT\\-style model with hooks over every unique substring of a "
    "corpus, finds the strings whose hooked activations are cosine\\-similar to a prompt's, and rebuilds the "
    "model's next\\-token distribution from what follows those strings in the corpus (Pather, \\fIBeyond "
    "Self\\-Attention\\fR, 2024). Every output is an HDF5 file that \\fBh5dump\\fR(1) reads.\n"
    ".PP\nCommands that spread work over MPI ranks (scan, index, train, ablate, run; explain and reduce "
    "under \\fBmpirun\\fR) run as one process when started without a launcher; the others never start MPI. "
    "As root, Open MPI's \\fBmpirun\\fR needs OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 in "
    "the environment.\n"
    ".SH COMMANDS\n";

static const char MAN_TAIL[] =
    ".SH ENVIRONMENT\n"
    ".TP\n.B OMP_NUM_THREADS, OPENBLAS_NUM_THREADS\nthreads per process; keep ranks \\(mu threads within the "
    "cores.\n"
    ".TP\n.B CORPUSLENS_GEMM\n\\fBblas\\fR: OpenBLAS's sgemm instead of corpuslens's own kernel.\n"
    ".TP\n.B CORPUSLENS_SKETCH\n0: explain reads every index row instead of pruning with the sketch.\n"
    ".TP\n.B CORPUSLENS_HASH_CACHE\n0: hash the model and corpus files on every run (no cache of their "
    "SHA\\-256).\n"
    ".TP\n.B CORPUSLENS_OUT\nthe demo job's output folder (default ./demo\\-out).\n"
    ".SH EXIT STATUS\n0 on success, 1 on an error (one message on standard error), 2 on a usage error.\n"
    ".SH SEE ALSO\n\\fBmpirun\\fR(1), \\fBh5dump\\fR(1), \\fBsbatch\\fR(1)\n";

static void print_man(void) {
    fputs(MAN_HEAD, stdout);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        char name[64];
        printf(".TP\n.B %s\n%s\n", shown_name(commands[i].name, name, sizeof name), commands[i].summary);
    }
    printf(".SH COMMAND REFERENCE\n");
    each_help(CLI_HELP_MAN);
    fputs(MAN_TAIL, stdout);
}

/* bash completion: commands, then each command's options; files otherwise */
static void print_completion(void) {
    printf("# bash completion for corpuslens (generated by `corpuslens --completion-bash`)\n"
           "_corpuslens() {\n"
           "    local cur=${COMP_WORDS[COMP_CWORD]} opts=\n"
           "    local cmds='help");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        char name[64];
        printf(" %s", shown_name(commands[i].name, name, sizeof name));
    }
    printf("'\n"
           "    if [ \"$COMP_CWORD\" -eq 1 ] || { [ \"$COMP_CWORD\" -eq 2 ] && [ \"${COMP_WORDS[1]}\" = help ]; }; then\n"
           "        COMPREPLY=($(compgen -W \"$cmds\" -- \"$cur\"))\n"
           "        return\n"
           "    fi\n"
           "    case ${COMP_WORDS[1]} in\n");
    fflush(stdout);
    /* each command's line "name --a --b ...", turned into a case branch */
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (mem) {
        FILE *saved = stdout;
        stdout = mem;
        each_help(CLI_HELP_WORDS);
        fflush(mem);
        stdout = saved;
        fclose(mem);
        for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
            nl = strchr(line, '\n');
            if (nl) *nl = 0;
            char *sp = strchr(line, ' ');
            if (!sp) continue;
            *sp = 0;
            printf("        %s) opts='%s' ;;\n", line, sp + 1);
        }
        free(buf);
    }
    printf("    esac\n"
           "    if [[ $cur == -* ]]; then\n"
           "        COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
           "    else\n"
           "        compopt -o filenames 2>/dev/null\n"
           "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
           "    fi\n"
           "}\n"
           "complete -F _corpuslens corpuslens\n");
}

/* The command closest to a misspelt one, or NULL. */
static const char *closest_command(const char *typed) {
    const char *best = NULL;
    size_t best_d = SIZE_MAX, len = strlen(typed);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        char name[64];
        shown_name(commands[i].name, name, sizeof name);
        size_t d = cli_edit_distance(typed, len, name);
        if (len >= 3 && !strncmp(name, typed, len)) d = 1; /* a prefix */
        if (d < best_d) best = commands[i].name, best_d = d;
    }
    return best_d <= 2 && best_d < len ? best : NULL;
}

static int find_command(const char *typed) {
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (command_is(typed, commands[i].name)) return (int)i;
    return -1;
}

static int unknown_command(const char *typed) {
    const char *guess = closest_command(typed);
    char name[64];
    if (guess) fprintf(stderr, "corpuslens: unknown command '%s' (did you mean '%s'?)\n", typed,
                       shown_name(guess, name, sizeof name));
    else fprintf(stderr, "corpuslens: unknown command '%s'\n", typed);
    fprintf(stderr, "Run 'corpuslens --help' for the list of commands.\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || (!strcmp(argv[1], "help") && argc == 2)) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "help")) { /* corpuslens help CMD = corpuslens CMD --help */
        if (argc > 3) {
            fprintf(stderr, "corpuslens help: one command at a time ('corpuslens help %s')\n", argv[2]);
            return 2;
        }
        int i = find_command(argv[2]);
        if (i < 0) return unknown_command(argv[2]);
        char help[] = "--help";
        char *av[] = {argv[2], help, NULL};
        return commands[i].fn(2, av);
    }
    if (!strcmp(argv[1], "--man")) { /* the manual corpuslens(1), roff (the build writes it) */
        print_man();
        return 0;
    }
    if (!strcmp(argv[1], "--completion-bash")) {
        print_completion();
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("corpuslens " CL_VERSION "\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (!command_is(argv[1], commands[i].name)) continue;
        /* MPI only as one of several ranks (mpi_start.c): a command on one
         * process does not pay for (or risk) its start-up. */
        int mpi = cli_launched_by_mpi(), provided;
        if (mpi) MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
        cl_h5_quiet();
        cl_corpus_set_reader(commands[i].name); /* named when it refuses a BPE corpus */
        int rc = commands[i].fn(argc - 1, argv + 1);
        if (cl_h5_stuck()) { /* HDF5 would crash closing that file again at exit */
            fflush(NULL);
            _exit(rc ? rc : 1);
        }
        if (mpi) MPI_Finalize();
        return rc;
    }
    return unknown_command(argv[1]);
}

int cli_corpus_fits_model(const cl_model *m, const cl_corpus *c, const char *path) {
    int mb = cl_tok_is_bpe(m), cb = c->bpe != NULL;
    const char *unit = mb ? "tokens" : "characters";
    if (mb != cb)
        return cl_error("%s is a %s corpus; the model is %s", path, cb ? "GPT-2 BPE" : "char-level",
                        mb ? "GPT-2 BPE: prepare the corpus with --vocab-from this model" : "char-level");
    if (c->V != m->cfg.vocab_size || (mb ? !cl_bpe_equal(c->bpe, m->bpe)
                                         : memcmp(c->vocab, m->vocab, (size_t)c->V * sizeof *c->vocab) != 0))
        return cl_error("%s: its %s (%d %s) is not the model's (%d)", path, mb ? "tokenizer" : "vocabulary", c->V,
                        mb ? "tokens" : "characters", m->cfg.vocab_size);
    if (c->L > m->cfg.block_size)
        return cl_error("%s: substrings of %d %s exceed block_size %d", path, c->L, unit, m->cfg.block_size);
    return 0;
}

int cli_encode(const cl_model *m, const char *text, int32_t **ids, size_t *n) {
    const char *unit = cl_tok_is_bpe(m) ? "tokens" : "characters";
    /* refused before it is encoded when even tokens of the longest kind
     * could not fit: encoding costs time and 4 bytes an id per byte */
    size_t len = strlen(text), maxb = cl_tok_max_bytes(m);
    if (!cl_tok_is_bpe(m)) { /* characters: counted without encoding (UTF-8 lead bytes) */
        size_t chars = 0;
        for (const unsigned char *c = (const unsigned char *)text; *c; c++) chars += (*c & 0xC0) != 0x80;
        if (chars > (size_t)m->cfg.block_size)
            return cl_error("the text has %zu %s; the model's block_size is %d", chars, unit, m->cfg.block_size);
    } else if (len / maxb > (size_t)m->cfg.block_size)
        return cl_error("the text has %zu bytes, more than the model's block_size of %d %s can hold (at most %zu "
                        "byte%s each)",
                        len, m->cfg.block_size, unit, maxb, maxb == 1 ? "" : "s");
    if (cl_tok_encode(m, text, len, ids, n)) return -1;
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        return cl_error("the text is empty");
    }
    if (*n > (size_t)m->cfg.block_size) {
        free(*ids);
        *ids = NULL;
        return cl_error("the text has %zu %s; the model's block_size is %d", *n, unit, m->cfg.block_size);
    }
    return 0;
}

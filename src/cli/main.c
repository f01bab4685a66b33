#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/base/error.h"
#include "corpuslens/model/model.h"
#include "corpuslens/h5/h5util.h"

int cli_fail(void) {
    fprintf(stderr, "corpuslens: %s\n", cl_last_error()[0] ? cl_last_error() : "unknown error");
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

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("corpuslens 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (!command_is(argv[1], commands[i].name)) continue;
        /* MPI only as one of several ranks (mpi_start.c): a command on one
         * process does not pay for (or risk) its start-up. */
        int mpi = cli_launched_by_mpi(), provided;
        if (mpi) MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
        cl_h5_quiet();
        int rc = commands[i].fn(argc - 1, argv + 1);
        if (cl_h5_stuck()) { /* HDF5 would crash closing that file again at exit */
            fflush(NULL);
            _exit(rc ? rc : 1);
        }
        if (mpi) MPI_Finalize();
        return rc;
    }
    fprintf(stderr, "corpuslens: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
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

/* The option parser of every command (options.h). */
#include "cli/options.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mpi_start.h"

/* The default of an option: its variable's value before parsing. */
typedef union {
    long l;
    double d;
    const char *s;
} snapshot;

static const char *current_command;
void cli_set_current_command(const char *name) { current_command = name; }
const char *cli_current_command(void) { return current_command; }

static size_t count_opts(const cli_command *cmd) {
    size_t n = 0;
    while (cmd->opts && cmd->opts[n].name) n++;
    return n;
}

static snapshot take(const cli_option *o) {
    snapshot s = {0};
    if (!o->dest) return s;
    switch (o->kind) {
    case CLI_INT: s.l = *(const long *)o->dest; break;
    case CLI_DOUBLE: s.d = *(const double *)o->dest; break;
    case CLI_STRING:
    case CLI_CHOICE: s.s = *(const char *const *)o->dest; break;
    default: break;
    }
    return s;
}

/* " (default X)" for a default worth showing, else "". */
static void default_text(const cli_option *o, snapshot s, char *buf, size_t n) {
    buf[0] = '\0';
    switch (o->kind) {
    case CLI_INT:
        if (s.l >= o->ilo && s.l <= o->ihi) snprintf(buf, n, " (default %ld)", s.l);
        break;
    case CLI_DOUBLE:
        if (s.d >= o->lo && s.d <= o->hi) snprintf(buf, n, " (default %g)", s.d);
        break;
    case CLI_STRING:
    case CLI_CHOICE:
        if (s.s && *s.s) snprintf(buf, n, " (default %s)", s.s);
        break;
    default: break;
    }
}

static void option_label(const cli_option *o, char *buf, size_t n) {
    int k = o->short_name ? snprintf(buf, n, "-%c, --%s", o->short_name, o->name) : snprintf(buf, n, "--%s", o->name);
    if (o->kind != CLI_FLAG && k >= 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, " %s", o->metavar ? o->metavar : "VALUE");
}

static void print_row(FILE *f, const char *label, const char *help, const char *dflt, int col) {
    int w = fprintf(f, "  %s", label);
    if (w > col - 2) {
        fputc('\n', f);
        w = 0;
    }
    fprintf(f, "%*s", col - w, "");
    for (const char *p = help; *p; p++) {
        fputc(*p, f);
        if (*p == '\n') fprintf(f, "%*s", col, "");
    }
    fprintf(f, "%s\n", dflt);
}

static void print_help(const cli_command *cmd, FILE *f, const snapshot *snap) {
    fprintf(f, "usage: %s\n", cmd->usage);
    if (cmd->about) fprintf(f, "\n%s", cmd->about);
    size_t n = count_opts(cmd);
    int col = 0;
    char label[128];
    for (size_t i = 0; i < n; i++) {
        if (!cmd->opts[i].help) continue;
        option_label(&cmd->opts[i], label, sizeof label);
        int w = (int)strlen(label) + 4;
        if (w > col && w <= 26) col = w;
    }
    if (col < 14) col = 14;
    fprintf(f, "\noptions:\n");
    for (size_t i = 0; i < n; i++) {
        const cli_option *o = &cmd->opts[i];
        if (!o->help) continue; /* hidden (tests) */
        char dflt[160];
        option_label(o, label, sizeof label);
        default_text(o, snap ? snap[i] : take(o), dflt, sizeof dflt);
        print_row(f, label, o->help, dflt, col);
    }
    print_row(f, "-h, --help", "print this help and exit", "", col);
    if (cmd->epilog) fprintf(f, "\n%s", cmd->epilog);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    if (!cli_rank0()) return 2; /* every rank of a multi-rank command parses; rank 0 says it */
    va_list ap;
    fprintf(stderr, "corpuslens %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'corpuslens %s --help'.\n", cmd);
    return 2;
}

void cli_print_help(const cli_command *cmd, FILE *f) { print_help(cmd, f, NULL); }

int cli_help_format = CLI_HELP_TEXT;

/* roff: text with its backslashes, hyphens and line-leading dots escaped */
static void roff_text(FILE *f, const char *s, int line_start) {
    for (; *s; s++) {
        if (line_start && (*s == '.' || *s == '\'')) fputs("\\&", f);
        line_start = *s == '\n';
        if (*s == '\\') fputs("\\e", f);
        else if (*s == '-') fputs("\\-", f);
        else fputc(*s, f);
    }
}

/* The command's section of corpuslens(1), from the same table as --help. */
static void print_man(const cli_command *cmd, FILE *f, const snapshot *snap) {
    char shown[64];
    snprintf(shown, sizeof shown, "%s", cmd->name);
    for (char *c = shown; *c; c++)
        if (*c == '_') *c = '-';
    fprintf(f, ".SS corpuslens %s\n.nf\n", shown);
    roff_text(f, cmd->usage, 1);
    fprintf(f, "\n.fi\n");
    if (cmd->about) {
        fprintf(f, ".PP\n");
        roff_text(f, cmd->about, 1);
        fprintf(f, "\n");
    }
    size_t n = count_opts(cmd);
    char label[128], dflt[160];
    for (size_t i = 0; i < n; i++) {
        const cli_option *o = &cmd->opts[i];
        if (!o->help) continue;
        option_label(o, label, sizeof label);
        default_text(o, snap ? snap[i] : take(o), dflt, sizeof dflt);
        fprintf(f, ".TP\n.B ");
        roff_text(f, label, 0);
        fprintf(f, "\n");
        /* the help's own line breaks are the terminal's: join them */
        for (const char *p = o->help; *p; p++) {
            if (*p == '\n') fputc(' ', f);
            else if (*p == '\\') fputs("\\e", f);
            else if (*p == '-') fputs("\\-", f);
            else if ((*p == '.' || *p == '\'') && p == o->help) fputs("\\&", f), fputc(*p, f);
            else fputc(*p, f);
        }
        roff_text(f, dflt, 0);
        fprintf(f, "\n");
    }
    fprintf(f, ".TP\n.B \\-h, \\-\\-help\nprint the command's help and exit\n");
    if (cmd->epilog) {
        fprintf(f, ".PP\n");
        roff_text(f, cmd->epilog, 1);
        fprintf(f, "\n");
    }
}

/* One line: the command's name, then every option a shell may complete. */
static void print_words(const cli_command *cmd, FILE *f) {
    char shown[64];
    snprintf(shown, sizeof shown, "%s", cmd->name);
    for (char *c = shown; *c; c++)
        if (*c == '_') *c = '-';
    fprintf(f, "%s", shown);
    for (size_t i = 0; i < count_opts(cmd); i++) {
        const cli_option *o = &cmd->opts[i];
        if (!o->help) continue;
        fprintf(f, " --%s", o->name);
        if (o->short_name) fprintf(f, " -%c", o->short_name);
    }
    fprintf(f, " --help\n");
}

/* Optimal string alignment distance (an adjacent swap costs 1). */
size_t cli_edit_distance(const char *a, size_t la, const char *b) {
    size_t lb = strlen(b);
    if (la > 64 || lb > 64) return SIZE_MAX;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* The option name closest to the typed one, or NULL when none is close. */
static const char *closest(const cli_command *cmd, const char *typed, size_t len) {
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < count_opts(cmd); i++) {
        const char *name = cmd->opts[i].name;
        size_t d = cli_edit_distance(typed, len, name);
        if (len >= 2 && !strncmp(name, typed, len)) d = 1; /* an abbreviation */
        if (d < best_d) best = name, best_d = d;
    }
    if (strncmp("help", typed, len) == 0 && len >= 2 && 1 < best_d) best = "help", best_d = 1;
    return best_d <= 2 && best_d < len ? best : NULL;
}

static int unknown(const cli_command *cmd, const char *token) {
    if (token[0] == '-' && token[1] == '-') {
        const char *name = token + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const char *guess = closest(cmd, name, len);
        if (guess) return cli_usage_error(cmd->name, "unknown option --%.*s (did you mean --%s?)", (int)len, name, guess);
        return cli_usage_error(cmd->name, "unknown option --%.*s", (int)len, name);
    }
    return cli_usage_error(cmd->name, "unknown option %s", token);
}

int cli_parse_long(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out) {
    if (!v || !*v) return cli_usage_error(cmd, "%s needs a value", opt), -1;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*end || end == v) return cli_usage_error(cmd, "%s: '%s' is not an integer", opt, v), -1;
    if (errno == ERANGE || x < lo || x > hi) return cli_usage_error(cmd, "%s: %s is out of range %ld..%ld", opt, v, lo, hi), -1;
    *out = x;
    return 0;
}

static int set_value(const cli_command *cmd, const cli_option *o, const char *v) {
    char opt[80];
    snprintf(opt, sizeof opt, "--%s", o->name);
    switch (o->kind) {
    case CLI_FLAG: *(int *)o->dest = 1; return 0;
    case CLI_STRING: *(const char **)o->dest = v; return 0;
    case CLI_INT: return cli_parse_long(cmd->name, opt, v, o->ilo, o->ihi, o->dest) ? 2 : 0;
    case CLI_DOUBLE: {
        if (!*v) return cli_usage_error(cmd->name, "%s needs a value", opt);
        char *end;
        double x = strtod(v, &end);
        if (*end || end == v || isnan(x)) return cli_usage_error(cmd->name, "%s: '%s' is not a number", opt, v);
        if (!(x >= o->lo && x <= o->hi))
            return cli_usage_error(cmd->name, "%s: %s is out of range %g..%g", opt, v, o->lo, o->hi);
        *(double *)o->dest = x;
        return 0;
    }
    case CLI_CHOICE: {
        size_t lv = strlen(v);
        for (const char *p = o->choices; *p;) {
            const char *bar = strchr(p, '|');
            size_t l = bar ? (size_t)(bar - p) : strlen(p);
            if (l == lv && !strncmp(p, v, l)) {
                *(const char **)o->dest = v;
                return 0;
            }
            if (!bar) break;
            p = bar + 1;
        }
        char list[256];
        size_t k = 0;
        for (const char *c = o->choices; *c && k + 3 < sizeof list; c++) {
            if (*c == '|') list[k++] = ',', list[k++] = ' ';
            else list[k++] = *c;
        }
        list[k] = '\0';
        return cli_usage_error(cmd->name, "%s: '%s' is not one of %s", opt, v, list);
    }
    case CLI_STRINGS: {
        cli_strings *s = o->dest;
        int max = o->max > 0 && o->max < CLI_MAX_STRINGS ? o->max : CLI_MAX_STRINGS;
        if (s->n >= max) return cli_usage_error(cmd->name, "%s: at most %d values", opt, max);
        s->v[s->n++] = v;
        return 0;
    }
    case CLI_DOUBLES: {
        cli_doubles *d = o->dest;
        if (!*v) return cli_usage_error(cmd->name, "%s needs a value", opt);
        d->n = 0;
        for (const char *p = v;;) {
            char *end;
            double x = strtod(p, &end);
            if (end == p || (*end != ',' && *end) || !isfinite(x))
                return cli_usage_error(cmd->name, "%s: '%s' is not a comma-separated list of numbers", opt, v);
            if (d->n == CLI_MAX_DOUBLES) return cli_usage_error(cmd->name, "%s: at most %d numbers", opt, CLI_MAX_DOUBLES);
            d->v[d->n++] = x;
            if (!*end) break;
            p = end + 1;
        }
        d->set = 1;
        return 0;
    }
    }
    return 0;
}

int cli_parse(const cli_command *cmd, int argc, char **argv, int *first) {
    cli_set_current_command(cmd->name);
    size_t n = count_opts(cmd);
    struct option *lopts = calloc(n + 2, sizeof *lopts);
    snapshot *snap = calloc(n + 1, sizeof *snap);
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    char *shorts = malloc(3 * n + 8);
    int rc = CLI_PARSED, npos = 0;
    if (!lopts || !snap || !pos || !shorts) {
        fprintf(stderr, "corpuslens %s: out of memory\n", cmd->name);
        rc = 2;
        goto out;
    }
    /* "-": positional arguments come back in order (as option 1), whatever
     * POSIXLY_CORRECT says; ":": a missing value is reported as ':'. */
    size_t k = 0;
    shorts[k++] = '-', shorts[k++] = ':', shorts[k++] = 'h';
    for (size_t i = 0; i < n; i++) {
        const cli_option *o = &cmd->opts[i];
        snap[i] = take(o);
        lopts[i] = (struct option){o->name, o->kind == CLI_FLAG ? no_argument : required_argument, NULL, 256 + (int)i};
        if (o->short_name) {
            shorts[k++] = o->short_name;
            if (o->kind != CLI_FLAG) shorts[k++] = ':';
        }
    }
    shorts[k] = '\0';
    lopts[n] = (struct option){"help", no_argument, NULL, 'h'};
    optind = 0; /* GNU: re-initialise completely (run calls commands one after another) */
    opterr = 0;
    int c;
    while (rc == CLI_PARSED && (c = getopt_long(argc, argv, shorts, lopts, NULL)) != -1) {
        if (c == 1) {
            pos[npos++] = optarg;
            continue;
        }
        if (c == 'h') {
            if (!cli_rank0()) {
            } else if (cli_help_format == CLI_HELP_MAN) print_man(cmd, stdout, snap);
            else if (cli_help_format == CLI_HELP_WORDS) print_words(cmd, stdout);
            else print_help(cmd, stdout, snap);
            rc = 0;
            break;
        }
        if (c == ':' || c == '?') {
            const cli_option *o = NULL;
            if (optopt >= 256 && optopt < 256 + (int)n) o = &cmd->opts[optopt - 256];
            for (size_t i = 0; !o && optopt > 0 && optopt < 256 && i < n; i++)
                if (cmd->opts[i].short_name == optopt) o = &cmd->opts[i];
            if (c == ':' && o) cli_usage_error(cmd->name, "--%s needs a value", o->name);
            else if (o && o->kind == CLI_FLAG) cli_usage_error(cmd->name, "--%s takes no value", o->name);
            else if (optopt > 0 && optopt < 256) {
                char t[3] = {'-', (char)optopt, 0};
                unknown(cmd, t);
            } else unknown(cmd, argv[optind - 1]);
            rc = 2;
            break;
        }
        const cli_option *o = NULL;
        if (c >= 256 && c < 256 + (int)n) {
            o = &cmd->opts[c - 256];
            /* refuse abbreviations: the name typed must be the whole name */
            const char *tok = optarg && optind >= 2 && argv[optind - 1] == optarg ? argv[optind - 2] : argv[optind - 1];
            const char *eq = strchr(tok + 2, '=');
            size_t len = eq ? (size_t)(eq - tok - 2) : strlen(tok + 2);
            if (len != strlen(o->name) || strncmp(tok + 2, o->name, len)) {
                unknown(cmd, tok);
                rc = 2;
                break;
            }
        } else {
            for (size_t i = 0; i < n; i++)
                if (cmd->opts[i].short_name == c) o = &cmd->opts[i];
        }
        if (!o) { /* cannot happen: every returned code is in the table */
            rc = cli_usage_error(cmd->name, "unknown option");
            break;
        }
        if (set_value(cmd, o, optarg)) rc = 2;
    }
    if (rc == CLI_PARSED) {
        while (optind < argc) pos[npos++] = argv[optind++];
        for (int i = 0; i < npos; i++) argv[argc - npos + i] = pos[i];
        *first = argc - npos;
        int max = cmd->args ? cmd->max_args : 0;
        if (cmd->args && npos < cmd->min_args) {
            if (cmd->missing) rc = cli_usage_error(cmd->name, "%s", cmd->missing);
            else rc = cli_usage_error(cmd->name, "%s is required", cmd->args);
        } else if (max >= 0 && npos > max) {
            rc = cli_usage_error(cmd->name, "unexpected argument '%s'", argv[*first + max]);
        }
    }
out:
    free(lopts);
    free(snap);
    free(pos);
    free(shorts);
    return rc;
}

int cli_argv_has(int argc, char **argv, const char *name) {
    size_t len = strlen(name);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) return 0;
        if (a[0] == '-' && a[1] == '-' && !strncmp(a + 2, name, len) && (a[2 + len] == '\0' || a[2 + len] == '='))
            return 1;
    }
    return 0;
}


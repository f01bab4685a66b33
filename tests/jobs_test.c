/* Unit tests of the job module: the parser's line numbers and values through
 * the library API, variable expansion, and the demo corpus generator's
 * determinism and shape. No MPI here. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/corpus/corpus.h"
#include "corpuslens/job/job.h"

static cl_job *parse(const char *text, char **errors) {
    return cl_job_parse(text, strlen(text), "/tmp/x/t.ini", errors);
}

static const char *GOOD = "[corpus]\n"
                          "path = /data/c.txt\n"
                          "len = 10\n"
                          "prompts = 20000\n"
                          "seed = 7\n"
                          "[model]\n"
                          "path = m.h5\n"
                          "[scan]\n"
                          "hook = mlp_out ; inline comment\n"
                          "prefilter = 0.7\n"
                          "[reduce]\n"
                          "thresholds = 0.95 0.94,0.85\n"
                          "  0.76, 0.81 0.89\n" /* continuation line */
                          "weights = 0.01,0.01,0.1,1.5,6,0.01\n"
                          "examples = 1, 2\n"
                          "[output]\n"
                          "dir = ${JOBDIR}/out\n";

Test(job, parses_values) {
    char *errors = NULL;
    cl_job *j = parse(GOOD, &errors);
    cr_assert(j, "refused: %s", errors ? errors : "?");
    cr_expect_str_eq(j->corpus_path, "/data/c.txt");
    cr_expect_eq(j->len, 10);
    cr_expect_eq(j->prompts, 20000);
    cr_expect(j->has_seed && j->seed == 7);
    cr_expect_str_eq(j->model_path, "m.h5");
    cr_expect_str_eq(j->hook, "mlp_out");
    cr_expect_str_eq(j->prefilter, "0.7");
    cr_expect_str_eq(j->thresholds, "0.95,0.94,0.85,0.76,0.81,0.89");
    cr_expect_str_eq(j->weights, "0.01,0.01,0.1,1.5,6,0.01");
    cr_expect_str_eq(j->examples, "1,2");
    cr_expect_null(j->bin_width);
    cr_expect_str_eq(cl_job_get(j, "scan.hook"), "mlp_out");
    cr_expect_null(cl_job_get(j, "scan.bin_width"));
    cl_job_free(j);
}

Test(job, errors_sorted_with_lines) {
    const char *bad = "[corpus]\n"         /* 1 */
                      "path = c.txt\n"     /* 2 */
                      "len = 4\n"          /* 3 */
                      "prompts = 3\n"      /* 4 */
                      "[model]\n"          /* 5 */
                      "path = m.h5\n"      /* 6 */
                      "[scan]\n"           /* 7 */
                      "match_cap = -1\n"   /* 8 */
                      "colour = blue\n"    /* 9 */
                      "[output]\n"         /* 10 */
                      "dir = o\n";         /* 11 */
    char *errors = NULL;
    cl_job *j = parse(bad, &errors);
    cr_assert_null(j);
    cr_assert(errors);
    const char *a = strstr(errors, "/tmp/x/t.ini:8: scan.match_cap: '-1'");
    const char *b = strstr(errors, "/tmp/x/t.ini:9: unknown key 'colour' in [scan]");
    cr_expect(a && b && a < b, "got: %s", errors);
    free(errors);
}

Test(job, expand) {
    setenv("CL_JOB_TEST_VAR", "abc", 1);
    unsetenv("CL_JOB_TEST_UNSET");
    char *s = cl_job_expand("x/${CL_JOB_TEST_VAR}/${JOBDIR}/$$/${CL_JOB_TEST_UNSET:-d${CL_JOB_TEST_VAR}}", "/j");
    cr_assert(s);
    cr_expect_str_eq(s, "x/abc//j/$/dabc");
    free(s);
    cr_expect_null(cl_job_expand("${CL_JOB_TEST_UNSET}", "/j"));
    cr_expect_null(cl_job_expand("${CL_JOB_TEST_VAR", "/j"));
    cr_expect_null(cl_job_expand("${1BAD}", "/j"));
}

Test(demo_corpus, deterministic_whole_lines) {
    size_t n1, n2, n3;
    char *a = cl_demo_corpus(1, 5000, &n1);
    char *b = cl_demo_corpus(1, 5000, &n2);
    char *c = cl_demo_corpus(2, 5000, &n3);
    cr_assert(a && b && c);
    cr_expect(n1 == n2 && !memcmp(a, b, n1), "same seed, different text");
    cr_expect(n1 != n3 || memcmp(a, c, n1), "seeds 1 and 2 gave the same text");
    cr_expect(n1 <= 5000 && n1 > 4900, "length %zu", n1);
    cr_expect_eq(a[n1 - 1], '\n');
    cr_expect_eq(strlen(a), n1);
    /* every non-empty line is "SPEAKER: words." with a known speaker */
    for (char *line = strtok(a, "\n"); line; line = strtok(NULL, "\n")) {
        cr_expect(!strncmp(line, "ALICE: ", 7) || !strncmp(line, "BOB: ", 5) ||
                      !strncmp(line, "CAROL: ", 7) || !strncmp(line, "DAVE: ", 6),
                  "line '%s'", line);
        char last = line[strlen(line) - 1];
        cr_expect(last == '.' || last == '?', "line '%s'", line);
    }
    /* a prefix of a longer text: the size only decides where to stop */
    size_t n4;
    char *d = cl_demo_corpus(1, 20000, &n4);
    cr_assert(d);
    cr_expect(!memcmp(b, d, n2), "the 5000-byte text is not a prefix of the 20000-byte one");
    free(a);
    free(b);
    free(c);
    free(d);
    cr_expect_null(cl_demo_corpus(1, 10, &n1));
}

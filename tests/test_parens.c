/* The balanced-parentheses file reader (corpus/parens.h) is strict (issue 21):
 * exactly "split<TAB>label<TAB>string" on each line. Each bad line below is
 * refused with a message naming the file's line; the same file without it is
 * read (the control). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/corpus/parens.h"

static const char GOOD[] = "# corpuslens balanced-parentheses data set\n"
                           "train\t1\t()\n"
                           "val\t0\t)(\n"
                           "test\t1\t(())\n";

/* Write GOOD with `line` (n bytes, may hold a NUL) after its first line. */
static void write_with(const char *path, const char *line, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    const char *second = strchr(GOOD, '\n') + 1;
    fwrite(GOOD, 1, (size_t)(second - GOOD), f);
    fwrite(line, 1, n, f);
    fputs("\n", f);
    fputs(second, f);
    cr_assert_eq(fclose(f), 0);
}

Test(parens_read, good_file_is_read) {
    char path[] = "/tmp/parens_good_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_with(path, "train\t0\t((", 4 + 3 + 2 + 1);
    cl_parens_set d;
    cr_assert_eq(cl_parens_read(path, &d), 0, "%s", cl_last_error());
    cr_assert_eq(d.n, 4);
    cr_assert_str_eq(d.s[0], "((");
    cr_assert_eq(d.label[0], 0);
    cr_assert_str_eq(d.s[3], "(())");
    cr_assert_eq(d.label[3], 1);
    cr_assert_eq(d.split[2], CL_SPLIT_VAL);
    cr_assert_eq(d.split[3], CL_SPLIT_TEST);
    cl_parens_free(&d);
    unlink(path);
}

Test(parens_read, bad_lines_are_refused) {
    static const struct {
        const char *line;
        size_t n; /* 0: strlen */
        const char *want;
    } bad[] = {
        {"train1()", 0, "not 'split<TAB>label<TAB>string'"},
        {"train 1 ()", 0, "not 'split<TAB>label<TAB>string'"},
        {"train\t1 ()", 0, "not 'split<TAB>label<TAB>string'"},
        {"train \t1\t()", 0, "split 'train ' is not train, val or test"},
        {"train\t+1\t()", 0, "not 'split<TAB>label<TAB>string'"},
        {"train\t01\t()", 0, "not 'split<TAB>label<TAB>string'"},
        {"train\t 1\t()", 0, "not 'split<TAB>label<TAB>string'"},
        {"train\t1\t() ", 0, "not 'split<TAB>label<TAB>string'"},
        {"train\t1\t()\t", 0, "not 'split<TAB>label<TAB>string'"},
        {"train\t\t1\t()", 0, "not 'split<TAB>label<TAB>string'"},
        {"train\t1\t", 0, "not 'split<TAB>label<TAB>string'"},
        {"\t1\t()", 0, "not 'split<TAB>label<TAB>string'"},
        {"train\t1\t()x", 0, "not 'split<TAB>label<TAB>string'"},
        {"train\t1\t()\r", 0, "not 'split<TAB>label<TAB>string'"},
        {"train\t1\t(\0)", 5 + 3 + 3, "not 'split<TAB>label<TAB>string'"},
        {"train\t1\t(((((((((((((((((((((())))))))))))))))))))))", 0, "not 'split<TAB>label<TAB>string'"},
        {"training\t1\t()", 0, "not 'split<TAB>label<TAB>string'"},
        {"bogus\t1\t()", 0, "split 'bogus' is not train, val or test"},
        {"train\t1\t)(", 0, "label 1 is wrong for ')('"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[] = "/tmp/parens_bad_XXXXXX";
        int fd = mkstemp(path);
        cr_assert(fd >= 0);
        close(fd);
        write_with(path, bad[i].line, bad[i].n ? bad[i].n : strlen(bad[i].line));
        cl_parens_set d;
        int rc = cl_parens_read(path, &d);
        const char *msg = cl_last_error();
        char where[64];
        snprintf(where, sizeof where, "%s:2: ", path);
        cr_expect_eq(rc, -1, "line %zu '%s' accepted", i, bad[i].line);
        if (rc == -1) {
            cr_expect(strstr(msg, where) && strstr(msg, bad[i].want), "line %zu '%s': message '%s'", i,
                      bad[i].line, msg);
        } else {
            cl_parens_free(&d);
        }
        unlink(path);
    }
}

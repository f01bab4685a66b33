#include "corpuslens/base/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "corpuslens/base/error.h"

char *cl_read_file(const char *path, size_t max_bytes, size_t *len) {
    int is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (is_stdin) path = "standard input";
    if (!f) {
        cl_error("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = cl_trymalloc(cap + 1, 1, "file buffer");
    while (buf) {
        if (n == cap) {
            if (max_bytes && cap >= max_bytes) {
                cl_error("%s is larger than %zu bytes", path, max_bytes);
                goto fail;
            }
            char *nb = cap > SIZE_MAX / 4 ? NULL : realloc(buf, cap * 2 + 1);
            if (!nb) {
                cl_error("out of memory reading %s", path);
                goto fail;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                cl_error("cannot read %s: %s", path, strerror(errno));
                goto fail;
            }
            break;
        }
    }
    if (!is_stdin) fclose(f);
    if (!buf) return NULL;
    if (max_bytes && n > max_bytes) {
        free(buf);
        cl_error("%s is larger than %zu bytes", path, max_bytes);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    free(buf);
    if (!is_stdin) fclose(f);
    return NULL;
}

int cl_pread_exact(int fd, void *buf, size_t n, unsigned long long off) {
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            if (r == 0) errno = 0;
            return -1;
        }
        p += r, n -= (size_t)r, off += (unsigned long long)r;
    }
    return 0;
}

const char *cl_pread_reason(void) { return errno ? strerror(errno) : "end of file"; }

int cl_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cl_error("cannot open %s: %s", path, strerror(errno));
    int e = fsync(fd) ? errno : 0;
    close(fd);
    if (e) return cl_error("cannot write %s: %s", path, strerror(e));
    return 0;
}

int cl_fsync_dir_of(const char *path) {
    char dir[4200];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) >= sizeof dir) return cl_error("path too long: %s", path);
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return cl_error("cannot open the directory %s: %s", dir, strerror(errno));
    int e = fsync(fd) ? errno : 0;
    close(fd);
    if (e && e != EINVAL) return cl_error("cannot write the directory %s: %s", dir, strerror(e));
    return 0;
}

int cl_commit_file(const char *tmp, const char *path) {
    if (cl_fsync_path(tmp)) {
        remove(tmp);
        return -1;
    }
    if (rename(tmp, path)) {
        int e = errno;
        remove(tmp);
        return cl_error("cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return cl_fsync_dir_of(path);
}

void cl_remove_prefixed(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return;
    size_t n = strlen(prefix);
    char p[8192];
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, n) && snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p)
            remove(p);
    closedir(d);
}

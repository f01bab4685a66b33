/* SHA-256 of files and memory blocks (nettle), as lowercase hex. */
#include "corpuslens/base/hash.h"

#include <errno.h>
#include <nettle/sha2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "corpuslens/base/error.h"

static void hex(const uint8_t *d, char out[65]) {
    static const char *h = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = h[d[i] >> 4];
        out[2 * i + 1] = h[d[i] & 15];
    }
    out[64] = '\0';
}

int cl_sha256_file(const char *path, char out[65]) {
    FILE *f = fopen(path, "rb");
    if (!f) return cl_error("cannot open %s: %s", path, strerror(errno));
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    static _Thread_local uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(&ctx, n, buf);
    int err = ferror(f);
    fclose(f);
    if (err) return cl_error("cannot read %s", path);
    uint8_t d[32];
    sha256_digest(&ctx, 32, d);
    hex(d, out);
    return 0;
}

void cl_sha256_mem(const void *data, size_t len, char out[65]) {
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, len, data);
    uint8_t d[32];
    sha256_digest(&ctx, 32, d);
    hex(d, out);
}

struct cl_sha256 {
    struct sha256_ctx ctx;
};

cl_sha256 *cl_sha256_begin(void) {
    cl_sha256 *h = cl_trymalloc(1, sizeof *h, "SHA-256 state");
    if (h) sha256_init(&h->ctx);
    return h;
}

void cl_sha256_update(cl_sha256 *h, const void *data, size_t len) { sha256_update(&h->ctx, len, data); }

void cl_sha256_end(cl_sha256 *h, char out[65]) {
    uint8_t d[32];
    sha256_digest(&h->ctx, 32, d);
    hex(d, out);
    free(h);
}

/* ---- the cache of file digests (hash.h) ---- */

static int cache_dir(char *buf, size_t n) {
    const char *e = getenv("CORPUSLENS_HASH_CACHE");
    if (e && !strcmp(e, "0")) return -1;
    if (e && *e) return snprintf(buf, n, "%s", e) < (int)n ? 0 : -1;
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    int w = x && *x ? snprintf(buf, n, "%s/corpuslens/sha256", x)
            : h && *h ? snprintf(buf, n, "%s/.cache/corpuslens/sha256", h) : -1;
    return w > 0 && w < (int)n ? 0 : -1;
}

static int mkdirs(char *p) {
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            int r = mkdir(p, 0777);
            *s = '/';
            if (r && errno != EEXIST) return -1;
        }
    return mkdir(p, 0777) && errno != EEXIST ? -1 : 0;
}

static void key_of(const struct stat *st, const char *kind, char *key, size_t n) {
    snprintf(key, n, "corpuslens-sha256-cache v1 %s dev %llu ino %llu size %lld mtime %lld.%09ld ctime %lld.%09ld", kind,
             (unsigned long long)st->st_dev, (unsigned long long)st->st_ino, (long long)st->st_size,
             (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

static int same_stat(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

int cl_sha256_cached(const char *path, const char *kind, int (*compute)(const char *, char[65], void *), void *user,
                     char out[65], int *hit) {
    struct stat st, st2;
    char dir[4096], key[512], name[65], file[4300], tmp[4400];
    if (hit) *hit = 0;
    if (stat(path, &st)) return cl_error("cannot open %s: %s", path, strerror(errno));
    int use = cache_dir(dir, sizeof dir) == 0;
    if (use) {
        key_of(&st, kind, key, sizeof key);
        cl_sha256_mem(key, strlen(key), name);
        snprintf(file, sizeof file, "%s/%s", dir, name);
        FILE *f = fopen(file, "rb");
        if (f) {
            char line[600] = "", dg[80] = "";
            int ok = fgets(line, sizeof line, f) && fgets(dg, sizeof dg, f);
            fclose(f);
            line[strcspn(line, "\n")] = 0;
            dg[strcspn(dg, "\n")] = 0;
            if (ok && !strcmp(line, key) && strlen(dg) == 64 && strspn(dg, "0123456789abcdef") == 64) {
                memcpy(out, dg, 65);
                if (hit) *hit = 1;
                return 0;
            }
        }
    }
    if (compute(path, out, user)) return -1;
    /* store only a file that did not change while it was hashed and whose
       times are at least 2 s old: a write in the same clock tick as the
       hashing would otherwise leave the same key with other bytes */
    time_t now = time(NULL);
    if (use && !stat(path, &st2) && same_stat(&st, &st2) && st.st_mtim.tv_sec + 2 < now &&
        st.st_ctim.tv_sec + 2 < now && !mkdirs(dir)) {
        snprintf(tmp, sizeof tmp, "%s.tmp%ld", file, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) {
            int bad = fprintf(f, "%s\n%s\n", key, out) < 0;
            if (fclose(f) || bad || rename(tmp, file)) remove(tmp);
        }
    }
    return 0;
}

static int file_digest(const char *path, char out[65], void *user) {
    (void)user;
    return cl_sha256_file(path, out);
}

int cl_sha256_file_cached(const char *path, char out[65], int *hit) {
    return cl_sha256_cached(path, "file", file_digest, NULL, out, hit);
}

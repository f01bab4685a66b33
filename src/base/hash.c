/* SHA-256 of files and memory blocks (nettle), as lowercase hex. */
#include "corpuslens/base/hash.h"

#include <errno.h>
#include <nettle/sha2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

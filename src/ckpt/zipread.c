/* Minimal zip reader for torch.save archives: stored entries only, zip64
 * aware, data located through the local headers (torch pads them to 64-byte
 * alignment with an extra field the central directory does not repeat).
 * Every field read is checked against the buffer first.
 */
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt_internal.h"
#include "corpuslens/base/error.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* [off, off+n) inside [0, len)? */
static int in_bounds(uint64_t off, uint64_t n, size_t len) {
    return off <= (uint64_t)len && n <= (uint64_t)len - off;
}

uint32_t cl_crc32(const unsigned char *p, size_t n) {
    static uint32_t table[256];
    static int ready = 0;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp((*(cl_zip_entry *const *)a)->name, (*(cl_zip_entry *const *)b)->name);
}

void cl_zip_close(cl_zip *z) {
    if (!z) return;
    if (z->entries)
        for (size_t i = 0; i < z->n_entries; i++) free(z->entries[i].name);
    free(z->entries);
    free(z->sorted);
    memset(z, 0, sizeof *z);
}

/* Locate the end-of-central-directory record: scan back over at most the
 * maximum comment length. */
static long find_eocd(const unsigned char *d, size_t len) {
    if (len < 22) return -1;
    size_t lo = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t pos = len - 22 + 1; pos-- > lo;) {
        if (rd32(d + pos) == SIG_EOCD && pos + 22 + rd16(d + pos + 20) == len) return (long)pos;
    }
    /* tolerate trailing garbage after the comment: first signature from the end */
    for (size_t pos = len - 22 + 1; pos-- > lo;)
        if (rd32(d + pos) == SIG_EOCD) return (long)pos;
    return -1;
}

int cl_zip_open(cl_zip *z, const unsigned char *d, size_t len) {
    memset(z, 0, sizeof *z);
    z->data = d;
    z->len = len;
    long e = find_eocd(d, len);
    if (e < 0) return cl_error("not a zip archive (no end-of-central-directory record; truncated?)");
    size_t eocd = (size_t)e;
    uint64_t n_entries = rd16(d + eocd + 10);
    uint64_t cd_size = rd32(d + eocd + 12);
    uint64_t cd_off = rd32(d + eocd + 16);
    /* zip64: locator immediately before the classic record */
    if (eocd >= 20 && rd32(d + eocd - 20) == SIG_LOC64) {
        uint64_t off64 = rd64(d + eocd - 20 + 8);
        if (!in_bounds(off64, 56, len) || rd32(d + off64) != SIG_EOCD64)
            return cl_error("zip64 end record at offset %llu is outside the file or corrupt",
                            (unsigned long long)off64);
        n_entries = rd64(d + off64 + 32);
        cd_size = rd64(d + off64 + 40);
        cd_off = rd64(d + off64 + 48);
    }
    if (!in_bounds(cd_off, cd_size, len))
        return cl_error("zip central directory (offset %llu, %llu bytes) lies past the end of the "
                        "file (%zu bytes): truncated?",
                        (unsigned long long)cd_off, (unsigned long long)cd_size, len);
    /* each central header is >= 46 bytes: bounds the entry count by the file */
    if (n_entries > cd_size / 46)
        return cl_error("zip central directory claims %llu entries in %llu bytes",
                        (unsigned long long)n_entries, (unsigned long long)cd_size);
    if (n_entries == 0) return cl_error("zip archive has no entries");
    z->entries = cl_trycalloc((size_t)n_entries, sizeof *z->entries, "zip entries");
    if (!z->entries) return -1;
    uint64_t p = cd_off, cd_end = cd_off + cd_size;
    for (size_t i = 0; i < n_entries; i++) {
        if (p > cd_end || cd_end - p < 46 || rd32(d + p) != SIG_CENTRAL) {
            cl_error("zip central directory entry %zu at offset %llu is corrupt", i,
                     (unsigned long long)p);
            goto fail;
        }
        const unsigned char *h = d + p;
        uint16_t flags = rd16(h + 8);
        uint16_t method = rd16(h + 10);
        uint32_t crc = rd32(h + 16);
        uint64_t csize = rd32(h + 20), usize = rd32(h + 24);
        size_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
        uint64_t loff = rd32(h + 42);
        if (cd_end - p - 46 < (uint64_t)nlen + xlen + clen) {
            cl_error("zip central directory entry %zu at offset %llu runs past the directory", i,
                     (unsigned long long)p);
            goto fail;
        }
        if (flags & 1) {
            cl_error("zip entry %zu is encrypted", i);
            goto fail;
        }
        cl_zip_entry *en = &z->entries[i];
        z->n_entries = i + 1;
        en->name = cl_trymalloc(nlen + 1, 1, "zip entry name");
        if (!en->name) goto fail;
        memcpy(en->name, h + 46, nlen);
        en->name[nlen] = '\0';
        if (memchr(en->name, '\0', nlen)) {
            cl_error("zip entry %zu has a NUL byte in its name", i);
            goto fail;
        }
        /* zip64 extra (0x0001): the overflowed fields, in order usize, csize, offset */
        const unsigned char *x = h + 46 + nlen, *xend = x + xlen;
        while (xend - x >= 4) {
            uint16_t id = rd16(x), sz = rd16(x + 2);
            if ((size_t)(xend - x - 4) < sz) break;
            if (id == 0x0001) {
                const unsigned char *q = x + 4, *qend = x + 4 + sz;
                if (usize == 0xFFFFFFFFu) {
                    if (qend - q < 8) goto bad64;
                    usize = rd64(q);
                    q += 8;
                }
                if (csize == 0xFFFFFFFFu) {
                    if (qend - q < 8) goto bad64;
                    csize = rd64(q);
                    q += 8;
                }
                if (loff == 0xFFFFFFFFu) {
                    if (qend - q < 8) goto bad64;
                    loff = rd64(q);
                    q += 8;
                }
            }
            x += 4 + (size_t)sz;
        }
        if (usize == 0xFFFFFFFFu || csize == 0xFFFFFFFFu || loff == 0xFFFFFFFFu) {
        bad64:
            cl_error("zip entry '%s': zip64 extra field missing or short", en->name);
            goto fail;
        }
        en->method = method;
        en->crc = crc;
        en->size = usize;
        en->comp_size = csize;
        if (!in_bounds(loff, 30, len) || rd32(d + loff) != SIG_LOCAL) {
            cl_error("zip entry '%s': local header at offset %llu is outside the file or corrupt",
                     en->name, (unsigned long long)loff);
            goto fail;
        }
        uint64_t doff = loff + 30 + rd16(d + loff + 26) + rd16(d + loff + 28);
        if (!in_bounds(doff, csize, len)) {
            cl_error("zip entry '%s': data at offset %llu (%llu bytes) lies past the end of the "
                     "file (%zu bytes): truncated?",
                     en->name, (unsigned long long)doff, (unsigned long long)csize, len);
            goto fail;
        }
        en->data_offset = doff;
        p += 46 + (uint64_t)nlen + xlen + clen;
    }
    z->sorted = cl_trymalloc(z->n_entries, sizeof *z->sorted, "zip index");
    if (!z->sorted) goto fail;
    for (size_t i = 0; i < z->n_entries; i++) z->sorted[i] = &z->entries[i];
    qsort(z->sorted, z->n_entries, sizeof *z->sorted, cmp_entry);
    return 0;
fail:
    cl_zip_close(z);
    return -1;
}

long cl_zip_find(const cl_zip *z, const char *name) {
    size_t lo = 0, hi = z->n_entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(z->sorted[mid]->name, name);
        if (c == 0) return (long)(z->sorted[mid] - z->entries);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int cl_zip_entry_data(const cl_zip *z, size_t i, int check_crc, const unsigned char **p,
                      size_t *n) {
    const cl_zip_entry *en = &z->entries[i];
    if (en->method != 0)
        return cl_error("zip entry '%s' is compressed (method %u); only stored entries are "
                        "supported (torch.save never compresses)",
                        en->name, en->method);
    if (en->size != en->comp_size)
        return cl_error("zip entry '%s' is stored but its sizes differ (%llu vs %llu)", en->name,
                        (unsigned long long)en->size, (unsigned long long)en->comp_size);
    *p = z->data + en->data_offset;
    *n = (size_t)en->size;
    if (check_crc && en->crc != 0 && cl_crc32(*p, *n) != en->crc)
        return cl_error("zip entry '%s' fails its CRC check (file corrupt)", en->name);
    return 0;
}

/* The activation index: build (shared shard plan and trie forward of the
 * scan), part files, assembly into index.h5, and the reader. Design and
 * layout: include/corpuslens/scan/index.h. Dimensions: N substrings, S shard
 * size, Lh hooked blocks, C channels. */
#include "corpuslens/base/clock.h"
#include "corpuslens/scan/index.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "corpuslens/par/interrupt.h"
#include "corpuslens/par/par.h"
#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/hash.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/model.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/nn/kernels.h"
#include "corpuslens/scan/scan.h"
#include "corpuslens/scan/sketch.h"

/* Ranks agree through cl_par_agree (par.h): on failure every rank holds the
 * failing rank's own message. */

static size_t dtype_size(cl_index_dtype d) { return d == CL_INDEX_F16 ? 2 : 4; }

/* ---------------------------------------------------------------- writer */

struct cl_index_writer {
    cl_index_meta m;
    char dir[4200], part[4400], synced[4420];
    FILE *f;
    int rank, R;
    size_t rec_bytes, n_put; /* records 0..n_put-1 are in the part */
    size_t *ids;             /* [n_shards] the shard of each record of the part */
    unsigned char *rec;      /* [Lh, S, C] one record */
};

static void part_path(const char *out, int r, char *buf, size_t n) { snprintf(buf, n, "%s.parts/rank%d.bin", out, r); }
/* "<part>.synced": how many records of the part the last checkpoint fsynced
 * (a resume trusts no more: records past it may not be on disk), then the
 * shard of each, one a line */
static void synced_path(const char *out, int r, char *buf, size_t n) {
    snprintf(buf, n, "%s.parts/rank%d.bin.synced", out, r);
}

/* No rank count: parts written on R ranks resume on any other (index.h). */
static void signature(const cl_index_meta *m, char *buf, size_t n) {
    snprintf(buf, n,
             "corpuslens index parts v2\nmodel_sha256 %s\ncorpus_h5_sha256 %s\nhook %s\ndtype %s\nshard_size %zu\n"
             "n_substrings %zu\n",
             m->model_sha, m->corpus_h5_sha, m->hook, m->dtype == CL_INDEX_F16 ? "float16" : "float32", m->S, m->N);
}

/* The rank number of a directory entry "rank<r>.bin.synced" (exactly), or -1. */
static int synced_entry(const char *name) {
    int r = -1, n = 0;
    if (sscanf(name, "rank%d.bin.synced%n", &r, &n) != 1 || name[n] || r < 0) return -1;
    return r;
}

static void remove_parts(const char *out) {
    char dir[4400], p[4800];
    snprintf(dir, sizeof dir, "%s.parts", out);
    cl_remove_prefixed(dir, "rank");
    snprintf(p, sizeof p, "%s/args", dir);
    remove(p);
    rmdir(dir);
}

/* Read a part's .synced: the shards of its first *n records into ids
 * [n_shards] (each < n_shards). Absent: 0 records. 0 or -1 (a message). */
static int read_synced(const char *path, size_t n_shards, size_t *ids, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : cl_error("cannot read %s: %s", path, strerror(errno));
    unsigned long long k = 0, v;
    int ok = fscanf(f, "%llu", &k) == 1 && k <= n_shards;
    for (unsigned long long i = 0; ok && i < k; i++) {
        ok = fscanf(f, "%llu", &v) == 1 && v < n_shards;
        if (ok) ids[i] = (size_t)v;
    }
    fclose(f);
    if (!ok) return cl_error("%s is not a list of at most %zu shard ids below %zu: remove %.*s to start over", path,
                             n_shards, n_shards, (int)(strlen(path) - strlen(strrchr(path, '/'))), path);
    *n = (size_t)k;
    return 0;
}

static int write_synced(const char *path, const size_t *ids, size_t n) {
    char tmp[4500];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *sf = fopen(tmp, "wb");
    int bad = !sf || fprintf(sf, "%zu\n", n) < 0;
    for (size_t i = 0; !bad && i < n; i++) bad = fprintf(sf, "%zu\n", ids[i]) < 0;
    if (sf && fclose(sf)) bad = 1;
    if (bad) {
        int e = errno;
        remove(tmp);
        return cl_error("cannot write %s: %s", path, strerror(e));
    }
    return cl_commit_file(tmp, path);
}

/* Rank 0, when the parts match this run: every part's synced records (any
 * rank count wrote them), each part cut at its first record that is not in
 * keep (when given) or repeats a shard; done[] marks the shards they hold. */
static int gather_parts(cl_index_writer *w, const unsigned char *keep, unsigned char *done) {
    const size_t ns = w->m.n_shards;
    size_t *ids = cl_trymalloc(ns ? ns : 1, sizeof *ids, "part shard ids");
    if (!ids) return -1;
    DIR *d = opendir(w->dir);
    if (!d) {
        free(ids);
        return cl_error("cannot read %s: %s", w->dir, strerror(errno));
    }
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        int r = synced_entry(e->d_name);
        if (r < 0) continue;
        char part[4400], sp[4420];
        part_path(w->m.out_path, r, part, sizeof part);
        synced_path(w->m.out_path, r, sp, sizeof sp);
        size_t n = 0, k = 0;
        if (read_synced(sp, ns, ids, &n)) {
            rc = -1;
            break;
        }
        struct stat st;
        size_t have = stat(part, &st) == 0 ? (size_t)st.st_size / w->rec_bytes : 0;
        if (n > have) n = have;
        while (k < n && !done[ids[k]] && (!keep || keep[ids[k]])) done[ids[k++]] = 1;
        if (k < n || n < have) { /* cut: the rank that writes it next starts there */
            if (write_synced(sp, ids, k) || truncate(part, (off_t)(k * w->rec_bytes)))
                rc = cl_error("cannot cut %s to %zu records: %s", part, k, strerror(errno));
        }
    }
    closedir(d);
    free(ids);
    if (!rc && keep)
        for (size_t j = 0; j < ns && !rc; j++)
            if (keep[j] && !done[j])
                rc = cl_error("%s lacks shard %zu, which the scan's checkpoint holds: remove %s and the scan's state "
                              "directory to start over",
                              w->dir, j, w->dir);
    return rc;
}

void cl_index_writer_abort(cl_index_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    free(w->rec);
    free(w->ids);
    free(w);
}

size_t cl_shard_plan(const size_t *universe, size_t n_univ, const unsigned char *done, int rank, int R, size_t *list) {
    size_t k = 0, j = 0;
    for (size_t u = 0; u < n_univ; u++) {
        size_t s = universe ? universe[u] : u;
        if (done && done[s]) continue;
        if ((int)(j++ % (size_t)R) == rank) list[k++] = s;
    }
    return k;
}

cl_index_writer *cl_index_writer_open(const cl_index_meta *meta, int rank, int R, const unsigned char *keep,
                                      unsigned char *done, MPI_Comm comm) {
    int err = 0, match = 0;
    const size_t ns = meta->n_shards;
    cl_index_writer *w = cl_trycalloc(1, sizeof *w, "index writer");
    if (!w) err = 1;
    char sig[1024];
    signature(meta, sig, sizeof sig);
    memset(done, 0, ns);
    if (w) {
        w->m = *meta;
        w->rank = rank, w->R = R;
        w->rec_bytes = (size_t)meta->Lh * meta->S * (size_t)meta->C * dtype_size(meta->dtype);
        snprintf(w->dir, sizeof w->dir, "%s.parts", meta->out_path);
        part_path(meta->out_path, rank, w->part, sizeof w->part);
        synced_path(meta->out_path, rank, w->synced, sizeof w->synced);
        if (!(w->rec = cl_trymalloc(w->rec_bytes, 1, "index record")) ||
            !(w->ids = cl_trymalloc(ns ? ns : 1, sizeof *w->ids, "part shard ids")))
            err = 1;
    }
    int resumes = 0; /* a scan that resumes: its index parts must be there */
    for (size_t j = 0; keep && j < ns && !resumes; j++) resumes = keep[j] != 0;
    if (rank == 0 && !err) {
        char args[4400], old[1024] = "";
        snprintf(args, sizeof args, "%s/args", w->dir);
        if (mkdir(w->dir, 0777) && errno != EEXIST) err = cl_error("cannot create %s: %s", w->dir, strerror(errno));
        FILE *a = err ? NULL : fopen(args, "rb");
        if (a) {
            size_t n = fread(old, 1, sizeof old - 1, a);
            old[n] = 0;
            fclose(a);
        }
        match = !strcmp(old, sig);
        if (!err && resumes && !match)
            err = cl_error("%s does not belong to this run (another model, corpus, hook, dtype or shard size) but "
                           "the scan resumes from its state: remove %s and the scan's state directory",
                           w->dir, w->dir);
        if (!err && !match) {
            remove_parts(meta->out_path);
            if (mkdir(w->dir, 0777) && errno != EEXIST) err = cl_error("cannot create %s: %s", w->dir, strerror(errno));
            a = err ? NULL : fopen(args, "wb");
            if (!err && (!a || fputs(sig, a) < 0)) err = cl_error("cannot write %s: %s", args, strerror(errno));
            if (a && fclose(a) && !err) err = cl_error("cannot write %s: %s", args, strerror(errno));
            if (err) remove_parts(meta->out_path); /* nothing computed yet: nothing to keep */
        }
        if (!err && match && gather_parts(w, keep, done)) err = 1;
    }
    if (cl_par_agree(err, comm)) {
        cl_index_writer_abort(w);
        return NULL;
    }
    if (ns) cl_par_bcast(done, (int)ns, MPI_UNSIGNED_CHAR, 0, comm);
    /* this rank's part: its synced records (rank 0 cut the list), then the new ones */
    size_t k = 0;
    if (read_synced(w->synced, ns, w->ids, &k)) err = 1;
    if (!err) {
        w->f = fopen(w->part, "r+b");
        if (!w->f) w->f = fopen(w->part, "w+b");
        if (!w->f) err = cl_error("cannot open %s: %s", w->part, strerror(errno));
        else if (ftruncate(fileno(w->f), (off_t)(k * w->rec_bytes)))
            err = cl_error("cannot truncate %s: %s", w->part, strerror(errno));
    }
    if (cl_par_agree(err, comm)) {
        cl_index_writer_abort(w);
        return NULL;
    }
    w->n_put = k;
    return w;
}

int cl_index_writer_put(cl_index_writer *w, size_t shard, const float *vec, size_t S_rows) {
    const size_t S = w->m.S, C = (size_t)w->m.C, Lh = (size_t)w->m.Lh;
    if (w->n_put >= w->m.n_shards || shard >= w->m.n_shards)
        return cl_error("%s: shard %zu after %zu records (of %zu shards)", w->part, shard, w->n_put, w->m.n_shards);
    memset(w->rec, 0, w->rec_bytes);
    for (size_t h = 0; h < Lh; h++) {
        const float *src = vec + h * S_rows * C;
        if (w->m.dtype == CL_INDEX_F16) {
            uint16_t *dst = (uint16_t *)w->rec + h * S * C;
            for (size_t j = 0; j < S_rows * C; j++) dst[j] = cl_f32_to_f16(src[j]);
        } else {
            memcpy((float *)w->rec + h * S * C, src, S_rows * C * sizeof(float));
        }
    }
    if (fseeko(w->f, (off_t)(w->n_put * w->rec_bytes), SEEK_SET) ||
        fwrite(w->rec, 1, w->rec_bytes, w->f) != w->rec_bytes)
        return cl_error("cannot write %s: %s", w->part, strerror(errno));
    w->ids[w->n_put++] = shard;
    return 0;
}

int cl_index_writer_sync(cl_index_writer *w) {
    if (fflush(w->f) || fsync(fileno(w->f))) return cl_error("cannot write %s: %s", w->part, strerror(errno));
    /* then the records now on disk and their shards: tmp, fsync, rename, fsync of the directory */
    return write_synced(w->synced, w->ids, w->n_put);
}

static hid_t create_ds(hid_t f, const char *path, hid_t type, int rank, const hsize_t *dims, const hsize_t *chunk) {
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0); /* no time stamps: the same bytes on every run */
    if (chunk) H5Pset_chunk(dcpl, rank, chunk);
    hid_t d = H5Dcreate2(f, path, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0) cl_h5_error_in(f, "cannot create dataset %s", path);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return d;
}

static int write_all(hid_t f, const char *path, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                     const void *data) {
    hid_t d = create_ds(f, path, ftype, rank, dims, NULL);
    if (d < 0) return -1;
    int rc = H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ? cl_h5_error_in(f, "cannot write %s", path) : 0;
    if (H5Dclose(d) < 0 && !rc) rc = cl_h5_error_in(f, "cannot write %s", path);
    return rc;
}

/* Where each shard's record is: the .synced lists of every part (the
 * ranks of this run and of earlier runs on other rank counts). */
typedef struct {
    FILE **f;
    int n;
    int32_t *part;   /* [n_shards] index into f, -1: none */
    size_t *rec;     /* [n_shards] record in that part */
} part_map;

static void part_map_free(part_map *pm) {
    for (int i = 0; i < pm->n; i++)
        if (pm->f[i]) fclose(pm->f[i]);
    free(pm->f), free(pm->part), free(pm->rec);
}

static int part_map_load(cl_index_writer *w, part_map *pm) {
    const size_t ns = w->m.n_shards;
    memset(pm, 0, sizeof *pm);
    size_t *ids = cl_trymalloc(ns ? ns : 1, sizeof *ids, "part shard ids");
    pm->part = cl_trymalloc(ns ? ns : 1, sizeof *pm->part, "shard parts");
    pm->rec = cl_trymalloc(ns ? ns : 1, sizeof *pm->rec, "shard records");
    DIR *d = ids && pm->part && pm->rec ? opendir(w->dir) : NULL;
    int rc = d ? 0 : (ids && pm->part && pm->rec ? cl_error("cannot read %s: %s", w->dir, strerror(errno)) : -1);
    for (size_t j = 0; j < ns && pm->part; j++) pm->part[j] = -1;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        int r = synced_entry(e->d_name);
        if (r < 0) continue;
        char part[4400], sp[4420];
        part_path(w->m.out_path, r, part, sizeof part);
        synced_path(w->m.out_path, r, sp, sizeof sp);
        size_t n = 0;
        if (read_synced(sp, ns, ids, &n)) {
            rc = -1;
            break;
        }
        if (!n) continue;
        FILE **nf = realloc(pm->f, (size_t)(pm->n + 1) * sizeof *nf);
        if (!nf) {
            rc = cl_error("out of memory for the part list");
            break;
        }
        pm->f = nf;
        struct stat st;
        FILE *f = pm->f[pm->n] = fopen(part, "rb");
        if (!f) {
            rc = cl_error("cannot open %s: %s", part, strerror(errno));
            break;
        }
        pm->n++;
        if (fstat(fileno(f), &st) || (size_t)st.st_size / w->rec_bytes < n) {
            rc = cl_error("%s holds fewer records than its .synced lists (%zu)", part, n);
            break;
        }
        for (size_t i = 0; i < n && !rc; i++) {
            if (pm->part[ids[i]] >= 0) rc = cl_error("%s: shard %zu is in two parts", w->dir, ids[i]);
            pm->part[ids[i]] = pm->n - 1, pm->rec[ids[i]] = i;
        }
    }
    if (d) closedir(d);
    for (size_t j = 0; j < ns && !rc; j++)
        if (pm->part[j] < 0) rc = cl_error("%s lacks shard %zu", w->dir, j);
    free(ids);
    return rc;
}

/* The order (sorted position -> substring) from the corpus file's
 * /substrings/sorted, when the writer was given none (a sharded scan or
 * index: no rank holds it whole), each entry checked. 0 or -1. */
static int read_order(const cl_index_meta *m, int32_t *sub) {
    const size_t N = m->N, B = (size_t)1 << 17;
    int64_t *buf = cl_trymalloc(B, sizeof *buf, "substring order");
    hid_t f = buf ? cl_h5_open_read(m->corpus_path) : H5I_INVALID_HID;
    int rc = f < 0 ? -1 : 0;
    for (size_t k0 = 0; !rc && k0 < N; k0 += B) {
        size_t n = N - k0 < B ? N - k0 : B;
        if (cl_h5_read_rows(f, "/substrings/sorted", H5T_NATIVE_INT64, k0, n, buf) < 0) rc = -1;
        for (size_t k = 0; !rc && k < n; k++) {
            if (buf[k] < 0 || (uint64_t)buf[k] >= N)
                rc = cl_error("/substrings/sorted: entry %zu is not a substring index", k0 + k);
            else sub[k0 + k] = (int32_t)buf[k];
        }
    }
    if (f >= 0) H5Fclose(f);
    free(buf);
    if (rc) cl_error_prefix("%s: ", m->corpus_path);
    return rc;
}

/* Write the index into tmp with complete = 0 and close it (cl_h5_finish:
 * every close checked, tmp removed on failure). */
static int assemble(cl_index_writer *w, const char *tmp) {
    const cl_index_meta *m = &w->m;
    const size_t S = m->S, C = (size_t)m->C, Lh = (size_t)m->Lh, N = m->N;
    int rc = -1;
    part_map pm;
    int32_t *sub = cl_trymalloc(N ? N : 1, sizeof *sub, "substring order");
    char *vbuf = cl_trycalloc(m->bpe ? 1 : (size_t)m->V, 4, "vocabulary");
    hid_t f = H5I_INVALID_HID, vt = H5I_INVALID_HID, d = H5I_INVALID_HID, ft = H5I_INVALID_HID;
    if (part_map_load(w, &pm) || !sub || !vbuf) goto done;
    f = cl_h5_create(tmp);
    if (f < 0) goto done;
    if (cl_h5_attr_write_str(f, "format", CL_INDEX_FORMAT) ||
        cl_h5_attr_write_int(f, "format_version", CL_INDEX_FORMAT_VERSION) ||
        cl_h5_attr_write_int(f, "complete", 0) || cl_h5_attr_write_str(f, "model_file", m->model_path) ||
        cl_h5_attr_write_str(f, "model_sha256", m->model_sha) ||
        cl_h5_attr_write_str(f, "corpus_h5_file", m->corpus_path) ||
        cl_h5_attr_write_str(f, "corpus_h5_sha256", m->corpus_h5_sha) ||
        cl_h5_attr_write_str(f, "corpus_sha256", m->corpus_sha) || cl_h5_attr_write_str(f, "hook", m->hook) ||
        cl_h5_attr_write_int(f, "hook_first_block", m->first_block) ||
        cl_h5_attr_write_int(f, "n_hook_blocks", m->Lh) || cl_h5_attr_write_int(f, "n_layer", m->n_layer) ||
        cl_h5_attr_write_int(f, "n_embd", m->C) || cl_h5_attr_write_int(f, "L", m->L) ||
        cl_h5_attr_write_int(f, "vocab_size", m->V) || cl_h5_attr_write_int(f, "n_substrings", (long long)N) ||
        cl_h5_attr_write_str(f, "dtype", m->dtype == CL_INDEX_F16 ? "float16" : "float32") ||
        cl_h5_attr_write_int(f, "shard_size", (long long)S))
        goto done;
    if (m->bpe && (cl_h5_attr_write_str(f, "token_type", "gpt2-bpe") || cl_bpe_write_h5(f, m->bpe))) goto done;
    for (int i = 0; !m->bpe && i < m->V; i++) {
        char t[4] = {0};
        int n = cl_utf8_put(m->vocab[i], t);
        memcpy(vbuf + 4 * (size_t)i, t, (size_t)n);
    }
    vt = H5Tcopy(H5T_C_S1);
    H5Tset_size(vt, 4);
    H5Tset_strpad(vt, H5T_STR_NULLPAD);
    H5Tset_cset(vt, H5T_CSET_UTF8);
    hsize_t dV = (hsize_t)m->V, dN = N;
    if (m->perm)
        for (size_t i = 0; i < N; i++) sub[i] = (int32_t)m->perm[i];
    else if (read_order(m, sub))
        goto done;
    if ((!m->bpe && write_all(f, "/vocab", vt, vt, 1, &dV, vbuf)) ||
        write_all(f, CL_INDEX_SUBSTRING, H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &dN, sub))
        goto done;
    ft = m->dtype == CL_INDEX_F16 ? cl_index_f16_type() : H5Tcopy(H5T_IEEE_F32LE);
    hsize_t dims[3] = {Lh, N, C}, chunk[3] = {1, S, C};
    if (ft < 0 || (d = create_ds(f, CL_INDEX_VECTORS, ft, 3, dims, chunk)) < 0) goto done;
    hid_t mt = m->dtype == CL_INDEX_F16 ? ft : H5T_NATIVE_FLOAT;
    for (size_t j = 0; j < m->n_shards; j++) {
        FILE *p = pm.f[pm.part[j]];
        size_t rows = N - j * S < S ? N - j * S : S;
        if (fseeko(p, (off_t)(pm.rec[j] * w->rec_bytes), SEEK_SET) || fread(w->rec, 1, w->rec_bytes, p) != w->rec_bytes) {
            cl_error("cannot read shard %zu from %s", j, w->dir);
            goto done;
        }
        for (size_t h = 0; h < Lh; h++) {
            hsize_t start[3] = {h, j * S, 0}, count[3] = {1, rows, C};
            hid_t fs = H5Dget_space(d), ms = H5Screate_simple(3, count, NULL);
            herr_t st = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
            if (st >= 0)
                st = H5Dwrite(d, mt, ms, fs, H5P_DEFAULT, w->rec + h * S * C * dtype_size(m->dtype));
            H5Sclose(ms);
            H5Sclose(fs);
            if (st < 0) {
                cl_h5_error_in(f, "cannot write %s rows of shard %zu", CL_INDEX_VECTORS, j);
                goto done;
            }
        }
    }
    /* the close flushes the chunk cache: on a full disk it fails here */
    herr_t cst = H5Dclose(d);
    d = H5I_INVALID_HID;
    if (cst < 0) {
        cl_h5_error_in(f, "cannot write %s", CL_INDEX_VECTORS);
        goto done;
    }
    rc = 0;
done:
    if (d >= 0) H5Dclose(d);
    if (ft >= 0) H5Tclose(ft);
    if (vt >= 0) H5Tclose(vt);
    if (cl_h5_finish(f, tmp, rc != 0)) rc = -1;
    part_map_free(&pm);
    free(sub);
    free(vbuf);
    return rc;
}

/* Set `complete` = 1 in tmp, a file assemble closed successfully: so the
 * attribute is written only after every vector reached the file. */
static int mark_complete(const char *tmp) {
    hid_t f = H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return cl_h5_error("cannot open %s", tmp);
    int rc = H5Adelete(f, "complete") < 0 ? cl_h5_error_in(f, "cannot write the attribute complete") : 0;
    if (!rc) rc = cl_h5_attr_write_int(f, "complete", 1);
    return cl_h5_finish(f, tmp, rc != 0);
}

/* The parts go only once the index is on disk under its name: assembled,
 * closed, fsynced, renamed, and its directory fsynced (cl_commit_file). */
int cl_index_writer_finish(cl_index_writer *w, int ok, size_t *bytes, MPI_Comm comm) {
    int err = ok ? 0 : 1;
    if (!err && cl_index_writer_sync(w)) err = 1;
    if (cl_par_agree(err, comm)) {
        cl_index_writer_abort(w);
        return -1;
    }
    unsigned long long sz = 0;
    if (w->rank == 0) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", w->m.out_path);
        int k = w->m.sketch_dim; /* 0: the default (sketch.h); -1: none */
        cl_sketch_stats sst;
        if (assemble(w, tmp) || mark_complete(tmp) ||
            (w->m.dtype == CL_INDEX_F16 && k >= 0 && cl_index_add_sketch(tmp, k, &sst)) ||
            cl_commit_file(tmp, w->m.out_path)) {
            char why[1024];
            snprintf(why, sizeof why, "%s", cl_last_error());
            err = cl_error("%s; the computed parts stay in %s: the same command again assembles them", why, w->dir);
            remove(tmp);
        } else {
            struct stat st;
            if (stat(w->m.out_path, &st) == 0) sz = (unsigned long long)st.st_size;
        }
    }
    if (w->f) fclose(w->f);
    w->f = NULL;
    int g = cl_par_agree(err, comm);
    if (!g && w->rank == 0) {
        remove_parts(w->m.out_path);
        cl_fsync_dir_of(w->m.out_path); /* the parts' removal on disk (a failure here loses nothing) */
    }
    cl_par_bcast(&sz, 1, MPI_UNSIGNED_LONG_LONG, 0, comm);
    if (bytes) *bytes = (size_t)sz;
    cl_index_writer_abort(w);
    return g ? -1 : 0;
}

/* ---------------------------------------------------------------- build */

void cl_index_opts_default(cl_index_opts *o) {
    memset(o, 0, sizeof *o);
    o->hook = "mlp_out";
    o->dtype = CL_INDEX_F16;
    o->shard_size = 2048;
    o->checkpoint_seconds = 60;
    o->sketch_dim = CL_SKETCH_DIM_UNSET;
}

static int setup_model_corpus(const cl_index_opts *o, cl_model **mp, cl_corpus **cpp, int *point, int *lo, int *hi) {
    if (!o->model_path || !o->corpus_path || !o->out_path) return cl_error("index: model, corpus and output are required");
    if (o->shard_size < 1 || o->shard_size > (1L << 20)) return cl_error("--batch must be in 1..1048576");
    if (o->dtype != CL_INDEX_F16 && o->dtype != CL_INDEX_F32) return cl_error("unknown index dtype");
    cl_model *m = *mp = cl_model_load(o->model_path);
    if (!m) return -1; /* the loader names the path */
    const cl_config *c = &m->cfg;
    cl_hook_point pt;
    int layer;
    if (cl_hook_parse(o->hook, c->n_layer, &pt, &layer)) return -1;
    if (pt != CL_HOOK_RESID_PRE && pt != CL_HOOK_ATTN_OUT && pt != CL_HOOK_RESID_MID && pt != CL_HOOK_MLP_OUT &&
        pt != CL_HOOK_RESID_POST)
        return cl_error("hook '%s' is not supported by index; valid: mlp_out, attn_out, resid_mid, resid_post, "
                        "resid_pre, embed, or blocks.{i}.hook_<one of those>",
                        o->hook);
    *point = pt;
    *lo = layer < 0 ? 0 : layer;
    *hi = layer < 0 ? c->n_layer - 1 : layer;
    /* the rows stay in the file: each rank reads its shards' (issue 26) */
    cl_corpus *cp = *cpp = cl_corpus_open_part(o->corpus_path, 1);
    if (!cp) return -1;
    if (cp->L > c->block_size)
        return cl_error("%s: substring length %d exceeds the model's block_size %d", o->corpus_path, cp->L,
                        c->block_size);
    if (!cp->bpe != !m->bpe)
        return cl_error("%s is a %s corpus but %s is a %s model; run prepare again with --vocab-from %s", o->corpus_path,
                        cp->bpe ? "GPT-2 BPE" : "character-level", o->model_path,
                        m->bpe ? "GPT-2 BPE" : "character-level", o->model_path);
    if (cp->bpe && (cp->V != c->vocab_size || !cl_bpe_equal(cp->bpe, m->bpe)))
        return cl_error("%s was made for another model: its tokenizer differs from %s's; run prepare again with "
                        "--vocab-from %s",
                        o->corpus_path, o->model_path, o->model_path);
    if (!cp->bpe && (cp->V != c->vocab_size || memcmp(cp->vocab, m->vocab, (size_t)cp->V * sizeof *cp->vocab)))
        return cl_error("%s was made for another model: its vocabulary (%d tokens) differs from %s's (%d); "
                        "run prepare again with --vocab-from %s",
                        o->corpus_path, cp->V, o->model_path, c->vocab_size, o->model_path);
    if (cp->n > (size_t)INT32_MAX) return cl_error("too many substrings (%zu)", cp->n);
    if (o->sketch_dim != CL_SKETCH_DIM_UNSET && (o->sketch_dim < 0 || o->sketch_dim > 256))
        return cl_error("--sketch-dim %d: give 0 (none) or 1..256", o->sketch_dim);
    if (o->dtype == CL_INDEX_F16 && o->sketch_dim > c->n_embd)
        return cl_error("--sketch-dim %d exceeds n_embd %d", o->sketch_dim, c->n_embd);
    return 0;
}

int cl_index_run(const cl_index_opts *o, MPI_Comm comm, cl_index_result *res) {
    int rank, R, point = 0, lo = 0, hi = 0, rc = -1;
    cl_par_comm_rank(comm, &rank);
    cl_par_comm_size(comm, &R);
    memset(res, 0, sizeof *res);
    double t0 = cl_wall_seconds();
    cl_model *m = NULL;
    cl_corpus *cp = NULL;
    cl_corpus_part part;
    memset(&part, 0, sizeof part);
    int32_t *stok = NULL;
    float *svec = NULL;
    cl_trie_fwd *tf = NULL;
    cl_index_writer *w = NULL;
    unsigned char *done_set = NULL;
    size_t *mine_list = NULL;
    char model_sha[65] = "", corpus_h5_sha[65] = "";
    int err = setup_model_corpus(o, &m, &cp, &point, &lo, &hi) ? 1 : 0;
    if (!err && rank == 0 && (cl_model_fingerprint(m, model_sha) || cl_sha256_file(o->corpus_path, corpus_h5_sha)))
        err = 1;
    if (cl_par_agree(err, comm)) goto out;
    cl_par_bcast(model_sha, 65, MPI_CHAR, 0, comm);
    cl_par_bcast(corpus_h5_sha, 65, MPI_CHAR, 0, comm);
    const size_t N = cp->n, C = (size_t)m->cfg.n_embd;
    const int L = cp->L, Lh = hi - lo + 1;
    size_t S = (size_t)o->shard_size < N ? (size_t)o->shard_size : N;
    size_t n_shards = (N + S - 1) / S;
    if (!(stok = cl_trymalloc(S * (size_t)L, sizeof *stok, "shard tokens")) ||
        !(svec = cl_trymalloc((size_t)Lh * S * C, sizeof *svec, "shard vectors")) ||
        !(tf = cl_trie_fwd_create(m, L, S)))
        err = 1;
    if (cl_par_agree(err, comm)) goto out;
    cl_index_meta meta = {.out_path = o->out_path, .model_path = o->model_path, .corpus_path = o->corpus_path,
                          .hook = o->hook, .model_sha = model_sha, .corpus_h5_sha = corpus_h5_sha,
                          .corpus_sha = cp->corpus_sha256, .dtype = o->dtype, .Lh = Lh, .first_block = lo,
                          .n_layer = m->cfg.n_layer, .C = (int)C, .L = L, .V = cp->V, .vocab = cp->vocab, .bpe = cp->bpe, .N = N,
                          .S = S, .n_shards = n_shards,
                          .perm = cp->sorted, /* NULL: the writer reads /substrings/sorted */
                          .sketch_dim = o->sketch_dim == CL_SKETCH_DIM_UNSET ? 0
                                        : o->sketch_dim == 0                   ? -1
                                                                               : o->sketch_dim};
    /* the shards already in the parts (any rank count wrote them), then the
       rest dealt round-robin over this run's ranks (cl_shard_plan) */
    if (!(done_set = cl_trymalloc(n_shards, 1, "done shards")) || !(mine_list = cl_trymalloc(n_shards, sizeof *mine_list, "shard plan")))
        err = 1;
    if (cl_par_agree(err, comm)) goto out;
    if (!(w = cl_index_writer_open(&meta, rank, R, NULL, done_set, comm))) goto out;
    size_t mine = cl_shard_plan(NULL, n_shards, done_set, rank, R, mine_list);
    /* this rank's shards' rows, their order checked */
    if (cl_par_agree(cl_corpus_read_shards(cp, mine_list, mine, S, &part) ? 1 : 0, comm)) goto out;
    size_t dtot = 0, rows_left = 0;
    for (size_t j = 0; j < n_shards; j++) {
        if (done_set[j]) dtot++;
        else rows_left += N - j * S < S ? N - j * S : S;
    }
    if (rank == 0 && dtot > 0 && o->note) {
        char msg[256];
        snprintf(msg, sizeof msg, "resuming: %zu of %zu shards already done", dtot, n_shards);
        o->note(o->progress_user, msg);
    }
    double tlast = cl_wall_seconds(), tstart = tlast, tf_sum = 0;
    size_t done = 0, nodes = 0;
    long new_done = 0;
    cl_par_stop stop;
    if (cl_par_agree(cl_par_stop_open(&stop, comm), comm)) goto out;
    for (size_t i = 0; i < mine && !err; i++) {
        if (cl_par_stop_poll(&stop)) { /* SIGINT / SIGTERM here or on another rank */
            res->stopped = 1;
            break;
        }
        size_t j = mine_list[i], s0 = j * S, rows = N - s0 < S ? N - s0 : S, M = 0;
        (void)s0;
        memcpy(stok, part.tokens + part.shard_row[i] * (size_t)L, rows * (size_t)L * sizeof(int32_t));
        double ta = cl_wall_seconds();
        if (cl_trie_fwd_run(tf, stok, rows, point, lo, hi, svec, &M)) {
            err = 1;
            break;
        }
        for (int h = 0; h < Lh; h++) l2normalize_rows(svec + (size_t)h * rows * C, rows, (int)C);
        tf_sum += cl_wall_seconds() - ta;
        nodes += M;
        if (cl_par_fault("index.shard", comm) || cl_index_writer_put(w, j, svec, rows)) {
            err = 1;
            break;
        }
        done = i + 1;
        new_done++;
        double now = cl_wall_seconds();
        if (rank == 0 && o->progress) {
            size_t d = done * R * S; /* rank 0's share extrapolated to the run */
            if (d > rows_left) d = rows_left;
            o->progress(o->progress_user, d, rows_left, now - tstart);
        }
        if (o->stop_after_shards > 0 && new_done >= o->stop_after_shards && done < mine) {
            res->stopped = 1;
            break;
        }
        if (o->checkpoint_seconds > 0 && now - tlast > o->checkpoint_seconds) {
            if (cl_index_writer_sync(w)) err = 1;
            tlast = cl_wall_seconds();
        }
    }
    int sig = cl_par_stop_close(&stop); /* collective: the same on every rank */
    if (cl_par_agree(err, comm)) {
        cl_index_writer_abort(w);
        w = NULL;
        goto out;
    }
    int stopped = res->stopped, gst = 0;
    cl_par_allreduce(&stopped, &gst, 1, MPI_INT, MPI_MAX, comm);
    if (gst) { /* every rank syncs what it finished, a rank done with its shards too */
        err = cl_index_writer_sync(w) ? 1 : 0;
        cl_index_writer_abort(w); /* the parts stay for the resume */
        w = NULL;
        if (cl_par_agree(err, comm)) goto out;
        unsigned long long dn = done, dall = 0;
        cl_par_allreduce(&dn, &dall, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm);
        res->stopped = 1;
        res->interrupted = sig;
        res->shards_done = (long long)(dall + dtot); /* this run's and the resumed parts' */
        res->n_shards = (long long)n_shards;
        rc = 0;
        goto out;
    }
    double tw = cl_wall_seconds();
    cl_par_reduce(rank ? &tf_sum : MPI_IN_PLACE, &tf_sum, 1, MPI_DOUBLE, MPI_MAX, 0, comm);
    unsigned long long nn = nodes, ntot = 0;
    cl_par_allreduce(&nn, &ntot, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm);
    res->t_forward = tf_sum;
    res->n_nodes = (size_t)ntot;
    int frc = cl_index_writer_finish(w, 1, &res->bytes, comm);
    w = NULL;
    if (frc) goto out;
    res->t_write = cl_wall_seconds() - tw;
    res->wall_seconds = cl_wall_seconds() - t0;
    if (getenv("CORPUSLENS_CORPUS_STATS")) { /* tests: what each rank read of the corpus */
        unsigned long long rows = 0, ents = 0, chunks = 0, bytes = 0;
        cl_corpus_io_stats(&rows, &ents);
        cl_h5_io_stats(&chunks, &bytes);
        fprintf(stderr, "corpuslens index: rank %d of %d read %llu substring rows of %zu, %llu next-token entries of %zu; "
                "%llu chunks, %llu stored bytes\n", rank, R, rows, N, ents, cp->nnz, chunks, bytes);
    }
    rc = 0;
out:
    if (w) cl_index_writer_abort(w);
    cl_trie_fwd_free(tf);
    cl_corpus_part_free(&part), free(stok), free(svec), free(done_set), free(mine_list);
    cl_corpus_free(cp);
    cl_model_free(m);
    return rc;
}

/* ---------------------------------------------------------------- reader */

void cl_index_close(cl_index *ix) {
    if (!ix) return;
    cl_sketch_free(ix->sketch);
    if (ix->hold_base) munmap(ix->hold_base, ix->hold_len);
    else if (ix->map) munmap((void *)ix->map, ix->map_size);
    free(ix->chunk_off);
    if (ix->vectors >= 0) H5Dclose(ix->vectors);
    if (ix->file >= 0) H5Fclose(ix->file);
    free(ix->vocab);
    cl_bpe_free(ix->bpe);
    free(ix->substring);
    free(ix->row_indptr), free(ix->row_token), free(ix->row_count);
    free(ix);
}

static int rd_int(hid_t f, const char *name, long long lo, long long hi, long long *v) {
    if (!cl_h5_attr_exists(f, name)) return cl_error("attribute %s is missing", name);
    if (cl_h5_attr_read_int(f, name, v)) return -1;
    if (*v < lo || *v > hi) return cl_error("attribute %s = %lld is outside [%lld, %lld]", name, *v, lo, hi);
    return 0;
}

/* The hook attribute: a point `index` writes (width C, the residual
 * stream's), for the blocks the attributes name: every block (a short name)
 * or the one block of blocks.{i}.hook_<point>. */
static int check_hook(cl_index *ix) {
    cl_hook_point pt;
    int layer;
    if (!ix->hook[0]) return cl_error("attribute hook is empty");
    if (cl_hook_parse(ix->hook, ix->n_layer, &pt, &layer)) return cl_error_prefix("attribute hook: ");
    if (pt != CL_HOOK_RESID_PRE && pt != CL_HOOK_ATTN_OUT && pt != CL_HOOK_RESID_MID && pt != CL_HOOK_MLP_OUT &&
        pt != CL_HOOK_RESID_POST)
        return cl_error("attribute hook \"%s\" is not a point `index` writes (mlp_out, attn_out, resid_mid, "
                        "resid_post, resid_pre, embed, or blocks.{i}.hook_<one of those>)",
                        ix->hook);
    int lo = layer < 0 ? 0 : layer, n = layer < 0 ? ix->n_layer : 1;
    if (ix->first_block != lo || ix->Lh != n)
        return cl_error("attribute hook \"%s\" names blocks %d..%d but hook_first_block %d and n_hook_blocks %d say "
                        "%d..%d",
                        ix->hook, lo, lo + n - 1, ix->first_block, ix->Lh, ix->first_block,
                        ix->first_block + ix->Lh - 1);
    ix->hook_point = (int)pt, ix->hook_layer = layer;
    return 0;
}

/* A dataset's shape against the attributes that give it (named in the message). */
static int check_extent(hid_t f, const char *path, int rank, const hsize_t *want, const char *attrs) {
    hsize_t d[8];
    int r = cl_h5_shape(f, path, d);
    if (r < 0) return -1;
    int same = r == rank;
    for (int i = 0; same && i < rank; i++) same = d[i] == want[i];
    if (!same) {
        char a[96] = "", b[96] = "";
        for (int i = 0; i < rank; i++) snprintf(a + strlen(a), sizeof a - strlen(a), "%s%llu", i ? ", " : "", (unsigned long long)want[i]);
        for (int i = 0; i < r; i++) snprintf(b + strlen(b), sizeof b - strlen(b), "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
        return cl_error("%s is [%s]; the attributes (%s) say [%s]", path, b, attrs, a);
    }
    return 0;
}

/* /substring: 32-bit integers, stored in full (as written: no filter, no
 * unallocated chunk read back as fill values). */
static int check_substring_storage(hid_t f, size_t N) {
    hid_t d = H5Dopen2(f, CL_INDEX_SUBSTRING, H5P_DEFAULT);
    if (d < 0) return cl_error("%s is not a dataset", CL_INDEX_SUBSTRING);
    hid_t t = H5Dget_type(d), pl = H5Dget_create_plist(d);
    int ok_t = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 4 && H5Tget_sign(t) == H5T_SGN_2;
    int nf = pl >= 0 ? H5Pget_nfilters(pl) : -1;
    hsize_t stored = H5Dget_storage_size(d);
    if (t >= 0) H5Tclose(t);
    if (pl >= 0) H5Pclose(pl);
    H5Dclose(d);
    if (!ok_t) return cl_error("%s is not int32", CL_INDEX_SUBSTRING);
    if (nf != 0 || stored < (hsize_t)N * 4)
        return cl_error("%s is filtered or not stored in full (%llu of %zu bytes)", CL_INDEX_SUBSTRING,
                        (unsigned long long)stored, N * 4);
    return 0;
}

/* Every row id in 0 <= id < N, each once: the rows are a permutation of the
 * corpus's substrings (their order is checked against the corpus's tokens by
 * cl_index_check_order). */
static int check_ids(const int32_t *sub, size_t N) {
    uint64_t *seen = cl_trycalloc((N + 63) / 64, sizeof *seen, "row ids");
    if (!seen) return -1;
    int rc = 0;
    for (size_t i = 0; i < N; i++) {
        int32_t v = sub[i];
        if (v < 0 || (size_t)v >= N) {
            rc = cl_error("%s[%zu] = %d is outside 0..%zu (n_substrings %zu)", CL_INDEX_SUBSTRING, i, v, N - 1, N);
            break;
        }
        uint64_t bit = 1ull << (v & 63);
        if (seen[v >> 6] & bit) {
            rc = cl_error("%s lists substring %d twice (again in row %zu)", CL_INDEX_SUBSTRING, v, i);
            break;
        }
        seen[v >> 6] |= bit;
    }
    free(seen);
    return rc;
}

static cl_index *open_index(const char *path, int with_sketch) {
    cl_index *ix = cl_trycalloc(1, sizeof *ix, "index");
    if (!ix) return NULL;
    ix->file = ix->vectors = H5I_INVALID_HID;
    snprintf(ix->path, sizeof ix->path, "%s", path);
    struct stat st;
    if (stat(path, &st)) {
        cl_error("cannot open %s: %s", path, strerror(errno));
        goto fail_np;
    }
    hid_t f = ix->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        cl_error("cannot open %s: not a readable HDF5 file (truncated or corrupt?)", path);
        goto fail_np;
    }
    char fmt[64] = "", dt[32] = "";
    long long v, complete = 0;
    if (!cl_h5_attr_exists(f, "format") || cl_h5_attr_read_str(f, "format", fmt, sizeof fmt) ||
        strcmp(fmt, CL_INDEX_FORMAT)) {
        cl_error("not a corpuslens index (root attribute format is not \"%s\")", CL_INDEX_FORMAT);
        goto fail;
    }
    if (rd_int(f, "format_version", CL_INDEX_FORMAT_VERSION, CL_INDEX_FORMAT_VERSION, &v)) goto fail;
    if (!cl_h5_attr_exists(f, "complete") || cl_h5_attr_read_int(f, "complete", &complete) || complete != 1) {
        cl_error("the index is incomplete (attribute complete is not 1): its build was interrupted; run index again");
        goto fail;
    }
    if (rd_int(f, "n_substrings", 1, INT32_MAX, &v)) goto fail;
    ix->N = (size_t)v;
    if (rd_int(f, "n_hook_blocks", 1, 64, &v)) goto fail;
    ix->Lh = (int)v;
    if (rd_int(f, "hook_first_block", 0, 63, &v)) goto fail;
    ix->first_block = (int)v;
    if (rd_int(f, "n_layer", 1, 64, &v)) goto fail;
    ix->n_layer = (int)v;
    if (rd_int(f, "n_embd", 1, 1 << 16, &v)) goto fail;
    ix->C = (int)v;
    if (rd_int(f, "L", 1, CL_CORPUS_MAX_LEN, &v)) goto fail;
    ix->L = (int)v;
    if (rd_int(f, "vocab_size", 1, 1 << 21, &v)) goto fail;
    ix->V = (int)v;
    if (rd_int(f, "shard_size", 1, 1 << 20, &v)) goto fail;
    ix->chunk_rows = (size_t)v;
    if (cl_h5_attr_read_str(f, "dtype", dt, sizeof dt) || cl_h5_attr_read_str(f, "hook", ix->hook, sizeof ix->hook) ||
        cl_h5_attr_read_str(f, "model_sha256", ix->model_sha256, sizeof ix->model_sha256) ||
        cl_h5_attr_read_str(f, "corpus_h5_sha256", ix->corpus_h5_sha256, sizeof ix->corpus_h5_sha256))
        goto fail;
    if (!strcmp(dt, "float16")) ix->dtype = CL_INDEX_F16;
    else if (!strcmp(dt, "float32")) ix->dtype = CL_INDEX_F32;
    else {
        cl_error("attribute dtype \"%s\" is not float16 or float32", dt);
        goto fail;
    }
    if (ix->first_block + ix->Lh > ix->n_layer) {
        cl_error("hooked blocks %d..%d exceed n_layer %d", ix->first_block, ix->first_block + ix->Lh - 1, ix->n_layer);
        goto fail;
    }
    if (check_hook(ix)) goto fail;
    if (cl_h5_attr_exists(f, "token_type")) {
        char tt[32] = "";
        if (cl_h5_attr_read_str(f, "token_type", tt, sizeof tt)) goto fail;
        if (strcmp(tt, "gpt2-bpe") && strcmp(tt, "char")) {
            cl_error("token_type '%s' is not supported (expected 'char' or 'gpt2-bpe')", tt);
            goto fail;
        }
        if (!strcmp(tt, "gpt2-bpe")) {
            if (!(ix->bpe = cl_bpe_read_h5(f, NULL))) goto fail;
            if (cl_bpe_vocab_size(ix->bpe) != ix->V) {
                cl_error("/tokenizer has %d tokens but vocab_size is %d", cl_bpe_vocab_size(ix->bpe), ix->V);
                goto fail;
            }
        }
    }
    /* Every extent the attributes imply, against the datasets and the file's
       size, before anything is allocated: a small file cannot make the reader
       allocate more than the data it holds. */
    {
        const unsigned long long N = ix->N, Lh = (unsigned long long)ix->Lh, C = (unsigned long long)ix->C;
        unsigned long long need = 4 * N + Lh * N * C * dtype_size(ix->dtype) + (ix->bpe ? 0 : 4ull * (unsigned long long)ix->V);
        if (need > (unsigned long long)st.st_size) {
            cl_error("the attributes describe %zu rows of %d blocks x %d channels (%llu bytes of data) but the file has "
                     "%lld bytes",
                     ix->N, ix->Lh, ix->C, need, (long long)st.st_size);
            goto fail;
        }
        hsize_t dv = (hsize_t)ix->V, dn = ix->N, dx[3] = {(hsize_t)ix->Lh, ix->N, (hsize_t)ix->C};
        if ((!ix->bpe && check_extent(f, "/vocab", 1, &dv, "vocab_size")) ||
            check_extent(f, CL_INDEX_SUBSTRING, 1, &dn, "n_substrings") ||
            check_extent(f, CL_INDEX_VECTORS, 3, dx, "n_hook_blocks, n_substrings, n_embd"))
            goto fail;
        if (check_substring_storage(f, ix->N)) goto fail;
    }
    int Vv = ix->V;
    if (!ix->bpe && cl_h5_read_vocab(f, "/vocab", &ix->vocab, &Vv)) goto fail;
    if (Vv != ix->V) {
        cl_error("/vocab has %d entries but vocab_size is %d", Vv, ix->V);
        goto fail;
    }
    hsize_t dN = ix->N;
    ix->substring = cl_trymalloc(ix->N, sizeof(int32_t), "index rows");
    if (!ix->substring || cl_h5_read_exact(f, CL_INDEX_SUBSTRING, H5T_NATIVE_INT32, 1, &dN, ix->substring)) goto fail;
    if (check_ids(ix->substring, ix->N)) goto fail;
    hsize_t d[8];
    int r = cl_h5_shape(f, CL_INDEX_VECTORS, d);
    if (r != 3 || d[0] != (hsize_t)ix->Lh || d[1] != ix->N || d[2] != (hsize_t)ix->C) {
        cl_error("%s is missing or not [%d, %zu, %d]", CL_INDEX_VECTORS, ix->Lh, ix->N, ix->C);
        goto fail;
    }
    ix->vectors = H5Dopen2(f, CL_INDEX_VECTORS, H5P_DEFAULT);
    hid_t t = ix->vectors >= 0 ? H5Dget_type(ix->vectors) : H5I_INVALID_HID;
    size_t want = dtype_size(ix->dtype);
    int tok = t >= 0 && H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == want;
    if (tok && ix->dtype == CL_INDEX_F16) {
        hid_t ref = cl_index_f16_type();
        tok = H5Tequal(t, ref) > 0;
        H5Tclose(ref);
    }
    if (t >= 0) H5Tclose(t);
    if (!tok) {
        cl_error("%s is not %s", CL_INDEX_VECTORS, dt);
        goto fail;
    }
    /* the layout the readers rely on: chunks of [1, shard_size, C], unfiltered */
    {
        hid_t pl = H5Dget_create_plist(ix->vectors);
        hsize_t cd[3] = {0, 0, 0};
        int chunked = pl >= 0 && H5Pget_layout(pl) == H5D_CHUNKED && H5Pget_chunk(pl, 3, cd) == 3;
        int nf = pl >= 0 ? H5Pget_nfilters(pl) : -1;
        if (pl >= 0) H5Pclose(pl);
        if (!chunked || cd[0] != 1 || cd[1] != ix->chunk_rows || cd[2] != (hsize_t)ix->C) {
            cl_error("%s is not chunked [1, %zu, %d] (shard_size, n_embd)", CL_INDEX_VECTORS, ix->chunk_rows, ix->C);
            goto fail;
        }
        if (nf != 0) {
            cl_error("%s is compressed or filtered (the layout has no filter)", CL_INDEX_VECTORS);
            goto fail;
        }
    }
    /* Every chunk must lie inside the file: a truncated copy is refused here,
       not by a read error in the middle of a query. */
    hid_t fs = H5Dget_space(ix->vectors);
    hsize_t nch = 0;
    herr_t e = H5Dget_num_chunks(ix->vectors, fs, &nch);
    hsize_t want_ch = (hsize_t)ix->Lh * ((ix->N + ix->chunk_rows - 1) / ix->chunk_rows);
    haddr_t end = 0;
    /* the end of the data: the last chunk of each block (chunks are allocated
       in shard order, so these are the last ones written); O(Lh) lookups */
    for (int b = 0; e >= 0 && b < ix->Lh; b++) {
        hsize_t off[3] = {(hsize_t)b, ((ix->N - 1) / ix->chunk_rows) * ix->chunk_rows, 0};
        unsigned mask;
        haddr_t addr;
        hsize_t size;
        if ((e = H5Dget_chunk_info_by_coord(ix->vectors, off, &mask, &addr, &size)) >= 0 && addr != HADDR_UNDEF &&
            addr + size > end)
            end = addr + size;
    }
    H5Sclose(fs);
    if (e < 0 || nch != want_ch) {
        cl_error("%s has %llu of its %llu chunks: the index is incomplete", CL_INDEX_VECTORS, (unsigned long long)nch,
                 (unsigned long long)want_ch);
        goto fail;
    }
    if ((unsigned long long)end > (unsigned long long)st.st_size) {
        cl_error("the file is truncated (%lld bytes; its data reach byte %llu)", (long long)st.st_size,
                 (unsigned long long)end);
        goto fail;
    }
    /* float16: map the file and find every chunk (unfiltered, full size) */
    /* CORPUSLENS_INDEX_MMAP=1: map the file (explain of <= 8 prompts then computes
       in place). Off by default: on the development VM, page faults over a 4 GB
       mapping cost more CPU than H5Dread's copy (README, Performance). */
    const char *usemap = getenv("CORPUSLENS_INDEX_MMAP");
    int has_sketch = with_sketch && ix->dtype == CL_INDEX_F16 && H5Lexists(f, "/sketch", H5P_DEFAULT) > 0;
    if (ix->dtype == CL_INDEX_F16 && ((usemap && *usemap == '1') || has_sketch)) {
        size_t nc = (ix->N + ix->chunk_rows - 1) / ix->chunk_rows, want = ix->chunk_rows * (size_t)ix->C * 2;
        uint64_t *co = malloc((size_t)ix->Lh * nc * sizeof *co);
        int ok = co != NULL;
        for (size_t i = 0; ok && i < (size_t)ix->Lh * nc; i++) {
            hsize_t off[3] = {i / nc, (i % nc) * ix->chunk_rows, 0};
            unsigned mask = 1;
            haddr_t addr = HADDR_UNDEF;
            hsize_t size = 0;
            ok = H5Dget_chunk_info_by_coord(ix->vectors, off, &mask, &addr, &size) >= 0 && mask == 0 &&
                 addr != HADDR_UNDEF && size == want && addr + size <= (haddr_t)st.st_size;
            if (ok) co[i] = (uint64_t)addr;
        }
        void *mp = MAP_FAILED;
        if (ok) {
            int fd = open(path, O_RDONLY);
            if (fd >= 0) {
                mp = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
                close(fd);
            }
        }
        if (ok && mp != MAP_FAILED) {
            ix->map = mp, ix->map_size = (size_t)st.st_size, ix->chunk_off = co, ix->n_chunks = nc;
        } else free(co);
    }
    if (has_sketch && cl_sketch_open(f, ix->Lh, ix->N, ix->C, path, (size_t)st.st_size, &ix->sketch)) goto fail;
    /* without the mapping (it failed) the sketch cannot be used: rows are read */
    if (ix->sketch && !ix->map) {
        cl_sketch_free(ix->sketch);
        ix->sketch = NULL;
    }
    return ix;
fail:
    cl_error_prefix("%s: ", path);
fail_np:
    cl_index_close(ix);
    return NULL;
}

cl_index *cl_index_open(const char *path) { return open_index(path, 1); }

cl_index *cl_index_open_no_sketch(const char *path) { return open_index(path, 0); }

int cl_index_check(const cl_index *ix, const char *model_sha, const char *corpus_h5_sha, const char *model_path,
                   const char *corpus_path) {
    if (model_sha && strcmp(model_sha, ix->model_sha256))
        return cl_error("%s was built from another model: its model_sha256 %.16s... differs from %s's %.16s...",
                        ix->path, ix->model_sha256, model_path ? model_path : "the model", model_sha);
    if (corpus_h5_sha && strcmp(corpus_h5_sha, ix->corpus_h5_sha256))
        return cl_error("%s was built from another corpus file: its corpus_h5_sha256 %.16s... differs from %s's "
                        "%.16s...",
                        ix->path, ix->corpus_h5_sha256, corpus_path ? corpus_path : "the corpus", corpus_h5_sha);
    return 0;
}

/* ---- the rows' order against the corpus's tokens ---- */

typedef struct {
    const cl_index *ix;
    const char *corpus_path;
} order_job;

/* cl_sha256_cached's computation: the check itself; the "digest" cached for
 * the index file is the corpus's SHA-256 (its identity, part of the kind). */
static int order_compute(const char *path, char out[65], void *user) {
    (void)path;
    const order_job *j = user;
    const cl_index *ix = j->ix;
    const size_t N = ix->N, L = (size_t)ix->L;
    hid_t f = H5Fopen(j->corpus_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return cl_error("cannot open %s", j->corpus_path);
    int rc = -1;
    int32_t *tok = NULL;
    hsize_t d[8];
    int r = cl_h5_shape(f, "/substrings/tokens", d);
    if (r < 0) goto done;
    if (r != 2 || d[0] != N || d[1] != L) {
        cl_error("%s: /substrings/tokens is not [%zu, %zu] (the index's n_substrings, L)", j->corpus_path, N, L);
        goto done;
    }
    /* the whole [N, L] (N L 4 bytes; freed below), in slabs of rows */
    if (!(tok = cl_trymalloc(N * L, sizeof *tok, "corpus tokens"))) goto done;
    for (size_t p0 = 0; p0 < N; p0 += 1 << 16) {
        size_t n = N - p0 < (1 << 16) ? N - p0 : (1 << 16);
        if (cl_h5_read_rows(f, "/substrings/tokens", H5T_NATIVE_INT32, p0, n, tok + p0 * L)) goto done;
    }
    for (size_t i = 1; i < N; i++) {
        const int32_t *a = tok + (size_t)ix->substring[i - 1] * L, *b = tok + (size_t)ix->substring[i] * L;
        size_t k = 0;
        while (k < L && a[k] == b[k]) k++;
        if (k == L || a[k] > b[k]) {
            cl_error("%s: rows %zu and %zu (substrings %d and %d) are not in the lexicographic order of their tokens "
                     "in %s",
                     ix->path, i - 1, i, ix->substring[i - 1], ix->substring[i], j->corpus_path);
            goto done;
        }
    }
    memcpy(out, ix->corpus_h5_sha256, 64);
    out[64] = 0;
    rc = 0;
done:
    free(tok);
    H5Fclose(f);
    return rc;
}

int cl_index_check_order(const cl_index *ix, const char *corpus_path, int *cached) {
    char kind[128], got[65];
    if (cached) *cached = 0;
    if (strlen(ix->corpus_h5_sha256) != 64) return cl_error("%s: attribute corpus_h5_sha256 is not a SHA-256", ix->path);
    snprintf(kind, sizeof kind, "index-order-v1 %s", ix->corpus_h5_sha256);
    order_job j = {ix, corpus_path};
    if (cl_sha256_cached(ix->path, kind, order_compute, &j, got, cached)) return -1;
    if (strcmp(got, ix->corpus_h5_sha256)) return cl_error("%s: the cached order check names another corpus", ix->path);
    return 0;
}

/* The held copy: the file's bytes read (not mapped) into anonymous memory
 * that asks for transparent huge pages (MADV_HUGEPAGE; 2 MB aligned), then
 * the file's mapping dropped, so that the rows' bytes are in memory once (the
 * RSS does not double; the page cache may keep its own, reclaimable, copy).
 * The surviving rows of a query are scattered over 4.3 GB: with 4 KB pages
 * nearly every row cost a TLB miss. Offsets are the file's, so every chunk
 * offset stays valid. 1: done; 0: no memory for it (the mapping stays);
 * -1: a read failed (message). */
static int hold_copy(cl_index *ix) {
    const size_t HP = (size_t)2 << 20, STEP = (size_t)64 << 20;
    const char *env = getenv("CORPUSLENS_INDEX_HUGE");
    if (env && *env == '0') return 0;
    size_t len = (ix->map_size + HP - 1) / HP * HP + HP;
    unsigned char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return 0;
    unsigned char *a = (unsigned char *)(((uintptr_t)base + HP - 1) & ~(uintptr_t)(HP - 1));
#ifdef MADV_HUGEPAGE
    (void)madvise(a, len - (size_t)(a - base), MADV_HUGEPAGE); /* a hint: without it, 4 KB pages */
#endif
    int fd = open(ix->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        munmap(base, len);
        return cl_error("%s: cannot open it to hold it in memory: %s", ix->path, strerror(errno));
    }
    for (size_t o = 0; o < ix->map_size; o += STEP) {
        size_t n = ix->map_size - o < STEP ? ix->map_size - o : STEP;
        if (cl_pread_exact(fd, a + o, n, (unsigned long long)o)) {
            close(fd);
            munmap(base, len);
            return cl_error("%s: cannot read it into memory at byte %zu: %s", ix->path, o, cl_pread_reason());
        }
    }
    close(fd);
    (void)mprotect(a, ix->map_size, PROT_READ);
    munmap((void *)ix->map, ix->map_size);
    ix->map = a, ix->hold_base = base, ix->hold_len = len;
    return 1;
}

int cl_index_hold(cl_index *ix) {
    if (!ix->map) return 0;
    if (ix->sketch && cl_sketch_hold(ix->sketch)) {
        cl_error_prefix("%s: ", ix->path);
        return -1;
    }
    int hc = hold_copy(ix);
    if (hc < 0) return -1;
    if (hc) {
        ix->held = 1;
        return 0;
    }
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
    /* every page read in now, not at a query's first touch; a kernel without
       MADV_POPULATE_READ: one read per page */
    if (madvise((void *)ix->map, ix->map_size, MADV_POPULATE_READ)) {
        const long pg = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
        volatile unsigned char sink = 0;
        for (size_t o = 0; o < ix->map_size; o += (size_t)pg) sink ^= ix->map[o];
        (void)sink;
    }
    ix->held = 1;
    return 0;
}

const uint16_t *cl_index_chunk_f16(const cl_index *ix, int b, size_t c) {
    if (!ix->map || b < 0 || b >= ix->Lh || c >= ix->n_chunks) return NULL;
    return (const uint16_t *)(ix->map + ix->chunk_off[(size_t)b * ix->n_chunks + c]);
}

int cl_index_read_rows(const cl_index *ix, int b, size_t r0, size_t n, float *out, void *buf) {
    if (b < 0 || b >= ix->Lh || r0 + n > ix->N) return cl_error("index rows %zu..%zu of block %d out of range", r0, r0 + n, b);
    hsize_t start[3] = {(hsize_t)b, r0, 0}, count[3] = {1, n, (hsize_t)ix->C};
    hid_t fs = H5Dget_space(ix->vectors), ms = H5Screate_simple(3, count, NULL);
    herr_t st = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mt = H5I_INVALID_HID;
    if (ix->dtype == CL_INDEX_F16) mt = cl_index_f16_type();
    if (st >= 0) st = H5Dread(ix->vectors, ix->dtype == CL_INDEX_F16 ? mt : H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT,
                              ix->dtype == CL_INDEX_F16 ? buf : (void *)out);
    if (mt >= 0) H5Tclose(mt);
    H5Sclose(ms);
    H5Sclose(fs);
    if (st < 0) return cl_error("%s: cannot read %s rows %zu..%zu of block %d", ix->path, CL_INDEX_VECTORS, r0, r0 + n, b);
    if (ix->dtype == CL_INDEX_F16) cl_f16_to_f32_n(buf, out, n * (size_t)ix->C);
    return 0;
}

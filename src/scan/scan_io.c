/* The scan's resume state and its output file (layout: h5schema.h). */
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/stats.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5par.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/par/par.h"
#include "scan/scan_internal.h"

#define CKPT_MAGIC "CLSCAN02"

static int state_load(scan_ctx *x);

static void state_path(const scan_ctx *x, char *buf, size_t n, const char *leaf) {
    if (leaf) snprintf(buf, n, "%s.state/%s", x->o->out_path, leaf);
    else snprintf(buf, n, "%s.state", x->o->out_path);
}

static void remove_rank_files(const scan_ctx *x) {
    char dir[4200];
    state_path(x, dir, sizeof dir, NULL);
    cl_remove_prefixed(dir, "rank");
}

void scan_state_remove(scan_ctx *x) {
    char dir[4200], p[4600];
    remove_rank_files(x);
    state_path(x, dir, sizeof dir, NULL);
    snprintf(p, sizeof p, "%s/args", dir);
    remove(p);
    rmdir(dir);
}

void scan_state_after_failure(scan_ctx *x) {
    char dir[4200];
    state_path(x, dir, sizeof dir, NULL);
    DIR *d = opendir(dir);
    int kept = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (!strncmp(e->d_name, "rank", 4) && !strstr(e->d_name, ".tmp")) kept = 1;
        closedir(d);
    }
    if (kept) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%.1400s (the checkpoint in %.500s/ is kept: the same command resumes from it)", cl_last_error(),
                 dir);
        cl_error("%s", msg);
    } else {
        scan_state_remove(x);
    }
}

int scan_state_begin(scan_ctx *x) {
    const cl_scan_opts *o = x->o;
    int err = 0, resume = 0;
    if (x->rank == 0) {
        if (cl_model_fingerprint(x->m, x->model_sha) || cl_sha256_file(o->corpus_path, x->corpus_h5_sha)) err = 1;
    }
    if (cl_par_agree(err, x->comm)) return -1;
    cl_par_bcast(x->model_sha, 65, MPI_CHAR, 0, x->comm);
    cl_par_bcast(x->corpus_h5_sha, 65, MPI_CHAR, 0, x->comm);
    int n = snprintf(x->sig, sizeof x->sig,
                     "corpuslens scan state v2\nmodel_sha256 %s\ncorpus_h5_sha256 %s\nhook %s\nprefilter %.17g\n"
                     "bin_width %.17g\nmatch_cap %ld\nshard_size %zu\nmatch_thresholds",
                     x->model_sha, x->corpus_h5_sha, o->hook, o->prefilter, o->bin_width, o->match_cap, x->S);
    for (int b = 0; b < x->Lh && n < (int)sizeof x->sig - 32; b++)
        n += snprintf(x->sig + n, sizeof x->sig - n, " %.17g", x->thr[b]);
    /* the benchmarks' sampled plan (CORPUSLENS_SCAN_SAMPLE_SHARDS, read the
       same way by cl_scan_run): another sample is another set of shards */
    const char *smp = getenv("CORPUSLENS_SCAN_SAMPLE_SHARDS");
    long sample = smp && atol(smp) > 0 ? atol(smp) : 0;
    if (n < (int)sizeof x->sig - 40) n += snprintf(x->sig + n, sizeof x->sig - n, "\nsampled_shards %ld", sample);
    /* the csr layout's checkpoints hold sparse rows (dense runs keep their signature) */
    if (x->csr && n < (int)sizeof x->sig - 40) n += snprintf(x->sig + n, sizeof x->sig - n, "\nnext_layout csr");
    snprintf(x->sig + n, sizeof x->sig - n, "\n");
    if (x->rank == 0) {
        char dir[4200], p[4400], tmp[4500];
        state_path(x, dir, sizeof dir, NULL);
        snprintf(p, sizeof p, "%s/args", dir);
        if (mkdir(dir, 0777) && errno != EEXIST) {
            err = 1;
            cl_error("cannot create the state directory %s: %s", dir, strerror(errno));
        }
        if (!err) {
            FILE *f = fopen(p, "rb");
            char old[sizeof x->sig];
            size_t k = 0;
            if (f) {
                k = fread(old, 1, sizeof old - 1, f);
                fclose(f);
                old[k] = 0;
                resume = !strcmp(old, x->sig);
                if (!resume && o->note)
                    o->note(o->progress_user, "the state of an earlier scan has other arguments: starting over");
            }
            if (!resume) {
                remove_rank_files(x);
                snprintf(tmp, sizeof tmp, "%s.tmp", p);
                f = fopen(tmp, "wb");
                int bad = !f || fputs(x->sig, f) < 0;
                if (f && fclose(f) && !bad) bad = 1;
                if (bad) {
                    err = 1;
                    cl_error("cannot write %s: %s", p, strerror(errno));
                    remove(tmp);
                } else if (cl_commit_file(tmp, p)) {
                    err = 1;
                }
            }
        }
    }
    if (cl_par_agree(err, x->comm)) return -1;
    cl_par_bcast(&resume, 1, MPI_INT, 0, x->comm);
    const size_t ns = x->n_shards;
    if (!(x->done_set = cl_trycalloc(ns, 1, "done shards")) || !(x->covered = cl_trycalloc(ns, 1, "done shards")))
        err = 1;
    if (cl_par_agree(err, x->comm) || !resume) return err ? -1 : 0;
    return state_load(x);
}

/* ---- checkpoints ----
 * "<out>.state/rank<k>.bin" (CLSCAN02): the magic, the SHA-256 of the run
 * signature (no rank count in it), n_shards, a byte per shard (1: in these
 * sums), u64 {shards marked, n_pairs, n_nodes, NC}, f64 {flops_forward,
 * flops_cosine}, counts [NC] int32 (next_layout csr: per (prompt, block,
 * bin) u32 n, then n u64 entries token << 32 | count, tokens increasing, as
 * scan_srow_compact leaves them), n_matches [NM] int64, then per (prompt,
 * block) u32 {n, capped}, f32 floor, n (sim, sub) entries. Every sum is
 * additive over shards and the lists keep each source's top match_cap, so
 * any split of the done shards into files gives the same output. A resume
 * on R ranks reads every file (whatever rank count wrote it), gives file k
 * to rank k mod R, which adds it into its sums and writes the union as its
 * own file at its next checkpoint (then removes the others it took). A file
 * whose set another's contains (a crash between that write and the
 * removal) is dropped; the rest must not overlap. */

static int ckpt_head(scan_ctx *x, FILE *f, unsigned char *set, uint64_t *u, double *d) {
    char hdr[8 + 65], sha[65];
    uint64_t ns = 0, marked = 0;
    cl_sha256_mem(x->sig, strlen(x->sig), sha);
    int ok = fread(hdr, 1, sizeof hdr, f) == sizeof hdr && !memcmp(hdr, CKPT_MAGIC, 8) && !memcmp(hdr + 8, sha, 65) &&
             fread(&ns, sizeof ns, 1, f) == 1 && ns == x->n_shards && fread(set, 1, ns, f) == ns &&
             fread(u, sizeof *u, 4, f) == 4 && fread(d, sizeof *d, 2, f) == 2;
    for (uint64_t j = 0; ok && j < ns; j++) {
        ok = set[j] <= 1;
        marked += set[j];
    }
    return ok && marked == u[0] ? 0 : -1;
}

/* The number k of a state entry "rank<k>.bin" (exactly), or -1. */
static int ckpt_entry(const char *name) {
    int k = -1, n = 0;
    if (sscanf(name, "rank%d.bin%n", &k, &n) != 1 || name[n] || k < 0) return -1;
    return k;
}

/* Rank 0: the checkpoint files to load (their numbers, ascending, into
 * *ks, count *nk) and the union of their shards (x->done_set). */
static int ckpt_survey(scan_ctx *x, int **ks, int *nk) {
    const size_t ns = x->n_shards;
    char dir[4200], p[4600];
    state_path(x, dir, sizeof dir, NULL);
    int *k = NULL, n = 0, rc = 0;
    unsigned char *sets = NULL;
    DIR *d = opendir(dir);
    if (!d) return cl_error("cannot read %s: %s", dir, strerror(errno));
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        int r = ckpt_entry(e->d_name);
        if (r < 0) continue;
        int *nk2 = realloc(k, (size_t)(n + 1) * sizeof *k);
        unsigned char *ns2 = nk2 ? realloc(sets, (size_t)(n + 1) * (ns ? ns : 1)) : NULL;
        if (nk2) k = nk2;
        if (ns2) sets = ns2;
        if (!nk2 || !ns2) {
            rc = cl_error("out of memory reading %s", dir);
            break;
        }
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        FILE *f = fopen(p, "rb");
        uint64_t u[4];
        double dd[2];
        if (!f || ckpt_head(x, f, sets + (size_t)n * ns, u, dd))
            rc = cl_error("%s: unreadable or truncated checkpoint; remove %s.state to start over", p, x->o->out_path);
        if (f) fclose(f);
        k[n++] = r;
    }
    closedir(d);
    /* drop a file whose set another's contains (equal sets: keep the lower number) */
    int kept = 0;
    for (int i = 0; !rc && i < n; i++) {
        const unsigned char *si = sets + (size_t)i * ns;
        int drop = 0;
        for (int j = 0; j < n && !drop; j++) {
            if (j == i) continue;
            const unsigned char *sj = sets + (size_t)j * ns;
            int sub = 1, eq = 1;
            for (size_t t = 0; t < ns && sub; t++) sub = !si[t] || sj[t], eq = eq && si[t] == sj[t];
            drop = sub && (!eq || k[j] < k[i]);
        }
        if (drop) continue;
        for (size_t t = 0; t < ns && !rc; t++)
            if (si[t]) {
                if (x->done_set[t]) rc = cl_error("the checkpoints in %s overlap (shard %zu twice): remove it to start over", dir, t);
                x->done_set[t] = 1;
            }
        k[kept++] = k[i];
    }
    free(sets);
    if (rc) {
        free(k);
        return -1;
    }
    for (int i = 1; i < kept; i++) /* ascending numbers */
        for (int j = i; j > 0 && k[j - 1] > k[j]; j--) {
            int t = k[j];
            k[j] = k[j - 1], k[j - 1] = t;
        }
    *ks = k, *nk = kept;
    return 0;
}

/* The sparse rows of a csr checkpoint, added into x->srows (local; -1 on a
 * short read, out of memory, or a row that is not 0 < tokens increasing < V
 * with counts > 0). */
static int ckpt_add_sparse(scan_ctx *x, FILE *f) {
    const size_t nr = x->cp->n_prompts * (size_t)x->Lh * (size_t)x->NB, V = (size_t)x->cp->V;
    int32_t *tok = cl_trymalloc(V, sizeof *tok, "checkpoint row"), *cnt = cl_trymalloc(V, sizeof *cnt, "checkpoint row");
    uint64_t *e = cl_trymalloc(V, sizeof *e, "checkpoint row");
    int ok = tok && cnt && e;
    for (size_t q = 0; ok && q < nr; q++) {
        uint32_t n = 0;
        ok = fread(&n, sizeof n, 1, f) == 1 && n <= V && fread(e, sizeof *e, n, f) == n;
        for (uint32_t i = 0; ok && i < n; i++) {
            int64_t t = (int64_t)(e[i] >> 32);
            int32_t c = (int32_t)(uint32_t)e[i];
            ok = t < (int64_t)V && c > 0 && (i == 0 || t > tok[i - 1]);
            tok[i] = (int32_t)t, cnt[i] = c;
        }
        if (ok && n && scan_srow_add(x, &x->srows[q], tok, cnt, n)) ok = 0;
    }
    free(tok), free(cnt), free(e);
    return ok ? 0 : -1;
}

/* Add checkpoint file rank<k>.bin into this rank's sums (local). */
static int ckpt_add(scan_ctx *x, int k) {
    const size_t P = x->cp->n_prompts, NC = P * x->Lh * x->NB * (size_t)x->cp->V, NM = P * x->Lh * x->NB;
    const size_t ns = x->n_shards, CH = (size_t)1 << 16;
    char leaf[64], p[4400];
    snprintf(leaf, sizeof leaf, "rank%d.bin", k);
    state_path(x, p, sizeof p, leaf);
    FILE *f = fopen(p, "rb");
    unsigned char *set = cl_trymalloc(ns, 1, "checkpoint shards");
    int64_t *buf = cl_trymalloc(CH, sizeof *buf, "checkpoint buffer");
    uint64_t u[4];
    double d[2];
    int ok = f && set && buf && !ckpt_head(x, f, set, u, d) && u[3] == NC;
    if (ok && x->csr && ckpt_add_sparse(x, f)) ok = 0;
    for (size_t i = 0; ok && !x->csr && i < NC; i += CH) {
        size_t n = NC - i < CH ? NC - i : CH;
        int32_t *b32 = (int32_t *)buf;
        ok = fread(b32, sizeof *b32, n, f) == n;
        for (size_t j = 0; ok && j < n; j++) x->counts[i + j] += b32[j];
    }
    for (size_t i = 0; ok && i < NM; i += CH) {
        size_t n = NM - i < CH ? NM - i : CH;
        ok = fread(buf, sizeof *buf, n, f) == n;
        for (size_t j = 0; ok && j < n; j++) x->nmatch[i + j] += buf[j];
    }
    for (size_t i = 0; ok && i < P * x->Lh; i++) {
        scan_mlist *l = &x->lists[i];
        uint32_t hn[2];
        float fl;
        /* a list holds distinct substrings, at most 1.5 cap + 1 of them (scan_mlist_add) */
        ok = fread(hn, sizeof hn, 1, f) == 1 && fread(&fl, sizeof fl, 1, f) == 1 && hn[1] <= 1 && hn[0] <= x->cp->n &&
             (x->o->match_cap <= 0 || hn[0] <= (uint64_t)x->o->match_cap + (uint64_t)x->o->match_cap / 2 + 1);
        if (!ok || !hn[0]) continue;
        scan_match *a = malloc((size_t)hn[0] * sizeof *a);
        if (!a || fread(a, sizeof *a, hn[0], f) != hn[0]) {
            free(a);
            ok = 0;
            break;
        }
        for (uint32_t j = 0; ok && j < hn[0]; j++) ok = a[j].sub >= 0 && (size_t)a[j].sub < x->cp->n;
        if (ok && !l->n && !l->capped) { /* the first source: taken as it is */
            free(l->a);
            l->a = a, l->n = l->alloc = hn[0], l->capped = (int)hn[1], l->floor = fl;
            continue;
        }
        for (uint32_t j = 0; ok && j < hn[0]; j++)
            if (scan_mlist_add(l, a[j].sim, a[j].sub, x->o->match_cap)) ok = 0;
        free(a);
    }
    if (f) fclose(f);
    free(buf);
    if (!ok) {
        free(set);
        return cl_error("%s: unreadable or truncated checkpoint; remove %s.state to start over", p, x->o->out_path);
    }
    for (size_t j = 0; j < ns; j++) x->covered[j] |= set[j];
    free(set);
    x->n_pairs += (int64_t)u[1];
    x->n_nodes += (size_t)u[2];
    x->flops_forward += d[0];
    x->flops_cosine += d[1];
    return 0;
}

static int state_load(scan_ctx *x) {
    int err = 0, nk = 0, *ks = NULL;
    if (x->rank == 0 && ckpt_survey(x, &ks, &nk)) err = 1;
    if (cl_par_agree(err, x->comm)) return -1;
    cl_par_bcast(&nk, 1, MPI_INT, 0, x->comm);
    if (x->rank && nk && !(ks = cl_trymalloc((size_t)nk, sizeof *ks, "checkpoint list"))) err = 1;
    if (cl_par_agree(err, x->comm)) {
        free(ks);
        return -1;
    }
    if (nk) cl_par_bcast(ks, nk, MPI_INT, 0, x->comm);
    if (x->n_shards) cl_par_bcast(x->done_set, (int)x->n_shards, MPI_UNSIGNED_CHAR, 0, x->comm);
    if (nk && !(x->absorbed = cl_trymalloc((size_t)nk, sizeof *x->absorbed, "checkpoint list"))) err = 1;
    for (int i = 0; i < nk && !err; i++) {
        if (ks[i] % x->R != x->rank) continue;
        if (ckpt_add(x, ks[i])) err = 1;
        else if (ks[i] != x->rank) x->absorbed[x->n_absorbed++] = ks[i];
    }
    free(ks);
    if (cl_par_agree(err, x->comm)) return -1;
    size_t tot = 0;
    for (size_t j = 0; j < x->n_shards; j++) tot += x->done_set[j];
    if (x->rank == 0 && x->o->note) {
        char msg[256];
        snprintf(msg, sizeof msg, "resuming: %zu of %zu shards already done", tot, x->n_shards);
        x->o->note(x->o->progress_user, msg);
    }
    return 0;
}

int scan_state_save(scan_ctx *x) {
    char leaf[64], p[4400], tmp[4500], sha[65];
    snprintf(leaf, sizeof leaf, "rank%d.bin", x->rank);
    state_path(x, p, sizeof p, leaf);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    cl_sha256_mem(x->sig, strlen(x->sig), sha);
    const size_t P = x->cp->n_prompts, NC = P * x->Lh * x->NB * (size_t)x->cp->V, NM = P * x->Lh * x->NB;
    uint64_t ns = x->n_shards, marked = 0;
    for (size_t j = 0; j < ns; j++) marked += x->covered[j];
    FILE *f = fopen(tmp, "wb");
    if (!f) return cl_error("cannot write %s: %s", tmp, strerror(errno));
    uint64_t u[4] = {marked, (uint64_t)x->n_pairs, x->n_nodes, NC};
    double d[2] = {x->flops_forward, x->flops_cosine};
    int ok = fwrite(CKPT_MAGIC, 1, 8, f) == 8 && fwrite(sha, 1, 65, f) == 65 && fwrite(&ns, sizeof ns, 1, f) == 1 &&
             fwrite(x->covered, 1, ns, f) == ns && fwrite(u, sizeof u, 1, f) == 1 && fwrite(d, sizeof d, 1, f) == 1 &&
             (x->csr || fwrite(x->counts, sizeof(int32_t), NC, f) == NC);
    for (size_t q = 0; ok && x->csr && q < NC / (size_t)x->cp->V; q++) {
        scan_srow *r = &x->srows[q];
        if (scan_srow_compact(x, r)) {
            fclose(f);
            remove(tmp);
            return -1;
        }
        ok = fwrite(&r->n, sizeof r->n, 1, f) == 1 && (r->n == 0 || fwrite(r->e, sizeof *r->e, r->n, f) == r->n);
    }
    ok = ok && fwrite(x->nmatch, sizeof(int64_t), NM, f) == NM;
    for (size_t i = 0; ok && i < P * x->Lh; i++) {
        const scan_mlist *l = &x->lists[i];
        uint32_t hn[2] = {l->n, (uint32_t)l->capped};
        ok = fwrite(hn, sizeof hn, 1, f) == 1 && fwrite(&l->floor, sizeof l->floor, 1, f) == 1 &&
             (l->n == 0 || fwrite(l->a, sizeof *l->a, l->n, f) == l->n);
    }
    if (fclose(f)) ok = 0;
    if (!ok) {
        int e = errno;
        remove(tmp);
        return cl_error("cannot write the checkpoint %s: %s", p, strerror(e));
    }
    if (cl_commit_file(tmp, p)) return -1; /* a resume trusts only what reached the disk */
    /* the files this rank took are in its own now (a crash before their
       removal leaves subsets, which a resume drops) */
    for (int i = 0; i < x->n_absorbed; i++) {
        snprintf(leaf, sizeof leaf, "rank%d.bin", x->absorbed[i]);
        state_path(x, p, sizeof p, leaf);
        remove(p);
    }
    x->n_absorbed = 0;
    return 0;
}

/* ---- output ----
 * Every rank writes its share of scan.h5 through parallel HDF5 (h5par.h);
 * the calls and their shapes do not depend on the rank count, so the file's
 * bytes do not either (wall_seconds aside).
 * - small datasets (vocab, prompts, probabilities, lens, bins): rank 0's data;
 * - /freq/counts, /freq/n_matches: prompt slices of a fixed size; per slice,
 *   MPI_Reduce_scatter gives each rank the sums of its part (a block of the
 *   slice's prompts), which it writes (collective write). No rank holds a
 *   second copy of the tensor;
 * - matches: rank r owns the prompt block [P r / R, P (r + 1) / R). In rounds
 *   of MROUND prompts, every rank sends the capped lists of each prompt to
 *   its owner (MPI_Alltoallv), which merges, sorts and caps them. After the
 *   last round, an MPI_Exscan of the owned match counts gives each rank the
 *   offset of its slab (canonical order: prompt, block, similarity desc,
 *   substring asc), and every rank writes its slab of /matches/substring,
 *   /matches/similarity and its rows of /matches/index in one collective
 *   write each. Nothing is sized by the rank count beyond R-long count
 *   arrays. */

/* Prompts [*a, *b) of rank r among np prompts starting at p0. */
static void share(size_t p0, size_t np, int r, int R, size_t *a, size_t *b) {
    *a = p0 + np * (size_t)r / (size_t)R;
    *b = p0 + np * ((size_t)r + 1) / (size_t)R;
}

/* MPI_Reduce_scatter of np prompts of `row` elements each (starting at
 * prompt p0 of buf) into recv (this rank's share), then a collective write of
 * the share into ds. 0 or -1 (this rank's result). */
static int reduce_write(scan_ctx *x, const void *buf, size_t p0, size_t np, size_t row, MPI_Datatype t, size_t el,
                        hid_t memtype, hid_t ds, int *rc_counts, void *recv, const char *name) {
    for (int r = 0; r < x->R; r++) {
        size_t a, b;
        share(p0, np, r, x->R, &a, &b);
        rc_counts[r] = (int)((b - a) * row);
    }
    size_t a, b;
    share(p0, np, x->rank, x->R, &a, &b);
    int rc = 0;
    if (cl_par_reduce_scatter((const char *)buf + p0 * row * el, recv, rc_counts, t, MPI_SUM, x->comm) != MPI_SUCCESS)
        rc = cl_error("MPI_Reduce_scatter failed");
    hsize_t r0 = a, nr = b - a;
    if (cl_h5p_write_rows(ds, memtype, 1, &r0, &nr, recv, name)) rc = -1;
    return rc;
}

/* A slice of the frequency tensors holds at most 2^24 elements (64 MB of
 * int32): the reduce buffer of a rank is at most that / R. Tests lower it
 * (and the match round below) with CORPUSLENS_SCAN_IO_SLICE=ELEMENTS and
 * CORPUSLENS_SCAN_IO_ROUND=PROMPTS, so that a small scan crosses many slices
 * and rounds; neither changes the file. */
static size_t knob(const char *name, size_t dflt) {
    const char *v = getenv(name);
    long n = v ? atol(v) : 0;
    return n > 0 ? (size_t)n : dflt;
}
#define FSLICE knob("CORPUSLENS_SCAN_IO_SLICE", (size_t)1 << 24)

static int write_freq(scan_ctx *x, hid_t file) {
    const size_t P = x->cp->n_prompts, V = x->cp->V, Lh = x->Lh, NB = x->NB;
    int err = 0;
    int *rcn = cl_trymalloc((size_t)x->R, sizeof(int), "reduce counts");
    struct {
        const char *name;
        void *buf;
        size_t row, el;
        MPI_Datatype t;
        hid_t memtype;
        int chunked;
    } ts[2] = {{CL_SCAN_FREQ_COUNTS, x->counts, Lh * NB * V, sizeof(int32_t), MPI_INT32_T, H5T_NATIVE_INT32, 1},
               {CL_SCAN_FREQ_N_MATCHES, x->nmatch, Lh * NB, sizeof(int64_t), MPI_INT64_T, H5T_NATIVE_INT64, 0}};
    const size_t slice = FSLICE;
    /* next_layout csr: the counts as CSR (scan_sparse.c), n_matches dense */
    if (x->csr && scan_write_counts_csr(x, file, slice)) {
        free(rcn);
        return -1;
    }
    for (int k = x->csr ? 1 : 0; k < 2; k++) {
        size_t row = ts[k].row, ps = slice / row;
        if (ps < 1) ps = 1;
        /* this rank's share of a slice: at most ceil(ps / R) prompts */
        void *recv = rcn ? cl_trymalloc((ps + x->R - 1) / x->R * row + 1, ts[k].el, "reduce buffer") : NULL;
        if (cl_par_agree(!recv, x->comm)) {
            free(recv), free(rcn);
            return -1;
        }
        hsize_t dims[4] = {P, Lh, NB, V}, chunk[4] = {1, Lh, NB, V};
        hid_t ds = cl_h5p_dataset(file, ts[k].name, ts[k].memtype, k == 0 ? 4 : 3, dims, ts[k].chunked ? chunk : NULL);
        if (cl_par_agree(ds < 0, x->comm)) {
            if (ds >= 0) H5Dclose(ds);
            free(recv), free(rcn);
            return -1;
        }
        for (size_t p0 = 0; p0 < P && !err; p0 += ps) {
            size_t np = P - p0 < ps ? P - p0 : ps;
            int rc = reduce_write(x, ts[k].buf, p0, np, row, ts[k].t, ts[k].el, ts[k].memtype, ds, rcn, recv,
                                  ts[k].name);
            err = cl_par_agree(rc, x->comm);
        }
        char what[256];
        snprintf(what, sizeof what, "cannot write %s", ts[k].name);
        int rc = H5Dclose(ds) < 0 ? cl_h5p_write_error(file, what) : 0;
        free(recv);
        if (!err) err = cl_par_agree(rc, x->comm); /* err is already the same on every rank */
        if (err) break;
    }
    free(rcn);
    return err ? -1 : 0;
}

/* Prompts per round of the match exchange: bounds what is packed and
 * received in a round (the round's lists, each capped, from every rank). */
#define MROUND knob("CORPUSLENS_SCAN_IO_ROUND", 256)

/* The prompts whose matches rank r merges and writes: one block
 * [P r / R, P (r + 1) / R), in rank order, so that the ranks' slabs of the
 * match arrays follow each other in rank order. (HDF5 allocates the chunks
 * of a collective filtered write rank by rank, each rank's in chunk order:
 * with rank-ordered slabs that is chunk order whatever R. Slabs interleaved
 * by round would place the chunks differently for every R.) The part of it
 * within round [p0, p0 + np) is [*a, *b) (empty: *a == *b). */
static void owned_in(size_t P, int r, int R, size_t p0, size_t np, size_t *a, size_t *b) {
    size_t lo = P * (size_t)r / (size_t)R, hi = P * ((size_t)r + 1) / (size_t)R;
    *a = lo > p0 ? lo : p0;
    *b = hi < p0 + np ? hi : p0 + np;
    if (*b < *a) *b = *a;
}

typedef struct {
    int64_t *sub;
    float *sim;
    size_t n, alloc;
    int64_t *index;      /* [owned lists, 2]: count filled by the merge, start later */
    size_t n_lists;
} owned_matches;

static int owned_push(void *user, const scan_mlist *l) {
    owned_matches *o = user;
    if (o->n + l->n > o->alloc) {
        size_t na = o->alloc ? o->alloc : 1024;
        while (na < o->n + l->n) na *= 2;
        int64_t *s = realloc(o->sub, na * sizeof *s);
        if (s) o->sub = s;
        float *f = s ? realloc(o->sim, na * sizeof *f) : NULL;
        if (f) o->sim = f;
        if (!s || !f) return cl_error("out of memory gathering matches (%zu)", na);
        o->alloc = na;
    }
    for (uint32_t j = 0; j < l->n; j++) o->sub[o->n + j] = l->a[j].sub, o->sim[o->n + j] = l->a[j].sim;
    o->n += l->n;
    return 0;
}

/* One round: prompts [p0, p0 + np). Sends every local list to its owner,
 * merges the received ones into o. This rank's result (errors before the
 * exchange are agreed inside, so no rank skips it). */
static int exchange_round(scan_ctx *x, size_t p0, size_t np, owned_matches *o, int *sc, int *sd, int *rc, int *rd) {
    const size_t Lh = x->Lh, P = x->cp->n_prompts;
    const long cap = x->o->match_cap;
    const int R = x->R;
    int err = 0;
    /* pack per destination: [its lists] uint32 counts, then the entries */
    long long tot = 0;
    for (int d = 0; d < R; d++) {
        size_t a, b, ne = 0;
        owned_in(P, d, R, p0, np, &a, &b);
        for (size_t i = a * Lh; i < b * Lh; i++) {
            scan_mlist_sort_cap(&x->lists[i], cap);
            ne += x->lists[i].n;
        }
        long long by = (long long)((b - a) * Lh * sizeof(uint32_t) + ne * sizeof(scan_match));
        sd[d] = (int)(tot > INT_MAX ? 0 : tot);
        sc[d] = (int)(by > INT_MAX ? 0 : by);
        tot += by;
    }
    if (tot > INT_MAX) err = cl_error("too many matches in one round of %zu prompts (%lld bytes); use --match-cap", np, tot);
    char *pack = err ? NULL : malloc(tot ? (size_t)tot : 1);
    if (!err && !pack) err = cl_error("out of memory packing matches");
    if (pack)
        for (int d = 0; d < R; d++) {
            size_t a, b;
            owned_in(P, d, R, p0, np, &a, &b);
            uint32_t *cnt = (uint32_t *)(pack + sd[d]);
            scan_match *e = (scan_match *)(pack + sd[d] + (b - a) * Lh * sizeof(uint32_t));
            for (size_t i = a * Lh, j = 0; i < b * Lh; i++, j++) {
                scan_mlist *l = &x->lists[i];
                cnt[j] = l->n;
                if (l->n) memcpy(e, l->a, l->n * sizeof *e);
                e += l->n;
                free(l->a);
                l->a = NULL, l->n = l->alloc = 0;
            }
        }
    cl_par_alltoall(sc, 1, MPI_INT, rc, 1, MPI_INT, x->comm);
    long long rtot = scan_alltoallv_displs(rc, rd, R);
    if (!err && rtot > INT_MAX)
        err = cl_error("too many matches for one rank in one round of %zu prompts (%lld bytes); use --match-cap", np,
                       rtot);
    char *all = err ? NULL : malloc(rtot ? (size_t)rtot : 1);
    if (!err && !all) err = cl_error("out of memory receiving matches");
    if (cl_par_agree(err, x->comm)) {
        free(pack), free(all);
        return -1;
    }
    cl_par_alltoallv(pack, sc, sd, MPI_BYTE, all, rc, rd, MPI_BYTE, x->comm);
    free(pack);
    /* merge this rank's lists: source s's block holds [nown] counts, then entries */
    size_t a, b;
    owned_in(P, x->rank, R, p0, np, &a, &b);
    size_t nown = (b - a) * Lh;
    if (nown) {
        err = scan_merge_sources(all, rd, R, nown, cap, o->index + 2 * o->n_lists, owned_push, o);
        o->n_lists += nown;
    }
    free(all);
    return err;
}

static int write_matches(scan_ctx *x, hid_t file, int64_t *stored) {
    const size_t P = x->cp->n_prompts, Lh = x->Lh;
    const int R = x->R;
    const size_t G = MROUND;
    owned_matches o = {0};
    size_t A, B;
    owned_in(P, x->rank, R, 0, P, &A, &B);
    int *sc = cl_trymalloc((size_t)R * 4, sizeof(int), "match exchange counts");
    o.index = cl_trycalloc((B - A) * Lh * 2 + 2, sizeof(int64_t), "match index");
    int err = !sc || !o.index, rc;
    hid_t dss = H5I_INVALID_HID, dsm = H5I_INVALID_HID, dsi = H5I_INVALID_HID;
    if (cl_par_agree(err, x->comm)) goto out;
    for (size_t p0 = 0; p0 < P && !err; p0 += G) {
        size_t np = P - p0 < G ? P - p0 : G;
        rc = exchange_round(x, p0, np, &o, sc, sc + R, sc + 2 * R, sc + 3 * R);
        err = cl_par_agree(rc, x->comm);
    }
    if (err) goto out;
    /* canonical order: rank by rank (their prompt blocks follow each other),
       within a rank (prompt, block), within a list (similarity desc, substring) */
    int64_t mine = (int64_t)o.n, start = 0, total = 0;
    cl_par_exscan(&mine, &start, 1, MPI_INT64_T, MPI_SUM, x->comm);
    if (x->rank == 0) start = 0;
    cl_par_allreduce(&mine, &total, 1, MPI_INT64_T, MPI_SUM, x->comm);
    int64_t at = start;
    for (size_t i = 0; i < o.n_lists; i++) {
        o.index[2 * i] = at;
        at += o.index[2 * i + 1];
    }
    *stored = total;
    hsize_t dm = (hsize_t)total, ch = 65536, m0 = (hsize_t)start, mn = (hsize_t)mine, p0 = A, np = B - A;
    dss = cl_h5p_dataset(file, CL_SCAN_MATCH_SUBSTRING, H5T_NATIVE_INT64, 1, &dm, &ch);
    dsm = cl_h5p_dataset(file, CL_SCAN_MATCH_SIMILARITY, H5T_NATIVE_FLOAT, 1, &dm, &ch);
    if ((err = cl_par_agree(dss < 0 || dsm < 0, x->comm))) goto out;
    rc = cl_h5p_write_rows(dss, H5T_NATIVE_INT64, 1, &m0, &mn, o.sub, CL_SCAN_MATCH_SUBSTRING);
    if ((err = cl_par_agree(rc, x->comm))) goto out;
    rc = cl_h5p_write_rows(dsm, H5T_NATIVE_FLOAT, 1, &m0, &mn, o.sim, CL_SCAN_MATCH_SIMILARITY);
    if ((err = cl_par_agree(rc, x->comm))) goto out;
    hsize_t di[3] = {P, Lh, 2};
    dsi = cl_h5p_dataset(file, CL_SCAN_MATCH_INDEX, H5T_NATIVE_INT64, 3, di, NULL);
    if ((err = cl_par_agree(dsi < 0, x->comm))) goto out;
    rc = cl_h5p_write_rows(dsi, H5T_NATIVE_INT64, 1, &p0, &np, o.index, CL_SCAN_MATCH_INDEX);
    err = cl_par_agree(rc, x->comm);
out:
    rc = 0;
    if (dsi >= 0 && H5Dclose(dsi) < 0) rc = cl_h5p_write_error(file, "cannot write " CL_SCAN_MATCH_INDEX);
    if (dss >= 0 && H5Dclose(dss) < 0) rc = cl_h5p_write_error(file, "cannot write " CL_SCAN_MATCH_SUBSTRING);
    if (dsm >= 0 && H5Dclose(dsm) < 0) rc = cl_h5p_write_error(file, "cannot write " CL_SCAN_MATCH_SIMILARITY);
    if (!err) err = cl_par_agree(rc, x->comm);
    free(sc), free(o.sub), free(o.sim), free(o.index);
    return err ? -1 : 0;
}

/* The small datasets, from rank 0's data. This rank's result. The csr
 * layout writes no [P, V] dataset here: /prompts/next as CSR, the lens and
 * the unigram as their H to the model ([P, n_layer] and [P], computed by
 * take_prompts); the model's probabilities follow the counts
 * (write_support). */
static int write_small(scan_ctx *x, hid_t file) {
    const cl_corpus *cp = x->cp;
    const size_t P = cp->n_prompts, V = cp->V, NB = x->NB, NL = x->m->cfg.n_layer;
    const cl_corpus_part *pp = &cp->prompt_part; /* the prompts' rows, prompt order (every rank) */
    const size_t pnz = (size_t)(pp->indptr[P] - pp->indptr[0]);
    int err = 0;
    hsize_t d1 = P, d2[2] = {P, V}, d3[3] = {P, NL, V}, dv = V, db = NB, dh[2] = {P, NL}, dp1 = P + 1, dpn = pnz;
    int32_t *nc = NULL, *ntok = NULL, *ncnt = NULL;
    int64_t *uni = NULL, *nind = NULL;
    double *lower = NULL;
    size_t tl = cp->bpe ? scan_bpe_text_len(cp) : 4 * (size_t)cp->L;
    char *text = NULL;
    if (x->rank == 0) {
        if (x->csr) {
            nind = cl_trymalloc(P + 1, sizeof *nind, "prompt next counts");
            ntok = cl_trymalloc(pnz + 1, sizeof *ntok, "prompt next counts");
            ncnt = cl_trymalloc(pnz + 1, sizeof *ncnt, "prompt next counts");
            if (!nind || !ntok || !ncnt) err = 1;
        } else if (!(nc = cl_trymalloc(P * V, sizeof *nc, "prompt next counts"))) {
            err = 1;
        }
        uni = cl_trycalloc(V, sizeof *uni, "unigram");
        lower = cl_trymalloc(NB, sizeof *lower, "bin_lower");
        text = cl_trycalloc(P, tl, "prompt text");
        if (!uni || !lower || !text) err = 1;
        if (!err) {
            char buf[4 * CL_CORPUS_MAX_LEN + 1];
            for (size_t i = 0; i < P; i++) {
                if (x->csr) { /* the row as the corpus holds it: checked, tokens increasing */
                    nind[i] = pp->indptr[i] - pp->indptr[0];
                    for (int64_t e = pp->indptr[i]; !err && e < pp->indptr[i + 1]; e++) {
                        int32_t t = pp->next_token[e], c = pp->next_count[e];
                        if (t < 0 || (size_t)t >= V || c <= 0 || (e > pp->indptr[i] && t <= pp->next_token[e - 1]))
                            err = cl_error("%s: prompt %zu's next-token row is not increasing ids in [0, %zu) with "
                                           "counts > 0", x->o->corpus_path, i, V);
                        ntok[e - pp->indptr[0]] = t, ncnt[e - pp->indptr[0]] = c;
                    }
                } else {
                    memset(nc + i * V, 0, V * sizeof *nc);
                    for (int64_t e = pp->indptr[i]; e < pp->indptr[i + 1]; e++) nc[i * V + pp->next_token[e]] = pp->next_count[e];
                }
                if (cp->bpe) { /* tokens of many bytes: decoded whole (tl is the longest) */
                    scan_bpe_text(cp, i, text + i * tl);
                    continue;
                }
                size_t nb = cl_corpus_tokens_text(cp, cp->prompt_tokens + i * (size_t)cp->L, buf, sizeof buf);
                memcpy(text + i * tl, buf, nb < tl ? nb : tl);
            }
            if (x->csr) nind[P] = (int64_t)pnz;
            memcpy(uni, x->uni, V * sizeof *uni);
            for (size_t k = 0; k < NB; k++) lower[k] = x->lower[k];
        }
    }
    if (!cl_par_agree(err, x->comm)) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, tl);
        H5Tset_strpad(st, H5T_STR_NULLPAD);
        H5Tset_cset(st, H5T_CSET_UTF8);
        MPI_Comm c = x->comm;
        /* every rank has the vocabulary (a few hundred bytes) */
        /* a BPE scan names its tokenizer by the corpus (token_type, corpus_h5_sha256) */
        err = (!cp->bpe && cl_par_agree(cl_h5_write_vocab(file, "/vocab", cp->vocab, cp->V), c)) ||
              cl_par_agree(cl_h5p_write_from(file, CL_SCAN_PROMPT_INDEX, H5T_NATIVE_INT64, 1, &d1, cp->prompt_index, 0, c), c) ||
              cl_par_agree(cl_h5p_write_from(file, CL_SCAN_PROMPT_TEXT, st, 1, &d1, text, 0, c), c);
        if (!err && x->csr)
            err = cl_par_agree(cl_h5p_write_from(file, CL_SCAN_PROMPT_NEXT_INDPTR, H5T_NATIVE_INT64, 1, &dp1, nind, 0, c), c) ||
                  cl_par_agree(cl_h5p_write_from(file, CL_SCAN_PROMPT_NEXT_TOKEN, H5T_NATIVE_INT32, 1, &dpn, ntok, 0, c), c) ||
                  cl_par_agree(cl_h5p_write_from(file, CL_SCAN_PROMPT_NEXT_COUNT, H5T_NATIVE_INT32, 1, &dpn, ncnt, 0, c), c) ||
                  cl_par_agree(cl_h5p_write_from(file, CL_SCAN_UNIGRAM, H5T_NATIVE_INT64, 1, &dv, uni, 0, c), c) ||
                  cl_par_agree(cl_h5p_write_from(file, CL_SCAN_UNIGRAM_HELLINGER, H5T_NATIVE_DOUBLE, 1, &d1, x->unih, 0, c), c) ||
                  cl_par_agree(cl_h5p_write_from(file, CL_SCAN_LENS_HELLINGER, H5T_NATIVE_DOUBLE, 2, dh, x->lensh, 0, c), c);
        else if (!err)
            err = cl_par_agree(cl_h5p_write_from(file, CL_SCAN_PROMPT_NEXT, H5T_NATIVE_INT32, 2, d2, nc, 0, c), c) ||
                  cl_par_agree(cl_h5p_write_from(file, CL_SCAN_UNIGRAM, H5T_NATIVE_INT64, 1, &dv, uni, 0, c), c) ||
                  cl_par_agree(cl_h5p_write_from(file, CL_SCAN_MODEL_PROBS, H5T_NATIVE_FLOAT, 2, d2, x->probs, 0, c), c) ||
                  cl_par_agree(cl_h5p_write_from(file, CL_SCAN_LENS_PROBS, H5T_NATIVE_FLOAT, 3, d3, x->lens, 0, c), c);
        if (!err)
            err = cl_par_agree(cl_h5p_write_from(file, CL_SCAN_FREQ_BIN_LOWER, H5T_NATIVE_DOUBLE, 1, &db, lower, 0, c), c);
        H5Tclose(st);
    } else {
        err = 1;
    }
    free(nc), free(uni), free(lower), free(text), free(nind), free(ntok), free(ncnt);
    return err ? -1 : 0;
}

static double pos_finite(double v) { return v > 0 && isfinite(v) ? v : 0; }

static int cmp_u64_io(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_i32_io(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* e[0 .. n) sorted, each value once: the new length. */
static size_t sort_unique_u64(uint64_t *e, size_t n) {
    if (!n) return 0;
    qsort(e, n, sizeof *e, cmp_u64_io);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!m || e[m - 1] != e[i]) e[m++] = e[i];
    return m;
}

/* Rank 0: the followers in the corpus text (/text/tokens of the scan's
 * corpus.h5) of every token t with need[t]: t's at fol[ptr[t] .. ptr[t +
 * 1]), increasing. *has_text 0 (and nothing allocated) when the corpus has
 * no /text. Streams the text; memory: the distinct (t, follower) pairs. */
static int text_followers(scan_ctx *x, const unsigned char *need, int *has_text, int64_t **ptr, int32_t **fol) {
    const size_t V = x->cp->V, B = (size_t)1 << 17;
    const char *path = x->o->corpus_path;
    *has_text = 0, *ptr = NULL, *fol = NULL;
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return -1;
    if (!cl_h5_exists(f, "/text/tokens")) {
        H5Fclose(f);
        return 0;
    }
    hsize_t d[8];
    int rc = 0;
    if (cl_h5_shape(f, "/text/tokens", d) != 1) rc = cl_error("%s: /text/tokens is not a list", path);
    const size_t n = rc ? 0 : (size_t)d[0];
    int32_t *buf = cl_trymalloc(B, sizeof *buf, "corpus text");
    uint64_t *pr = NULL;
    size_t np = 0, cap = 0;
    int64_t prev = -1;
    if (!buf) rc = -1;
    for (size_t k0 = 0; !rc && k0 < n; k0 += B) {
        size_t m = n - k0 < B ? n - k0 : B;
        if (cl_h5_read_rows(f, "/text/tokens", H5T_NATIVE_INT32, k0, m, buf) < 0) {
            rc = -1;
            break;
        }
        for (size_t k = 0; !rc && k < m; k++) {
            int32_t t = buf[k];
            if (t < 0 || (size_t)t >= V) {
                rc = cl_error("%s: /text/tokens entry %zu (%d) is outside the vocabulary", path, k0 + k, t);
                break;
            }
            if (prev >= 0 && need[prev]) {
                if (np == cap) { /* the distinct pairs so far, then room to grow */
                    np = sort_unique_u64(pr, np);
                    if (np + np / 2 + 4096 > cap) {
                        size_t nc = 2 * np + 65536;
                        uint64_t *q = realloc(pr, nc * sizeof *q);
                        if (!q) {
                            rc = cl_error("out of memory for the text's followers (%zu pairs)", nc);
                            break;
                        }
                        pr = q, cap = nc;
                    }
                }
                pr[np++] = (uint64_t)prev << 32 | (uint32_t)t;
            }
            prev = t;
        }
    }
    H5Fclose(f);
    free(buf);
    if (!rc) {
        np = sort_unique_u64(pr, np);
        *ptr = cl_trycalloc(V + 1, sizeof **ptr, "text followers");
        *fol = cl_trymalloc(np + 1, sizeof **fol, "text followers");
        if (!*ptr || !*fol) rc = -1;
    }
    for (size_t i = 0; !rc && i < np; i++) (*ptr)[(pr[i] >> 32) + 1]++, (*fol)[i] = (int32_t)(uint32_t)pr[i];
    for (size_t t = 0; !rc && t < V; t++) (*ptr)[t + 1] += (*ptr)[t];
    free(pr);
    if (rc) {
        free(*ptr), free(*fol);
        *ptr = NULL, *fol = NULL;
        return -1;
    }
    *has_text = 1;
    return 0;
}

/* write_support's per-prompt work (rank 0): the support of prompt p from
 * its probabilities q [V] (scan_prompt_probs), into its own arrays. */
typedef struct {
    scan_ctx *x;
    int ht;
    const int64_t *fptr;
    const int32_t *fol;
    int32_t *mark, *cur;
    int32_t **tok;  /* [P] each prompt's support */
    float **prob;
    size_t *n;
    double *mass;   /* [P, 2] */
} support_job;

static int support_one(void *user, size_t p, const float *q) {
    support_job *j = user;
    const scan_ctx *x = j->x;
    const cl_corpus *cp = x->cp;
    const cl_corpus_part *pp = &cp->prompt_part;
    const size_t V = cp->V, L = (size_t)cp->L;
    int32_t *mark = j->mark, *cur = j->cur;
    if (j->tok[p]) return cl_error("internal: prompt %zu's support twice", p);
    size_t m = 0;
#define SUPPORT_ADD(t)                                                    \
    do {                                                                  \
        int32_t t_ = (t);                                                 \
        if (mark[t_] != (int32_t)p) mark[t_] = (int32_t)p, cur[m++] = t_; \
    } while (0)
    for (int64_t e = x->uptr[p]; e < x->uptr[p + 1]; e++) SUPPORT_ADD(x->utok[e]);
    for (int64_t e = pp->indptr[p]; e < pp->indptr[p + 1]; e++) SUPPORT_ADD(pp->next_token[e]);
    int32_t last = cp->prompt_tokens[p * L + L - 1];
    for (int64_t e = j->ht ? j->fptr[last] : 0; j->ht && e < j->fptr[last + 1]; e++) SUPPORT_ADD(j->fol[e]);
    /* the top CL_SCAN_MODEL_TOP: by probability, ties by the lower id (a
       later id replaces only a strictly larger one) */
    int32_t top[CL_SCAN_MODEL_TOP];
    int nt = 0;
    for (size_t v = 0; v < V; v++) {
        float pv = q[v];
        if (pv != pv) continue; /* NaN: never among the top */
        if (nt == CL_SCAN_MODEL_TOP && !(pv > q[top[nt - 1]])) continue;
        int i = nt < CL_SCAN_MODEL_TOP ? nt++ : nt - 1;
        while (i > 0 && pv > q[top[i - 1]]) top[i] = top[i - 1], i--;
        top[i] = (int32_t)v;
    }
    for (int i = 0; i < nt; i++) SUPPORT_ADD(top[i]);
#undef SUPPORT_ADD
    /* the sums in token order, as cl_hellinger_df */
    double sq = 0, rest = 0;
    for (size_t v = 0; v < V; v++) {
        double a = pos_finite((double)q[v]);
        sq += a;
        if (mark[v] != (int32_t)p) rest += a;
    }
    j->mass[2 * p] = sq, j->mass[2 * p + 1] = rest;
    qsort(cur, m, sizeof *cur, cmp_i32_io); /* increasing ids */
    j->tok[p] = cl_trymalloc(m ? m : 1, sizeof **j->tok, "model support");
    j->prob[p] = cl_trymalloc(m ? m : 1, sizeof **j->prob, "model support");
    if (!j->tok[p] || !j->prob[p]) return -1;
    for (size_t i = 0; i < m; i++) j->tok[p][i] = cur[i], j->prob[p][i] = q[cur[i]];
    j->n[p] = m;
    return 0;
}

/* The csr layout's /model/support/{indptr,token,prob} and /model/mass
 * (h5schema.h), from rank 0's data: per prompt the union of its /freq/next
 * tokens (x->uptr, x->utok: scan_write_counts_csr), its /prompts/next row,
 * the followers in the text of its last token and the model's
 * CL_SCAN_MODEL_TOP most probable tokens, with the model's probabilities
 * there: rank 0 forwards the prompts again (scan_prompt_probs), so that no
 * rank holds [P, V]. *has_text: whether the corpus had /text (every rank).
 * This rank's result, agreed. */
static int write_support(scan_ctx *x, hid_t file, int *has_text) {
    const cl_corpus *cp = x->cp;
    const size_t P = cp->n_prompts, V = cp->V, L = (size_t)cp->L;
    int err = 0;
    support_job j = {.x = x};
    int64_t *ind = NULL, *fptr = NULL;
    int32_t *tok = NULL, *fol = NULL;
    float *prob = NULL;
    unsigned char *need = NULL;
    size_t M = 0;
    if (x->rank == 0) {
        need = cl_trycalloc(V, 1, "support");
        j.mark = cl_trymalloc(V, sizeof *j.mark, "support");
        j.cur = cl_trymalloc(V, sizeof *j.cur, "support");
        j.tok = cl_trycalloc(P, sizeof *j.tok, "model support");
        j.prob = cl_trycalloc(P, sizeof *j.prob, "model support");
        j.n = cl_trycalloc(P, sizeof *j.n, "model support");
        j.mass = cl_trymalloc(2 * P, sizeof *j.mass, "model mass");
        ind = cl_trymalloc(P + 1, sizeof *ind, "model support");
        if (!need || !j.mark || !j.cur || !j.tok || !j.prob || !j.n || !j.mass || !ind || !x->uptr) err = 1;
        for (size_t p = 0; !err && p < P; p++) {
            int32_t t = cp->prompt_tokens[p * L + L - 1];
            if (t >= 0 && (size_t)t < V) need[t] = 1;
            else err = cl_error("prompt %zu's last token %d is outside the vocabulary", p, t);
        }
        if (!err && text_followers(x, need, &j.ht, &fptr, &fol)) err = 1;
        j.fptr = fptr, j.fol = fol;
        for (size_t v = 0; !err && v < V; v++) j.mark[v] = -1;
        if (!err && scan_prompt_probs(x, support_one, &j)) err = 1;
        if (!err) ind[0] = 0; /* ind is NULL when its allocation failed */
        for (size_t p = 0; !err && p < P; p++) {
            if (!j.tok[p]) err = cl_error("internal: prompt %zu has no support", p);
            else M += j.n[p], ind[p + 1] = (int64_t)M;
        }
        if (!err && (!(tok = cl_trymalloc(M + 1, sizeof *tok, "model support")) ||
                     !(prob = cl_trymalloc(M + 1, sizeof *prob, "model support"))))
            err = 1;
        for (size_t p = 0; !err && p < P; p++) {
            memcpy(tok + ind[p], j.tok[p], j.n[p] * sizeof *tok);
            memcpy(prob + ind[p], j.prob[p], j.n[p] * sizeof *prob);
        }
    }
    if (!cl_par_agree(err, x->comm)) {
        MPI_Comm c = x->comm;
        long long hm[2] = {j.ht, (long long)M};
        cl_par_bcast(hm, 2, MPI_LONG_LONG, 0, c);
        *has_text = (int)hm[0];
        hsize_t dp1 = P + 1, dm = (hsize_t)hm[1], d2[2] = {P, 2};
        err = cl_par_agree(cl_h5p_write_from(file, CL_SCAN_MODEL_SUPPORT_INDPTR, H5T_NATIVE_INT64, 1, &dp1, ind, 0, c), c) ||
              cl_par_agree(cl_h5p_write_from(file, CL_SCAN_MODEL_SUPPORT_TOKEN, H5T_NATIVE_INT32, 1, &dm, tok, 0, c), c) ||
              cl_par_agree(cl_h5p_write_from(file, CL_SCAN_MODEL_SUPPORT_PROB, H5T_NATIVE_FLOAT, 1, &dm, prob, 0, c), c) ||
              cl_par_agree(cl_h5p_write_from(file, CL_SCAN_MODEL_MASS, H5T_NATIVE_DOUBLE, 2, d2, j.mass, 0, c), c);
    } else {
        err = 1;
    }
    for (size_t p = 0; j.tok && p < P; p++) free(j.tok[p]);
    for (size_t p = 0; j.prob && p < P; p++) free(j.prob[p]);
    free(j.tok), free(j.prob), free(j.n), free(j.mass), free(j.mark), free(j.cur);
    free(need), free(ind), free(fptr), free(fol), free(tok), free(prob);
    free(x->uptr), free(x->utok);
    x->uptr = NULL, x->utok = NULL;
    return err ? -1 : 0;
}

/* Root attributes: the same values on every rank (collective). */
static int write_attrs(scan_ctx *x, hid_t file, const cl_scan_result *res, int64_t stored, int has_text) {
    const cl_scan_opts *o = x->o;
    const cl_corpus *cp = x->cp;
    char hookname[128];
    cl_hook_name(x->point, x->lo, hookname, sizeof hookname);
    double thr[CL_SCAN_MAX_BLOCKS];
    for (int b = 0; b < x->Lh; b++) thr[b] = x->thr[b];
    return cl_h5_attr_write_str(file, "format", CL_SCAN_FORMAT) ||
                   cl_h5_attr_write_int(file, "format_version", CL_SCAN_FORMAT_VERSION) ||
                   cl_h5_attr_write_int(file, "complete", 0) || cl_h5_attr_write_str(file, "model_file", o->model_path) ||
                   cl_h5_attr_write_str(file, "model_sha256", x->model_sha) ||
                   cl_h5_attr_write_str(file, "corpus_file", cp->corpus_file) ||
                   cl_h5_attr_write_str(file, "corpus_sha256", cp->corpus_sha256) ||
                   cl_h5_attr_write_str(file, "corpus_h5_file", o->corpus_path) ||
                   cl_h5_attr_write_str(file, "corpus_h5_sha256", x->corpus_h5_sha) ||
                   cl_h5_attr_write_str(file, "hook", o->hook) || cl_h5_attr_write_str(file, "hook_first", hookname) ||
                   cl_h5_attr_write_int(file, "hook_first_block", x->lo) ||
                   cl_h5_attr_write_int(file, "n_hook_blocks", x->Lh) ||
                   cl_h5_attr_write_double(file, "prefilter", o->prefilter) ||
                   cl_h5_attr_write_double(file, "bin_width", o->bin_width) ||
                   cl_h5_attr_write_int(file, "n_bins", x->NB) ||
                   cl_h5_attr_write_str(file, "next_layout", x->csr ? "csr" : "dense") ||
                   cl_h5_attr_write_str(file, "token_type", cp->bpe ? "gpt2-bpe" : "char") || cl_h5_attr_write_int(file, "L", cp->L) ||
                   cl_h5_attr_write_int(file, "n_layer", x->m->cfg.n_layer) ||
                   cl_h5_attr_write_int(file, "vocab_size", cp->V) ||
                   cl_h5_attr_write_int(file, "n_substrings", (long long)cp->n) ||
                   cl_h5_attr_write_int(file, "n_prompts", (long long)cp->n_prompts) ||
                   cl_h5_attr_write_str(file, "match_rule", x->match_rule) ||
                   cl_h5_attr_write_doubles(file, "match_thresholds", thr, x->Lh) ||
                   cl_h5_attr_write_int(file, "match_cap", o->match_cap) ||
                   cl_h5_attr_write_int(file, "n_stored_matches", stored) ||
                   cl_h5_attr_write_int(file, "shard_size", (long long)x->S) ||
                   cl_h5_attr_write_int(file, "n_trie_nodes", (long long)res->n_nodes) ||
                   cl_h5_attr_write_double(file, "wall_seconds", res->wall_seconds) ||
                   cl_h5_attr_write_double(file, "flops", res->corpus_flops) ||
                   cl_h5_attr_write_int(file, "n_prefiltered_pairs", res->n_pairs) ||
                   (x->sampled && cl_h5_attr_write_int(file, "sampled_shards", (long long)x->sampled)) ||
                   (x->csr && (cl_h5_attr_write_int(file, "model_top_k", CL_SCAN_MODEL_TOP) ||
                               cl_h5_attr_write_str(file, "model_support", has_text ? "counts+next+followers+top"
                                                                                    : "counts+next+top")))
               ? -1
               : 0;
}

int scan_write(scan_ctx *x, cl_scan_result *res) {
    const cl_scan_opts *o = x->o;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", o->out_path);
    /* attributes are written collectively: rank 0's wall time on every rank */
    cl_par_bcast(&res->wall_seconds, 1, MPI_DOUBLE, 0, x->comm);
    hid_t file = cl_h5p_create(tmp, x->comm);
    if (cl_par_agree(file < 0, x->comm)) return -1;
    int64_t stored = 0;
    int has_text = 0;
    int err = write_small(x, file) || write_freq(x, file) || (x->csr && write_support(x, file, &has_text)) ||
              write_matches(x, file, &stored);
    if (!err) err = cl_par_agree(write_attrs(x, file, res, stored, has_text), x->comm);
    /* written last; the file is renamed only after a complete close */
    if (!err) err = cl_par_agree(cl_h5_attr_write_int(file, "complete", 1), x->comm);
    if (!err) err = cl_par_agree(cl_par_fault("scan.write", x->comm), x->comm);
    /* close (or, after an error, discard) the .tmp; rename only when every
       rank agrees: no complete-looking output when any rank failed */
    int rc = cl_h5p_finish(file, tmp, err, x->comm);
    if (err || cl_par_agree(rc, x->comm)) return -1;
    rc = 0;
    if (x->rank == 0 && cl_commit_file(tmp, o->out_path)) rc = -1;
    if (cl_par_agree(rc, x->comm)) return -1;
    res->n_matches = stored;
    return 0;
}

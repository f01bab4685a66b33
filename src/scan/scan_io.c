/* The scan's resume state and its output file (layout: h5schema.h). */
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/par/par.h"
#include "scan/scan_internal.h"

#define CKPT_MAGIC "CLSCAN01"

static void state_path(const scan_ctx *x, char *buf, size_t n, const char *leaf) {
    if (leaf) snprintf(buf, n, "%s.state/%s", x->o->out_path, leaf);
    else snprintf(buf, n, "%s.state", x->o->out_path);
}

static int combine_err(int err, MPI_Comm comm) { return cl_par_agree(err, comm); }

static void remove_rank_files(const scan_ctx *x) {
    char dir[4200], p[4600];
    state_path(x, dir, sizeof dir, NULL);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "rank", 4)) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            remove(p);
        }
    closedir(d);
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
    char hdr[1024];
    if (x->rank == 0) {
        if (cl_model_fingerprint(x->m, x->model_sha) || cl_sha256_file(o->corpus_path, x->corpus_h5_sha)) err = 1;
    }
    if (combine_err(err, x->comm)) return -1;
    MPI_Bcast(x->model_sha, 65, MPI_CHAR, 0, x->comm);
    MPI_Bcast(x->corpus_h5_sha, 65, MPI_CHAR, 0, x->comm);
    int n = snprintf(x->sig, sizeof x->sig,
                     "corpuslens scan state v1\nmodel_sha256 %s\ncorpus_h5_sha256 %s\nhook %s\nprefilter %.17g\n"
                     "bin_width %.17g\nmatch_cap %ld\nshard_size %zu\nranks %d\nmatch_thresholds",
                     x->model_sha, x->corpus_h5_sha, o->hook, o->prefilter, o->bin_width, o->match_cap, x->S, x->R);
    for (int b = 0; b < x->Lh && n < (int)sizeof x->sig - 32; b++)
        n += snprintf(x->sig + n, sizeof x->sig - n, " %.17g", x->thr[b]);
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
                if (bad || rename(tmp, p)) {
                    err = 1;
                    cl_error("cannot write %s: %s", p, strerror(errno));
                    remove(tmp);
                }
            }
        }
    }
    if (combine_err(err, x->comm)) return -1;
    MPI_Bcast(&resume, 1, MPI_INT, 0, x->comm);
    if (!resume) return 0;
    /* Load this rank's checkpoint, if any. */
    char leaf[64], p[4400], sha[65];
    snprintf(leaf, sizeof leaf, "rank%d.bin", x->rank);
    state_path(x, p, sizeof p, leaf);
    cl_sha256_mem(x->sig, strlen(x->sig), sha);
    FILE *f = fopen(p, "rb");
    if (f) {
        const size_t P = x->cp->n_prompts, NC = P * x->Lh * x->NB * (size_t)x->cp->V, NM = P * x->Lh * x->NB;
        int32_t rk[2];
        uint64_t u[4];
        double d[2];
        int ok = fread(hdr, 1, 8 + 65, f) == 8 + 65 && !memcmp(hdr, CKPT_MAGIC, 8) && !memcmp(hdr + 8, sha, 65) &&
                 fread(rk, sizeof rk, 1, f) == 1 && rk[0] == x->rank && rk[1] == x->R && fread(u, sizeof u, 1, f) == 1 &&
                 fread(d, sizeof d, 1, f) == 1 && u[3] == NC &&
                 fread(x->counts, sizeof(int32_t), NC, f) == NC && fread(x->nmatch, sizeof(int64_t), NM, f) == NM;
        for (size_t i = 0; ok && i < P * x->Lh; i++) {
            scan_mlist *l = &x->lists[i];
            uint32_t hn[2];
            float fl;
            ok = fread(hn, sizeof hn, 1, f) == 1 && fread(&fl, sizeof fl, 1, f) == 1;
            if (!ok) break;
            if (hn[0]) {
                l->a = malloc((size_t)hn[0] * sizeof *l->a);
                if (!l->a || fread(l->a, sizeof *l->a, hn[0], f) != hn[0]) ok = 0;
                l->n = l->alloc = hn[0];
            }
            l->capped = (int)hn[1];
            l->floor = fl;
        }
        fclose(f);
        if (!ok) {
            err = 1;
            cl_error("%s: unreadable or truncated checkpoint; remove %s.state to start over", p, x->o->out_path);
        } else {
            x->done = (size_t)u[0];
            x->n_pairs = (int64_t)u[1];
            x->n_nodes = (size_t)u[2];
            x->flops_forward = d[0];
            x->flops_cosine = d[1];
        }
    }
    if (combine_err(err, x->comm)) return -1;
    long long dn = (long long)x->done, tot = 0;
    MPI_Reduce(&dn, &tot, 1, MPI_LONG_LONG, MPI_SUM, 0, x->comm);
    if (x->rank == 0 && o->note) {
        char msg[256];
        snprintf(msg, sizeof msg, "resuming: %lld of %zu shards already done", tot, x->n_shards);
        o->note(o->progress_user, msg);
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
    FILE *f = fopen(tmp, "wb");
    if (!f) return cl_error("cannot write %s: %s", tmp, strerror(errno));
    int32_t rk[2] = {x->rank, x->R};
    uint64_t u[4] = {x->done, (uint64_t)x->n_pairs, x->n_nodes, NC};
    double d[2] = {x->flops_forward, x->flops_cosine};
    int ok = fwrite(CKPT_MAGIC, 1, 8, f) == 8 && fwrite(sha, 1, 65, f) == 65 && fwrite(rk, sizeof rk, 1, f) == 1 &&
             fwrite(u, sizeof u, 1, f) == 1 && fwrite(d, sizeof d, 1, f) == 1 &&
             fwrite(x->counts, sizeof(int32_t), NC, f) == NC && fwrite(x->nmatch, sizeof(int64_t), NM, f) == NM;
    for (size_t i = 0; ok && i < P * x->Lh; i++) {
        const scan_mlist *l = &x->lists[i];
        uint32_t hn[2] = {l->n, (uint32_t)l->capped};
        ok = fwrite(hn, sizeof hn, 1, f) == 1 && fwrite(&l->floor, sizeof l->floor, 1, f) == 1 &&
             (l->n == 0 || fwrite(l->a, sizeof *l->a, l->n, f) == l->n);
    }
    if (fclose(f)) ok = 0;
    if (!ok || rename(tmp, p)) {
        remove(tmp);
        return cl_error("cannot write the checkpoint %s: %s", p, strerror(errno));
    }
    return 0;
}

/* ---- output ---- */

/* Chunked, gzip-compressed dataset of `rank` dims (maxdims unlimited on dim 0
 * when extendible). */
static hid_t create_chunked(hid_t file, const char *path, hid_t type, int rank, const hsize_t *dims,
                            const hsize_t *chunk, int extendible) {
    hsize_t maxd[8];
    for (int i = 0; i < rank; i++) maxd[i] = dims[i];
    if (extendible) maxd[0] = H5S_UNLIMITED;
    hid_t sp = H5Screate_simple(rank, dims, maxd), dcpl = cl_h5_dcpl(), lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_deflate(dcpl, 1);
    hid_t ds = H5Dcreate2(file, path, type, sp, lcpl, dcpl, H5P_DEFAULT);
    H5Sclose(sp), H5Pclose(dcpl), H5Pclose(lcpl);
    if (ds < 0) cl_h5_error_in(file, "cannot create dataset %s", path);
    return ds;
}

/* Write rows [r0, r0+nr) of a dataset whose row has `rowel` elements. */
static int write_rows(hid_t ds, hid_t memtype, int rank, const hsize_t *dims, hsize_t r0, hsize_t nr,
                      const void *data, const char *name) {
    if (nr == 0) return 0;
    hsize_t start[8] = {0}, count[8];
    for (int i = 0; i < rank; i++) count[i] = dims[i];
    start[0] = r0, count[0] = nr;
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(rank, count, NULL);
    herr_t e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    if (e >= 0) e = H5Dwrite(ds, memtype, ms, fs, H5P_DEFAULT, data);
    int rc = e < 0 ? cl_h5_error_in(ds, "cannot write %s", name) : 0;
    H5Sclose(fs), H5Sclose(ms);
    return rc;
}

static int append_rows(hid_t ds, hid_t memtype, hsize_t *cur, hsize_t n, const void *data, const char *name) {
    if (n == 0) return 0;
    hsize_t nd = *cur + n;
    if (H5Dset_extent(ds, &nd) < 0) return cl_h5_error_in(ds, "cannot extend %s", name);
    if (write_rows(ds, memtype, 1, &nd, *cur, n, data, name)) return -1;
    *cur = nd;
    return 0;
}

#define MCHUNK 256

int scan_write(scan_ctx *x, cl_scan_result *res) {
    const cl_scan_opts *o = x->o;
    const cl_corpus *cp = x->cp;
    const cl_config *c = &x->m->cfg;
    const size_t P = cp->n_prompts, V = cp->V, Lh = x->Lh, NB = x->NB, NL = c->n_layer;
    const int rank = x->rank, R = x->R;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", o->out_path);
    hid_t file = H5I_INVALID_HID, dsc = H5I_INVALID_HID, dss = H5I_INVALID_HID, dsm = H5I_INVALID_HID;
    int werr = 0; /* rank 0's write error; everyone keeps joining the collectives */
    int64_t *index = NULL, stored = 0;
    if (rank == 0) {
        file = cl_h5_create(tmp);
        if (file < 0) werr = 1;
        index = cl_trycalloc(P * Lh * 2, sizeof *index, "match index");
        if (!index) werr = 1;
    }
    /* Small datasets (rank 0 only). */
    if (rank == 0 && !werr) {
        hsize_t d1 = P, d2[2] = {P, V}, d3[3] = {P, NL, V}, dv = V, db = NB;
        int32_t *nc = cl_trymalloc(P * V, sizeof *nc, "prompt next counts");
        int64_t *uni = cl_trycalloc(V, sizeof *uni, "unigram");
        double *lower = cl_trymalloc(NB, sizeof *lower, "bin_lower");
        size_t tl = 4 * (size_t)cp->L;
        char *text = cl_trycalloc(P, tl, "prompt text");
        if (!nc || !uni || !lower || !text) werr = 1;
        if (!werr) {
            char buf[4 * CL_CORPUS_MAX_LEN + 1];
            for (size_t i = 0; i < P; i++) {
                cl_corpus_next_dense(cp, (size_t)cp->prompt_index[i], nc + i * V);
                size_t nb = cl_corpus_substring_text(cp, (size_t)cp->prompt_index[i], buf);
                memcpy(text + i * tl, buf, nb < tl ? nb : tl);
            }
            for (size_t e = 0; e < cp->nnz; e++) uni[cp->next_token[e]] += cp->next_count[e];
            for (size_t k = 0; k < NB; k++) lower[k] = x->lower[k];
            hid_t st = H5Tcopy(H5T_C_S1);
            H5Tset_size(st, tl);
            H5Tset_strpad(st, H5T_STR_NULLPAD);
            H5Tset_cset(st, H5T_CSET_UTF8);
            if (cl_h5_write_vocab(file, "/vocab", cp->vocab, cp->V) ||
                cl_h5_write(file, CL_SCAN_PROMPT_INDEX, H5T_NATIVE_INT64, 1, &d1, cp->prompt_index) ||
                cl_h5_write(file, CL_SCAN_PROMPT_TEXT, st, 1, &d1, text) ||
                cl_h5_write(file, CL_SCAN_PROMPT_NEXT, H5T_NATIVE_INT32, 2, d2, nc) ||
                cl_h5_write(file, CL_SCAN_UNIGRAM, H5T_NATIVE_INT64, 1, &dv, uni) ||
                cl_h5_write(file, CL_SCAN_MODEL_PROBS, H5T_NATIVE_FLOAT, 2, d2, x->probs) ||
                cl_h5_write(file, CL_SCAN_LENS_PROBS, H5T_NATIVE_FLOAT, 3, d3, x->lens) ||
                cl_h5_write(file, CL_SCAN_FREQ_BIN_LOWER, H5T_NATIVE_DOUBLE, 1, &db, lower))
                werr = 1;
            H5Tclose(st);
        }
        free(nc), free(uni), free(lower), free(text);
    }
    /* Frequency counts: reduced to rank 0 in prompt slices, written per slice. */
    {
        hsize_t dims[4] = {P, Lh, NB, V}, chunk[4] = {1, Lh, NB, V};
        if (rank == 0 && !werr && (dsc = create_chunked(file, CL_SCAN_FREQ_COUNTS, H5T_NATIVE_INT32, 4, dims, chunk, 0)) < 0)
            werr = 1;
        size_t row = Lh * NB * V, ps = ((size_t)1 << 24) / row;
        if (ps < 1) ps = 1;
        for (size_t p0 = 0; p0 < P; p0 += ps) {
            size_t np = P - p0 < ps ? P - p0 : ps;
            if (scan_reduce0(x->counts + p0 * row, np * row, MPI_INT32_T, sizeof(int32_t), rank, x->comm)) werr = 1;
            if (rank == 0 && !werr && write_rows(dsc, H5T_NATIVE_INT32, 4, dims, p0, np, x->counts + p0 * row,
                                                 CL_SCAN_FREQ_COUNTS))
                werr = 1;
        }
        if (dsc >= 0 && H5Dclose(dsc) < 0 && !werr) werr = (cl_h5_error_in(file, "cannot write %s", CL_SCAN_FREQ_COUNTS), 1);
        dsc = H5I_INVALID_HID;
        hsize_t dn[3] = {P, Lh, NB};
        if (scan_reduce0(x->nmatch, P * Lh * NB, MPI_INT64_T, sizeof(int64_t), rank, x->comm)) werr = 1;
        if (rank == 0 && !werr && cl_h5_write(file, CL_SCAN_FREQ_N_MATCHES, H5T_NATIVE_INT64, 3, dn, x->nmatch)) werr = 1;
    }
    /* Matches: per prompt chunk, every rank's capped lists go to rank 0, which
     * merges, sorts, caps and appends. */
    hsize_t cur_s = 0, cur_m = 0;
    if (rank == 0 && !werr) {
        hsize_t d0 = 0, ch = 65536;
        if ((dss = create_chunked(file, CL_SCAN_MATCH_SUBSTRING, H5T_NATIVE_INT64, 1, &d0, &ch, 1)) < 0 ||
            (dsm = create_chunked(file, CL_SCAN_MATCH_SIMILARITY, H5T_NATIVE_FLOAT, 1, &d0, &ch, 1)) < 0)
            werr = 1;
    }
    int *rcounts = rank == 0 ? calloc(R, sizeof(int)) : NULL, *displs = rank == 0 ? calloc(R, sizeof(int)) : NULL;
    if (rank == 0 && (!rcounts || !displs)) werr = (cl_error("out of memory"), 1);
    int lerr = 0;
    for (size_t p0 = 0; p0 < P; p0 += MCHUNK) {
        size_t np = P - p0 < MCHUNK ? P - p0 : MCHUNK, nl = np * Lh;
        /* pack: [nl] uint32 counts, then entries */
        size_t ne = 0;
        for (size_t i = 0; i < nl; i++) {
            scan_mlist_sort_cap(&x->lists[p0 * Lh + i], o->match_cap);
            ne += x->lists[p0 * Lh + i].n;
        }
        size_t bytes = nl * sizeof(uint32_t) + ne * sizeof(scan_match);
        char *pack = NULL;
        if (bytes > INT_MAX) lerr = (cl_error("too many matches in one prompt chunk (%zu bytes); use --match-cap", bytes), 1);
        else if (!(pack = malloc(bytes ? bytes : 1))) lerr = (cl_error("out of memory packing matches"), 1);
        int mybytes = lerr ? 0 : (int)bytes;
        if (pack) {
            uint32_t *cnt = (uint32_t *)pack;
            scan_match *e = (scan_match *)(pack + nl * sizeof(uint32_t));
            for (size_t i = 0; i < nl; i++) {
                scan_mlist *l = &x->lists[p0 * Lh + i];
                cnt[i] = l->n;
                if (l->n) memcpy(e, l->a, l->n * sizeof *e);
                e += l->n;
                free(l->a);
                l->a = NULL, l->n = l->alloc = 0;
            }
        }
        MPI_Gather(&mybytes, 1, MPI_INT, rcounts, 1, MPI_INT, 0, x->comm);
        char *all = NULL;
        long long tot = 0;
        if (rank == 0) {
            for (int r = 0; r < R; r++) {
                if (tot + rcounts[r] > INT_MAX) werr = (cl_error("too many matches in one prompt chunk; use --match-cap"), 1);
                displs[r] = (int)(tot > INT_MAX ? 0 : tot);
                tot += rcounts[r];
            }
            if (tot > INT_MAX) {
                for (int r = 0; r < R; r++) rcounts[r] = 0, displs[r] = 0;
                tot = 0;
            }
            all = malloc(tot ? (size_t)tot : 1);
            if (!all) werr = 1;
        }
        MPI_Gatherv(pack, mybytes, MPI_BYTE, all, rcounts, displs, MPI_BYTE, 0, x->comm);
        free(pack);
        if (rank == 0 && !werr) {
            /* per rank: cursors */
            const uint32_t *cnt[1024];
            const scan_match *ent[1024];
            int nr = 0;
            for (int r = 0; r < R && r < 1024; r++) {
                if (!rcounts[r]) continue;
                cnt[nr] = (const uint32_t *)(all + displs[r]);
                ent[nr] = (const scan_match *)(all + displs[r] + nl * sizeof(uint32_t));
                nr++;
            }
            scan_mlist merged = {0};
            int64_t *subs = NULL;
            float *sims = NULL;
            size_t cap_buf = 0;
            for (size_t i = 0; i < nl && !werr; i++) {
                merged.n = 0;
                merged.capped = 0;
                for (int r = 0; r < nr; r++) {
                    uint32_t k = cnt[r][i];
                    if (merged.alloc < merged.n + k) {
                        scan_match *a = realloc(merged.a, (size_t)(merged.n + k) * sizeof *a);
                        if (!a) {
                            werr = (cl_error("out of memory merging matches"), 1);
                            break;
                        }
                        merged.a = a, merged.alloc = merged.n + k;
                    }
                    memcpy(merged.a + merged.n, ent[r], (size_t)k * sizeof *ent[r]);
                    merged.n += k;
                    ent[r] += k;
                }
                if (werr) break;
                scan_mlist_sort_cap(&merged, o->match_cap);
                if (cap_buf < merged.n) {
                    free(subs), free(sims);
                    cap_buf = merged.n;
                    subs = malloc(cap_buf * sizeof *subs);
                    sims = malloc(cap_buf * sizeof *sims);
                    if (!subs || !sims) {
                        werr = (cl_error("out of memory writing matches"), 1);
                        break;
                    }
                }
                for (uint32_t j = 0; j < merged.n; j++) subs[j] = merged.a[j].sub, sims[j] = merged.a[j].sim;
                index[((p0 * Lh) + i) * 2] = (int64_t)cur_s;
                index[((p0 * Lh) + i) * 2 + 1] = merged.n;
                if (append_rows(dss, H5T_NATIVE_INT64, &cur_s, merged.n, subs, CL_SCAN_MATCH_SUBSTRING) ||
                    append_rows(dsm, H5T_NATIVE_FLOAT, &cur_m, merged.n, sims, CL_SCAN_MATCH_SIMILARITY))
                    werr = 1;
            }
            free(merged.a), free(subs), free(sims);
        }
        free(all);
    }
    free(rcounts), free(displs);
    stored = (int64_t)cur_s;
    if (rank == 0 && !werr) {
        hsize_t di[3] = {P, Lh, 2};
        if (cl_h5_write(file, CL_SCAN_MATCH_INDEX, H5T_NATIVE_INT64, 3, di, index)) werr = 1;
    }
    free(index);
    if (dss >= 0 && H5Dclose(dss) < 0 && !werr) werr = (cl_h5_error_in(file, "cannot write %s", CL_SCAN_MATCH_SUBSTRING), 1);
    if (dsm >= 0 && H5Dclose(dsm) < 0 && !werr) werr = (cl_h5_error_in(file, "cannot write %s", CL_SCAN_MATCH_SIMILARITY), 1);
    if (rank == 0 && !werr) {
        char hookname[128];
        cl_hook_name(x->point, x->lo, hookname, sizeof hookname);
        double thr[CL_SCAN_MAX_BLOCKS];
        for (int b = 0; b < x->Lh; b++) thr[b] = x->thr[b];
        if (cl_h5_attr_write_str(file, "format", CL_SCAN_FORMAT) ||
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
            cl_h5_attr_write_int(file, "n_bins", x->NB) || cl_h5_attr_write_int(file, "L", cp->L) ||
            cl_h5_attr_write_int(file, "n_layer", c->n_layer) || cl_h5_attr_write_int(file, "vocab_size", cp->V) ||
            cl_h5_attr_write_int(file, "n_substrings", (long long)cp->n) ||
            cl_h5_attr_write_int(file, "n_prompts", (long long)P) ||
            cl_h5_attr_write_str(file, "match_rule", x->match_rule) ||
            cl_h5_attr_write_doubles(file, "match_thresholds", thr, x->Lh) ||
            cl_h5_attr_write_int(file, "match_cap", o->match_cap) ||
            cl_h5_attr_write_int(file, "n_stored_matches", stored) || cl_h5_attr_write_int(file, "ranks", R) ||
            cl_h5_attr_write_int(file, "shard_size", (long long)x->S) ||
            cl_h5_attr_write_int(file, "n_trie_nodes", (long long)res->n_nodes) ||
            cl_h5_attr_write_double(file, "wall_seconds", res->wall_seconds) ||
            cl_h5_attr_write_double(file, "flops", res->flops) ||
            cl_h5_attr_write_int(file, "n_prefiltered_pairs", res->n_pairs) ||
            (x->sampled && cl_h5_attr_write_int(file, "sampled_shards", (long long)x->sampled)))
            werr = 1;
        /* written last; the file is renamed only after a complete close */
        if (!werr && cl_h5_attr_write_int(file, "complete", 1)) werr = 1;
    }
    if (!werr && !lerr && cl_par_fault("scan.write", x->comm)) lerr = 1;
    /* rank 0 closes (or, after an error, discards) the .tmp; every rank
     * agrees before rank 0 renames: no complete-looking output when any
     * rank failed */
    if (rank == 0 && cl_h5_finish(file, tmp, werr || lerr)) werr = 1;
    if (combine_err(werr || lerr, x->comm)) {
        if (rank == 0) remove(tmp);
        return -1;
    }
    if (rank == 0 && rename(tmp, o->out_path)) {
        werr = (cl_error("cannot rename %s to %s: %s", tmp, o->out_path, strerror(errno)), 1);
        remove(tmp);
    }
    if (combine_err(werr, x->comm)) return -1;
    MPI_Bcast(&stored, 1, MPI_INT64_T, 0, x->comm);
    res->n_matches = stored;
    return 0;
}

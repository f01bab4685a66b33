#!/bin/sh
# Two corpuslens binaries side by side (a figure generator and an equality
# check, not a test): both started as `serve` on --port 0 with the same index,
# corpus and model (warm), then
#   1. the same requests to both: the JSON answers must be the same bytes
#      (a 200- and a 60-character passage, one-window requests, a 2-character
#      text, top 0, explicit thresholds with the soft kernel); any difference
#      is printed and the exit status is 1;
#   2. N one-window requests ("positions": "last", windows of L characters
#      drawn from the corpus text, seeded) and PASSAGES 200-character passages,
#      sent to A and B alternately (A first, then B first), so both see the
#      same machine load: wall and server CPU (/proc, all threads) per request,
#      p50 and mean, and the ratio B / A.
# Two servers hold the index at once: about twice one server's memory.
# usage: serve_compare.sh A_EXE B_EXE INDEX.h5 CORPUS.h5 MODEL.h5
# environment: N (60), PASSAGES (3), A_ARGS, B_ARGS (extra serve options, e.g.
#   B_ARGS="--compute-threads 1"), PYTHON (/usr/bin/python3)
set -eu
[ $# -ge 5 ] || { sed -n 2,18p "$0"; exit 2; }
A=$1 B=$2 INDEX=$3 CORPUS=$4 MODEL=$5
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
pa= pb=
trap 'kill $pa $pb 2>/dev/null || true; rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086
"$A" serve --index "$INDEX" --corpus "$CORPUS" --model "$MODEL" --port 0 --max-chars 1000 --timeout 600 ${A_ARGS:-} \
    >"$tmp/a.out" 2>"$tmp/a.err" &
pa=$!
# shellcheck disable=SC2086
"$B" serve --index "$INDEX" --corpus "$CORPUS" --model "$MODEL" --port 0 --max-chars 1000 --timeout 600 ${B_ARGS:-} \
    >"$tmp/b.out" 2>"$tmp/b.err" &
pb=$!
for i in $(seq 1 100); do grep -q listening "$tmp/a.out" "$tmp/b.out" 2>/dev/null && \
    [ "$(grep -l listening "$tmp/a.out" "$tmp/b.out" | wc -l)" = 2 ] && break; sleep 0.1; done
porta=$(sed -n 's/.*:\([0-9]*\)\/$/\1/p' "$tmp/a.out") portb=$(sed -n 's/.*:\([0-9]*\)\/$/\1/p' "$tmp/b.out")
[ -n "$porta" ] && [ -n "$portb" ] || { cat "$tmp/a.err" "$tmp/b.err"; echo "serve did not start" >&2; exit 1; }
echo "serve_compare: A = $A ${A_ARGS:-} (pid $pa), B = $B ${B_ARGS:-} (pid $pb); $(getconf _NPROCESSORS_ONLN) cores; $(date -u +%FT%TZ)"
N=${N:-60} PASSAGES=${PASSAGES:-3} PA=$porta PB=$portb IA=$pa IB=$pb "$PY" - <<'EOF'
import http.client, json, os, random, statistics, sys, time
ports, pids = (int(os.environ["PA"]), int(os.environ["PB"])), (os.environ["IA"], os.environ["IB"])

def req(k, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", ports[k], timeout=600)
    t0 = time.perf_counter()
    c.request(method, path, body, {"Content-Type": "application/json"} if body else {})
    r = c.getresponse()
    b = r.read()
    c.close()
    return r.status, time.perf_counter() - t0, b

def cpu(k):
    f = open(f"/proc/{pids[k]}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

for k in (0, 1):
    t0 = time.time()
    while True:
        try:
            if req(k, "GET", "/api/health")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    print(f"{'AB'[k]} loaded in {time.time() - t0:.1f} s")
info = json.loads(req(0, "GET", "/api/info")[2])
L, Lh, src = info["index"]["L"], info["index"]["n_hook_blocks"], info["corpus"]["text_for_locate"]
text = open(src, encoding="utf-8").read()
rng = random.Random(7)
def window(n):
    s = rng.randrange(0, len(text) - n)
    return text[s:s + n]
# 1. the same bytes
same = [{"text": text[-200:]}, {"text": window(60), "top": 5}, {"text": "Th"}, {"text": window(30), "top": 0},
        {"text": window(40), "thresholds": [0.5, 0.55, 0.6, 0.65, 0.7, 0.75][:Lh], "weights": [1] * Lh, "soft": True,
         "top": 3}] + [{"text": window(L), "positions": "last"} for _ in range(6)] + \
       [{"text": "To be, or ", "positions": "last"}]
bad = 0
for q in same:
    a, b = (req(k, "POST", "/api/explain", json.dumps(q)) for k in (0, 1))
    if a[0] != 200 or a[0] != b[0] or a[2] != b[2]:
        bad += 1
        print(f"DIFFERENT: {json.dumps(q)[:80]}: status {a[0]} / {b[0]}, {len(a[2])} / {len(b[2])} bytes")
print(f"equality: {len(same) - bad} of {len(same)} requests answered the same bytes by A and B "
      f"({sum(len(q['text']) for q in same)} positions)")
# 2. timing, alternated
def timed(k, q):
    c0 = cpu(k)
    st, dt, _ = req(k, "POST", "/api/explain", json.dumps(q))
    return st, dt, cpu(k) - c0
def run(qs, label):
    w, c, errs = ([], []), ([], []), 0
    for i, q in enumerate(qs):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            st, dt, dc = timed(k, q)
            errs += st != 200
            w[k].append(dt), c[k].append(dc)
    med = statistics.median
    print(f"{label}, {len(qs)} each, {errs} errors:")
    for k in (0, 1):
        print(f"  {'AB'[k]}: wall p50 {1e3 * med(w[k]):.0f} ms, mean {1e3 * statistics.mean(w[k]):.0f} ms; "
              f"server CPU p50 {1e3 * med(c[k]):.0f} ms, mean {1e3 * statistics.mean(c[k]):.1f} ms")
    print(f"  B / A: wall p50 {med(w[1]) / med(w[0]):.2f}, mean {statistics.mean(w[1]) / statistics.mean(w[0]):.2f}; "
          f"CPU mean {statistics.mean(c[1]) / max(1e-9, statistics.mean(c[0])):.2f}")
    return errs
la = os.getloadavg()
errs = run([{"text": window(L), "positions": "last"} for _ in range(int(os.environ["N"]))],
           f"one window (positions last, L = {L})")
errs += run([{"text": text[-200:]}] * int(os.environ["PASSAGES"]), "200-character passage")
print(f"load average before {la}, after {os.getloadavg()}; {os.cpu_count()} cores")
sys.exit(1 if bad or errs else 0)
EOF
rc=$?
kill -TERM $pa $pb
wait $pa $pb || true
exit $rc

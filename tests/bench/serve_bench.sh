#!/bin/sh
# corpuslens serve benchmark (a figure generator, not a test): the server
# started on --port 0 with an existing model, corpus and index, warm (one
# request first), measured over HTTP on loopback:
#   1. latency of one window: POST /api/explain of N texts of L characters
#      drawn from the corpus text (seeded) with "positions": "last", so the
#      answer is the explanation of ONE position, made from its full window of
#      L characters (docs/serve.md): p50 / p99 / mean of the wall time and of
#      the server's CPU time per request. Beside it, the same texts with every
#      position explained (L windows of 1..L characters per request);
#   2. a passage of 200 characters (from the held-out end of the text when it
#      has one, else the corpus text), 3 requests: min and median seconds,
#      mean H;
#   3. 2 concurrent clients for DURATION seconds, each sending one-window
#      requests (as in 1) back to back: requests, throughput, errors (any non-200);
#   4. the server's RSS (VmRSS and the peak VmHWM from /proc).
# Beside each wall time, the server's CPU time per request (/proc/PID/stat):
# on a shared, busy machine the wall times grow with the load, the CPU times
# much less; the load average is printed. With --compute-threads > 1 a
# request's CPU is spread over threads: the busier of the compute thread
# (/proc/PID/task/PID) and the others estimates its wall time on idle cores.
# usage: serve_bench.sh INDEX.h5 CORPUS.h5 MODEL.h5 [TEXT.txt]
# environment: CORPUSLENS (default build/corpuslens), N (200), DURATION (60),
#   THREADS (4: HTTP threads), COMPUTE (serve --compute-threads: the threads of
#   one request; unset: the server's default, the online cores), PYTHON
#   (/usr/bin/python3), N1 (requests explaining every position of L characters,
#   default N; 0 skips), PASSAGES (3)
set -eu
[ $# -ge 3 ] || { sed -n 2,27p "$0"; exit 2; }
INDEX=$1 CORPUS=$2 MODEL=$3 TEXT=${4:-}
EXE=${CORPUSLENS:-build/corpuslens}
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
set -- --index "$INDEX" --corpus "$CORPUS" --model "$MODEL" --port 0 --threads "${THREADS:-4}" --max-chars 1000 --timeout 600
[ -n "$TEXT" ] && set -- "$@" --text "$TEXT"
[ -n "${COMPUTE:-}" ] && set -- "$@" --compute-threads "$COMPUTE"
"$EXE" serve "$@" >"$tmp/out" 2>"$tmp/err" &
pid=$!
for i in $(seq 1 100); do grep -q listening "$tmp/out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*:\([0-9]*\)\/$/\1/p' "$tmp/out")
[ -n "$port" ] || { cat "$tmp/err"; echo "serve did not start" >&2; exit 1; }
echo "serve_bench: $EXE serve on port $port, pid $pid; index $INDEX; $(getconf _NPROCESSORS_ONLN) cores; $(date -u +%FT%TZ)"
N=${N:-200} N1=${N1:-${N:-200}} PASSAGES=${PASSAGES:-3} DURATION=${DURATION:-60} PORT=$port PID=$pid "$PY" - <<'EOF'
import http.client, json, os, random, statistics, threading, time
port, pid = int(os.environ["PORT"]), os.environ["PID"]
N, DURATION = int(os.environ["N"]), float(os.environ["DURATION"])

def post(text, conn=None, last=False):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    req = {"text": text, "positions": "last"} if last else {"text": text}
    c.request("POST", "/api/explain", json.dumps(req), {"Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    dt = time.perf_counter() - t0
    if not conn:
        c.close()
    return r.status, dt, body

def get(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("GET", path)
    r = c.getresponse()
    b = r.read()
    c.close()
    return r.status, b

def cpu(task=False):
    """the server's CPU seconds (user + system), from /proc: figures that a busy machine does not inflate;
    task: its main thread's only (the compute thread; with --compute-threads > 1 the other threads of a
    request run beside it)"""
    f = open(f"/proc/{pid}/task/{pid}/stat" if task else f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
t0 = time.time()
while get("/api/health")[0] != 200:
    time.sleep(0.2)
print(f"loaded in {time.time() - t0:.1f} s (/api/health 200); load average {os.getloadavg()}")
info = json.loads(get("/api/info")[1])
L, vocab = info["index"]["L"], info["model"]["vocab"]
print(f"index: {info['index']['n_rows']:,} rows x {info['index']['n_hook_blocks']} blocks, L = {L}, "
      f"{info['index']['dtype']}{' + sketch' if info['index']['sketch'] else ''}; corpus text for the windows: "
      f"{info['corpus']['text_for_locate']}")
# windows from the corpus text (locate's copy) or, without one, random vocabulary strings
src = info["corpus"]["text_for_locate"]
text = open(src, encoding="utf-8").read() if src else None
rng = random.Random(1)
def window(n):
    if text:
        s = rng.randrange(0, len(text) - n)
        return text[s:s + n]
    return "".join(rng.choice(vocab) for _ in range(n))
post(window(L))  # warm
def lat(n, label, N, last=False):
    if N <= 0:
        return
    ts, cs, bad, c0, busy = [], [], 0, cpu(), 0.0
    for _ in range(N):
        c1, m1 = cpu(), cpu(True)
        st, dt, _ = post(window(n), last=last)
        bad += st != 200
        ts.append(dt)
        cs.append(cpu() - c1)
        busy += max(cpu(True) - m1, cs[-1] - (cpu(True) - m1))
    ts.sort(), cs.sort()
    q = lambda v, f: v[min(len(v) - 1, int(f * len(v)))]
    print(f"{label}: {N} requests, wall p50 {1e3 * q(ts, .5):.1f} ms, p99 {1e3 * q(ts, .99):.1f} ms, mean "
          f"{1e3 * statistics.mean(ts):.1f} ms, {bad} errors; server CPU per request p50 {1e3 * q(cs, .5):.0f} ms, "
          f"p99 {1e3 * q(cs, .99):.0f} ms, mean {1e3 * (cpu() - c0) / N:.1f} ms (clock ticks of 10 ms); the busier "
          f"of the compute thread and the others, mean {1e3 * busy / N:.1f} ms (the wall time on idle cores)")
lat(L, f"one window (one position, its window of L = {L} characters)", N, last=True)
lat(L, f"every position of L = {L} characters ({L} windows of 1..{L})", int(os.environ["N1"]))
passage = text[-200:] if text else window(200)
c0, m0 = cpu(), cpu(True)
NP = int(os.environ["PASSAGES"])
res = [post(passage) for _ in range(NP)]
pc, pm = (cpu() - c0) / NP, (cpu(True) - m0) / NP
ts = sorted(r[1] for r in res)
mh = json.loads(res[0][2])["mean_hellinger"] if res[0][0] == 200 else None
print(f"passage of 200 characters (200 positions), {NP} requests: min {ts[0]:.3f} s, median {ts[NP // 2]:.3f} s, "
      f"{ts[NP // 2] / 200 * 1e3:.1f} ms per position, server CPU {pc:.3f} s per passage (the busier of the "
      f"compute thread and the others {max(pm, pc - pm):.3f} s), mean H {mh}, "
      f"statuses {[r[0] for r in res]}")
counts, errs = [0, 0], [0, 0]
stop = time.time() + DURATION
def client(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    r = random.Random(100 + k)
    while time.time() < stop:
        s = r.randrange(0, len(text) - L) if text else 0
        try:
            st, _, _ = post(text[s:s + L] if text else window(L), c, last=True)
        except Exception:
            st = -1
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        counts[k] += 1
        errs[k] += st != 200
th = [threading.Thread(target=client, args=(k,)) for k in range(2)]
t0, c0 = time.time(), cpu()
for t in th: t.start()
for t in th: t.join()
dt = time.time() - t0
print(f"2 concurrent clients for {dt:.0f} s, one window of {L} characters each: {sum(counts)} requests, "
      f"{sum(counts) / dt:.2f} requests/s, {sum(errs)} errors; server CPU {1e3 * (cpu() - c0) / max(1, sum(counts)):.1f} "
      f"ms per request")
print(f"machine load average (1, 5, 15 min): {os.getloadavg()}; {os.cpu_count()} cores")
st = open(f"/proc/{pid}/status").read()
rss = {l.split(":")[0]: l.split(":")[1].strip() for l in st.splitlines() if l.startswith(("VmRSS", "VmHWM"))}
print(f"server RSS {rss['VmRSS']} (peak {rss['VmHWM']}); the held index and sketch count in it")
EOF
kill -TERM $pid
wait $pid && echo "serve: exit 0 after SIGTERM"

#!/usr/bin/python3
"""Tests of `corpuslens serve` (include/corpuslens/serve/serve.h, docs/serve.md): the real
server on --port 0 with a small model, corpus and index, called over HTTP (urllib only).

usage: serve_test.py MODE
  api      /api/explain equals `explain -o` for several texts (in the corpus, new, a
           passage; defaults, explicit thresholds and weights, the soft kernel): per
           position, the window of at most L characters ending there, explained alone
           (H and the model's probabilities bitwise, approximation, matches, similar
           strings and similarities, n-gram H, logit-lens H); mean H; a negative
           control (another text's explanation must not compare equal); /api/locate
           against the corpus text counted in Python; /api/info, the page's files;
           /api/health 503 while loading; SIGTERM ends it with exit 0
  limits   every bad input gets its status and a JSON error (413 body over the cap;
           400 text over the cap, invalid UTF-8, a character outside the vocabulary
           with its position, not JSON, unknown fields, bad lists; 404 unknown routes
           and paths that try to leave the page; 405 wrong methods; locate's bad
           arguments), and the server answers the same afterwards; 503 when the queue
           is full; 504 past the time limit; a warning when binding other than loopback
  load     4 clients x 200 requests on loopback (explain, locate, info, health): 0
           errors, every explain answer equal to the first one for its text; /metrics
           parses as Prometheus text and counts them; SIGTERM: exit 0 (leak-checked
           under ASan)
  threads  --compute-threads (the hooked blocks of one request split over threads): the
           same JSON bytes with 1, 2 and 5 threads (a passage with every position, one
           window, explicit thresholds with the soft kernel, top 0), on an index with
           the sketch (the threaded search); negative control: other thresholds give
           other bytes; 0 (the default: the online cores) and 65 (refused)
  browser  the page in Debian's chromium (headless, driven by puppeteer-core, pinned, installed
           by tests/serve/install_puppeteer.sh into $BUILD/npm-serve): /?text=..., hover and
           click a position: the panel shows the API's H to 4 decimals and one of its similar
           strings; locate; a screenshot in $BUILD/serve-screenshot.png. Skips (77) with the
           reason when chromium, node or the npm registry is missing
Environment: CORPUSLENS (binary), TESTDATA (tests/data), BUILD. Works in a temporary directory.
"""
import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import h5py
import numpy as np

EXE = os.environ.get("CORPUSLENS", "corpuslens")
TESTDATA = os.environ.get("TESTDATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
FAIL = []
H_EMPTY = -1.0


def check(cond, msg):
    if not cond:
        FAIL.append(msg)
        print("FAIL:", msg)
    return cond


def run(args, ok=True):
    p = subprocess.run([EXE] + args, capture_output=True, text=True, env=ENV)
    if ok and p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit("command failed: " + " ".join(args))
    return p


def setup(d, nchars=3000, L=6, layers=6):
    with open(os.path.join(TESTDATA, "tinyshakespeare.txt"), encoding="utf-8") as f:
        t = f.read()[:nchars]
    txt = os.path.join(d, "small.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(t)
    m, c, ix = (os.path.join(d, x) for x in ("m.h5", "c.h5", "i.h5"))
    run(["init", "--config", f"n_layer={layers},n_embd=32,n_head=4,block_size=16", "--vocab-from", txt, "--seed",
         "7", "-o", m])
    run(["prepare", txt, "--len", str(L), "--prompts", "24", "--seed", "3", "--vocab-from", m, "-o", c])
    run(["index", "--model", m, "--corpus", c, "--batch", "300", "-o", ix])
    return m, c, ix, t


class Server:
    def __init__(self, m, c, ix, extra=(), env=None):
        self.p = subprocess.Popen([EXE, "serve", "--index", ix, "--corpus", c, "--model", m, "--port", "0"] +
                                  list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=dict(ENV, **(env or {})))
        line = self.p.stdout.readline()
        mt = re.match(r"serve: listening on http://127\.0\.0\.1:(\d+)/$", line.strip())
        if not mt:
            self.p.kill()
            raise SystemExit(f"serve printed no port: {line!r} {self.p.stderr.read()}")
        self.port = int(mt.group(1))
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, limit=120):
        t0 = time.time()
        while time.time() - t0 < limit:
            if self.p.poll() is not None:
                raise SystemExit("serve exited while loading: " + self.p.stderr.read())
            st, _, _ = self.get("/api/health")
            if st == 200:
                return
            time.sleep(0.05)
        raise SystemExit("serve did not become ready")

    def req(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {},
                         encode_chunked="Transfer-Encoding" in (headers or {}))
            r = conn.getresponse()
            data = r.read()
            return r.status, dict(r.getheaders()), data
        finally:
            conn.close()

    def get(self, path):
        return self.req("GET", path)

    def explain(self, obj=None, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        st, h, data = self.req("POST", "/api/explain", body, {"Content-Type": "application/json"})
        return st, h, data

    def stop(self, expect=0):
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = "killed after 120 s"
        err = self.p.stderr.read()
        check(rc == expect, f"serve exit status {rc} after SIGTERM (expected {expect}): {err[-2000:]}")
        check("serve: stopped" in err, "serve did not say it stopped")
        return err


def escape(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def windows(text, L):
    return [text[max(0, i + 1 - L):i + 1] for i in range(len(text))]


def explain_cli(d, m, c, ix, texts, top, extra=()):
    pf, e = os.path.join(d, "w.txt"), os.path.join(d, "e.h5")
    with open(pf, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(escape(t) + "\n")
    run(["explain", "--index", ix, "--corpus", c, "--model", m, "--prompt-file", pf, "--top", str(top), "--quiet",
         "-o", e] + list(extra))
    with h5py.File(e) as f:
        return {k: f[k][()] for k in ("/hellinger", "/approx", "/model/probs", "/lens/probs", "/blocks/n_matches",
                                      "/blocks/near_threshold", "/matches/substring", "/matches/similarity",
                                      "/ngram/hellinger")} | (
                   {"/soft/hellinger": f["/soft/hellinger"][()]} if "/soft" in f else {})


def hellinger_df(p, q):
    """cl_hellinger_df (src/base/stats.c) in the same order of operations"""
    pos = lambda x: x if x > 0 else 0.0
    sp = sq = 0.0
    for a, b in zip(p, q):
        sp += pos(float(a))
        sq += pos(float(b))
    if not (sp > 0) or not (sq > 0):
        return H_EMPTY
    acc = 0.0
    for a, b in zip(p, q):
        dd = math.sqrt(pos(float(a)) / sp) - math.sqrt(pos(float(b)) / sq)
        acc += dd * dd
    h = math.sqrt(acc) / math.sqrt(2.0)
    return 1.0 if h > 1 else h


def hnull(x):
    return H_EMPTY if x is None else x


def compare(api, ref, vocab, text, label):
    """API answer vs explain -o of the windows; returns the number of mismatches"""
    bad = []
    stoi = {ch: i for i, ch in enumerate(vocab)}
    pos = api["positions"]
    if len(pos) != len(text):
        return [f"{label}: {len(pos)} positions for {len(text)} characters"]
    hs = []
    for i, p in enumerate(pos):
        h = hnull(p["hellinger"])
        if p["char"] != text[i] or p["next"] != (text[i + 1] if i + 1 < len(text) else None):
            bad.append(f"{label} {i}: char/next")
        if not (h == ref["/hellinger"][i]):
            bad.append(f"{label} {i}: H {h!r} vs explain {ref['/hellinger'][i]!r}")
        if h != H_EMPTY:
            hs.append(h)
        mp = ref["/model/probs"][i]
        for e in p["model"]:
            if np.float32(e["p"]) != mp[stoi[e["char"]]] or e["p"] != float(mp[stoi[e["char"]]]):
                bad.append(f"{label} {i}: model p({e['char']!r})")
        order = sorted(range(len(vocab)), key=lambda v: (-mp[v], v))[:len(p["model"])]
        if [stoi[e["char"]] for e in p["model"]] != order:
            bad.append(f"{label} {i}: model top order")
        ap = ref["/approx"][i]
        for e in p["approx"]:
            if e["p"] != ap[stoi[e["char"]]]:
                bad.append(f"{label} {i}: approx p({e['char']!r}) {e['p']} vs {ap[stoi[e['char']]]}")
        if h != H_EMPTY and len(p["approx"]) != min(10, int((ap > 0).sum())):
            bad.append(f"{label} {i}: approx list length")
        for b, blk in enumerate(p["blocks"]):
            if blk["matches"] != ref["/blocks/n_matches"][i, b] or blk["near_threshold"] != \
                    ref["/blocks/near_threshold"][i, b]:
                bad.append(f"{label} {i} block {b}: matches")
            subs = [int(x) for x in ref["/matches/substring"][i, b] if x >= 0]
            if [s["substring"] for s in blk["similar"]] != subs:
                bad.append(f"{label} {i} block {b}: similar strings {[s['substring'] for s in blk['similar']]} "
                           f"vs {subs}")
            for k, s in enumerate(blk["similar"]):
                if k < len(subs) and float(s["similarity"]) != float(ref["/matches/similarity"][i, b, k]):
                    bad.append(f"{label} {i} block {b}: similarity {k}")
        if not (hnull(p["ngram_hellinger"]) == ref["/ngram/hellinger"][i]):
            bad.append(f"{label} {i}: n-gram H {p['ngram_hellinger']} vs {ref['/ngram/hellinger'][i]}")
        lens = ref["/lens/probs"][i]
        for l, e in enumerate(p["lens"]):
            if not (e["hellinger"] == hellinger_df(lens[l], mp)):
                bad.append(f"{label} {i}: lens H block {l}")
        if "/soft/hellinger" in ref and not (hnull(p.get("soft_hellinger")) == ref["/soft/hellinger"][i]):
            bad.append(f"{label} {i}: soft H")
    mean = sum(hs) / len(hs) if hs else None
    if api["mean_hellinger"] != mean:
        bad.append(f"{label}: mean H {api['mean_hellinger']} vs {mean}")
    return bad


def test_api():
    with tempfile.TemporaryDirectory() as d:
        m, c, ix, corpus = setup(d)
        with h5py.File(m) as f:
            vocab = [v.decode() if isinstance(v, bytes) else v for v in f["/vocab"][()]]
        vocab = [v.rstrip("\0") for v in vocab]
        srv = Server(m, c, ix, env={"CORPUSLENS_SERVE_TEST_LOAD_DELAY": "1.5"})
        st, _, body = srv.get("/api/health")
        check(st == 503 and json.loads(body)["status"] == "loading", f"/api/health while loading: {st} {body!r}")
        st, _, body = srv.explain({"text": "First"})
        check(st == 503 and "error" in json.loads(body), f"/api/explain while loading: {st}")
        srv.wait_ready()
        try:
            L = 6
            texts = {
                "in-corpus window": corpus[100:106],
                "in-corpus, short": corpus[7:10],
                "new": "Speak not, good citizen; we know.",
                "passage": corpus[200:260] + "\nSome new words, some citizen's.",
            }
            n_eq = 0
            answers = {}
            for label, text in texts.items():
                top = 4
                st, _, body = srv.explain({"text": text, "top": top})
                if not check(st == 200, f"{label}: status {st} {body[:300]!r}"):
                    continue
                api = json.loads(body)
                answers[label] = api
                ref = explain_cli(d, m, c, ix, windows(text, L), top)
                bad = compare(api, ref, vocab, text, label)
                for b in bad[:10]:
                    check(False, b)
                n_eq += not bad
                print(f"{label}: {len(text)} positions equal to explain -o of each window (mean H "
                      f"{api['mean_hellinger']}, {api['n_empty']} empty)")
            check(n_eq == len(texts), "not every text equal")
            # "positions": "last": one window, equal to the same position of the full answer
            for label in ("in-corpus window", "in-corpus, short", "passage"):
                text, full = texts[label], answers.get(label)
                st, _, body = srv.explain({"text": text, "top": 4, "positions": "last"})
                if not check(st == 200 and full, f"positions last, {label}: {st} {body[:300]!r}"):
                    continue
                one = json.loads(body)
                check([p["position"] for p in full["positions"]] == list(range(len(text))), f"{label}: position fields")
                check(one["first"] == len(text) - 1 and one["n"] == 1 and len(one["positions"]) == 1 and
                      one["positions"][0] == full["positions"][-1],
                      f"positions last, {label}: not the last position of the full answer")
                check(one["mean_hellinger"] == full["positions"][-1]["hellinger"], f"positions last, {label}: mean H")
                # negative control: another position of the full answer differs from it
                check(one["positions"][0] != full["positions"][-2], f"positions last, {label}: negative control")
            print("positions \"last\": equal to the last position of the full answer")
            st, _, body = srv.explain({"text": "First", "positions": "first"})
            check(st == 400 and "positions" in json.loads(body)["error"], f"positions \"first\": {st} {body!r}")
            # explicit thresholds/weights and the soft kernel
            text = texts["passage"]
            thr, w = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75], [1, 0.5, 2, 1, 0, 3]
            st, _, body = srv.explain({"text": text, "thresholds": thr, "weights": w, "top": 3, "soft": True})
            if check(st == 200, f"thresholds+soft: {st} {body[:300]!r}"):
                api = json.loads(body)
                ref = explain_cli(d, m, c, ix, windows(text, L), 3,
                                  ["--thresholds", ",".join(map(str, thr)), "--weights", ",".join(map(str, w)),
                                   "--soft"])
                bad = compare(api, ref, vocab, text, "thresholds+soft")
                for b in bad[:10]:
                    check(False, b)
                print(f"thresholds + soft kernel: {'equal' if not bad else 'DIFFERENT'}")
                # negative control: the default thresholds' answer must not compare equal
                neg = compare(answers["passage"], ref, vocab, text, "negative control")
                check(len(neg) > 0, "negative control: the default thresholds' answer compared equal")
                print(f"negative control: {len(neg)} differences found")
            # the same text twice: the same bytes (no state changes)
            a1 = srv.explain({"text": texts["new"], "top": 4})[2]
            check(json.dumps(json.loads(a1)) == json.dumps(answers["new"]), "a repeated request answered differently")
            # locate: against the corpus text
            with h5py.File(c) as f:
                toks = f["/substrings/tokens"][()]
            for sub in (0, 3, 57, len(toks) - 1):
                s = "".join(vocab[t] for t in toks[sub])
                occ = [i for i in range(len(corpus) - L + 1) if corpus[i:i + L] == s]
                st, _, body = srv.get(f"/api/locate?substring={sub}&context=7&max=3")
                if not check(st == 200, f"locate {sub}: {st}"):
                    continue
                j = json.loads(body)
                check(j["text"] == s and j["total"] == len(occ) and j["returned"] == min(3, len(occ)),
                      f"locate {sub}: {j['text']!r} total {j['total']} vs {len(occ)}")
                for o, p in zip(j["occurrences"], occ):
                    check(o["offset"] == p and o["match"] == s and o["before"] == corpus[max(0, p - 7):p] and
                          o["after"] == corpus[p + L:p + L + 7], f"locate {sub}: occurrence at {p}")
            print("locate: occurrences, totals and context equal to the corpus text's")
            # info and the page
            st, _, body = srv.get("/api/info")
            info = json.loads(body) if st == 200 else {}
            check(st == 200 and info["index"]["L"] == L and info["model"]["vocab"] == vocab and
                  len(info["thresholds"]) == 6 and info["limits"]["max_chars"] == 1000, "/api/info")
            for path, kind, needle in (("/", "text/html", b"/app.js"), ("/app.js", "text/javascript", b"/api/explain"),
                                       ("/style.css", "text/css", b".passage")):
                st, h, body = srv.get(path)
                check(st == 200 and h.get("Content-Type", "").startswith(kind) and needle in body,
                      f"{path}: {st} {h.get('Content-Type')}")
                src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "serve", "page",
                                   "index.html" if path == "/" else path[1:])
                check(open(src, "rb").read() == body, f"{path}: not the file src/serve/page/{path}")
        finally:
            srv.stop()


def err_ok(st, body, want, label, position=None):
    try:
        j = json.loads(body)
    except ValueError:
        j = {}
    ok = check(st == want and isinstance(j.get("error"), str), f"{label}: status {st} (want {want}), body {body[:200]!r}")
    if ok and position is not None:
        check(j.get("position") == position, f"{label}: position {j.get('position')} (want {position})")
    return ok


def test_limits():
    with tempfile.TemporaryDirectory() as d:
        m, c, ix, corpus = setup(d)
        srv = Server(m, c, ix, ["--max-body", "2048", "--max-chars", "50"])
        srv2 = Server(m, c, ix)
        srv.wait_ready()
        srv2.wait_ready()
        try:
            good = srv.explain({"text": corpus[:20], "top": 2})
            check(good[0] == 200, "the first explain")
            cases = [
                ("body over --max-body", lambda: srv.explain(raw=b'{"text":"' + b"a" * 4000 + b'"}'), 413, None),
                ("body over --max-body, chunked",
                 lambda: srv.req("POST", "/api/explain", iter([b'{"text":"', b"a" * 3000, b'"}']),
                                 {"Transfer-Encoding": "chunked"}), 413, None),
                ("text over --max-chars", lambda: srv.explain({"text": corpus[:51]}), 400, 50),
                ("invalid UTF-8", lambda: srv.explain(raw=b'{"text":"Fir\xffst"}'), 400, 12),
                ("truncated UTF-8", lambda: srv.explain(raw=b'{"text":"Fir\xc3"}'), 400, 12),
                ("a character outside the vocabulary", lambda: srv.explain({"text": "First \u00e9t\u00e9"}), 400, 6),
                ("a control character outside the vocabulary", lambda: srv.explain({"text": "ab\u0001"}), 400, 2),
                ("empty text", lambda: srv.explain({"text": ""}), 400, None),
                ("not JSON", lambda: srv.explain(raw=b'{"text": "abc"'), 400, None),
                ("not an object", lambda: srv.explain(raw=b'["abc"]'), 400, None),
                ("no text", lambda: srv.explain({"top": 3}), 400, None),
                ("text not a string", lambda: srv.explain({"text": 5}), 400, None),
                ("unknown field", lambda: srv.explain({"text": "abc", "thresholdz": [1]}), 400, None),
                ("thresholds without weights", lambda: srv.explain({"text": "abc", "thresholds": [0.5] * 6}), 400, None),
                ("wrong number of thresholds",
                 lambda: srv.explain({"text": "abc", "thresholds": [0.5] * 5, "weights": [1] * 5}), 400, None),
                ("a threshold not a number",
                 lambda: srv.explain({"text": "abc", "thresholds": ["x"] * 6, "weights": [1] * 6}), 400, None),
                ("top out of range", lambda: srv.explain({"text": "abc", "top": 51}), 400, None),
                ("top negative", lambda: srv.explain({"text": "abc", "top": -1}), 400, None),
                ("similar strings over the answer's cap (700 positions x 6 blocks x top 50 > 200,000)",
                 lambda: srv2.explain({"text": corpus[:700], "top": 50}), 400, None),
                ("soft not a boolean", lambda: srv.explain({"text": "abc", "soft": 1}), 400, None),
                ("a NUL in the text", lambda: srv.explain(raw=b'{"text":"ab\\u0000c"}'), 400, None),
                ("a lone surrogate", lambda: srv.explain(raw=b'{"text":"ab\\ud800c"}'), 400, None),
                ("duplicate keys", lambda: srv.explain(raw=b'{"text":"ab","text":"cd"}'), 400, None),
                ("unknown route", lambda: srv.get("/api/nothing"), 404, None),
                ("a path out of the page", lambda: srv.get("/../../../etc/passwd"), 404, None),
                ("an encoded path out of the page", lambda: srv.get("/%2e%2e/%2e%2e/etc/passwd"), 404, None),
                ("a source file's name", lambda: srv.get("/serve_http.c"), 404, None),
                ("index.html by name", lambda: srv.get("/index.html"), 404, None),
                ("GET /api/explain", lambda: srv.get("/api/explain"), 405, None),
                ("POST /api/info", lambda: srv.req("POST", "/api/info", b"{}"), 405, None),
                ("DELETE /", lambda: srv.req("DELETE", "/"), 405, None),
                ("PUT /api/explain", lambda: srv.req("PUT", "/api/explain", b'{"text":"abc"}'), 405, None),
                ("locate without substring", lambda: srv.get("/api/locate"), 400, None),
                ("locate substring not a number", lambda: srv.get("/api/locate?substring=abc"), 400, None),
                ("locate substring negative", lambda: srv.get("/api/locate?substring=-1"), 400, None),
                ("locate substring out of range", lambda: srv.get("/api/locate?substring=99999999"), 404, None),
                ("locate context over the cap", lambda: srv.get("/api/locate?substring=1&context=201"), 400, None),
                ("locate max over the cap", lambda: srv.get("/api/locate?substring=1&max=51"), 400, None),
            ]
            for label, fn, want, pos in cases:
                st, h, body = fn()
                if err_ok(st, body, want, label, pos) and want == 405:
                    check("Allow" in h, f"{label}: no Allow header")
                print(f"{label}: {st}")
            # the server still answers, and answers the same
            st, _, body = srv.get("/api/health")
            check(st == 200, "health after the bad inputs")
            again = srv.explain({"text": corpus[:20], "top": 2})
            check(again[0] == 200 and again[2] == good[2], "an explain after the bad inputs answers differently")
            st, _, body = srv.get("/metrics")
            check(re.search(r'corpuslens_http_requests_total\{route="/api/explain",status="413"\} 2\b',
                            body.decode()) is not None, "/metrics does not count the two 413")
        finally:
            srv.stop()
            srv2.stop()
        # 503 when the queue is full; 504 past the time limit. A passage of 300
        # characters keeps the compute thread busy while more requests come.
        long_text = corpus[:300]
        # (a generous --timeout: the queued passage waits for the first one, and
        # under ASan on a busy machine that wait passed the default limit: a 504
        # there is the time limit's business, checked below, not the queue's)
        srv = Server(m, c, ix, ["--queue", "1", "--threads", "8", "--timeout", "600"])
        srv.wait_ready()
        try:
            res = []

            def one():
                res.append(srv.explain({"text": long_text, "top": 10})[0])
            th = [threading.Thread(target=one) for _ in range(8)]
            for t in th:
                t.start()
            for t in th:
                t.join()
            print(f"8 concurrent passages, --queue 1: statuses {sorted(res)}")
            check(res.count(503) >= 1 and res.count(200) >= 2 and res.count(200) + res.count(503) == 8,
                  f"--queue 1: statuses {sorted(res)}")
            st, _, body = srv.get("/api/locate?substring=1")
            check(st == 200, "locate after the busy burst")
        finally:
            srv.stop()
        srv = Server(m, c, ix, ["--timeout", "0.002"])
        srv.wait_ready()
        try:
            st, _, body = srv.explain({"text": long_text})
            err_ok(st, body, 504, "--timeout 0.002, a 300-character passage")
            st, _, _ = srv.get("/api/health")
            check(st == 200, "health after a 504")
            time.sleep(1)  # the discarded computation ends
            st, _, body = srv.get("/metrics")
            check(re.search(r"corpuslens_timed_out_total 1\b", body.decode()) is not None, "timed_out_total")
        finally:
            srv.stop()
        # a non-loopback address: a warning (0.0.0.0 binds every interface; it is stopped at once)
        p = subprocess.Popen([EXE, "serve", "--index", ix, "--corpus", c, "--model", m, "--port", "0", "--host",
                              "0.0.0.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        p.stdout.readline()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        check("WARNING" in err and "not loopback" in err, "no warning when binding 0.0.0.0")
        check(p.returncode == 0, f"serve --host 0.0.0.0: exit {p.returncode}")
        # --thresholds/--weights: the requests' defaults
        thr, w = "0.5,0.55,0.6,0.65,0.7,0.75", "1,0.5,2,1,0,3"
        srv = Server(m, c, ix, ["--thresholds", thr, "--weights", w])
        srv.wait_ready()
        try:
            a = srv.explain({"text": corpus[:30], "top": 3})
            b = srv.explain({"text": corpus[:30], "top": 3, "thresholds": [float(x) for x in thr.split(",")],
                             "weights": [float(x) for x in w.split(",")]})
            p = srv.explain({"text": corpus[:30], "top": 3, "thresholds": [0.95, 0.94, 0.85, 0.76, 0.72, 0.74],
                             "weights": [0.01, 0.01, 0.1, 1.5, 6, 0.01]})
            check(a[0] == 200 and a[2] == b[2], "--thresholds/--weights are not the requests' defaults")
            check(p[0] == 200 and p[2] != a[2], "negative control: the paper's thresholds answer the same")
            info = json.loads(srv.get("/api/info")[2])
            check(info["weights"] == [float(x) for x in w.split(",")], "/api/info: weights")
        finally:
            srv.stop()
        # under mpirun with 2 ranks: refused (one server, on one process)
        if shutil.which("mpirun"):
            r = subprocess.run(["mpirun", "-n", "2", "--oversubscribe", EXE, "serve", "--index", ix, "--corpus", c,
                                "--model", m, "--port", "0"], capture_output=True, text=True, timeout=120,
                               env=dict(ENV, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"))
            check(r.returncode != 0 and "one process" in r.stderr, f"serve under mpirun -n 2: exit {r.returncode}")
        # refusals at start-up
        for args, needle in ((["--host", "localhost"], "numeric"), (["--port", "70000"], "out of range"),
                             (["--queue", "0"], "out of range"),
                             (["--thresholds", "0.5,0.5", "--weights", "1,1"], "6 hooked blocks"),
                             (["--thresholds", "0.5,0.5"], "go together"),
                             (["--text", os.path.join(d, "m.h5")], "not the text")):
            r = run(["serve", "--index", ix, "--corpus", c, "--model", m] + args, ok=False)
            check(r.returncode != 0 and needle in r.stderr, f"serve {args}: exit {r.returncode} {r.stderr!r}")


PROM = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,|(?=\})))*\})? '
                  r'(-?[0-9.eE+-]+|\+Inf|NaN)$')


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        if not PROM.match(line):
            raise ValueError(f"not Prometheus text: {line!r}")
        k, v = line.rsplit(" ", 1)
        out[k] = float(v)
    return out


def test_load():
    with tempfile.TemporaryDirectory() as d:
        m, c, ix, corpus = setup(d)
        srv = Server(m, c, ix, env={"ASAN_OPTIONS": "detect_leaks=1"})
        srv.wait_ready()
        texts = [corpus[i:i + 8] for i in range(0, 80, 10)] + ["Speak, know!", "citizen"]
        first = {t: srv.explain({"text": t, "top": 2})[2] for t in texts}
        errors, counts = [], {"explain": 0, "other": 0}
        lock = threading.Lock()

        def client(k):
            for r in range(200):
                kind = (k + r) % 5
                try:
                    if kind < 3:
                        t = texts[(k * 7 + r) % len(texts)]
                        st, _, body = srv.explain({"text": t, "top": 2})
                        ok = st == 200 and body == first[t]
                        name = "explain"
                    elif kind == 3:
                        st, _, body = srv.get(f"/api/locate?substring={(k * 31 + r) % 500}&context=5&max=3")
                        ok = st == 200 and "occurrences" in json.loads(body)
                        name = "other"
                    else:
                        st, _, body = srv.get("/api/info" if r % 2 else "/api/health")
                        ok = st == 200
                        name = "other"
                except Exception as e:  # noqa: BLE001 - any failure is an error here
                    ok, st, name = False, repr(e), "other"
                with lock:
                    counts[name] += 1
                    if not ok:
                        errors.append((k, r, st))
        t0 = time.time()
        th = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        dt = time.time() - t0
        print(f"4 clients x 200 requests in {dt:.1f} s: {counts}, {len(errors)} errors")
        check(not errors, f"errors under load: {errors[:5]}")
        st, h, body = srv.get("/metrics")
        try:
            mt = parse_metrics(body.decode())
        except ValueError as e:
            mt = {}
            check(False, str(e))
        check(h.get("Content-Type", "").startswith("text/plain"), "/metrics content type")
        n_explain = mt.get('corpuslens_http_requests_total{route="/api/explain",status="200"}', 0)
        check(n_explain == counts["explain"] + len(texts), f"/metrics counts {n_explain} explains, "
              f"{counts['explain'] + len(texts)} made")
        total = sum(v for k, v in mt.items() if k.startswith("corpuslens_http_requests_total"))
        check(mt.get("corpuslens_http_request_duration_seconds_count") == total and
              mt.get('corpuslens_http_request_duration_seconds_bucket{le="+Inf"}') == total,
              "the histogram's count is not the number of requests")
        check(mt.get("corpuslens_http_requests_in_flight") == 1, "in flight (this /metrics request itself)")
        check(mt.get("corpuslens_ready") == 1, "ready")
        print(f"/metrics: {len(mt)} samples, {int(total)} requests counted")
        srv.stop()


def test_threads():
    with tempfile.TemporaryDirectory() as d:
        m, c, ix, corpus = setup(d)
        srvs = {}
        try:
            for n in (1, 2, 5, 0):
                srvs[n] = Server(m, c, ix, ["--compute-threads", str(n)])
            for s in srvs.values():
                s.wait_ready()
            st, _, body = srvs[1].get("/api/info")
            check(st == 200 and json.loads(body)["index"]["sketch"], "the test index has no sketch: the threaded "
                  "search is not exercised")
            thr, w = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75], [1, 0.5, 2, 1, 0, 3]
            reqs = {
                "passage": {"text": corpus[200:260] + "\nSome new words, some citizen's.", "top": 5},
                "one window": {"text": corpus[100:106], "top": 10, "positions": "last"},
                "new text": {"text": "Speak not, good citizen; we know.", "top": 3},
                "thresholds + soft": {"text": corpus[300:340], "thresholds": thr, "weights": w, "top": 4,
                                      "soft": True},
                "top 0": {"text": corpus[400:430], "top": 0},
            }
            ref = {}
            for label, rq in reqs.items():
                st, _, body = srvs[1].explain(rq)
                if not check(st == 200, f"{label}, 1 thread: {st} {body[:300]!r}"):
                    continue
                ref[label] = body
                j = json.loads(body)
                check(any(b["matches"] > 0 for p in j["positions"] for b in p["blocks"]),
                      f"{label}: no block matched anything (the comparison would be weak)")
                for n in (2, 5, 0):
                    st, _, b2 = srvs[n].explain(rq)
                    check(st == 200 and b2 == body, f"{label}: {n} compute threads answered other bytes than 1 "
                                                    f"({st}, {len(b2)} vs {len(body)} bytes)")
            print(f"{len(ref)} requests: the same bytes with 1, 2, 5 and the default compute threads")
            # negative control: the comparison sees a change in one block's threshold
            rq = dict(reqs["thresholds + soft"], thresholds=thr[:5] + [0.9])
            st, _, body = srvs[2].explain(rq)
            check(st == 200 and body != ref.get("thresholds + soft"), "negative control: another threshold of the "
                  "last block gave the same bytes")
        finally:
            for s in srvs.values():
                s.stop()
    p = run(["serve", "--index", ix, "--corpus", c, "--model", m, "--compute-threads", "65"], ok=False)
    check(p.returncode != 0 and "compute-threads" in p.stderr, f"--compute-threads 65 accepted: {p.returncode} "
          f"{p.stderr[-300:]!r}")


def test_browser():
    here = os.path.dirname(os.path.abspath(__file__))
    build = os.path.abspath(os.environ.get("BUILD", "build"))
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        print(f"SKIP: {chromium} not found (Debian: apt install chromium; CI installs it)")
        sys.exit(77)
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        print("SKIP: node not installed (Debian: nodejs)")
        sys.exit(77)
    npm_dir = os.path.join(build, "npm-serve")
    r = subprocess.run([os.path.join(here, "serve", "install_puppeteer.sh"), npm_dir], capture_output=True, text=True)
    if r.returncode != 0:
        print("SKIP:", r.stderr.strip() or "puppeteer-core could not be installed")
        sys.exit(77)
    with tempfile.TemporaryDirectory() as d:
        m, c, ix, corpus = setup(d)
        srv = Server(m, c, ix)
        srv.wait_ready()
        try:
            text = corpus[200:280]
            st, _, body = srv.explain({"text": text, "top": 5})
            check(st == 200, "explain")
            api = json.loads(body)
            # a position with an approximation and similar strings, past the first window
            cand = [i for i, p in enumerate(api["positions"]) if i >= 8 and p["hellinger"] is not None and
                    any(b["similar"] for b in p["blocks"])]
            check(bool(cand), "no position with similar strings")
            i = cand[len(cand) // 2]
            p = api["positions"][i]
            sims = [s["text"].replace("\n", "\u21b5").replace("\t", "\u21e5") for b in p["blocks"]
                    for s in b["similar"]]
            shot = os.path.join(build, "serve-screenshot.png")
            env = dict(ENV, PUPPETEER_DIR=os.path.join(npm_dir, "node_modules"), CHROMIUM=chromium,
                       URL=f"{srv.base}/?text={urllib.parse.quote(text)}", POS=str(i),
                       WANT_H=f"{p['hellinger']:.4f}", WANT_MEAN=f"{api['mean_hellinger']:.4f}",
                       WANT_SIMILAR=json.dumps(sims), SCREENSHOT=shot, PROFILE=os.path.join(d, "profile"))
            r = subprocess.run([node, os.path.join(here, "serve", "browser_test.mjs")], capture_output=True,
                               text=True, env=env, timeout=300)
            print(r.stdout.strip())
            if r.returncode != 0:
                print(r.stderr[-3000:])
            check(r.returncode == 0, "the browser test failed")
            check(os.path.getsize(shot) > 10000 if os.path.exists(shot) else False, "no screenshot")
        finally:
            srv.stop()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    {"api": test_api, "limits": test_limits, "load": test_load, "threads": test_threads,
     "browser": test_browser}[mode]()
    if FAIL:
        print(f"{len(FAIL)} failures")
        sys.exit(1)
    print("ok")

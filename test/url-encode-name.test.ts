import t from 'tap';
import { urlEncodeName } from '../lib/list-xml';

// What a listing asked for with encoding-type=url writes for each name
// (minio-go, and so Tempo and Loki, and the AWS CLI always ask for it).

const UNRESERVED = /^[A-Za-z0-9\-_.~/]$/;

t.test('each ASCII character is itself when unreserved, else %XX in upper case', async (t) => {
  const wrong: string[] = [];
  for (let b = 0; b < 0x80; b++) {
    const ch = String.fromCharCode(b);
    const expected = UNRESERVED.test(ch) ? ch : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    const out = urlEncodeName(`a${ch}b`);
    if (out !== `a${expected}b`) wrong.push(`0x${b.toString(16)}: ${JSON.stringify(out)}`);
  }
  t.same(wrong, []);
});

t.test('every other character is its UTF-8 bytes, each %XX', async (t) => {
  t.equal(urlEncodeName('é€😀\uFEFF'), '%C3%A9%E2%82%AC%F0%9F%98%80%EF%BB%BF');
  t.equal(urlEncodeName('tenant/a b+c%d'), 'tenant/a%20b%2Bc%25d');
  const wrong: string[] = [];
  for (let c = 0x80; c <= 0xffff; c++) {
    if (c >= 0xd800 && c <= 0xdfff) continue;
    const s = `x/${String.fromCharCode(c)}`;
    const out = urlEncodeName(s);
    if (!/^x\/(%[0-9A-F]{2})+$/.test(out) || decodeURIComponent(out) !== s) wrong.push(`U+${c.toString(16)}: ${out}`);
  }
  t.same(wrong, []);
});

t.test('a name with nothing to encode is the same string; given bytes agree with the name', async (t) => {
  const s = 'single-tenant/0b4f2a1e-3c5d-4e6f-8a9b-0c1d2e3f4a5b/data.parquet';
  t.equal(urlEncodeName(s), s);
  t.equal(urlEncodeName(''), '');
  for (const name of ['a b', 'x/é/😀', s]) t.equal(urlEncodeName(name, Buffer.from(name, 'utf8')), urlEncodeName(name));
});

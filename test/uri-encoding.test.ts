import t from 'tap';
import { encodePath, encodeQuery, encodeQueryComponent } from '../lib/sigv4';

// SigV4's URI encoding: the paths and query values of every backend request,
// and the names of a listing asked for with encoding-type=url (minio-go, and
// so Tempo and Loki, and the AWS CLI always ask for it).

const UNRESERVED = /^[A-Za-z0-9\-_.~/]$/;

t.test('each ASCII character is itself when unreserved, else %XX in upper case', async (t) => {
  const wrong: string[] = [];
  for (let b = 0; b < 0x80; b++) {
    const ch = String.fromCharCode(b);
    const expected = UNRESERVED.test(ch) ? ch : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    const out = encodePath(`a${ch}b`);
    if (out !== `a${expected}b`) wrong.push(`0x${b.toString(16)}: ${JSON.stringify(out)}`);
  }
  t.same(wrong, []);
});

t.test('every other character is its UTF-8 bytes, each %XX', async (t) => {
  t.equal(encodePath('é€😀\uFEFF'), '%C3%A9%E2%82%AC%F0%9F%98%80%EF%BB%BF');
  t.equal(encodePath('tenant/a b+c%d'), 'tenant/a%20b%2Bc%25d');
  const wrong: string[] = [];
  for (let c = 0x80; c <= 0xffff; c++) {
    if (c >= 0xd800 && c <= 0xdfff) continue;
    const s = `x/${String.fromCharCode(c)}`;
    const out = encodePath(s);
    if (!/^x\/(%[0-9A-F]{2})+$/.test(out) || decodeURIComponent(out) !== s) wrong.push(`U+${c.toString(16)}: ${out}`);
  }
  t.same(wrong, []);
});

t.test('a name with nothing to encode is the same string; given bytes agree with the name', async (t) => {
  const s = 'single-tenant/0b4f2a1e-3c5d-4e6f-8a9b-0c1d2e3f4a5b/data.parquet';
  t.equal(encodePath(s), s);
  t.equal(encodePath(''), '');
  for (const name of ['a b', 'x/é/😀', s]) t.equal(encodePath(name, Buffer.from(name, 'utf8')), encodePath(name));
});

t.test('a query component encodes `/` too; a query is its pairs in order', async (t) => {
  const wrong: string[] = [];
  for (let b = 0; b < 0x80; b++) {
    const ch = String.fromCharCode(b);
    const expected = UNRESERVED.test(ch) && ch !== '/' ? ch : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    if (encodeQueryComponent(`a${ch}b`) !== `a${expected}b`) wrong.push(`0x${b.toString(16)}`);
  }
  t.same(wrong, []);
  t.equal(encodeQueryComponent('ü/日'), '%C3%BC%2F%E6%97%A5');
  t.equal(encodeQuery([['prefix', 'a b/'], ['max-keys', '10']]), 'prefix=a%20b%2F&max-keys=10');
});

import t from 'tap';
import sax from 'sax';
import { Readable } from 'node:stream';
import { feed } from '../lib/xml-feed';
import { parseDeleteRequest } from '../lib/delete-objects';
import { mergeListing, parseListRequest } from '../lib/list-merge';

// sax costs the square of a `<!` declaration's length; feed() stops one that
// outgrows every valid declaration, and leaves every valid document alone.

const JUNK = 64 * 1024;

t.test('a long <! declaration stops within a slice of its start, through the error handler', async (t) => {
  const parser = sax.parser(true);
  const seen: string[] = [];
  parser.onerror = (err) => { seen.push(err.message); };
  const prefix = '<Delete><Object><Key>a</Key></Object><!';
  t.throws(() => feed(parser, prefix + 'f'.repeat(JUNK) + '>'), /longer than any XML declaration/);
  t.same(seen, ['a <! declaration longer than any XML declaration']);
  // sax counts the characters it has read: it never went through the junk.
  t.ok(parser.position <= prefix.length + 2048, `stopped at ${parser.position} of ${prefix.length + JUNK + 1}`);
});

t.test('valid documents read the same fed in slices: CDATA, comments, a DOCTYPE, long text', async (t) => {
  const cdata = 'x<!y]'.repeat(1000);
  const comment = ' <!not a declaration> '.repeat(200);
  const text = 'long text &amp; more '.repeat(500);
  const xml = `<?xml version="1.0"?><!DOCTYPE Delete><Delete><!--${comment}--><A><![CDATA[${cdata}]]></A><B>${text}</B></Delete>`;
  const events = (write: (p: sax.SAXParser) => void): string[] => {
    const p = sax.parser(true);
    const out: string[] = [];
    let pending = '';
    p.onopentag = (tag) => { out.push(`<${tag.name}>`); };
    p.ontext = (s) => { pending += s; };
    p.oncdata = (s) => { pending += `[${s}]`; };
    p.oncomment = (s) => { out.push(`comment ${s.length}`); };
    p.onclosetag = (name) => { out.push(pending, `</${name}>`); pending = ''; };
    p.onerror = (err) => { throw err; };
    write(p);
    p.close();
    return out;
  };
  const whole = events((p) => p.write(xml));
  t.same(events((p) => feed(p, xml)), whole);
  t.ok(whole.includes(`[${cdata}]`) && whole.includes('long text & more '.repeat(500)), 'the long pieces are all there');
});

t.test('DeleteObjects refuses such a body as MalformedXML', async (t) => {
  const xml = '<?xml version="1.0"?><Delete><Object><Key>a</Key></Object><Object><Key><![CDAT' + 'f'.repeat(JUNK) + '</Key></Object></Delete>';
  t.throws(() => parseDeleteRequest(xml), { code: 'MalformedXML' });
});

t.test('a backend listing with one is BadGateway', async (t) => {
  const page = '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><IsTruncated>false</IsTruncated>' +
    '<EncodingType>url</EncodingType><!' + 'f'.repeat(JUNK) + '></ListBucketResult>';
  const req = parseListRequest('v2', 'b', new URLSearchParams());
  const listing = mergeListing(req, [async () => Readable.from([Buffer.from(page)])], new AbortController().signal);
  await t.rejects(async () => { for await (const _ of listing) { /* drained */ } }, { code: 'BadGateway' });
});

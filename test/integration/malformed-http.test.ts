import t from 'tap';
import { connect } from 'node:net';
import { request } from 'undici';
import { startStack } from '../helpers/stack';

// Requests Node cannot parse, and query strings that repeat a parameter:
// each gets the answer S3 would give, as S3 XML.

function raw(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(text));
    let out = '';
    s.on('data', (d) => { out += d; });
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

t.test('malformed HTTP and repeated parameters', async (t) => {
  const stack = await startStack(t);
  const port = Number(new URL(stack.endpoint).port);
  const garbage = await raw(port, 'NOT HTTP AT ALL\r\n\r\n');
  t.match(garbage, /^HTTP\/1\.1 400 /);
  t.match(garbage, '<Code>InvalidRequest</Code>');
  const badHeader = await raw(port, 'GET /proxy-bucket/x HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n');
  t.match(badHeader, /^HTTP\/1\.1 400 /);
  t.match(badHeader, '<Code>InvalidRequest</Code>');

  const put = await request(`${stack.endpoint}/proxy-bucket/t/b/x`, { method: 'PUT', body: 'x' });
  await put.body.dump();
  const twice = await request(`${stack.endpoint}/proxy-bucket/t/b/x?tagging&tagging=`);
  t.equal(twice.statusCode, 200, 'a repeated sub-resource counts once');
  t.match(await twice.body.text(), '<Tagging');
});

import t from 'tap';
import { request } from 'undici';
import { startStack } from '../helpers/stack';

// Every answer carries its own request id, shaped like S3's (16 upper-case
// hex digits), and an error body names the same id as the header.

t.test('request ids are distinct and match the error body', async (t) => {
  const stack = await startStack(t);
  const ids = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const r = await request(`${stack.endpoint}/proxy-bucket/tenant/missing-${i}`);
    const body = await r.body.text();
    const id = r.headers['x-amz-request-id'];
    t.equal(typeof id, 'string');
    if (typeof id !== 'string') continue;
    if (!/^[0-9A-F]{16}$/.test(id)) t.fail(`request id ${id} is not 16 upper-case hex digits`);
    t.equal(/<RequestId>([^<]*)<\/RequestId>/.exec(body)?.[1], id, 'the error body names the header\'s id');
    ids.add(id);
  }
  t.equal(ids.size, 200, 'no id is given twice');
});

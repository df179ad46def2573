import t from 'tap';
import type { Test } from 'tap';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import aws4 from 'aws4';
import { startMinio, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';
import { startWorkers } from '../helpers/workers';
import { encodeListToken } from '../../lib/list-merge';
import { handoffSocket } from '../../lib/handoff';

// With --workers, a listing paged over new connections (as Go's HTTP client
// may well do) is continued by the worker that holds it, whichever worker
// the client reaches; each page is logged and counted once; a token naming a
// worker that is gone is served where it lands, and so is every page when
// the workers cannot make their sockets.

const creds = { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD };
const KEYS = Array.from({ length: 30 }, (_, i) => `tenant/b${String(i).padStart(2, '0')}/meta.json`);

const worker = (r: { headers: Record<string, string | string[] | undefined> }) =>
  // Request ids begin with the answering process's own prefix.
  String(r.headers['x-amz-request-id']).slice(0, 8);

async function startProxy(t: Test, env: NodeJS.ProcessEnv = process.env) {
  const minio = await startMinio();
  t.teardown(() => minio.stop());
  const { child, port, base, exited, log, pids } = await startWorkers(t, minio.endpoint, ['wl-1', 'wl-2', 'wl-3'], 2, env);
  t.equal(new Set(pids()).size, 2, 'two workers listen');

  // A new connection each time: node:cluster deals them to the workers in turn.
  const s3 = async (method: 'PUT' | 'GET', path: string, body?: Buffer) => {
    const signed = aws4.sign({ service: 's3', region: 'us-east-1', method, host: `127.0.0.1:${port}`, path,
      headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } }, creds);
    return request(`${base}${path}`, { method, headers: { ...(signed.headers as Record<string, string>), connection: 'close' }, body, reset: true });
  };
  for (const key of KEYS) {
    const r = await s3('PUT', `/proxy-bucket/${key}`, Buffer.from('x'));
    await r.body.dump();
    t.equal(r.statusCode, 200);
  }
  // A bucket location is answered by the proxy itself, with its own id.
  const reached = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const r = await s3('GET', '/proxy-bucket?location');
    await r.body.dump();
    reached.add(worker(r));
  }
  t.equal(reached.size, 2, 'new connections reach both workers');

  const listAll = async (first?: string) => {
    const keys: string[] = [];
    const answeredBy: string[] = [];
    let token = first;
    do {
      const r = await s3('GET', `/proxy-bucket?list-type=2&max-keys=4${token ? `&continuation-token=${token}` : ''}`);
      const xml = await r.body.text();
      t.equal(r.statusCode, 200, xml);
      answeredBy.push(worker(r));
      keys.push(...[...xml.matchAll(/<Key>([^<]+)<\/Key>/g)].map((m) => m[1]));
      token = /<NextContinuationToken>([^<]+)</.exec(xml)?.[1];
    } while (token);
    return { keys, answeredBy };
  };
  return { child, base, exited, pids, s3, listAll, log };
}

t.test('listing pages reach the worker that holds the listing', async (t) => {
  const { child, base, exited, pids, s3, listAll, log } = await startProxy(t);
  const before = (log().match(/"operation":"ListObjectsV2"/g) ?? []).length;
  const { keys, answeredBy } = await listAll();
  t.same(keys, KEYS, 'every key once, in order');
  t.equal(answeredBy.length, 8);
  t.equal(new Set(answeredBy).size, 1, `every page answered by the worker that started the listing: ${answeredBy.join(' ')}`);
  await new Promise((r) => setTimeout(r, 200));
  t.equal((log().match(/"operation":"ListObjectsV2"/g) ?? []).length - before, 8, 'one log line per page');
  const metrics = await request(`${base}/metrics`, { reset: true }).then((r) => r.body.text());
  t.match(metrics, /^tempo_s3_shard_requests_total\{operation="ListObjectsV2",status="2xx"\} 8$/m, 'each page counted once');

  // Listings side by side, each held by the worker that began it.
  const together = await Promise.all([1, 2, 3, 4].map(() => listAll()));
  for (const l of together) {
    t.same(l.keys, KEYS, 'every key once, in order, beside other listings');
    t.equal(new Set(l.answeredBy).size, 1, 'answered by one worker');
  }
  t.equal(new Set(together.map((l) => l.answeredBy[0])).size, 2, 'both workers held listings');

  // A token naming a worker that does not exist starts over where it lands.
  const forged = await listAll(encodeListToken(KEYS[9], 4242));
  t.same(forged.keys, KEYS.slice(10), 'a token of an unknown worker resumes after its key');

  // The owner gone mid-listing (both workers killed and replaced, so it
  // surely is), with a dead socket file where it listened: the next page is
  // served by the worker the client reached.
  const first = await s3('GET', '/proxy-bucket?list-type=2&max-keys=4');
  const token = /<NextContinuationToken>([^<]+)</.exec(await first.body.text())![1];
  for (const pid of pids()) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && pids().length < 4; i++) await new Promise((r) => setTimeout(r, 100));
  t.equal(pids().length, 4, 'two replacement workers listen');
  const stale = [1, 2].map((id) => handoffSocket(child.pid!, id));
  for (const path of stale) writeFileSync(path, '');
  const rest = await listAll(token);
  t.same(rest.keys, KEYS.slice(4), 'the rest of the listing after its owner died');
  for (const path of stale) rmSync(path);

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exit 0');
  t.same(readdirSync(tmpdir()).filter((f) => f.startsWith(`tempo-s3-shard-${child.pid}-`)), [], 'no handoff socket left behind');
});

t.test('without a writable temporary directory, workers serve every page themselves', async (t) => {
  const { listAll, log } = await startProxy(t, { ...process.env, TMPDIR: join(tmpdir(), 'tss-no-such-dir') });
  t.equal((log().match(/cannot take listings handed over by other workers/g) ?? []).length, 2, 'each worker warns');
  const { keys, answeredBy } = await listAll();
  t.same(keys, KEYS, 'every key once, in order');
  t.equal(new Set(answeredBy).size, 2, 'pages answered where they land');
});

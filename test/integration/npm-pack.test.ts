import t from 'tap';
import { mkdtempSync, writeFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { request } from 'undici';
import aws4 from 'aws4';
import { startMinio, freePort, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';
import { run } from '../helpers/run';

// What npm users get: the packed tarball, installed in an empty directory,
// answers `npx tempo-s3-shard --version` and serves.

const root = join(__dirname, '..', '..');

t.test('npm pack, install, npx', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tss-pack-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const packed = await run('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: root, timeoutMs: 300_000 });
  t.equal(packed.status, 0, packed.status ? packed.stderr.slice(-1000) : 'packed');
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  t.ok(tarball, `packed ${tarball}`);
  const listing = await run('tar', ['-tzf', join(dir, tarball!)]);
  const files = listing.stdout.trim().split('\n');
  t.ok(files.includes('package/bin/tempo-s3-shard') && files.includes('package/dist/lib/cli.js'), 'ships the command and the compiled code');
  t.notOk(files.some((f) => f.startsWith('package/test/') || f.startsWith('package/lib/') || f.startsWith('package/dist/test/')), 'and no sources or tests');

  const app = join(dir, 'app');
  await run('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), '{"name":"pack-check","private":true}');
  const installed = await run('npm', ['install', '--no-audit', '--no-fund', join(dir, tarball!)], { cwd: app, timeoutMs: 300_000 });
  t.equal(installed.status, 0, installed.status ? installed.stderr.slice(-1000) : 'installed from the tarball');
  const version = await run('npx', ['--no-install', 'tempo-s3-shard', '--version'], { cwd: app });
  t.equal(version.stdout.trim(), require('../../package.json').version);

  const minio = await startMinio();
  t.teardown(() => minio.stop());
  const port = await freePort();
  writeFileSync(join(app, 'config.json'), JSON.stringify({
    listen_addr: `127.0.0.1:${port}`, endpoint: minio.endpoint, access_key_id: MINIO_USER, secret_access_key: MINIO_PASSWORD,
    buckets: ['pack-1', 'pack-2'],
  }));
  const proxy = spawn('npx', ['--no-install', 'tempo-s3-shard', '--config', 'config.json', '--workers', '1'], { cwd: app, stdio: 'ignore', detached: true });
  t.teardown(() => { try { process.kill(-proxy.pid!, 'SIGTERM'); } catch { /* gone */ } });
  const base = `http://127.0.0.1:${port}`;
  let healthy = false;
  for (let i = 0; i < 100 && !healthy; i++) {
    healthy = await request(`${base}/healthz`).then((r) => r.statusCode === 200, () => false);
    if (!healthy) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(healthy, 'the installed proxy serves');
  const signed = (method: string) => aws4.sign({ service: 's3', region: 'us-east-1', method, host: `127.0.0.1:${port}`,
    path: '/proxy-bucket/t/b/x', headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } }, { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD }).headers as Record<string, string>;
  const put = await request(`${base}/proxy-bucket/t/b/x`, { method: 'PUT', headers: signed('PUT'), body: 'packed' });
  t.equal(put.statusCode, 200);
  await put.body.dump();
  const got = await request(`${base}/proxy-bucket/t/b/x`, { headers: signed('GET') });
  t.equal(await got.body.text(), 'packed');
});

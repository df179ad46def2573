import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { request } from 'undici';
import aws4 from 'aws4';
import { freePort, minioBinary } from '../helpers/minio';
import { awsCli } from '../helpers/python';
import { run } from '../helpers/run';

// `make demo`, the README's first command (its script, after the build):
// MinIO and the proxy come up, the commands it prints work as printed, and
// Ctrl-C stops everything it started.

const root = join(__dirname, '..', '..');
const demoCreds = { accessKeyId: 'demo-admin', secretAccessKey: 'demo-secret-key' };

// MinIO's console takes the port after the API's.
async function portWithNextFree(): Promise<number> {
  for (;;) {
    const port = await freePort();
    const nextFree = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port + 1, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (nextFree) return port;
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('make demo: MinIO and the proxy, the printed commands, Ctrl-C', async (t) => {
  const cache = mkdtempSync(join(tmpdir(), 'tss-demo-'));
  t.teardown(() => rmSync(cache, { recursive: true, force: true }));
  const minioPort = await portWithNextFree();
  const proxyPort = await freePort();
  // make's PATH holds the virtualenv with the AWS CLI (`make deps`); a fresh
  // machine's user has Node and the system's commands, no AWS CLI.
  const venvBin = dirname(awsCli());
  const userPath = `${dirname(process.execPath)}:/usr/bin:/bin`;
  const demo = spawn('bash', [join(root, 'compose', 'local-demo.sh')], {
    env: { ...process.env, PATH: `${venvBin}:${process.env.PATH}`, TSS_CACHE: cache, MINIO_BIN: minioBinary(),
      MINIO_PORT: String(minioPort), PROXY_PORT: String(proxyPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, as a terminal's foreground job is: Ctrl-C signals all of it.
    detached: true,
  });
  t.teardown(() => { if (groupAlive(demo.pid!)) process.kill(-demo.pid!, 'SIGKILL'); });
  let output = '';
  demo.stdout.on('data', (d) => { output += d; });
  demo.stderr.on('data', (d) => { output += d; });
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));

  // The commands are printed for pasting at once: the proxy answers by then.
  for (let i = 0; i < 600 && !output.includes('Ctrl-C stops') && demo.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  const ready = await request(`http://127.0.0.1:${proxyPort}/readyz`).then(async (r) => {
    await r.body.dump();
    return r.statusCode === 200;
  }, () => false);
  if (!t.ok(ready, 'the proxy is ready when the demo prints its commands')) {
    t.comment(output);
    return;
  }

  // What the demo tells the user to type, run as printed from the checkout,
  // in a shell of the user's, with no AWS configuration.
  const printed = /Point a client at it, for example:\n([\s\S]*?)\nCtrl-C/.exec(output)?.[1];
  t.ok(printed, 'the demo prints commands to try');
  const typed = await run('bash', ['-e', '-c', printed!], {
    cwd: root,
    env: { PATH: userPath, HOME: cache },
    timeoutMs: 60_000,
  });
  t.equal(typed.status, 0, typed.stderr.slice(-1000) || 'the printed commands succeed');
  const located = /^tenant\/block\/README\.md\t(\S+)$/m.exec(typed.stdout)?.[1];
  t.ok(located, `locate names a shard: ${typed.stdout.trim().split('\n').pop()}`);

  // Straight at MinIO: the object is in the shard `locate` named, whole, and in no other.
  const readme = readFileSync(join(root, 'README.md'));
  for (const shard of ['shard1', 'shard2', 'shard3']) {
    const path = `/${shard}/tenant/block/README.md`;
    const headers = aws4.sign({ service: 's3', region: 'us-east-1', method: 'GET', host: `127.0.0.1:${minioPort}`, path,
      headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } }, demoCreds).headers as Record<string, string>;
    const r = await request(`http://127.0.0.1:${minioPort}${path}`, { headers });
    const body = Buffer.from(await r.body.arrayBuffer());
    if (shard === located) {
      t.equal(r.statusCode, 200, `in ${shard}`);
      t.ok(body.equals(readme), 'byte for byte');
    } else {
      t.equal(r.statusCode, 404, `not in ${shard}`);
    }
  }

  process.kill(-demo.pid!, 'SIGINT');
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 30_000).unref())]);
  t.equal(code, 0, 'the demo ends on Ctrl-C, with success');
  for (let i = 0; i < 100 && groupAlive(demo.pid!); i++) await new Promise((r) => setTimeout(r, 100));
  t.notOk(groupAlive(demo.pid!), 'nothing it started is left running');
  const refused = await request(`http://127.0.0.1:${minioPort}/minio/health/live`).then((r) => r.body.dump().then(() => false), () => true);
  t.ok(refused, 'MinIO no longer answers');
});

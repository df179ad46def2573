import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, homedir } from 'node:os';
import { join } from 'node:path';

// A real MinIO server per test file, on loopback and a free port, with its
// data in a temporary directory that goes away with it.

export const MINIO_USER = 'tss-test-admin';
export const MINIO_PASSWORD = 'tss-test-secret-key';

export function minioBinary(): string {
  const bin = process.env.MINIO_BIN ?? join(process.env.TSS_CACHE ?? join(homedir(), '.cache', 'tempo-s3-shard'), 'bin', 'minio');
  if (!existsSync(bin)) throw new Error(`MinIO binary not found at ${bin}: run "make minio" first`);
  return bin;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface Minio {
  endpoint: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

async function waitReady(endpoint: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`minio exited with ${child.exitCode}: ${log()}`);
    try {
      const r = await fetch(`${endpoint}/minio/health/ready`);
      if (r.ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`minio did not become ready: ${log()}`);
}

/** `parent` holds the data directory; by default the system's temporary directory. */
export async function startMinio(parent = tmpdir()): Promise<Minio> {
  const dir = mkdtempSync(join(parent, 'tss-minio-'));
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let output = '';
  let child: ChildProcess;
  const launch = async () => {
    const consolePort = await freePort();
    child = spawn(minioBinary(), ['server', dir, '--quiet', '--address', `127.0.0.1:${port}`,
      '--console-address', `127.0.0.1:${consolePort}`], {
      env: { ...process.env, MINIO_ROOT_USER: MINIO_USER, MINIO_ROOT_PASSWORD: MINIO_PASSWORD,
        MINIO_BROWSER: 'off', MINIO_UPDATE: 'off', CI: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => { output = (output + d).slice(-4000); });
    child.stderr!.on('data', (d) => { output = (output + d).slice(-4000); });
    await waitReady(endpoint, child, () => output);
  };
  const kill = () => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
  await launch();
  return {
    endpoint,
    port,
    get process() { return child; },
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await kill();
      await launch();
    },
  };
}

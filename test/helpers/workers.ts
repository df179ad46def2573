import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, MINIO_USER, MINIO_PASSWORD } from './minio';

const bin = join(__dirname, '..', '..', 'bin', 'tempo-s3-shard');

export interface Workers {
  child: ChildProcess;
  port: number;
  base: string;
  exited: Promise<number | null>;
  /** What the proxy logged so far (info level). */
  log(): string;
  /** The pid of every worker that has listened so far, replacements included. */
  pids(): number[];
}

/** The installed command with `--workers count` in front of MinIO, once every worker listens (or it has
 * exited); killed when `t` ends. */
export async function startWorkers(t: Test, minioEndpoint: string, buckets: string[], count: number,
  env: NodeJS.ProcessEnv = process.env, port?: number): Promise<Workers> {
  port ??= await freePort();
  const config = join(mkdtempSync(join(tmpdir(), 'tss-workers-')), 'config.json');
  writeFileSync(config, JSON.stringify({
    listen_addr: `127.0.0.1:${port}`, endpoint: minioEndpoint, access_key_id: MINIO_USER, secret_access_key: MINIO_PASSWORD,
    buckets, log_level: 'info',
  }));
  const child = spawn(process.execPath, [bin, '--config', config, '--workers', String(count)], { stdio: ['ignore', 'ignore', 'pipe'], env });
  let log = '';
  child.stderr!.on('data', (d) => { log += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => { child.kill('SIGKILL'); });
  const pids = () => [...log.matchAll(/"msg":"listening".*?"pid":(\d+)/g)].map((m) => Number(m[1]));
  for (let i = 0; i < 100 && pids().length < count && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  return { child, port, base: `http://127.0.0.1:${port}`, exited, log: () => log, pids };
}

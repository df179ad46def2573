import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

// Builds the minio-go check program against a chosen minio-go version.
// Binaries are cached under $TSS_CACHE/minio-go/<version>/, named by a hash
// of the program's sources, so an edit rebuilds and an unchanged tree does not.

const execFileP = promisify(execFile);
const MODULE = 'github.com/minio/minio-go/v7';
const SOURCES = __dirname;

function cacheRoot(): string {
  return join(process.env.TSS_CACHE ?? join(homedir(), '.cache', 'tempo-s3-shard'), 'minio-go');
}

function sourceFiles(): string[] {
  return readdirSync(SOURCES).filter((f) => f.endsWith('.go') || f === 'go.mod' || f === 'go.sum').sort();
}

async function go(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await execFileP('go', args, { cwd, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`go ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

/** The minio-go version go.mod pins (the one Tempo ships). */
export function pinnedVersion(): string {
  const m = readFileSync(join(SOURCES, 'go.mod'), 'utf8').match(/github\.com\/minio\/minio-go\/v7 (v\S+)/);
  if (!m) throw new Error('go.mod does not require minio-go v7');
  return m[1];
}

/** The newest v7 release, asked of the Go module proxy. */
export async function newestVersion(): Promise<string> {
  return (JSON.parse(await go(['list', '-m', '-json', `${MODULE}@latest`], SOURCES)) as { Version: string }).Version;
}

/** The pinned version and the newest, once each. */
export async function minioGoVersions(): Promise<string[]> {
  return [...new Set([pinnedVersion(), await newestVersion()])];
}

/** Path to the check program built against `version`, building it if the cache has no build of these sources. */
export async function buildMinioGo(version: string): Promise<string> {
  const hash = createHash('sha256').update(version);
  for (const f of sourceFiles()) hash.update(`\0${f}\0`).update(readFileSync(join(SOURCES, f)));
  const dir = join(cacheRoot(), version);
  const bin = join(dir, `checks-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(bin)) return bin;

  const work = mkdtempSync(join(tmpdir(), 'tss-minio-go-'));
  try {
    for (const f of sourceFiles()) copyFileSync(join(SOURCES, f), join(work, f));
    if (version !== pinnedVersion()) {
      await go(['mod', 'edit', `-require=${MODULE}@${version}`], work);
      await go(['mod', 'tidy'], work);
    }
    mkdirSync(dir, { recursive: true });
    const tmp = `${bin}.tmp-${process.pid}`;
    await go(['build', '-o', tmp, '.'], work);
    // Builds of older sources are dead weight once these replace them.
    for (const old of readdirSync(dir)) if (!old.includes('.tmp-')) rmSync(join(dir, old), { force: true });
    renameSync(tmp, bin);
    return bin;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

// A directory tree of a few hundred files with awkward names, for the tests
// that drive whole-tree tools (aws s3 sync, rclone) through the proxy.

export const MiB = 1024 * 1024;
export const DIRS = ['', 'a', 'a/b', 'a/b/c deep', 'with space', 'plus+dir', 'ünïcödé/日本', 'mixed/+ x/y z'];
export const NAMES = (i: number) => [`file ${i}.txt`, `f+${i}.bin`, `é-${i}`, `数据-${i}.dat`, `${i}`, `a b+c ${i}.json`][i % 6];
const SIZES = [0, 1, 100, 4096, 65_537, 300_000, 17];

/** 300 files from 0 B to 3 MiB plus `big`; each relative path with its sha256. */
export function buildTree(root: string, big: { path: string; size: number }): Map<string, string> {
  const files = new Map<string, string>();
  const put = (rel: string, size: number) => {
    const data = randomBytes(size);
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), data);
    files.set(rel, createHash('sha256').update(data).digest('hex'));
  };
  for (let i = 0; i < 300; i++) {
    const dir = DIRS[i % DIRS.length];
    put((dir ? dir + '/' : '') + NAMES(i), i % 50 === 7 ? MiB + i * 7000 : SIZES[i % SIZES.length]);
  }
  put(big.path, big.size);
  return files;
}

export function hashTree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const full = join(e.parentPath, e.name);
    out.set(full.slice(root.length + 1), createHash('sha256').update(readFileSync(full)).digest('hex'));
  }
  return out;
}

export const sorted = (m: Map<string, string>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { warpBench } from './warp';
import { objectThroughput } from './object-throughput';
import { listThroughput } from './list-throughput';
import { placementBench } from './placement';
import { minioBinary } from '../helpers/minio';

// `make bench`: figures, not pass/fail. Everything printed also goes to
// test/bench/RESULTS.md, so the figures in the repository are the ones this
// script produced, with the machine they were produced on.
async function main(): Promise<void> {
  const lines: string[] = [];
  const print = (line: string) => {
    console.log(line);
    lines.push(line);
  };
  const started = Date.now();
  // `go install` builds report no release; the module version names the commit.
  const minioVersion = /^\s*mod\s+\S+\s+(\S+)/m.exec(execFileSync('go', ['version', '-m', minioBinary()]).toString())?.[1] ?? 'unknown';
  print('# tempo-s3-shard benchmark results');
  print('');
  print(`Written by \`make bench\` on ${new Date().toISOString()}: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ` +
    `${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, MinIO ${minioVersion}, warp v1.3.1. ` +
    'Client, MinIO and proxy share the machine.');
  print('');
  const sections: string[] = [];
  const timed = async (name: string, run: () => Promise<void> | void) => {
    const t0 = Date.now();
    await run();
    sections.push(`${name} ${((Date.now() - t0) / 60_000).toFixed(1)}`);
  };
  print('## warp');
  print('');
  await timed('warp', () => warpBench(print));
  print('');
  print('## One 1 GiB object, one stream');
  print('');
  print('```');
  await timed('1 GiB', () => objectThroughput(print));
  print('```');
  print('');
  print('## Listing');
  print('');
  print('```');
  await timed('listing', () => listThroughput(print));
  print('```');
  print('');
  print('## Placement');
  print('');
  print('```');
  await timed('placement', () => placementBench(print));
  print('```');
  print('');
  print(`The whole run took ${((Date.now() - started) / 60_000).toFixed(1)} min (${sections.join(', ')}).`);
  writeFileSync(join(__dirname, '..', '..', '..', 'test', 'bench', 'RESULTS.md'), lines.join('\n') + '\n');
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

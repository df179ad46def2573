import t from 'tap';
import { dirname, join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { run } from '../helpers/run';
import { blockKeys } from '../bench/placement';
import { FOUR, THREE, listAll, placementFaults, r3, r4, readAll, sorted, stage, startLoad, writeBlocks } from './rebalance-stack';

// The scenario on real MinIO: 2,000 blocks on three shards, a fourth
// added to the config, the proxy restarted on it. Every object reads back
// while a writer and readers keep going; `rebalance` (the command, as an
// operator runs it) moves what the fourth shard now owns under that load;
// afterwards everything sits at its owner, once, and the listing is exactly
// what was written. The command runs from dist/ (`make build`).

const BIN = join(__dirname, '..', '..', 'bin', 'tempo-s3-shard');

interface Line { event: string; [k: string]: unknown }
const jsonLines = (out: string): Line[] => out.trim().split('\n').map((l) => JSON.parse(l));

t.test('add a fourth shard to 2,000 blocks on three, and rebalance under load', async (t) => {
  const started = Date.now();
  const elapsed = (what: string) => t.comment(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const st = await stage(t);
  const before = await st.proxy({ buckets: THREE });
  const written = new Map<string, string>();
  await writeBlocks(before.s3, blockKeys(2000, 7), written, 32);
  t.equal(written.size, 4000, '2,000 blocks of two files');
  await before.stop();
  elapsed('written');

  const after = await st.proxy({ buckets: FOUR, previous_rings: [THREE] });
  const initial = new Map(written);
  const toMove = [...initial.keys()].filter((k) => r3.locate(k) !== r4.locate(k));
  t.ok(toMove.length > 500 && toMove.length < 2000, `${toMove.length} objects change owner`);

  const dry = await run(process.execPath, [BIN, 'rebalance', '--config', after.configFile, '--dry-run']);
  t.equal(dry.status, 0, dry.stderr);
  t.match(dry.stdout, new RegExp(`^proxy-bucket: ${toMove.length} objects \\(.*\\) would move\\n`), 'dry run: how many');
  for (const from of THREE) {
    const n = toMove.filter((k) => r3.locate(k) === from).length;
    t.match(dry.stdout, `  ${from} -> shard4: ${n} objects, `, `dry run: ${from} to shard4`);
  }
  t.equal((await st.contents(['shard4'])).get('shard4')!.size, 0, 'a dry run moves nothing');
  t.notMatch(dry.stderr, /Warning/, 'and warns of nothing');

  // A shard bucket the proxy has not created yet is named, with what to do.
  const early = join(dirname(after.configFile), 'early.json');
  const withFifth = JSON.parse(readFileSync(after.configFile, 'utf8')) as { buckets: string[] };
  writeFileSync(early, JSON.stringify({ ...withFifth, buckets: [...withFifth.buckets, 'shard5'] }));
  const tooEarly = await run(process.execPath, [BIN, 'rebalance', '--config', early, '--dry-run']);
  t.equal(tooEarly.status, 1);
  t.match(tooEarly.stderr, 'shard bucket shard5 does not exist yet: start the proxy with this config');
  t.notMatch(tooEarly.stderr, /Warning/);

  const load = startLoad(after.s3, written);
  t.same(await readAll(after.s3, initial), [], 'every object reads back through the earlier ring, under load');
  elapsed('read back');

  const moved = await run(process.execPath, [BIN, 'rebalance', '--config', after.configFile]);
  t.equal(moved.status, 0, moved.stderr);
  t.notMatch(moved.stderr, /Warning/, 'no warnings at the default concurrency');
  elapsed('rebalanced');
  const lines = jsonLines(moved.stdout);
  const progress = lines.filter((l) => l.event === 'progress');
  t.ok(progress.length >= 1, 'JSON progress lines when stdout is no terminal');
  t.equal(progress[progress.length - 1].objects_total, toMove.length);
  t.equal(progress[progress.length - 1].objects_done, toMove.length);
  const done = lines[lines.length - 1];
  t.equal(done.event, 'done');
  t.equal(done.moved_objects, toMove.length, 'moved what the fourth shard owns');
  t.equal(done.failed, 0);
  t.match(done.message, /previous_rings\) of proxy-bucket can now be dropped/);

  const { writes, reads, errors } = await load.stop();
  t.same(errors, [], 'no write or read failed meanwhile');
  t.ok(writes > 0 && reads > 0, `${writes} writes and ${reads} reads ran alongside`);
  t.comment(`${writes} writes and ${reads} reads ran alongside`);

  const at = await st.contents(FOUR);
  const faults = placementFaults(at, written, (k) => r4.locate(k));
  t.same(faults, { lost: [], extra: [], duplicated: [], misplaced: [], wrongBytes: [] },
    `each of ${written.size} objects once, at its owner, byte-exact: reads need no earlier ring`);
  t.same((await listAll(after.s3)).map((o) => o.key), sorted(written.keys()), 'the listing is what was written');

  const again = await run(process.execPath, [BIN, 'rebalance', '--config', after.configFile]);
  t.equal(again.status, 0, again.stderr);
  const last = jsonLines(again.stdout).pop()!;
  t.equal(last.moved_objects, 0, 'a second run finds nothing to do');
  t.equal(last.deleted_copies, 0);
});

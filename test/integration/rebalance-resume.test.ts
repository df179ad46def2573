import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { AbortMultipartUploadCommand, CreateMultipartUploadCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Balanced } from '../../lib/ring';
import { Pools } from '../../lib/backend';
import { VirtualBucket } from '../../lib/virtual-bucket';
import { rebalance } from '../../lib/rebalance';
import { startFaulty } from '../helpers/faulty';
import { blockKeys } from '../bench/placement';
import { BUCKET, FOUR, THREE, listAll, md5, placementFaults, r3, readAll, sorted, stage, writeBlocks } from './rebalance-stack';

// A rebalance interrupted midway, twice (its AbortSignal, then Ctrl-C on the
// command), and resumed: in between every object reads back and is listed
// once; at the end the state is the one an uninterrupted run leaves. The
// ring change here is the switch from the original ring to balanced
// placement over four shards, the fourth behind a relay (another endpoint),
// so moves go both server-side and streamed.

const BIN = join(__dirname, '..', '..', 'bin', 'tempo-s3-shard');
const b4 = new Balanced(FOUR.map((bucket) => ({ bucket, weight: 1 })));

t.test('interrupt a rebalance and resume it', async (t) => {
  const st = await stage(t);
  const relay = await startFaulty(st.minio.endpoint);
  t.teardown(() => relay.close());
  const before = await st.proxy({ buckets: THREE });
  const written = new Map<string, string>();
  await writeBlocks(before.s3, blockKeys(300, 11), written, 32);
  const after = await st.proxy({
    placement: 'balanced',
    shards: [...THREE.map((bucket) => ({ bucket })), { bucket: 'shard4', endpoint: relay.endpoint }],
    previous_rings: [{ placement: 'ring', buckets: THREE }],
  });
  const toMove = [...written.keys()].filter((k) => r3.locate(k) !== b4.locate(k));
  t.ok(toMove.some((k) => b4.locate(k) === 'shard4') && toMove.some((k) => b4.locate(k) !== 'shard4'),
    `${toMove.length} of ${written.size} objects move, some to the relayed shard, some between the others`);

  // Written after the change, so at the new owner; the write removed the
  // older copy, which leaves the key nothing to move.
  const rewritten = toMove[0];
  await after.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: rewritten, Body: 'newer' }));
  written.set(rewritten, md5('newer'));

  const consistent = async (t: Tap.Test, when: string) => {
    t.same(await readAll(after.s3, written), [], `${when}: every object reads back`);
    t.same((await listAll(after.s3, 250)).filter((o) => written.get(o.key) !== o.etag), [],
      `${when}: listed with the ETag reads return`);
    t.same((await listAll(after.s3)).map((o) => o.key), sorted(written.keys()), `${when}: each key listed once`);
    const faults = placementFaults(await st.contents(FOUR), written, (k) => b4.locate(k));
    t.same(faults.lost, [], `${when}: nothing lost`);
    return faults;
  };

  // An upload begun before the change, still open: it will complete where it
  // began, so the earlier ring must stay until it is done.
  const openKey = `${toMove[1].split('/').slice(0, 2).join('/')}/open-upload`;
  const open = await before.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: openKey }));

  const pools = new Pools();
  t.teardown(() => pools.close());
  const vb = new VirtualBucket(after.config.virtualBuckets[0], pools);
  const third = Math.floor(toMove.length / 3);
  const controller = new AbortController();
  const first = await rebalance(vb, {
    concurrency: 2, signal: controller.signal,
    onProgress: (done) => { if (done.objects >= third) controller.abort(); },
  });
  t.equal(first.total.objects, toMove.length - 1, 'the plan: every object away from its owner but the one rewritten');
  t.ok(first.interrupted, 'stopped by its signal');
  t.equal(first.openUploads, 1, 'the open upload on an earlier owner is found');
  const mid = await consistent(t, 'after the abort');
  t.ok(mid.misplaced.length > 0 && mid.misplaced.length < toMove.length,
    `${toMove.length - mid.misplaced.length} moved or copied, ${mid.misplaced.length} still to move`);

  // Ctrl-C on the command once it has moved something.
  const child = spawn(process.execPath, [BIN, 'rebalance', '--config', after.configFile, '--concurrency', '1'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: { event: string; objects_done?: number; interrupted?: boolean }[] = [];
  for await (const line of createInterface({ input: child.stdout! })) {
    const l = JSON.parse(line);
    lines.push(l);
    if (l.event === 'progress' && l.objects_done > 0 && lines.length === 1) child.kill('SIGINT');
  }
  const code = await new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (c) => resolve(c));
  });
  t.equal(code, 1, 'the interrupted command fails');
  t.same(lines[lines.length - 1].event === 'done' && lines[lines.length - 1].interrupted, true, 'and says it was interrupted');
  const mid2 = await consistent(t, 'after Ctrl-C');
  // Its first keys may be those the aborted run had copied and not yet
  // deleted at the source: it need not have finished any before the signal.
  const left = (f: typeof mid) => f.misplaced.length + f.duplicated.length;
  t.ok(left(mid2) > 0 && left(mid2) <= left(mid), `${left(mid)} keys still to settle before, ${left(mid2)} after`);

  const resumed = await rebalance(vb, { concurrency: 4 });
  t.notOk(resumed.interrupted, 'the resumed run finishes');
  t.same(resumed.failures, [], 'without failures');
  t.ok(resumed.total.objects >= mid2.misplaced.length, 'the rest is found again');
  const end = await consistent(t, 'resumed');
  t.same(end, { lost: [], extra: [], duplicated: [], misplaced: [], wrongBytes: [] },
    'each object once, at its balanced owner, byte-exact');
  t.equal((await st.contents([b4.locate(rewritten)])).get(b4.locate(rewritten))!.get(rewritten), md5('newer'),
    'the copy written after the change won over the stale one');

  await after.s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: openKey, UploadId: open.UploadId }));
  const again = await rebalance(vb);
  t.equal(again.total.objects, 0, 'nothing left to do');
  t.equal(again.openUploads, 0, 'and no upload holds the earlier ring');
});

declare namespace Tap { type Test = Parameters<Parameters<typeof t.test>[0]>[0] }

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

// Each probe runs in a fresh process, as the proxy does, and makes the
// pattern V8 pretenures for: objects of one literal site that all outlive a
// young-generation collection. V8's own trace says whether it decided to.
// V8 decides only at a collection of a young generation at its largest; at
// 1 MiB, the young generation starts there, so every collection counts and
// the control does not depend on how fast the generation grew.

const MODULE = join(__dirname, '..', 'dist', 'lib', 'pretenuring.js');

const PROBE = `
const kept = [];
const make = (i) => ({ i, next: null });
for (let round = 0; round < 400; round++) {
  for (let j = 0; j < 5000; j++) kept.push(make(j));
  if (kept.length > 400000) kept.length = 0;
}`;

function tenureDecisions(stopFirst: boolean): number {
  const code = (stopFirst ? `require(${JSON.stringify(MODULE)}).stopPretenuring();` : '') + PROBE;
  const run = spawnSync(process.execPath, ['--trace-pretenuring-statistics', '--max-semi-space-size=1', '-e', code], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`probe exited ${run.status}: ${run.stderr}`);
  return run.stdout.split('\n').filter((l) => /=> tenure$/.test(l)).length;
}

t.test('V8 pretenures the probe\'s site on its own', async (t) => {
  t.ok(tenureDecisions(false) > 0, 'the probe shows the decision the proxy must not get');
});

t.test('after stopPretenuring, the same objects stay young', async (t) => {
  t.equal(tenureDecisions(true), 0);
});

import t from 'tap';
import { join } from 'node:path';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { python } from '../helpers/python';
import { run as runChild } from '../helpers/run';

// boto3 (botocore's default CRC32 checksums, aws-chunked for unseekable
// streams) against the proxy; the script prints one JSON line per check.

t.test('boto3 through the proxy', async (t) => {
  const stack = await startStack(t);
  const run = await runChild(python(), [join(__dirname, '..', 'clients', 'boto3_objects.py'), stack.endpoint,
    CREDENTIALS.accessKeyId, CREDENTIALS.secretAccessKey]);
  const checks = run.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  for (const c of checks) t.ok(c.ok, `${c.check} ${c.detail}`);
  t.equal(run.status, 0, run.stderr.slice(-2000));
  t.ok(checks.length >= 14, `${checks.length} checks ran`);
  const contents = await stack.shardContents();
  t.same([...contents.values()].flat(), [], 'deletes emptied every shard');
});

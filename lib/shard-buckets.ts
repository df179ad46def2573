import { createHash } from 'node:crypto';
import type { Backend } from './backend';
import { isS3Error } from './errors';

// Start-up and `check`: every shard bucket must be reachable and present;
// missing ones are created unless told not to. A backend that is still
// starting (refusing, or answering 503 while it initialises) gets a while
// to come up, as a compose stack's MinIO does.

export type ShardState = 'ok' | 'created' | 'missing' | 'unreachable' | 'error';
export interface ShardReport { bucket: string; endpoint: string; state: ShardState; detail: string }

const RETRY_MS = 500;

export async function prepareShard(b: Backend, opts: { create: boolean; waitMs: number }): Promise<ShardReport> {
  const report = (state: ShardState, detail: string): ShardReport => ({ bucket: b.bucket, endpoint: b.shard.endpoint, state, detail });
  const deadline = Date.now() + opts.waitMs;
  for (;;) {
    let status: number;
    try {
      const head = await b.request({ method: 'HEAD', operation: 'HeadBucket' });
      await head.body.dump();
      status = head.statusCode;
    } catch (err) {
      if (Date.now() < deadline) { await sleep(RETRY_MS); continue; }
      return report('unreachable', isS3Error(err) ? err.message : String(err));
    }
    if (status === 200) return report('ok', 'present');
    if (status === 503 && Date.now() < deadline) { await sleep(RETRY_MS); continue; }
    if (status !== 404) return report('error', `HEAD answered ${status}`);
    if (!opts.create) return report('missing', 'the bucket does not exist');
    return create(b, report);
  }
}

async function create(b: Backend, report: (s: ShardState, d: string) => ShardReport): Promise<ShardReport> {
  // us-east-1 is the one region S3 wants no location constraint for.
  const body = b.shard.region === 'us-east-1' ? null
    : `<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>${b.shard.region}</LocationConstraint></CreateBucketConfiguration>`;
  try {
    const put = await b.request({
      method: 'PUT',
      operation: 'CreateBucket',
      body,
      headers: body ? { 'content-length': String(Buffer.byteLength(body)) } : {},
      payloadHash: body ? createHash('sha256').update(body).digest('hex') : undefined,
    });
    const text = await put.body.text();
    if (put.statusCode === 200) return report('created', 'created');
    if (text.includes('BucketAlreadyOwnedByYou')) return report('ok', 'present');
    return report('error', `create answered ${put.statusCode} ${/<Code>([^<]*)</.exec(text)?.[1] ?? ''}`.trim());
  } catch (err) {
    return report('unreachable', isS3Error(err) ? err.message : String(err));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { createHash, createHmac } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  AwsChunkedDecoder, AwsChunkedEncoder, streamingKind,
  type AwsChunkedOptions, type ChunkSignatureContext, type StreamingKind,
} from '../lib/aws-chunked';
import { createChecksum, type ChecksumAlgorithm } from '../lib/checksums';
import { S3Error } from '../lib/errors';
import { randomBuffer, rng } from './helpers/random';

// ---------------------------------------------------------------- helpers


const sha256Hex = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();

function signingKey(secret: string, date: string, region: string): Buffer {
  return hmac(hmac(hmac(hmac('AWS4' + secret, date), region), 's3'), 'aws4_request');
}

const CTX: ChunkSignatureContext = {
  signingKey: signingKey('testsecret', '20240102', 'eu-west-1'),
  amzDate: '20240102T030405Z',
  scope: '20240102/eu-west-1/s3/aws4_request',
  seedSignature: sha256Hex('any seed will do'),
};

function crc32Base64(data: Buffer): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(zlibCrc32(data) >>> 0);
  return b.toString('base64');
}

interface EncodeOptions {
  kind: StreamingKind;
  chunkSize?: number;
  ctx?: ChunkSignatureContext;
  /** Trailer lines as [name, value]; the trailer kinds default to a CRC32 of the payload. */
  trailers?: [string, string][];
  eol?: string;
  finalEmptyLine?: boolean;
  extension?: string;
}

// An independent aws-chunked encoder, written from the AWS documentation.
function encode(payload: Buffer, o: EncodeOptions): Buffer {
  const ctx = o.ctx ?? CTX;
  const signed = o.kind !== 'unsigned-trailer';
  const eol = o.eol ?? '\r\n';
  const size = o.chunkSize ?? 65536;
  const out: Buffer[] = [];
  let previous = ctx.seedSignature;
  const header = (chunk: Buffer) => {
    let line = chunk.length.toString(16) + (o.extension ?? '');
    if (signed) {
      previous = hmac(ctx.signingKey, ['AWS4-HMAC-SHA256-PAYLOAD', ctx.amzDate, ctx.scope, previous,
        sha256Hex(''), sha256Hex(chunk)].join('\n')).toString('hex');
      line += ';chunk-signature=' + previous;
    }
    out.push(Buffer.from(line + '\r\n'));
  };
  for (let pos = 0; pos < payload.length; pos += size) {
    const chunk = payload.subarray(pos, pos + size);
    header(chunk);
    out.push(chunk, Buffer.from('\r\n'));
  }
  header(Buffer.alloc(0));
  if (o.kind !== 'signed') {
    const trailers = o.trailers ?? [['x-amz-checksum-crc32', crc32Base64(payload)]];
    let canonical = '';
    for (const [name, value] of trailers) {
      out.push(Buffer.from(`${name}:${value}${eol}`));
      canonical += `${name}:${value}\n`;
    }
    if (signed) {
      const signature = hmac(ctx.signingKey, ['AWS4-HMAC-SHA256-TRAILER', ctx.amzDate, ctx.scope, previous,
        sha256Hex(canonical)].join('\n')).toString('hex');
      out.push(Buffer.from(`x-amz-trailer-signature:${signature}${eol}`));
    }
  }
  if (o.finalEmptyLine ?? true) out.push(Buffer.from(o.kind === 'signed' ? '\r\n' : eol));
  return Buffer.concat(out);
}

function defaultOptions(kind: StreamingKind, payload: Buffer, extra: Partial<AwsChunkedOptions> = {}): AwsChunkedOptions {
  return {
    kind,
    decodedLength: payload.length,
    trailer: kind === 'signed' ? undefined : 'x-amz-checksum-crc32',
    verify: kind === 'unsigned-trailer' ? undefined : CTX,
    ...extra,
  };
}

interface Outcome {
  out: Buffer;
  error?: S3Error;
  trailers: Record<string, string>;
}

/** Feeds `input` cut at `cuts` and settles on 'end' or 'error'; a hang rejects. */
function decode(input: Buffer, opts: AwsChunkedOptions, cuts: number[] = []): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const d = new AwsChunkedDecoder(opts);
    const parts: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error('decoder neither ended nor failed')), 10_000);
    d.on('data', (b: Buffer) => parts.push(b));
    d.on('end', () => {
      clearTimeout(timer);
      resolve({ out: Buffer.concat(parts), trailers: d.trailers });
    });
    d.on('error', (error: S3Error) => {
      clearTimeout(timer);
      resolve({ out: Buffer.concat(parts), error, trailers: d.trailers });
    });
    let prev = 0;
    for (const cut of [...cuts, input.length]) {
      if (d.destroyed) return;
      d.write(input.subarray(prev, cut));
      prev = cut;
    }
    d.end();
  });
}

const everyByte = (n: number) => Array.from({ length: n }, (_, i) => i);

function randomCuts(next: () => number, n: number, maxPiece: number): number[] {
  const cuts: number[] = [];
  for (let pos = Math.floor(next() * maxPiece); pos < n; pos += 1 + Math.floor(next() * maxPiece)) cuts.push(pos);
  return cuts;
}

function assertWithheld(t: tap.Test, r: Outcome, payload: Buffer, code: string) {
  t.equal(r.error?.code, code, `fails with ${code}`);
  t.ok(r.error instanceof S3Error, 'error is an S3Error');
  t.ok(r.out.length < payload.length || payload.length === 0, `emitted ${r.out.length} < ${payload.length}`);
  t.ok(r.out.equals(payload.subarray(0, r.out.length)), 'what was emitted is a prefix of the payload');
}

const KINDS: StreamingKind[] = ['signed', 'signed-trailer', 'unsigned-trailer'];
const SIZES = [0, 1, 65536, 65537, 200 * 1024];

// ---------------------------------------------------------------- tests

t.test('streamingKind reads x-amz-content-sha256', async (t) => {
  t.equal(streamingKind('STREAMING-AWS4-HMAC-SHA256-PAYLOAD'), 'signed');
  t.equal(streamingKind('STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER'), 'signed-trailer');
  t.equal(streamingKind('STREAMING-UNSIGNED-PAYLOAD-TRAILER'), 'unsigned-trailer');
  t.equal(streamingKind('UNSIGNED-PAYLOAD'), undefined);
  t.equal(streamingKind(sha256Hex('')), undefined);
  t.equal(streamingKind('STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD'), undefined);
  t.equal(streamingKind(undefined), undefined);
});

t.test('round trips, whole and at random splits', async (t) => {
  const next = rng(10);
  for (const kind of KINDS) {
    for (const size of SIZES) {
      const payload = randomBuffer(next, size);
      const framing = encode(payload, { kind });
      const opts = defaultOptions(kind, payload);
      const whole = await decode(framing, opts);
      t.equal(whole.error, undefined, `${kind} ${size}: no error`);
      t.ok(whole.out.equals(payload), `${kind} ${size}: whole input decodes`);
      if (kind !== 'signed') t.same(whole.trailers, { 'x-amz-checksum-crc32': crc32Base64(payload) }, 'trailer recorded');
      for (const maxPiece of [3, 100, 9000]) {
        const r = await decode(framing, opts, randomCuts(next, framing.length, maxPiece));
        t.equal(r.error, undefined, `${kind} ${size} pieces<=${maxPiece}: no error`);
        t.ok(r.out.equals(payload), `${kind} ${size} pieces<=${maxPiece}: decodes`);
      }
    }
  }
});

t.test('byte-by-byte feeding', async (t) => {
  const next = rng(11);
  for (const kind of KINDS) {
    for (const size of [0, 1, 1000, 65537]) {
      const payload = randomBuffer(next, size);
      const framing = encode(payload, { kind, chunkSize: size > 1000 ? 65536 : 300 });
      const r = await decode(framing, defaultOptions(kind, payload), everyByte(framing.length));
      t.equal(r.error, undefined, `${kind} ${size}: no error`);
      t.ok(r.out.equals(payload), `${kind} ${size}: decodes byte by byte`);
    }
  }
});

t.test('data streams out before its chunk is complete, all but the last piece', async (t) => {
  const payload = randomBuffer(rng(12), 200 * 1024);
  const framing = encode(payload, { kind: 'unsigned-trailer', chunkSize: payload.length });
  const d = new AwsChunkedDecoder(defaultOptions('unsigned-trailer', payload));
  let emitted = 0;
  d.on('data', (b: Buffer) => { emitted += b.length; });
  const half = 100 * 1024;
  d.write(framing.subarray(0, 1000));
  d.write(framing.subarray(1000, half));
  await new Promise((r) => setImmediate(r));
  t.ok(emitted > 0, `${emitted} bytes out after half the only chunk`);
  t.ok(emitted < half, 'the latest piece is held back');
  const ended = new Promise((r) => d.on('end', r));
  d.end(framing.subarray(half));
  await ended;
  t.equal(emitted, payload.length);
});

t.test('trailing checksums of every algorithm', async (t) => {
  const next = rng(13);
  const payload = randomBuffer(next, 70_000);
  const reference: Record<string, string> = {
    crc32: crc32Base64(payload),
    sha1: createHash('sha1').update(payload).digest('base64'),
    sha256: createHash('sha256').update(payload).digest('base64'),
  };
  for (const alg of ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'] as const) {
    // crc32c and crc64nvme come from lib/checksums, which checksums.test.ts checks against references.
    const c = createChecksum(alg);
    c.update(payload);
    const good = reference[alg] ?? c.digestBase64();
    const name = `x-amz-checksum-${alg}`;
    for (const kind of ['signed-trailer', 'unsigned-trailer'] as const) {
      const opts = defaultOptions(kind, payload, { trailer: name });
      const ok = await decode(encode(payload, { kind, trailers: [[name, good]] }), opts, randomCuts(next, 80_000, 5000));
      t.equal(ok.error, undefined, `${kind} ${alg} good`);
      t.ok(ok.out.equals(payload), `${kind} ${alg} decodes`);
      t.equal(ok.trailers[name], good, `${kind} ${alg} verified value readable`);

      const wrong = Buffer.from(good, 'base64');
      wrong[0] ^= 1;
      const bad = await decode(encode(payload, { kind, trailers: [[name, wrong.toString('base64')]] }), opts);
      assertWithheld(t, bad, payload, 'BadDigest');
      t.equal(bad.error?.message, `The ${alg.toUpperCase()} you specified did not match the calculated checksum.`);
      t.same(bad.trailers, {}, 'no unverified trailer is exposed');
    }
  }
});

t.test('bad trailing checksum withholds the final bytes at every payload size', async (t) => {
  const next = rng(14);
  for (const kind of ['signed-trailer', 'unsigned-trailer'] as const) {
    for (const size of SIZES.filter((s) => s > 0)) {
      const payload = randomBuffer(next, size);
      const framing = encode(payload, { kind, trailers: [['x-amz-checksum-crc32', 'AAAAAA==']] });
      for (const cuts of [[], randomCuts(next, framing.length, 4000)]) {
        assertWithheld(t, await decode(framing, defaultOptions(kind, payload), cuts), payload, 'BadDigest');
      }
    }
  }
});

t.test('decoded length mismatch', async (t) => {
  const payload = randomBuffer(rng(15), 65537);
  for (const kind of KINDS) {
    const framing = encode(payload, { kind });
    for (const decodedLength of [payload.length - 1, payload.length + 1, 0, 10 * payload.length]) {
      const r = await decode(framing, defaultOptions(kind, payload, { decodedLength }));
      assertWithheld(t, r, payload, 'IncompleteBody');
    }
  }
});

t.test('every truncation fails, never finishes, never hangs', async (t) => {
  const next = rng(16);
  for (const kind of KINDS) {
    const payload = randomBuffer(next, 250);
    const framing = encode(payload, { kind, chunkSize: 100 });
    // Only the final empty line may be missing, as a whole or its LF.
    const lenient = 2;
    let failures = 0;
    for (let cut = 0; cut < framing.length; cut++) {
      const input = framing.subarray(0, cut);
      const r = await decode(input, defaultOptions(kind, payload), randomCuts(next, cut, 40));
      if (cut >= framing.length - lenient) {
        t.equal(r.error, undefined, `${kind} without ${framing.length - cut} final byte(s) is accepted`);
        t.ok(r.out.equals(payload));
        continue;
      }
      if (r.error === undefined || !r.out.equals(payload.subarray(0, r.out.length)) || r.out.length >= payload.length) {
        t.fail(`${kind} cut at ${cut}: ${r.error?.code ?? 'finished'} after ${r.out.length} bytes`);
      } else {
        failures++;
      }
    }
    t.equal(failures, framing.length - lenient, `${kind}: all ${framing.length - lenient} cuts fail`);
  }

  // The same on large bodies, at sampled cut points.
  for (const kind of KINDS) {
    const payload = randomBuffer(next, 200 * 1024);
    const framing = encode(payload, { kind });
    const cuts = [1, 10, 65536, 65600, 65700, framing.length - 100, framing.length - 3];
    for (let i = 0; i < 20; i++) cuts.push(Math.floor(next() * (framing.length - 2)));
    for (const cut of cuts) {
      const r = await decode(framing.subarray(0, cut), defaultOptions(kind, payload), randomCuts(next, cut, 30000));
      t.ok(r.error && r.out.length < payload.length, `${kind} cut at ${cut} fails with ${r.error?.code}`);
    }
  }
});

t.test('a truncated body without a declared length fails with IncompleteBody', async (t) => {
  const payload = randomBuffer(rng(17), 1000);
  const framing = encode(payload, { kind: 'signed', chunkSize: 100 });
  const cut = framing.indexOf('\r\n', 500) + 2; // right after a complete chunk
  const r = await decode(framing.subarray(0, cut), { kind: 'signed' });
  assertWithheld(t, r, payload, 'IncompleteBody');
  const midData = await decode(framing.subarray(0, 600), { kind: 'unsigned-trailer' });
  t.equal(midData.error?.code, 'IncompleteBody');
  const junkEnd = Buffer.concat([framing.subarray(0, framing.length - 2), Buffer.from('xx')]);
  assertWithheld(t, await decode(junkEnd, { kind: 'signed' }), payload, 'IncompleteBody');
});

t.test('malformed framing', async (t) => {
  const payload = randomBuffer(rng(18), 300);
  const unsigned = encode(payload, { kind: 'unsigned-trailer', chunkSize: 100 });
  const opts = defaultOptions('unsigned-trailer', payload);
  const text = unsigned.toString('latin1');

  const cases: [string, string][] = [
    ['non-hex size', text.replace('64\r\n', '6g\r\n')],
    ['empty size', text.replace('64\r\n', '\r\n')],
    ['negative size', text.replace('64\r\n', '-64\r\n')],
    ['no CRLF after data', text.replace(/^64\r\n([\s\S]{100})\r\n/, '64\r\n$1')],
    ['LF only after data', text.replace(/^64\r\n([\s\S]{100})\r\n/, '64\r\n$1\n')],
    ['data longer than declared', text.replace('64\r\n', '63\r\n')],
    ['malformed trailer', text.replace('x-amz-checksum-crc32:', 'x-amz-checksum-crc32=')],
    ['undeclared trailer', text.replace(/\r\n\r\n$/, '\r\nx-other:1\r\n\r\n')],
    ['duplicate trailer', text.replace(/(x-amz-checksum-crc32:.*\r\n)/, '$1$1')],
    ['trailer signature on an unsigned body', text.replace(/\r\n\r\n$/, '\r\nx-amz-trailer-signature:' + '0'.repeat(64) + '\r\n\r\n')],
    ['data after the end', text + 'x'],
    ['endless header line', '6' + '0'.repeat(5000)],
  ];
  for (const [name, body] of cases) {
    const r = await decode(Buffer.from(body, 'latin1'), opts);
    assertWithheld(t, r, payload, 'InvalidArgument');
    t.comment(`${name}: ${r.error?.message}`);
  }

  const big = await decode(Buffer.from('1000001\r\n'), { kind: 'unsigned-trailer' });
  t.equal(big.error?.code, 'InvalidArgument', 'a chunk over 16 MiB is refused');
  const capped = await decode(encode(payload, { kind: 'unsigned-trailer', chunkSize: 200 }), { ...opts, maxChunkSize: 199 });
  t.equal(capped.error?.code, 'InvalidArgument', 'maxChunkSize is honoured');
  const huge = await decode(Buffer.from('ffffffffffffffffff\r\n'), { kind: 'unsigned-trailer' });
  t.equal(huge.error?.code, 'InvalidArgument', 'a size beyond 2^64 is refused');
});

t.test('missing or extra trailers', async (t) => {
  const payload = randomBuffer(rng(19), 100);
  const none = encode(payload, { kind: 'unsigned-trailer', trailers: [] });
  assertWithheld(t, await decode(none, defaultOptions('unsigned-trailer', payload)), payload, 'IncompleteBody');
  const accepted = await decode(none, defaultOptions('unsigned-trailer', payload, { trailer: undefined }));
  t.equal(accepted.error, undefined, 'no trailer declared, none sent');
  t.ok(accepted.out.equals(payload));
  const undeclared = await decode(encode(payload, { kind: 'unsigned-trailer' }), defaultOptions('unsigned-trailer', payload, { trailer: undefined }));
  assertWithheld(t, undeclared, payload, 'InvalidArgument');
  t.throws(() => new AwsChunkedDecoder({ kind: 'unsigned-trailer', trailer: 'x-amz-checksum-crc32, x-amz-checksum-sha1' }),
    { code: 'InvalidRequest' });
  t.throws(() => new AwsChunkedDecoder({ kind: 'unsigned-trailer', trailer: 'x-amz-checksum-md5' }), { code: 'InvalidArgument' });
});

t.test('extensions other than chunk-signature are tolerated', async (t) => {
  const payload = randomBuffer(rng(20), 1000);
  for (const kind of KINDS) {
    const framing = encode(payload, { kind, chunkSize: 300, extension: ';foo=bar;baz' });
    const r = await decode(framing, defaultOptions(kind, payload), everyByte(framing.length));
    t.equal(r.error, undefined, kind);
    t.ok(r.out.equals(payload), kind);
  }
});

t.test('LF-only trailer lines', async (t) => {
  const payload = randomBuffer(rng(21), 5000);
  for (const kind of ['signed-trailer', 'unsigned-trailer'] as const) {
    for (const finalEmptyLine of [true, false]) {
      const framing = encode(payload, { kind, eol: '\n', chunkSize: 1000, finalEmptyLine });
      const r = await decode(framing, defaultOptions(kind, payload), randomCuts(rng(22), framing.length, 7));
      t.equal(r.error, undefined, `${kind} final empty line ${finalEmptyLine}`);
      t.ok(r.out.equals(payload));
      t.equal(r.trailers['x-amz-checksum-crc32'], crc32Base64(payload));
    }
  }
});

// minio-go (pkg/signer, TrailingHeaders) ends each trailer line with "\n",
// then writes "\r\n", then its trailer signature line, then "\r\n\r\n".
function minioGoFraming(payload: Buffer, kind: 'signed-trailer' | 'unsigned-trailer'): Buffer {
  const text = encode(payload, { kind, eol: '\n', finalEmptyLine: false }).toString('latin1');
  const framed = kind === 'signed-trailer'
    ? text.replace('\nx-amz-trailer-signature:', '\n\r\nx-amz-trailer-signature:').replace(/\n$/, '\r\n\r\n')
    : text + '\r\n\r\n';
  return Buffer.from(framed, 'latin1');
}

t.test("minio-go's trailer framing", async (t) => {
  const payload = randomBuffer(rng(24), 70_000);
  for (const kind of ['signed-trailer', 'unsigned-trailer'] as const) {
    const framing = minioGoFraming(payload, kind);
    const r = await decode(framing, defaultOptions(kind, payload), randomCuts(rng(25), framing.length, 5));
    t.equal(r.error, undefined, `${kind} decodes`);
    t.ok(r.out.equals(payload), `${kind}: the payload`);
    t.equal(r.trailers['x-amz-checksum-crc32'], crc32Base64(payload), `${kind}: the trailer`);
    const more = await decode(Buffer.concat([framing, Buffer.from('x')]), defaultOptions(kind, payload));
    assertWithheld(t, more, payload, 'InvalidArgument');
  }
  const withoutTrailer = Buffer.from(minioGoFraming(payload, 'unsigned-trailer').toString('latin1').replace(/x-amz-checksum-crc32:.*\n/, ''), 'latin1');
  assertWithheld(t, await decode(withoutTrailer, defaultOptions('unsigned-trailer', payload)), payload, 'IncompleteBody');
  const signed = minioGoFraming(payload, 'signed-trailer').toString('latin1');
  const withoutSignature = Buffer.from(signed.replace(/x-amz-trailer-signature:.*\r\n/, ''), 'latin1');
  assertWithheld(t, await decode(withoutSignature, defaultOptions('signed-trailer', payload)), payload, 'SignatureDoesNotMatch');
});

t.test('chunk signature verification', async (t) => {
  const next = rng(23);
  const payload = randomBuffer(next, 200 * 1024);
  for (const kind of ['signed', 'signed-trailer'] as const) {
    const framing = encode(payload, { kind });
    const text = framing.toString('latin1');
    const signatures = [...text.matchAll(/chunk-signature=([0-9a-f]{64})/g)].map((m) => m[1]);
    t.equal(signatures.length, 5, 'four data chunks and the final one');
    for (const [i, sig] of signatures.entries()) {
      const flipped = sig.slice(0, 10) + (sig[10] === '0' ? '1' : '0') + sig.slice(11);
      const r = await decode(Buffer.from(text.replace(sig, flipped), 'latin1'), defaultOptions(kind, payload));
      assertWithheld(t, r, payload, 'SignatureDoesNotMatch');
      if (i < 4) t.ok(r.out.length <= (i + 1) * 65536, `chunk ${i}: stops at the bad chunk`);
    }
    const missing = await decode(Buffer.from(text.replace(`;chunk-signature=${signatures[2]}`, ''), 'latin1'), defaultOptions(kind, payload));
    assertWithheld(t, missing, payload, 'SignatureDoesNotMatch');
    const malformed = await decode(Buffer.from(text.replace(signatures[0], 'zz' + signatures[0].slice(2)), 'latin1'), defaultOptions(kind, payload));
    assertWithheld(t, malformed, payload, 'SignatureDoesNotMatch');

    const tampered = Buffer.from(framing);
    tampered[framing.indexOf('\r\n') + 1000] ^= 0xff;
    assertWithheld(t, await decode(tampered, defaultOptions(kind, payload)), payload, 'SignatureDoesNotMatch');

    const otherSeed = await decode(framing, defaultOptions(kind, payload, { verify: { ...CTX, seedSignature: sha256Hex('x') } }));
    assertWithheld(t, otherSeed, payload, 'SignatureDoesNotMatch');
    const otherKey = await decode(framing, defaultOptions(kind, payload, { verify: { ...CTX, signingKey: signingKey('other', '20240102', 'eu-west-1') } }));
    assertWithheld(t, otherKey, payload, 'SignatureDoesNotMatch');

    const unverified = await decode(Buffer.from(text.replace(signatures[1], '0'.repeat(64)), 'latin1'), defaultOptions(kind, payload, { verify: undefined }));
    t.equal(unverified.error, undefined, `${kind}: signatures are not checked without verify`);
  }
});

t.test('trailer signature verification', async (t) => {
  const payload = randomBuffer(rng(24), 70_000);
  const framing = encode(payload, { kind: 'signed-trailer' });
  const text = framing.toString('latin1');
  const opts = defaultOptions('signed-trailer', payload);
  const sig = /x-amz-trailer-signature:([0-9a-f]{64})/.exec(text)![1];

  const flipped = text.replace(sig, sig.slice(0, 63) + (sig[63] === 'a' ? 'b' : 'a'));
  assertWithheld(t, await decode(Buffer.from(flipped, 'latin1'), opts), payload, 'SignatureDoesNotMatch');
  const missing = text.replace(/x-amz-trailer-signature:.*\r\n/, '');
  assertWithheld(t, await decode(Buffer.from(missing, 'latin1'), opts), payload, 'SignatureDoesNotMatch');

  // A checksum swapped in by someone without the key breaks the signature first.
  const forged = text.replace(crc32Base64(payload), 'AAAAAA==');
  assertWithheld(t, await decode(Buffer.from(forged, 'latin1'), opts), payload, 'SignatureDoesNotMatch');

  const afterSignature = text.replace(/\r\n\r\n$/, '\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n');
  assertWithheld(t, await decode(Buffer.from(afterSignature, 'latin1'), opts), payload, 'InvalidArgument');
});

t.test('AWS documented streaming examples', async (t) => {
  // From "Signature Calculations for the Authorization Header: Transferring
  // Payload in Multiple Chunks" and its trailing-headers counterpart.
  const verify: ChunkSignatureContext = {
    signingKey: signingKey('wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', '20130524', 'us-east-1'),
    amzDate: '20130524T000000Z',
    scope: '20130524/us-east-1/s3/aws4_request',
    seedSignature: '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9',
  };
  const payload = Buffer.alloc(66560, 'a');
  const chunks = '10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n' +
    'a'.repeat(65536) + '\r\n' +
    '400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n' +
    'a'.repeat(1024) + '\r\n' +
    '0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n';

  const signed = await decode(Buffer.from(chunks + '\r\n'), { kind: 'signed', decodedLength: 66560, verify });
  t.equal(signed.error, undefined, 'documented chunk signatures verify');
  t.ok(signed.out.equals(payload));

  const trailer = await decode(Buffer.from(chunks + 'first:1st\r\nsecond:2nd\r\nthird:3rd\r\n' +
    'x-amz-trailer-signature:df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c\r\n\r\n'),
  { kind: 'signed-trailer', decodedLength: 66560, trailer: 'first,second,third', verify });
  t.equal(trailer.error, undefined, 'documented trailer signature verifies');
  t.ok(trailer.out.equals(payload));
  t.same(trailer.trailers, { first: '1st', second: '2nd', third: '3rd' });

  const corrupt = await decode(Buffer.from(chunks.replace('a\r\n400', 'b\r\n400') + '\r\n'), { kind: 'signed', verify });
  assertWithheld(t, corrupt, payload, 'SignatureDoesNotMatch');
});

t.test('a body captured from @aws-sdk/client-s3', async (t) => {
  const captured: { headers: http.IncomingHttpHeaders; body: Buffer }[] = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => {
      captured.push({ headers: req.headers, body: Buffer.concat(parts) });
      res.setHeader('ETag', '"0"');
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const client = new S3Client({
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'AKID', secretAccessKey: 'secret' },
  });
  t.teardown(() => client.destroy());

  const next = rng(25);
  const pieces = [randomBuffer(next, 70_000), randomBuffer(next, 1), randomBuffer(next, 5000)];
  const payload = Buffer.concat(pieces);
  await client.send(new PutObjectCommand({
    Bucket: 'bucket', Key: 'key', Body: Readable.from(pieces), ContentLength: payload.length,
  }));
  t.equal(captured.length, 1);
  const { headers, body } = captured[0];
  const kind = streamingKind(headers['x-amz-content-sha256'] as string);
  t.equal(kind, 'unsigned-trailer');
  t.equal(headers['x-amz-trailer'], 'x-amz-checksum-crc32');
  const opts: AwsChunkedOptions = {
    kind: kind!,
    decodedLength: Number(headers['x-amz-decoded-content-length']),
    trailer: headers['x-amz-trailer'] as string,
  };

  for (const cuts of [[], everyByte(body.length).filter((i) => i % 997 === 0 || i > body.length - 60)]) {
    const r = await decode(body, opts, cuts);
    t.equal(r.error, undefined, 'the real client body decodes');
    t.ok(r.out.equals(payload));
    t.equal(r.trailers['x-amz-checksum-crc32'], crc32Base64(payload));
  }

  const tampered = Buffer.from(body);
  tampered[body.length - 300] ^= 1;
  assertWithheld(t, await decode(tampered, opts), payload, 'BadDigest');
  assertWithheld(t, await decode(body.subarray(0, body.length - 20), opts), payload, 'IncompleteBody');
});

/** Runs `pieces` through an encoder; settles on 'end' or 'error'. */
function frame(enc: AwsChunkedEncoder, pieces: Buffer[]): Promise<{ out: Buffer; error?: S3Error }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    enc.on('data', (b: Buffer) => parts.push(b));
    enc.on('end', () => resolve({ out: Buffer.concat(parts) }));
    enc.on('error', (error: S3Error) => resolve({ out: Buffer.concat(parts), error }));
    for (const p of pieces) enc.write(p);
    enc.end();
  });
}

function cutAt(payload: Buffer, cuts: number[]): Buffer[] {
  return [...cuts, payload.length].map((end, i, all) => payload.subarray(i === 0 ? 0 : all[i - 1], end));
}

t.test('the encoder frames a verified body again, its checksum last', async (t) => {
  const next = rng(40);
  const algorithms: ChecksumAlgorithm[] = ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'];
  for (const size of [0, 1, 65535, 65536, 65537, 200 * 1024 + 3]) {
    const payload = randomBuffer(next, size);
    for (const alg of algorithms) {
      const sum = createChecksum(alg);
      sum.update(payload);
      const value = sum.digestBase64();
      const enc = new AwsChunkedEncoder(size, alg, () => value);
      const { out, error } = await frame(enc, cutAt(payload, randomCuts(next, size, 30_000)));
      t.equal(error, undefined, `${alg} ${size} B framed`);
      t.equal(out.length, enc.length, `${alg} ${size} B: the announced length is the framed length`);
      const name = `x-amz-checksum-${alg}`;
      const back = await decode(out, { kind: 'unsigned-trailer', decodedLength: size, trailer: name }, randomCuts(next, out.length, 9000));
      t.equal(back.error, undefined, `${alg} ${size} B decodes as STREAMING-UNSIGNED-PAYLOAD-TRAILER`);
      t.ok(back.out.equals(payload), 'the same bytes');
      t.equal(back.trailers[name], value, 'the checksum as trailer');
      t.ok(out.toString('latin1').split('\r\n').filter((l) => /^[0-9a-f]+$/.test(l)).every((l) => parseInt(l, 16) <= 65536),
        'no chunk over 64 KiB');
    }
  }
});

t.test('the encoder writes its trailer only once the body has ended whole', async (t) => {
  const payload = randomBuffer(rng(41), 100_000);
  let verified = false;
  const late = new AwsChunkedEncoder(payload.length, 'crc32', () => (verified ? crc32Base64(payload) : undefined));
  const parts: Buffer[] = [];
  late.on('data', (b: Buffer) => parts.push(b));
  late.write(payload);
  await new Promise((r) => setImmediate(r));
  t.notOk(Buffer.concat(parts).includes('x-amz-checksum-crc32'), 'no trailer before the end');
  verified = true;
  late.end();
  await new Promise((r) => late.on('end', r));
  t.ok(Buffer.concat(parts).toString('latin1').endsWith(`0\r\nx-amz-checksum-crc32:${crc32Base64(payload)}\r\n\r\n`), 'trailer at the end');

  const unverified = await frame(new AwsChunkedEncoder(payload.length, 'crc32', () => undefined), [payload]);
  t.equal(unverified.error?.code, 'IncompleteBody', 'no checksum: the body fails');
  t.notOk(unverified.out.includes('x-amz-checksum'), 'and carries no trailer');
  const short = await frame(new AwsChunkedEncoder(payload.length, 'crc32', () => crc32Base64(payload)), [payload.subarray(1)]);
  t.equal(short.error?.code, 'IncompleteBody', 'a body shorter than announced fails');
  t.notOk(short.out.includes('x-amz-checksum'), 'and carries no trailer');
  const long = await frame(new AwsChunkedEncoder(payload.length - 1, 'crc32', () => crc32Base64(payload)), [payload]);
  t.equal(long.error?.code, 'IncompleteBody', 'a body longer than announced fails');
});

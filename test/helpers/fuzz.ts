import { createHash, createHmac, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

// Seeded randomness and input mutators for the fuzz tests. Every run prints
// its seed; FUZZ_SEED=<seed> replays the same inputs, FUZZ_ITERATIONS=<n>
// runs longer.

/** The run's seed: FUZZ_SEED when set, a fresh random one otherwise. */
export function fuzzSeed(): number {
  const env = process.env.FUZZ_SEED;
  if (env === undefined || env === '') return randomBytes(4).readUInt32BE(0);
  if (!/^\d+$/.test(env)) throw new Error(`FUZZ_SEED must be a non-negative integer, not ${JSON.stringify(env)}`);
  return Number(env) >>> 0;
}

/** FUZZ_ITERATIONS when set, `fallback` otherwise. */
export function fuzzIterations(fallback: number): number {
  const env = process.env.FUZZ_ITERATIONS;
  if (env === undefined || env === '') return fallback;
  if (!/^\d+$/.test(env) || Number(env) === 0) throw new Error(`FUZZ_ITERATIONS must be a positive integer, not ${JSON.stringify(env)}`);
  return Number(env);
}

/** A seed for case `i` of a run, so that every case draws from its own
 * stream and its input does not depend on how the cases interleave. */
export function caseSeed(seed: number, i: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(i + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h >>> 0;
}

/** mulberry32. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let x = Math.imul(this.state ^ (this.state >>> 15), 1 | this.state);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  }

  /** 0 <= result < n */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** lo <= result <= hi */
  between(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  /** Mostly small sizes, now and then a large one. */
  size(max: number): number {
    const r = this.next();
    if (r < 0.5) return this.int(Math.min(16, max + 1));
    if (r < 0.85) return this.int(Math.min(256, max + 1));
    return this.int(max + 1);
  }
}

// Bytes that mean something to HTTP, aws-chunked, XML, URLs or UTF-8.
const SPECIAL_BYTES = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x25, 0x26, 0x2b, 0x2f, 0x30, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e,
  0x3f, 0x5d, 0x66, 0x7f, 0x80, 0xbf, 0xc0, 0xc3, 0xe2, 0xef, 0xf0, 0xf8, 0xfe, 0xff];
export const SPECIAL_TOKENS = [
  '\r\n', '\r\n\r\n', '\n', '\r', '\0', ';', ';chunk-signature=', '0\r\n\r\n', 'ffffffff', '100000000', '-1', ':',
  '<', '>', '</', '/>', '<!--', ']]>', '<![CDATA[', '&', '&amp;', '&#0;', '&#x1F600;', '&bogus;', '<?xml?>',
  '<!DOCTYPE x [<!ENTITY e "eeeeeeeeee">]>', '%', '%zz', '%C3%28', '%00', '%2F', '%FF', '+', '..', '//', '?', '#',
  '\u00ff', '\ufeff', '\u{1F600}', 'x-amz-checksum-crc32:', 'x-amz-trailer-signature:', 'NaN', '1e3', '99999999999999999999',
];

type Mutator = (rng: Rng, b: Buffer, maxRepeat: number) => Buffer;

const at = (rng: Rng, b: Buffer): number => rng.int(b.length + 1);

const MUTATORS: Mutator[] = [
  // flip a bit
  (rng, b) => {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    out[rng.int(b.length)] ^= 1 << rng.int(8);
    return out;
  },
  // overwrite a byte
  (rng, b) => {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    out[rng.int(b.length)] = rng.bool() ? rng.pick(SPECIAL_BYTES) : rng.int(256);
    return out;
  },
  // insert bytes
  (rng, b) => {
    const p = at(rng, b);
    const ins = rng.bool() ? Buffer.from(rng.pick(SPECIAL_TOKENS), 'utf8') : rng.bytes(1 + rng.int(8));
    return Buffer.concat([b.subarray(0, p), ins, b.subarray(p)]);
  },
  // delete a range
  (rng, b) => {
    const p = at(rng, b);
    return Buffer.concat([b.subarray(0, p), b.subarray(Math.min(b.length, p + 1 + rng.size(64)))]);
  },
  // duplicate a range in place
  (rng, b) => {
    const p = at(rng, b);
    const end = Math.min(b.length, p + 1 + rng.size(128));
    return Buffer.concat([b.subarray(0, end), b.subarray(p, end), b.subarray(end)]);
  },
  // copy a range elsewhere
  (rng, b) => {
    const p = at(rng, b);
    const piece = b.subarray(p, Math.min(b.length, p + 1 + rng.size(64)));
    const q = at(rng, b);
    return Buffer.concat([b.subarray(0, q), piece, b.subarray(q)]);
  },
  // truncate
  (rng, b) => b.subarray(0, at(rng, b)),
  // repeat a short piece many times: huge values
  (rng, b, maxRepeat) => {
    const p = at(rng, b);
    const piece = b.length > 0 && rng.bool() ? b.subarray(p, Math.min(b.length, p + 1 + rng.int(4))) : Buffer.from(rng.pick(SPECIAL_TOKENS));
    const times = Math.min(maxRepeat, rng.pick([16, 300, 5000, 40000]));
    return Buffer.concat([b.subarray(0, p), Buffer.alloc(piece.length * times, piece.length ? piece : 'x'), b.subarray(p)]);
  },
  // turn an ASCII digit or hex letter into another
  (rng, b) => {
    const positions: number[] = [];
    for (let i = 0; i < b.length; i++) if (/[0-9a-fA-F]/.test(String.fromCharCode(b[i]))) positions.push(i);
    if (positions.length === 0) return b;
    const out = Buffer.from(b);
    out[rng.pick(positions)] = rng.pick([0x30, 0x31, 0x39, 0x61, 0x66, 0x46, 0x67, 0x2d]);
    return out;
  },
];

/** One to `maxOps` random mutations of `input`; a piece repeated to make a
 * huge value is repeated at most `maxRepeat` times. */
export function mutateBytes(rng: Rng, input: Buffer, maxOps = 3, maxRepeat = 40000): Buffer {
  let b = input;
  for (let n = 1 + rng.int(maxOps); n > 0; n--) b = rng.pick(MUTATORS)(rng, b, maxRepeat);
  return b;
}

/** Positions that cut `n` bytes into pieces of 1 to `maxPiece` bytes. */
export function randomCuts(rng: Rng, n: number, maxPiece: number): number[] {
  const cuts: number[] = [];
  for (let pos = 1 + rng.int(maxPiece); pos < n; pos += 1 + rng.int(maxPiece)) cuts.push(pos);
  return cuts;
}

/** Splits `b` at `cuts`. */
export function split(b: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, b.length]) {
    if (c > prev) out.push(b.subarray(prev, c));
    prev = Math.max(prev, c);
  }
  return out;
}

// ---------------------------------------------------------------------------
// aws-chunked bodies, written from the AWS documentation (independent of
// lib/aws-chunked.ts).

export type ChunkedKind = 'signed' | 'signed-trailer' | 'unsigned-trailer';

export interface ChunkSigning {
  signingKey: Buffer;
  amzDate: string;
  scope: string;
  seedSignature: string;
}

export interface ChunkedBody {
  kind: ChunkedKind;
  chunkSize: number;
  /** Chunk and trailer signatures; without it signed kinds carry random ones. */
  signing?: ChunkSigning;
  /** Trailer lines; the trailer kinds default to the payload's CRC32. */
  trailers?: [string, string][];
}

export const sha256Hex = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
export const hmacSha256 = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data).digest();

export function signingKey(secret: string, date: string, region: string): Buffer {
  return hmacSha256(hmacSha256(hmacSha256(hmacSha256('AWS4' + secret, date), region), 's3'), 'aws4_request');
}

export function crc32Base64(data: Buffer): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32(data) >>> 0);
  return b.toString('base64');
}

export function encodeAwsChunked(payload: Buffer, o: ChunkedBody): Buffer {
  const signed = o.kind !== 'unsigned-trailer';
  const out: Buffer[] = [];
  let previous = o.signing?.seedSignature ?? '';
  const header = (chunk: Buffer): void => {
    let line = chunk.length.toString(16);
    if (signed) {
      previous = o.signing
        ? hmacSha256(o.signing.signingKey, ['AWS4-HMAC-SHA256-PAYLOAD', o.signing.amzDate, o.signing.scope, previous,
          sha256Hex(''), sha256Hex(chunk)].join('\n')).toString('hex')
        : sha256Hex(chunk);
      line += ';chunk-signature=' + previous;
    }
    out.push(Buffer.from(line + '\r\n'));
  };
  for (let pos = 0; pos < payload.length; pos += o.chunkSize) {
    const chunk = payload.subarray(pos, pos + o.chunkSize);
    header(chunk);
    out.push(chunk, Buffer.from('\r\n'));
  }
  header(Buffer.alloc(0));
  if (o.kind !== 'signed') {
    const trailers = o.trailers ?? [['x-amz-checksum-crc32', crc32Base64(payload)]];
    let canonical = '';
    for (const [name, value] of trailers) {
      out.push(Buffer.from(`${name}:${value}\r\n`));
      canonical += `${name}:${value}\n`;
    }
    if (signed) {
      const signature = o.signing
        ? hmacSha256(o.signing.signingKey, ['AWS4-HMAC-SHA256-TRAILER', o.signing.amzDate, o.signing.scope, previous,
          sha256Hex(canonical)].join('\n')).toString('hex')
        : sha256Hex(canonical);
      out.push(Buffer.from(`x-amz-trailer-signature:${signature}\r\n`));
    }
  }
  out.push(Buffer.from('\r\n'));
  return Buffer.concat(out);
}

/** x-amz-content-sha256 for each kind. */
export const STREAMING_HASH: Record<ChunkedKind, string> = {
  signed: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
  'signed-trailer': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
  'unsigned-trailer': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
};

/** A tally of outcomes, printed at the end of a run. */
export class Tally {
  private readonly counts = new Map<string, number>();

  add(label: string): void {
    this.counts.set(label, (this.counts.get(label) ?? 0) + 1);
  }

  get size(): number {
    return this.counts.size;
  }

  count(label: string): number {
    return this.counts.get(label) ?? 0;
  }

  has(label: string): boolean {
    return this.counts.has(label);
  }

  toString(): string {
    return [...this.counts].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} ${k}`).join(', ');
  }
}

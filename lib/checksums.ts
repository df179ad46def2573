// Incremental checksums for the S3 flexible-checksum algorithms, producing
// the base64 form S3 uses in `x-amz-checksum-<alg>` headers and trailers.
// They run over every byte the proxy streams, so the CRCs are table-driven
// with slicing-by-8 instead of a byte-at-a-time loop.

import { createHash, type Hash } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';

export type ChecksumAlgorithm = 'crc32' | 'crc32c' | 'crc64nvme' | 'sha1' | 'sha256';

const ALGORITHMS: readonly ChecksumAlgorithm[] = ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'];
const HEADER_PREFIX = 'x-amz-checksum-';

/** 'x-amz-checksum-crc32' (any case) -> 'crc32'; anything else -> undefined. */
export function checksumAlgorithmFromHeader(name: string): ChecksumAlgorithm | undefined {
  const lower = name.trim().toLowerCase();
  if (!lower.startsWith(HEADER_PREFIX)) return undefined;
  const alg = lower.slice(HEADER_PREFIX.length);
  return (ALGORITHMS as readonly string[]).includes(alg) ? alg as ChecksumAlgorithm : undefined;
}

export interface Checksum {
  update(buf: Buffer): void;
  digestBase64(): string;
}

export function createChecksum(alg: ChecksumAlgorithm): Checksum {
  switch (alg) {
    case 'crc32': return new Crc32();
    case 'crc32c': return new Crc32c();
    case 'crc64nvme': return new Crc64Nvme();
    case 'sha1': return new HashChecksum(createHash('sha1'));
    case 'sha256': return new HashChecksum(createHash('sha256'));
  }
}

class HashChecksum implements Checksum {
  constructor(private readonly hash: Hash) {}
  update(buf: Buffer): void { this.hash.update(buf); }
  digestBase64(): string { return this.hash.digest('base64'); }
}

function base64OfUint32(value: number): string {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(value >>> 0, 0);
  return out.toString('base64');
}

class Crc32 implements Checksum {
  private crc = 0;
  update(buf: Buffer): void { this.crc = zlibCrc32(buf, this.crc); }
  digestBase64(): string { return base64OfUint32(this.crc); }
}

// Slicing-by-8 tables: table k (at offset 256*k) advances a byte through k
// further zero bytes, so eight input bytes fold in with eight lookups.
function crc32Tables(poly: number): Int32Array {
  const t = new Int32Array(256 * 8);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    t[i] = c;
  }
  for (let i = 0; i < 256; i++) {
    for (let k = 1; k < 8; k++) {
      const prev = t[256 * (k - 1) + i];
      t[256 * k + i] = (prev >>> 8) ^ t[prev & 0xff];
    }
  }
  return t;
}

const CRC32C_TABLES = crc32Tables(0x82f63b78);

class Crc32c implements Checksum {
  private crc = 0xffffffff;

  update(buf: Buffer): void {
    const t = CRC32C_TABLES;
    let crc = this.crc;
    let i = 0;
    const end8 = buf.length - (buf.length & 7);
    for (; i < end8; i += 8) {
      crc ^= buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24);
      crc = t[1792 + (crc & 0xff)] ^ t[1536 + ((crc >>> 8) & 0xff)] ^
        t[1280 + ((crc >>> 16) & 0xff)] ^ t[1024 + (crc >>> 24)] ^
        t[768 + buf[i + 4]] ^ t[512 + buf[i + 5]] ^ t[256 + buf[i + 6]] ^ t[buf[i + 7]];
    }
    for (; i < buf.length; i++) crc = (crc >>> 8) ^ t[(crc ^ buf[i]) & 0xff];
    this.crc = crc;
  }

  digestBase64(): string { return base64OfUint32(~this.crc); }
}

// CRC64 without BigInt in the hot loop: every 64-bit table entry and the
// register are kept as two 32-bit halves (lo = bits 0..31, hi = 32..63).
const CRC64_POLY_LO = 0xac4bc9b5;
const CRC64_POLY_HI = 0x9a6c9329;

function crc64Tables(): { lo: Int32Array; hi: Int32Array } {
  const lo = new Int32Array(256 * 8);
  const hi = new Int32Array(256 * 8);
  for (let i = 0; i < 256; i++) {
    let l = i;
    let h = 0;
    for (let k = 0; k < 8; k++) {
      const carry = l & 1;
      l = (l >>> 1) | (h << 31);
      h = h >>> 1;
      if (carry) {
        l ^= CRC64_POLY_LO;
        h ^= CRC64_POLY_HI;
      }
    }
    lo[i] = l;
    hi[i] = h;
  }
  for (let i = 0; i < 256; i++) {
    for (let k = 1; k < 8; k++) {
      const pl = lo[256 * (k - 1) + i];
      const ph = hi[256 * (k - 1) + i];
      const idx = pl & 0xff;
      lo[256 * k + i] = ((pl >>> 8) | (ph << 24)) ^ lo[idx];
      hi[256 * k + i] = (ph >>> 8) ^ hi[idx];
    }
  }
  return { lo, hi };
}

const CRC64_TABLES = crc64Tables();

class Crc64Nvme implements Checksum {
  private lo = -1;
  private hi = -1;

  update(buf: Buffer): void {
    const tl = CRC64_TABLES.lo;
    const th = CRC64_TABLES.hi;
    let lo = this.lo;
    let hi = this.hi;
    let i = 0;
    const end8 = buf.length - (buf.length & 7);
    for (; i < end8; i += 8) {
      lo ^= buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24);
      hi ^= buf[i + 4] | (buf[i + 5] << 8) | (buf[i + 6] << 16) | (buf[i + 7] << 24);
      const a = 1792 + (lo & 0xff);
      const b = 1536 + ((lo >>> 8) & 0xff);
      const c = 1280 + ((lo >>> 16) & 0xff);
      const d = 1024 + (lo >>> 24);
      const e = 768 + (hi & 0xff);
      const f = 512 + ((hi >>> 8) & 0xff);
      const g = 256 + ((hi >>> 16) & 0xff);
      const h = hi >>> 24;
      lo = tl[a] ^ tl[b] ^ tl[c] ^ tl[d] ^ tl[e] ^ tl[f] ^ tl[g] ^ tl[h];
      hi = th[a] ^ th[b] ^ th[c] ^ th[d] ^ th[e] ^ th[f] ^ th[g] ^ th[h];
    }
    for (; i < buf.length; i++) {
      const idx = (lo ^ buf[i]) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ tl[idx];
      hi = (hi >>> 8) ^ th[idx];
    }
    this.lo = lo;
    this.hi = hi;
  }

  digestBase64(): string {
    const out = Buffer.allocUnsafe(8);
    out.writeUInt32BE(~this.hi >>> 0, 0);
    out.writeUInt32BE(~this.lo >>> 0, 4);
    return out.toString('base64');
  }
}

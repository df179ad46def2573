import t from 'tap';
import { createHash } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { checksumAlgorithmFromHeader, createChecksum, type ChecksumAlgorithm } from '../lib/checksums';
import { randomBuffer, rng } from './helpers/random';

const ALGS: ChecksumAlgorithm[] = ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'];


function oneShot(alg: ChecksumAlgorithm, data: Buffer): string {
  const c = createChecksum(alg);
  c.update(data);
  return c.digestBase64();
}

function hexToBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

// Bit-at-a-time reflected CRCs: slow, obviously correct references that share
// nothing with the table-driven code under test.
function referenceCrc(data: Buffer, width: 32 | 64, poly: bigint): string {
  const mask = (1n << BigInt(width)) - 1n;
  let crc = mask;
  for (const byte of data) {
    crc ^= BigInt(byte);
    for (let k = 0; k < 8; k++) crc = crc & 1n ? (crc >> 1n) ^ poly : crc >> 1n;
  }
  return (crc ^ mask).toString(16).padStart(width / 4, '0');
}

t.test('check values of "123456789"', async (t) => {
  const input = Buffer.from('123456789');
  t.equal(oneShot('crc32', input), hexToBase64('cbf43926'));
  t.equal(oneShot('crc32c', input), hexToBase64('e3069283'));
  t.equal(oneShot('crc64nvme', input), hexToBase64('ae8b14860a799888'));
  t.equal(oneShot('sha1', input), hexToBase64('f7c3bc1d808e04732adf679965ccc34ca7ae3441'));
  t.equal(oneShot('sha256', input), hexToBase64('15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225'));
});

t.test('empty input', async (t) => {
  t.equal(oneShot('crc32', Buffer.alloc(0)), 'AAAAAA==');
  t.equal(oneShot('crc32c', Buffer.alloc(0)), 'AAAAAA==');
  t.equal(oneShot('crc64nvme', Buffer.alloc(0)), 'AAAAAAAAAAA=');
  t.equal(oneShot('sha256', Buffer.alloc(0)), createHash('sha256').digest('base64'));
});

t.test('CRCs agree with bitwise references on random data', async (t) => {
  const next = rng(1);
  for (const n of [1, 7, 8, 9, 63, 64, 65, 1000, 4099]) {
    const data = randomBuffer(next, n);
    t.equal(oneShot('crc32', data), hexToBase64(referenceCrc(data, 32, 0xedb88320n)), `crc32 n=${n}`);
    t.equal(oneShot('crc32', data), hexToBase64((zlibCrc32(data) >>> 0).toString(16).padStart(8, '0')), `crc32 zlib n=${n}`);
    t.equal(oneShot('crc32c', data), hexToBase64(referenceCrc(data, 32, 0x82f63b78n)), `crc32c n=${n}`);
    t.equal(oneShot('crc64nvme', data), hexToBase64(referenceCrc(data, 64, 0x9a6c9329ac4bc9b5n)), `crc64nvme n=${n}`);
  }
});

t.test('SHA digests agree with node:crypto', async (t) => {
  const data = randomBuffer(rng(2), 100_000);
  t.equal(oneShot('sha1', data), createHash('sha1').update(data).digest('base64'));
  t.equal(oneShot('sha256', data), createHash('sha256').update(data).digest('base64'));
});

t.test('incremental updates on random splits equal one shot', async (t) => {
  const next = rng(3);
  const data = randomBuffer(next, 70_001);
  for (const alg of ALGS) {
    const whole = oneShot(alg, data);
    for (let round = 0; round < 5; round++) {
      const c = createChecksum(alg);
      let pos = 0;
      while (pos < data.length) {
        const n = Math.min(data.length - pos, Math.floor(next() * (round < 2 ? 20 : 9000)));
        c.update(data.subarray(pos, pos + n));
        pos += n;
      }
      t.equal(c.digestBase64(), whole, `${alg} round ${round}`);
    }
  }
});

t.test('checksumAlgorithmFromHeader', async (t) => {
  t.equal(checksumAlgorithmFromHeader('x-amz-checksum-crc32'), 'crc32');
  t.equal(checksumAlgorithmFromHeader('X-Amz-Checksum-CRC32C'), 'crc32c');
  t.equal(checksumAlgorithmFromHeader('x-amz-checksum-crc64nvme'), 'crc64nvme');
  t.equal(checksumAlgorithmFromHeader('x-amz-checksum-sha1'), 'sha1');
  t.equal(checksumAlgorithmFromHeader(' x-amz-checksum-sha256 '), 'sha256');
  t.equal(checksumAlgorithmFromHeader('x-amz-checksum-md5'), undefined);
  t.equal(checksumAlgorithmFromHeader('x-amz-checksum-algorithm'), undefined);
  t.equal(checksumAlgorithmFromHeader('crc32'), undefined);
  t.equal(checksumAlgorithmFromHeader('x-amz-trailer-signature'), undefined);
});

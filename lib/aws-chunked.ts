// The `aws-chunked` framing of request bodies (SigV4 streaming uploads):
// decoded on the way in, and framed again on the way out when the client's
// body ended with a checksum.
//
// The decoder. The proxy pipes the decoded bytes straight into an upstream PUT
// whose Content-Length is the decoded length, and S3 discards a PUT whose
// body ends early. So the decoder keeps back the most recently decoded piece
// and releases it only once the whole body has proven sound: framing,
// decoded length, trailing checksum and signatures. Any failure destroys the
// stream with an S3Error before those last bytes leave, which turns a bad
// upload into a short upstream body that S3 throws away.

import { createHash, createHmac, timingSafeEqual, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { S3Error } from './errors';
import { checksumAlgorithmFromHeader, createChecksum, type Checksum, type ChecksumAlgorithm } from './checksums';

export type StreamingKind = 'signed' | 'signed-trailer' | 'unsigned-trailer';

/** The framing announced by `x-amz-content-sha256`; undefined for non-streaming bodies. */
export function streamingKind(contentSha256: string | undefined): StreamingKind | undefined {
  switch (contentSha256?.trim()) {
    case 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD': return 'signed';
    case 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER': return 'signed-trailer';
    case 'STREAMING-UNSIGNED-PAYLOAD-TRAILER': return 'unsigned-trailer';
    default: return undefined;
  }
}

export interface ChunkSignatureContext {
  signingKey: Buffer;
  amzDate: string;
  scope: string;
  seedSignature: string;
}

export interface AwsChunkedOptions {
  kind: StreamingKind;
  /** x-amz-decoded-content-length, when the client sent it. */
  decodedLength?: number;
  /** x-amz-trailer: comma-separated names of the trailers the body ends with. */
  trailer?: string;
  /** Verify chunk and trailer signatures; only meaningful for the signed kinds. */
  verify?: ChunkSignatureContext;
  maxChunkSize?: number;
}

const EMPTY_SHA256 = createHash('sha256').digest('hex');
const TRAILER_SIGNATURE = 'x-amz-trailer-signature';
// A chunk header with its signature is under 100 bytes; this only stops a
// client from growing our line buffer without bound.
const MAX_LINE = 4096;
const DEFAULT_MAX_CHUNK = 16 * 1024 * 1024;

enum State { Header, Data, DataCR, DataLF, Trailer, Done }

export class AwsChunkedDecoder extends Transform {
  /** The trailers received, lower-cased names; filled only once everything verified. */
  readonly trailers: Record<string, string> = Object.create(null);

  private readonly kind: StreamingKind;
  private readonly decodedLength: number | undefined;
  private readonly maxChunkSize: number;
  private readonly verify: ChunkSignatureContext | undefined;
  private readonly declared: string[];
  private readonly checksumName: string | undefined;
  private readonly checksum: Checksum | undefined;
  /** The algorithm of the checksum the body ends with, if it ends with one. */
  readonly checksumAlgorithm: ChecksumAlgorithm | undefined;

  private state = State.Header;
  private line = '';
  private remaining = 0;
  private total = 0;
  private held: Buffer | undefined;
  private previousSignature: string;
  private chunkSignature = '';
  private chunkHash: Hash | undefined;
  private readonly received = new Map<string, string>();
  private signedTrailerText = '';
  private trailerSignature: string | undefined;

  /** Throws S3Error when `trailer` names a checksum we cannot compute. */
  constructor(opts: AwsChunkedOptions) {
    super();
    this.kind = opts.kind;
    this.decodedLength = opts.decodedLength;
    this.maxChunkSize = opts.maxChunkSize ?? DEFAULT_MAX_CHUNK;
    this.verify = opts.kind === 'unsigned-trailer' ? undefined : opts.verify;
    this.previousSignature = this.verify?.seedSignature ?? '';
    this.declared = (opts.trailer ?? '').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
    const checksums = this.declared.filter((name) => name.startsWith('x-amz-checksum-'));
    if (checksums.length > 1) {
      throw new S3Error('InvalidRequest', 'Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.');
    }
    if (checksums.length === 1) {
      const alg = checksumAlgorithmFromHeader(checksums[0]);
      if (alg === undefined) throw new S3Error('InvalidArgument', `Unsupported trailer ${checksums[0]}.`);
      this.checksumName = checksums[0];
      this.checksumAlgorithm = alg;
      this.checksum = createChecksum(alg);
    }
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    try {
      this.consume(chunk);
      callback();
    } catch (err) {
      this.fail(err, callback);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      // Some clients stop after the last trailer line without the closing empty line.
      const endsCleanly = this.state === State.Done ||
        (this.state === State.Trailer && (this.line === '' || this.line === '\r'));
      if (!endsCleanly) throw new S3Error('IncompleteBody', 'The aws-chunked body ended before its final chunk and trailers.');
      this.finish();
      if (this.held) this.push(this.held);
      callback();
    } catch (err) {
      this.fail(err, callback);
    }
  }

  private fail(err: unknown, callback: TransformCallback): void {
    this.held = undefined;
    callback(err as Error);
  }

  private consume(buf: Buffer): void {
    let pos = 0;
    while (pos < buf.length) {
      switch (this.state) {
        case State.Header:
        case State.Trailer: {
          const lf = buf.indexOf(0x0a, pos);
          const end = lf < 0 ? buf.length : lf;
          if (this.line.length + (end - pos) > MAX_LINE) {
            throw new S3Error('InvalidArgument', 'An aws-chunked header or trailer line is too long.');
          }
          this.line += buf.toString('latin1', pos, end);
          if (lf < 0) return;
          pos = lf + 1;
          const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
          this.line = '';
          if (this.state === State.Header) this.chunkHeader(line);
          else this.trailerLine(line);
          break;
        }
        case State.Data: {
          const take = Math.min(this.remaining, buf.length - pos);
          this.data(buf.subarray(pos, pos + take));
          pos += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.endOfChunk(false);
            this.state = State.DataCR;
          }
          break;
        }
        case State.DataCR:
        case State.DataLF: {
          const want = this.state === State.DataCR ? 0x0d : 0x0a;
          if (buf[pos] !== want) throw new S3Error('InvalidArgument', 'An aws-chunked chunk is not followed by CRLF.');
          pos++;
          this.state = this.state === State.DataCR ? State.DataLF : State.Header;
          break;
        }
        case State.Done:
          // minio-go ends its trailers with one line break more than it needs.
          if (buf[pos] !== 0x0d && buf[pos] !== 0x0a) throw new S3Error('InvalidArgument', 'Data follows the end of the aws-chunked body.');
          pos++;
          break;
      }
    }
  }

  private chunkHeader(line: string): void {
    const semi = line.indexOf(';');
    const sizeText = (semi < 0 ? line : line.slice(0, semi)).trimEnd();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new S3Error('InvalidArgument', 'An aws-chunked chunk size is not hexadecimal.');
    const digits = sizeText.replace(/^0+/, '');
    const size = digits === '' ? 0 : parseInt(digits, 16);
    if (digits.length > 8 || size > this.maxChunkSize) {
      throw new S3Error('InvalidArgument', `An aws-chunked chunk is larger than ${this.maxChunkSize} bytes.`);
    }
    if (this.decodedLength !== undefined && this.total + size > this.decodedLength) {
      throw new S3Error('IncompleteBody', 'The aws-chunked body is longer than x-amz-decoded-content-length.');
    }

    if (this.verify) {
      let signature: string | undefined;
      if (semi >= 0) {
        for (const ext of line.slice(semi + 1).split(';')) {
          const eq = ext.indexOf('=');
          if (eq >= 0 && ext.slice(0, eq).trim().toLowerCase() === 'chunk-signature') signature = ext.slice(eq + 1).trim();
        }
      }
      if (signature === undefined) throw new S3Error('SignatureDoesNotMatch', 'An aws-chunked chunk has no chunk-signature.');
      this.chunkSignature = signature;
      this.chunkHash = createHash('sha256');
    }

    if (size > 0) {
      this.remaining = size;
      this.state = State.Data;
      return;
    }
    this.endOfChunk(true);
    if (this.decodedLength !== undefined && this.total !== this.decodedLength) {
      throw new S3Error('IncompleteBody', 'The aws-chunked body is shorter than x-amz-decoded-content-length.');
    }
    this.state = State.Trailer;
  }

  private data(piece: Buffer): void {
    this.total += piece.length;
    this.checksum?.update(piece);
    this.chunkHash?.update(piece);
    if (this.held) this.push(this.held);
    this.held = piece;
  }

  private endOfChunk(final: boolean): void {
    if (!this.verify || !this.chunkHash) return;
    const { amzDate, scope } = this.verify;
    const stringToSign = ['AWS4-HMAC-SHA256-PAYLOAD', amzDate, scope, this.previousSignature, EMPTY_SHA256,
      this.chunkHash.digest('hex')].join('\n');
    this.previousSignature = this.checkSignature(stringToSign, this.chunkSignature,
      final ? 'The final aws-chunked chunk signature does not match.' : 'An aws-chunked chunk signature does not match.');
    this.chunkHash = undefined;
  }

  /** Returns the expected signature (hex) so the chain continues from it. */
  private checkSignature(stringToSign: string, supplied: string, message: string): string {
    const expected = createHmac('sha256', this.verify!.signingKey).update(stringToSign).digest();
    const given = /^[0-9a-fA-F]{64}$/.test(supplied) ? Buffer.from(supplied, 'hex') : Buffer.alloc(0);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new S3Error('SignatureDoesNotMatch', message);
    }
    return expected.toString('hex');
  }

  private trailerLine(line: string): void {
    if (line === '') {
      // minio-go writes an empty line after its trailers, before the trailer
      // signature: the empty line that ends the body comes after all of them.
      if (!this.allTrailersIn()) return;
      this.state = State.Done;
      return;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new S3Error('InvalidArgument', 'An aws-chunked trailer line is malformed.');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (this.trailerSignature !== undefined) {
      throw new S3Error('InvalidArgument', 'An aws-chunked trailer follows the trailer signature.');
    }
    if (name === TRAILER_SIGNATURE) {
      if (this.kind !== 'signed-trailer') throw new S3Error('InvalidArgument', 'Unexpected x-amz-trailer-signature.');
      this.trailerSignature = value;
      return;
    }
    if (!this.declared.includes(name)) {
      throw new S3Error('InvalidArgument', `The trailer ${name} was not announced by x-amz-trailer.`);
    }
    if (this.received.has(name)) throw new S3Error('InvalidArgument', `The trailer ${name} was sent twice.`);
    this.received.set(name, value);
    // Signers hash each trailer as it went on the wire, with "\n" as the end of line.
    this.signedTrailerText += line + '\n';
  }

  private allTrailersIn(): boolean {
    return this.declared.every((name) => this.received.has(name)) &&
      (this.kind !== 'signed-trailer' || this.trailerSignature !== undefined);
  }

  private finish(): void {
    for (const name of this.declared) {
      if (!this.received.has(name)) throw new S3Error('IncompleteBody', `The aws-chunked body ended without the trailer ${name}.`);
    }
    if (this.verify && this.kind === 'signed-trailer') {
      if (this.trailerSignature === undefined) {
        throw new S3Error('SignatureDoesNotMatch', 'The aws-chunked body has no x-amz-trailer-signature.');
      }
      const { amzDate, scope } = this.verify;
      const trailerHash = createHash('sha256').update(this.signedTrailerText, 'latin1').digest('hex');
      this.checkSignature(['AWS4-HMAC-SHA256-TRAILER', amzDate, scope, this.previousSignature, trailerHash].join('\n'),
        this.trailerSignature, 'The aws-chunked trailer signature does not match.');
    }
    if (this.checksum && this.checksumName && this.checksumAlgorithm) {
      if (this.received.get(this.checksumName) !== this.checksum.digestBase64()) {
        throw new S3Error('BadDigest', `The ${this.checksumAlgorithm.toUpperCase()} you specified did not match the calculated checksum.`);
      }
    }
    for (const [name, value] of this.received) this.trailers[name] = value;
  }

  /** The trailing checksum, once the whole body has verified. */
  checksumValue(): string | undefined {
    return this.checksumName === undefined ? undefined : this.trailers[this.checksumName];
  }
}

// The encoder. A client's trailing checksum goes to the backend as a trailing
// checksum too (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`), so the backend checks
// and stores it as if the client had sent it there: dropped, the object loses
// its checksum, and a part of an upload begun with `x-amz-checksum-algorithm`
// is refused. Chunks have a fixed size, so the framed length is known before
// the first byte; the trailer is written only after the decoder has verified
// the whole body, so a body that fails reaches the backend cut short.

const FRAME_CHUNK = 64 * 1024;
const CRLF = Buffer.from('\r\n', 'latin1');

function framedChunkLength(size: number): number {
  return size.toString(16).length + 2 + size + 2;
}

export class AwsChunkedEncoder extends Transform {
  /** The framed body's length: the backend request's Content-Length. */
  readonly length: number;

  private readonly trailerName: string;
  private remaining: number;
  private leftInChunk = 0;

  /** `value` gives the checksum once the body has ended; undefined fails the body. */
  constructor(decodedLength: number, algorithm: ChecksumAlgorithm, private readonly value: () => string | undefined) {
    super();
    this.remaining = decodedLength;
    this.trailerName = `x-amz-checksum-${algorithm}`;
    const full = Math.floor(decodedLength / FRAME_CHUNK);
    const rest = decodedLength % FRAME_CHUNK;
    this.length = full * framedChunkLength(FRAME_CHUNK) + (rest > 0 ? framedChunkLength(rest) : 0) +
      this.lastChunk(createChecksum(algorithm).digestBase64()).length;
  }

  private lastChunk(value: string): string {
    return `0\r\n${this.trailerName}:${value}\r\n\r\n`;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (chunk.length > this.remaining) {
      callback(new S3Error('IncompleteBody', 'The body is longer than its decoded length.'));
      return;
    }
    this.remaining -= chunk.length;
    for (let pos = 0; pos < chunk.length;) {
      if (this.leftInChunk === 0) {
        this.leftInChunk = Math.min(FRAME_CHUNK, this.remaining + chunk.length - pos);
        this.push(Buffer.from(`${this.leftInChunk.toString(16)}\r\n`, 'latin1'));
      }
      const take = Math.min(this.leftInChunk, chunk.length - pos);
      this.push(take === chunk.length ? chunk : chunk.subarray(pos, pos + take));
      pos += take;
      this.leftInChunk -= take;
      if (this.leftInChunk === 0) this.push(CRLF);
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    const value = this.value();
    if (this.remaining > 0 || value === undefined) {
      callback(new S3Error('IncompleteBody', 'The body ended before its decoded length and checksum.'));
      return;
    }
    this.push(Buffer.from(this.lastChunk(value), 'latin1'));
    callback();
  }
}

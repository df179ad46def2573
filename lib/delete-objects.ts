import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import sax from 'sax';
import { S3Error, xmlEscape } from './errors';
import type { Backend } from './backend';
import type { VirtualBucket } from './virtual-bucket';
import type { S3Request } from './s3-request';
import { readCapped, requestPayload } from './forward';
import { checksumAlgorithmFromHeader, createChecksum } from './checksums';
import type { ChecksumAlgorithm } from './checksums';
import { sendXml } from './bucket-ops';
import { feed } from './xml-feed';

// DeleteObjects names keys that live on different shards: split the list by
// owner, send each shard its part with its own integrity headers, and merge
// the answers into the one DeleteResult the client expects.

const MAX_OBJECTS = 1000;
// 1000 keys of 1024 bytes, escaped, with their element tags.
const MAX_BODY = 8 * 1024 * 1024;

interface ObjectId { key: string; versionId?: string }
interface DeleteRequest { quiet: boolean; objects: ObjectId[] }

export function parseDeleteRequest(xml: string): DeleteRequest {
  const parser = sax.parser(true, { trim: false });
  const path: string[] = [];
  const objects: ObjectId[] = [];
  let quiet = false;
  let text = '';
  let current: Partial<ObjectId> | undefined;
  parser.onopentag = (tag) => {
    path.push(tag.name);
    // Delete/Object/Key is as deep as this document goes.
    if (path.length > 3) throw new S3Error('MalformedXML');
    text = '';
    if (path.join('/') === 'Delete/Object') current = {};
  };
  parser.ontext = (t) => { text += t; };
  parser.oncdata = (t) => { text += t; };
  parser.onclosetag = () => {
    const at = path.join('/');
    // An XML boolean: true or 1 (MinIO also takes True).
    if (at === 'Delete/Quiet') quiet = /^(true|1)$/i.test(text.trim());
    else if (at === 'Delete/Object/Key' && current) current.key = text;
    else if (at === 'Delete/Object/VersionId' && current) current.versionId = text;
    else if (at === 'Delete/Object') {
      if (!current?.key) throw new S3Error('MalformedXML');
      objects.push(current as ObjectId);
      if (objects.length > MAX_OBJECTS) throw new S3Error('MalformedXML', `DeleteObjects accepts at most ${MAX_OBJECTS} keys.`);
      current = undefined;
    }
    path.pop();
  };
  parser.onerror = () => { throw new S3Error('MalformedXML'); };
  try {
    feed(parser, xml);
    parser.close();
  } catch (err) {
    if (err instanceof S3Error) throw err;
    throw new S3Error('MalformedXML');
  }
  if (objects.length === 0 || path.length !== 0) throw new S3Error('MalformedXML');
  return { quiet, objects };
}

function deleteXml(d: DeleteRequest): string {
  const objects = d.objects.map((o) =>
    `<Object><Key>${xmlEscape(o.key)}</Key>${o.versionId ? `<VersionId>${xmlEscape(o.versionId)}</VersionId>` : ''}</Object>`);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>${d.quiet}</Quiet>${objects.join('')}</Delete>`;
}

interface ResultEntry { deleted: boolean; xml: string }

// A shard's DeleteResult, cut into its <Deleted> and <Error> elements, which
// are copied through unchanged.
function parseDeleteResult(xml: string): ResultEntry[] {
  const entries: ResultEntry[] = [];
  const re = /<(Deleted|Error)>[\s\S]*?<\/\1>/g;
  for (let m = re.exec(xml); m; m = re.exec(xml)) entries.push({ deleted: m[1] === 'Deleted', xml: m[0] });
  if (entries.length === 0 && !/<DeleteResult[\s>]/.test(xml) && !/<DeleteResult\/>/.test(xml)) {
    throw new S3Error('BadGateway', 'A shard answered DeleteObjects without a DeleteResult.');
  }
  return entries;
}

export async function deleteObjects(req: IncomingMessage, res: ServerResponse, s3: S3Request, vb: VirtualBucket,
  signal: AbortSignal): Promise<void> {
  const payload = await requestPayload(req, s3.auth?.chunk);
  if (!payload.body) throw new S3Error('MalformedXML');
  if (payload.length > MAX_BODY) throw new S3Error('EntityTooLarge');
  const raw = await readCapped(payload.body, MAX_BODY);
  verifyClientIntegrity(req, raw);
  const request = parseDeleteRequest(raw.toString('utf8'));

  // Each key goes wherever a ring generation may have left it, to its
  // earlier owners before its current one (why: see forward.ts).
  const current = new Map<Backend, ObjectId[]>();
  const earlier = new Map<Backend, ObjectId[]>();
  const add = (groups: Map<Backend, ObjectId[]>, b: Backend, o: ObjectId) => {
    const group = groups.get(b);
    if (group) group.push(o);
    else groups.set(b, [o]);
  };
  for (const o of request.objects) {
    const [owner, ...rest] = vb.owners(o.key);
    add(current, owner, o);
    for (const b of rest) add(earlier, b, o);
  }
  const algorithm = checksumAlgorithmFromHeader(
    Object.keys(req.headers).find((h) => checksumAlgorithmFromHeader(h) !== undefined) ?? '');

  const send = async (backend: Backend, objects: ObjectId[], quiet: boolean) => {
    const body = Buffer.from(deleteXml({ quiet, objects }));
    const headers: Record<string, string> = {
      'content-type': 'application/xml',
      'content-length': String(body.length),
      'content-md5': createHash('md5').update(body).digest('base64'),
    };
    if (algorithm) headers[`x-amz-checksum-${algorithm}`] = checksumOf(algorithm, body);
    const r = await backend.request({
      method: 'POST', query: [['delete', '']], headers, body,
      payloadHash: createHash('sha256').update(body).digest('hex'), signal,
    });
    const text = (await readCapped(r.body, MAX_BODY)).toString('utf8');
    if (r.statusCode !== 200) {
      throw new S3Error('ServiceUnavailable', `Shard bucket ${backend.bucket} failed DeleteObjects (${r.statusCode}).`);
    }
    return parseDeleteResult(text);
  };
  // A key left at an earlier owner would still be read: that is a failure of
  // the whole request, which the client can repeat.
  const early = await Promise.all([...earlier].map(([backend, objects]) => send(backend, objects, true)));
  if (early.flat().some((e) => !e.deleted)) {
    throw new S3Error('ServiceUnavailable', 'A shard that held keys before the last ring change could not delete them.');
  }
  const results = await Promise.all([...current].map(([backend, objects]) => send(backend, objects, request.quiet)));

  const all = results.flat();
  const deleted = all.filter((e) => e.deleted && !request.quiet).map((e) => e.xml);
  const errors = all.filter((e) => !e.deleted).map((e) => e.xml);
  sendXml(res, 200, `<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${deleted.join('')}${errors.join('')}</DeleteResult>`);
}

function checksumOf(algorithm: ChecksumAlgorithm, body: Buffer): string {
  const c = createChecksum(algorithm);
  c.update(body);
  return c.digestBase64();
}

// The body never reaches a backend as sent, so the proxy checks what the
// client protected it with.
function verifyClientIntegrity(req: IncomingMessage, raw: Buffer): void {
  const md5 = req.headers['content-md5'];
  if (typeof md5 === 'string' && createHash('md5').update(raw).digest('base64') !== md5) throw new S3Error('BadDigest');
  for (const name of Object.keys(req.headers)) {
    const alg = checksumAlgorithmFromHeader(name);
    if (alg && checksumOf(alg, raw) !== req.headers[name]) throw new S3Error('BadDigest');
  }
  const sha = req.headers['x-amz-content-sha256'];
  if (typeof sha === 'string' && /^[0-9a-f]{64}$/.test(sha) && createHash('sha256').update(raw).digest('hex') !== sha) {
    throw new S3Error('XAmzContentSHA256Mismatch');
  }
}

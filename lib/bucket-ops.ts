import type { ServerResponse } from 'node:http';
import { S3Error, xmlEscape } from './errors';
import type { S3Request } from './s3-request';
import type { VirtualBucket } from './virtual-bucket';

// Requests about the virtual bucket itself are answered here: it exists, it
// is ours, it lives in the configured region. No backend is asked.

const XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';
const OWNER = '<Owner><ID>tempo-s3-shard</ID><DisplayName>tempo-s3-shard</DisplayName></Owner>';

export function sendXml(res: ServerResponse, status: number, xml: string, headers: Record<string, string> = {}): void {
  const body = Buffer.from('<?xml version="1.0" encoding="UTF-8"?>\n' + xml);
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': String(body.length), ...headers });
  res.end(body);
}

export function listBuckets(res: ServerResponse, buckets: readonly VirtualBucket[], created: Date): void {
  const items = buckets.map((b) =>
    `<Bucket><Name>${xmlEscape(b.name)}</Name><CreationDate>${created.toISOString()}</CreationDate></Bucket>`).join('');
  sendXml(res, 200, `<ListAllMyBucketsResult xmlns="${XMLNS}">${OWNER}<Buckets>${items}</Buckets></ListAllMyBucketsResult>`);
}

export function bucketOp(res: ServerResponse, s3: S3Request, region: string): void {
  switch (s3.operation) {
    case 'GetBucketLocation':
      // S3 answers us-east-1 with an empty constraint; clients map it back.
      sendXml(res, 200, region === 'us-east-1'
        ? `<LocationConstraint xmlns="${XMLNS}"/>`
        : `<LocationConstraint xmlns="${XMLNS}">${xmlEscape(region)}</LocationConstraint>`);
      return;
    case 'HeadBucket':
      res.writeHead(200, { 'x-amz-bucket-region': region, 'content-length': '0' });
      res.end();
      return;
    case 'CreateBucket':
      // What S3 tells the owner of an existing bucket: us-east-1 keeps its
      // legacy 200, every other region answers 409.
      if (region !== 'us-east-1') throw new S3Error('BucketAlreadyOwnedByYou');
      res.writeHead(200, { location: `/${s3.bucket}`, 'content-length': '0' });
      res.end();
      return;
    case 'GetBucketVersioning':
      sendXml(res, 200, `<VersioningConfiguration xmlns="${XMLNS}"/>`);
      return;
    case 'DeleteBucket':
      throw new S3Error('MethodNotAllowed', 'The virtual bucket is configuration; it cannot be deleted through the proxy.');
    default:
      throw new Error(`not a bucket operation: ${s3.operation}`);
  }
}

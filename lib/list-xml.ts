// The client-facing side of a merged listing: the entries the merger keeps,
// and the S3 result documents (ListBucketResult V1/V2, ListVersionsResult,
// ListMultipartUploadsResult) written from them.

import { xmlEscape } from './errors';
import { encodePath } from './sigv4';
import type { ListRequest } from './list-merge';

export interface XmlNode {
  name: string;
  text: string;
  children: XmlNode[];
}

export type EntryElement = 'Contents' | 'Version' | 'DeleteMarker' | 'Upload' | 'CommonPrefixes';

export interface Entry {
  element: EntryElement;
  /** The key, or the common prefix, decoded. */
  name: string;
  /** UTF-8 of `name`: listings are ordered by these bytes. */
  bytes: Buffer;
  /** VersionId or UploadId. */
  id: string | undefined;
  /** The entry's child elements but its Key, as XML, in the backend's order;
   * written when the page is parsed, as entries may be kept between pages. */
  fields: string;
}

const S3_XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';
const CHUNK = 16 * 1024;

function renderNode(n: XmlNode): string {
  const inner = n.children.length > 0 ? n.children.map(renderNode).join('') : xmlEscape(n.text);
  return `<${n.name}>${inner}</${n.name}>`;
}

/** An entry's child elements but Key (rewritten on output), and Owner only
 * if the client asked for it: some backends send it anyway. */
export function renderFields(children: readonly XmlNode[], withOwner: boolean): string {
  // join() writes one flat string: built with +=, an entry kept between
  // pages would hold a tree of some twenty string pieces.
  return children.filter((f) => f.name !== 'Key' && (f.name !== 'Owner' || withOwner)).map(renderNode).join('');
}

// S3 and MinIO write Key first; so does this.
function renderEntry(e: Entry, name: string): string {
  if (e.element === 'CommonPrefixes') return `<CommonPrefixes><Prefix>${name}</Prefix></CommonPrefixes>`;
  return `<${e.element}><Key>${name}</Key>${e.fields}</${e.element}>`;
}

/**
 * The result document for one page, in pieces of about 16 KiB. `truncated`
 * pages resume after their last entry; V2 carries that as
 * `nextContinuationToken`.
 */
export function* renderListing(
  req: ListRequest,
  entries: readonly Entry[],
  truncated: boolean,
  nextContinuationToken: string | undefined,
): Generator<string> {
  const encodeName = (s: string, bytes?: Buffer): string => (req.encodingUrl ? encodePath(s, bytes) : xmlEscape(s));
  const el = (tag: string, value: string | number | boolean): string => `<${tag}>${value}</${tag}>`;
  const last = truncated ? entries[entries.length - 1] : undefined;
  const delimiter = req.delimiter ? el('Delimiter', encodeName(req.delimiter)) : '';
  const encodingType = req.encodingUrl ? el('EncodingType', 'url') : '';

  let root: string;
  let head: string;
  switch (req.kind) {
    case 'v1':
      root = 'ListBucketResult';
      head = el('Name', xmlEscape(req.bucket)) + el('Prefix', encodeName(req.prefix)) +
        el('Marker', encodeName(req.marker)) + (last ? el('NextMarker', encodeName(last.name, last.bytes)) : '') +
        el('MaxKeys', req.maxKeys) + delimiter + encodingType;
      break;
    case 'v2':
      root = 'ListBucketResult';
      head = el('Name', xmlEscape(req.bucket)) + el('Prefix', encodeName(req.prefix)) +
        (req.continuationToken ? el('ContinuationToken', xmlEscape(req.continuationToken)) : '') +
        (req.startAfter ? el('StartAfter', encodeName(req.startAfter)) : '') +
        (nextContinuationToken !== undefined ? el('NextContinuationToken', nextContinuationToken) : '') +
        el('KeyCount', entries.length) + el('MaxKeys', req.maxKeys) + delimiter + encodingType;
      break;
    case 'versions':
      root = 'ListVersionsResult';
      head = el('Name', xmlEscape(req.bucket)) + el('Prefix', encodeName(req.prefix)) +
        el('KeyMarker', encodeName(req.keyMarker)) + el('VersionIdMarker', xmlEscape(req.versionIdMarker)) +
        (last ? el('NextKeyMarker', encodeName(last.name, last.bytes)) : '') +
        (last?.id !== undefined ? el('NextVersionIdMarker', xmlEscape(last.id)) : '') +
        el('MaxKeys', req.maxKeys) + delimiter + encodingType;
      break;
    case 'uploads':
      root = 'ListMultipartUploadsResult';
      head = el('Bucket', xmlEscape(req.bucket)) + el('KeyMarker', encodeName(req.keyMarker)) +
        el('UploadIdMarker', xmlEscape(req.uploadIdMarker)) +
        (last ? el('NextKeyMarker', encodeName(last.name, last.bytes)) : '') +
        (last?.id !== undefined ? el('NextUploadIdMarker', xmlEscape(last.id)) : '') +
        delimiter + el('Prefix', encodeName(req.prefix)) + el('MaxUploads', req.maxKeys) + encodingType;
      break;
  }

  let buf = `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${S3_XMLNS}">${head}${el('IsTruncated', truncated)}`;
  // S3 writes the entries first and the common prefixes after them.
  for (const pass of [false, true]) {
    for (const e of entries) {
      if ((e.element === 'CommonPrefixes') !== pass) continue;
      buf += renderEntry(e, encodeName(e.name, e.bytes));
      if (buf.length >= CHUNK) {
        yield buf;
        buf = '';
      }
    }
  }
  yield `${buf}</${root}>`;
}

import { S3Error } from './errors';

export interface CopySource { bucket: string; key: string; versionId?: string }

// `x-amz-copy-source` is `[/]bucket/key[?versionId=id]`, URL-encoded.
export function decodeCopySource(header: string): CopySource {
  const q = header.indexOf('?');
  const rawPath = q < 0 ? header : header.slice(0, q);
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    throw new S3Error('InvalidArgument', 'Copy Source must mention the source bucket and key: sourcebucket/sourcekey.');
  }
  if (path.startsWith('/')) path = path.slice(1);
  const slash = path.indexOf('/');
  if (slash <= 0 || slash === path.length - 1) {
    throw new S3Error('InvalidArgument', 'Copy Source must mention the source bucket and key: sourcebucket/sourcekey.');
  }
  const versionId = q < 0 ? undefined : new URLSearchParams(header.slice(q + 1)).get('versionId') ?? undefined;
  return { bucket: path.slice(0, slash), key: path.slice(slash + 1), versionId };
}

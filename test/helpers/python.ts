import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

const venv = join(process.env.TSS_CACHE ?? join(homedir(), '.cache', 'tempo-s3-shard'), 'venv');

/** The Python with boto3 and the AWS CLI that `make python` installs. */
export function python(): string {
  const bin = join(venv, 'bin', 'python');
  if (!existsSync(bin)) throw new Error(`${bin} missing: run "make python" first`);
  return bin;
}

export function awsCli(): string {
  const bin = join(venv, 'bin', 'aws');
  if (!existsSync(bin)) throw new Error(`${bin} missing: run "make python" first`);
  return bin;
}

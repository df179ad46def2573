import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';

// Compose files read the way `docker compose` reads them: YAML (anchors
// included), then ${VAR} interpolation from the environment, then later
// files merged over earlier ones. Only what the repository's compose files
// use is supported; anything else throws rather than being misread.

export type Mapping = Record<string, unknown>;

/** Parses one YAML file; any YAML error or warning (a duplicate key, say) throws. */
export function readYaml(path: string): unknown {
  const doc = parseDocument(readFileSync(path, 'utf8'), { uniqueKeys: true });
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length) throw new Error(`${path}: ${problems.map((e) => e.message).join('; ')}`);
  return doc.toJS({ maxAliasCount: 100 });
}

export interface Interpolated<T> { value: T; unset: string[] }

const VARIABLE = /\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g;

/**
 * Compose's interpolation of every string value (not keys): $$ is a literal
 * $, ${VAR:-default} and ${VAR-default} fall back, ${VAR:?message} throws.
 * `unset` lists the variables that had neither a value nor a default.
 */
export function interpolate<T>(value: T, env: Record<string, string | undefined>): Interpolated<T> {
  const unset: string[] = [];
  const one = (s: string): string => s.replace(VARIABLE, (whole, braced?: string, op?: string, arg?: string, bare?: string) => {
    if (whole === '$$') return '$';
    const name = (braced ?? bare)!;
    const v = env[name];
    const missing = op?.startsWith(':') ? v === undefined || v === '' : v === undefined;
    switch (op) {
      case undefined:
        if (v === undefined) unset.push(name);
        return v ?? '';
      case ':-':
      case '-':
        return missing ? arg! : v!;
      case ':?':
      case '?':
        if (missing) throw new Error(`required variable ${name} is missing: ${arg}`);
        return v!;
      default:
        throw new Error(`unsupported interpolation ${whole}`);
    }
  });
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return one(v);
    if (Array.isArray(v)) return v.map(walk);
    if (isMapping(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return { value: walk(value) as T, unset };
}

// Lists compose replaces instead of appending to when a later file sets them.
const REPLACED = new Set(['command', 'entrypoint', 'test']);

/** Later compose files over earlier ones: mappings merge, lists append, command-like lists replace. */
export function mergeCompose(base: unknown, over: unknown, key = ''): unknown {
  if (isMapping(base) && isMapping(over)) {
    const out: Mapping = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = k in base ? mergeCompose(base[k], v, k) : v;
    return out;
  }
  if (Array.isArray(base) && Array.isArray(over) && !REPLACED.has(key)) {
    return [...base, ...over.filter((x) => !base.some((b) => JSON.stringify(b) === JSON.stringify(x)))];
  }
  return over;
}

/** Reads, interpolates and merges compose files as `docker compose -f a -f b` does. */
export function loadCompose(files: string[], env: Record<string, string | undefined>): Interpolated<Mapping> {
  let merged: unknown = {};
  const unset: string[] = [];
  for (const file of files) {
    const r = interpolate(readYaml(file), env);
    unset.push(...r.unset);
    merged = mergeCompose(merged, r.value);
  }
  if (!isMapping(merged)) throw new Error(`${files.join(', ')}: not a mapping`);
  return { value: merged, unset };
}

/** A service's environment as a mapping, from either the list or the mapping form. */
export function environmentOf(service: Mapping): Record<string, string> {
  const env = service.environment;
  if (env === undefined) return {};
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((e: string) => {
      const i = e.indexOf('=');
      return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)];
    }));
  }
  if (!isMapping(env)) throw new Error('environment is neither a list nor a mapping');
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

export function isMapping(v: unknown): v is Mapping {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

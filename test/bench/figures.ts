// How every section of the bench reports repeated rounds.

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Proxy/direct ratios in per cent, as `median% [min..max]`. */
export function ratioSpread(ratios: number[]): string {
  return `${median(ratios).toFixed(0)}% [${Math.min(...ratios).toFixed(0)}..${Math.max(...ratios).toFixed(0)}]`;
}

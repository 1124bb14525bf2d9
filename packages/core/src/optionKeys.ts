/**
 * Unknown keys in an options object a user passes (`fromBase(ref, { platfrom })`, `clone({ regsitry })`)
 * are a ValidationError naming the key and the nearest valid one — a typo must not be dropped silently.
 */
import { ValidationError } from "./errors.js";

/** Edit distance (insert, delete, substitute, swap of neighbours), case-insensitive. */
function distance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  const d: number[][] = Array.from({ length: s.length + 1 }, (_, i) => Array.from({ length: t.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= s.length; i++) {
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[s.length]![t.length]!;
}

/** The known key closest to `key`, when close enough to be a typo of it. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: { key: string; score: number } | undefined;
  for (const candidate of known) {
    const score = distance(key, candidate);
    if (!best || score < best.score) best = { key: candidate, score };
  }
  return best && best.score <= Math.max(2, Math.floor(best.key.length / 3)) ? best.key : undefined;
}

/** Throws for the first key of `options` not in `known`: "unknown option "platfrom"; did you mean "platform"?". */
export function rejectUnknownKeys(field: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const nearest = nearestKey(key, known);
    throw new ValidationError(field, key, `unknown option${nearest ? `; did you mean ${JSON.stringify(nearest)}?` : ""}`, {
      hint: `known options: ${known.join(", ")}`,
      details: { field, key, ...(nearest ? { nearest } : {}), known: [...known] },
    });
  }
}

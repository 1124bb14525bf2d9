/**
 * Canonical JSON for configs, manifests and indexes: object keys sorted (UTF-16 order, as Go's
 * encoding/json sorts map keys... and as every reader accepts), no whitespace, `undefined` dropped.
 * The same document always serialises to the same bytes, so its digest is stable.
 */
export function canonicalJson(value: unknown): Buffer {
  return Buffer.from(serialise(value), "utf8");
}

function serialise(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : serialise(v))).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${serialise(v)}`).join(",")}}`;
}

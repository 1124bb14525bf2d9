/**
 * A registry cache import that fails — a ref nobody has exported yet, a registry that cannot be
 * reached — is a cache miss to BuildKit: its lazy cache manager answers no records and the Solve goes
 * on (solver/llbsolver/bridge.go). Its progress still shows the `importing cache manifest from <ref>`
 * vertex with an error, and `followBuild` fails a build on the first vertex error it sees, so a
 * build that succeeded would be reported failed (the first build with `cacheFrom: true`, before any
 * cache exists, always was). That error is taken out of the StatusResponse here and handed to
 * `onFailedImport` (a `warning` event); whether the build failed is left to the Solve's own answer
 * and to the errors of real steps.
 *
 * StatusResponse { repeated Vertex vertexes = 1; … }
 * Vertex { string digest = 1; repeated string inputs = 2; string name = 3; bool cached = 4;
 *          Timestamp started = 5; Timestamp completed = 6; string error = 7; … }
 */
import { asString, encodeVarint, readFields, type WireField } from "@kiln/docker/internal";

export const CACHE_IMPORT_VERTEX_PREFIX = "importing cache manifest from ";
const VERTEX_NAME = 3;
const VERTEX_ERROR = 7;
const STATUS_VERTEXES = 1;

/** `message` (a StatusResponse) without the errors of its cache-import vertexes; each one dropped is reported. */
export function withoutCacheImportErrors(message: Buffer, onFailedImport: (ref: string, error: string) => void): Buffer {
  // Most messages name no cache import: pass them on untouched, without decoding.
  if (!message.includes(CACHE_IMPORT_VERTEX_PREFIX)) return message;
  try {
    return rewritten(message, onFailedImport);
  } catch {
    return message; // not a message we can read: followBuild skips it as it skips any undecodable one
  }
}

function rewritten(message: Buffer, onFailedImport: (ref: string, error: string) => void): Buffer {
  let changed = false;
  const fields: Buffer[] = [];
  for (const top of readFields(message)) {
    if (top.field === STATUS_VERTEXES && top.wire.wireType === 2) {
      const vertex = [...readFields(top.wire.value)];
      const name = asString(vertex.find((f) => f.field === VERTEX_NAME)?.wire ?? { wireType: 2, value: Buffer.alloc(0) });
      const error = vertex.find((f) => f.field === VERTEX_ERROR);
      if (name.startsWith(CACHE_IMPORT_VERTEX_PREFIX) && error) {
        changed = true;
        onFailedImport(name.slice(CACHE_IMPORT_VERTEX_PREFIX.length), asString(error.wire));
        fields.push(encodeField({ field: STATUS_VERTEXES, wire: { wireType: 2, value: Buffer.concat(vertex.filter((f) => f !== error).map(encodeField)) } }));
        continue;
      }
    }
    fields.push(encodeField(top));
  }
  return changed ? Buffer.concat(fields) : message;
}

function encodeField({ field, wire }: WireField): Buffer {
  const key = encodeVarint((field << 3) | wire.wireType);
  if (wire.wireType === 0) return Buffer.concat([key, encodeVarint(wire.value)]);
  if (wire.wireType === 2) return Buffer.concat([key, encodeVarint(wire.value.length), wire.value]);
  return Buffer.concat([key, wire.value]);
}

/**
 * Which failed imports of one Solve deserve a warning. A split group imports its own ref and the
 * ref it was derived from (`fallbacks`: group ref → given ref, cache.ts `groupCache`); usually only
 * one of the pair exists — the given ref when the last build ran on one endpoint, the group's when
 * it was split, and for a build that is only ever split the given ref never does. A warning for the
 * missing half would come with every build while the cache works, so a pair is reported once, when
 * both have failed: then the group really built without a cache. Any other ref: once, on failure.
 */
export function failedImportReporter(
  fallbacks: ReadonlyMap<string, string>,
  warn: (refs: readonly string[], error: string) => void,
): (ref: string, error: string) => void {
  const partners = new Map<string, string>();
  for (const [groupRef, givenRef] of fallbacks) {
    partners.set(groupRef, givenRef);
    partners.set(givenRef, groupRef);
  }
  const failed = new Set<string>();
  return (ref, error) => {
    if (failed.has(ref)) return;
    failed.add(ref);
    const partner = partners.get(ref);
    if (partner === undefined) warn([ref], error);
    else if (failed.has(partner)) warn(fallbacks.has(ref) ? [ref, partner] : [partner, ref], error);
  };
}

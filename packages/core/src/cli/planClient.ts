/**
 * `kiln plan` asks many tags that usually point at a few manifests (one base, many content tags of
 * the same build). What a digest addresses is immutable, so within one plan run a manifest read by
 * digest, and a child manifest the registry said it holds, are asked once; each tag's own HEAD is
 * still asked per image. Only found answers are kept (a miss or an error is asked again).
 */
import type { RegistryClient } from "../registry/client.js";

type Reference = Parameters<RegistryClient["getManifest"]>[0];

function digestKey(reference: Reference): string | undefined {
  if (typeof reference === "string") return /@sha256:[0-9a-f]{64}$/.test(reference) ? reference : undefined;
  return reference.digest ? `${reference.registry}/${reference.repository}@${reference.digest}` : undefined;
}

/** `call` once per digest key; a null answer or a failure is forgotten. */
function memoized<A extends unknown[], R>(call: (reference: Reference, ...rest: A) => Promise<R | null>) {
  const answers = new Map<string, Promise<R | null>>();
  return (reference: Reference, ...rest: A): Promise<R | null> => {
    const key = digestKey(reference);
    if (key === undefined) return call(reference, ...rest);
    let answer = answers.get(key);
    if (!answer) {
      answer = call(reference, ...rest);
      answers.set(key, answer);
      answer.then(
        (value) => value === null && answers.delete(key),
        () => answers.delete(key),
      );
    }
    return answer;
  };
}

/** The client for one plan run: `client` itself, with by-digest manifest reads and HEADs asked once. */
export function planRegistryClient(client: RegistryClient): RegistryClient {
  const getManifest = memoized((reference: Reference, options?: Parameters<RegistryClient["getManifest"]>[1]) => client.getManifest(reference, options));
  const headManifest = memoized((reference: Reference, options?: Parameters<RegistryClient["headManifest"]>[1]) => client.headManifest(reference, options));
  return new Proxy(client, {
    get(target, property) {
      if (property === "getManifest") return getManifest;
      if (property === "headManifest") return headManifest;
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

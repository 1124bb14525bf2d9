/**
 * The local stand-ins this example needs on a machine with no internet — all made on the machine:
 * a Debian python 3.11 base image (debootstrap + docker import, made once and reused), a real OCI
 * registry on a loopback port, and a package index serving a small wheel (`kiln-hello`).
 * `env` is what `pnpm start` needs to use them (see image.ts). The base is pushed into that registry
 * too, so both builders read it from there: the Docker builder pulls it, the daemonless `oci` builder
 * (which has no local image store) reads it over the registry API.
 */
import { docker, ensureDebianPythonImage, startPyIndex, startRegistry } from "@kiln/test-utils";

export const HELLO_PACKAGE = { name: "kiln-hello", version: "1.0.0" };

export interface OfflineServices {
  env: Record<string, string>;
  /** The base image, in the registry. */
  baseRef: string;
  registryHost: string;
  registryUrl: string;
  /** Paths the package index served (proves pip used it). */
  indexRequests: string[];
  stop(): Promise<void>;
}

export async function startOfflineServices(): Promise<OfflineServices> {
  const base = await ensureDebianPythonImage();
  const registry = await startRegistry();
  const baseRef = `${registry.host}/kiln-base/python:3.11-slim-bookworm`;
  try {
    await docker(["tag", base, baseRef]);
    await docker(["push", baseRef], { timeoutMs: 300_000 });
  } catch (error) {
    await registry.stop();
    throw error;
  }
  const index = await startPyIndex([{ ...HELLO_PACKAGE, source: 'def greet(name="world"):\n    return f"hello, {name}, from a local index"\n' }]).catch(
    async (error) => {
      await registry.stop();
      throw error;
    },
  );
  return {
    env: {
      KILN_IMAGE_REGISTRY: registry.host,
      KILN_PYTHON_BASE: baseRef,
      PIP_INDEX_URL: index.url,
      HELLO_PIP_PACKAGES: HELLO_PACKAGE.name,
    },
    baseRef,
    registryHost: registry.host,
    registryUrl: registry.url,
    indexRequests: index.requests,
    stop: async () => {
      await Promise.allSettled([index.close(), registry.stop(), docker(["image", "rm", baseRef])]);
    },
  };
}

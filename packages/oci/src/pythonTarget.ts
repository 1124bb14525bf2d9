/**
 * Where Python packages go in the image, decided from the spec and the base's config (no file of the
 * base is read):
 * - the base's env has `PYTHON_VERSION` (the official `python:X.Y[-slim]` images): Python built into
 *   /usr/local — packages in `/usr/local/lib/pythonX.Y/site-packages`, interpreter
 *   `/usr/local/bin/pythonX.Y`;
 * - otherwise Debian's own python3 (`apt-get install python3`): packages where Debian's pip puts
 *   them as root, `/usr/local/lib/pythonX.Y/dist-packages`, interpreter `/usr/bin/pythonX.Y`.
 * Scripts go to `/usr/local/bin` in both. The version X.Y is the spec's (`fromDebianBase`'s
 * `pythonVersion`) or the base's `PYTHON_VERSION`; they must agree, and one of them must be there.
 */
import { BuildFailedError, type ImageSpec } from "@kiln/core";

export interface PythonTarget {
  version: [number, number];
  /** Absolute path of the image's interpreter (console scripts' shebang). */
  interpreter: string;
  /** Absolute path of the directory packages are installed into. */
  siteDir: string;
  /** Absolute path of the directory console scripts are installed into. */
  scriptsDir: string;
  /** `official`: python:X.Y images; `debian`: Debian's python3 package. */
  flavour: "official" | "debian";
}

export function pythonTargetOf(spec: Readonly<ImageSpec>, baseConfig: Record<string, unknown>, baseRef: string): PythonTarget {
  const env = ((baseConfig.config as { Env?: string[] } | undefined)?.Env ?? []).map((e) => e.split("=", 2) as [string, string?]);
  const raw = env.find(([key]) => key === "PYTHON_VERSION")?.[1];
  const fromBase = raw !== undefined ? parseVersion(raw) : undefined;
  const declared = spec.base.kind === "image" ? spec.base.python : undefined;
  if (declared && fromBase && (declared[0] !== fromBase[0] || declared[1] !== fromBase[1])) {
    throw new BuildFailedError(`The base image ${baseRef} has Python ${fromBase.join(".")} (PYTHON_VERSION=${raw}), the image declares ${declared.join(".")}`, {
      hint: `Declare pythonVersion: [${fromBase.join(", ")}], or use a base with Python ${declared.join(".")}.`,
      details: { base: baseRef, declared: declared.join("."), base_python: raw },
    });
  }
  const version = declared ?? fromBase;
  if (!version) {
    throw new BuildFailedError(`The oci builder cannot tell which Python the base image ${baseRef} has (no PYTHON_VERSION in its env, none declared)`, {
      hint: 'Declare it: Image.fromDebianBase({ pythonVersion: [3, 11], baseImage: ... }), or build with a builder that runs steps (builder: "docker").',
      details: { base: baseRef },
    });
  }
  const xy = `${version[0]}.${version[1]}`;
  return fromBase
    ? {
        version,
        interpreter: `/usr/local/bin/python${xy}`,
        siteDir: `/usr/local/lib/python${xy}/site-packages`,
        scriptsDir: "/usr/local/bin",
        flavour: "official",
      }
    : { version, interpreter: `/usr/bin/python${xy}`, siteDir: `/usr/local/lib/python${xy}/dist-packages`, scriptsDir: "/usr/local/bin", flavour: "debian" };
}

function parseVersion(raw: string): [number, number] | undefined {
  const match = /^(\d+)\.(\d+)/.exec(raw.trim());
  return match ? [Number(match[1]), Number(match[2])] : undefined;
}

/** pip's `--platform` for an image platform (manylinux2014 = glibc 2.17, what most binary wheels target). */
export function pipPlatformTag(platform: string): string | undefined {
  const machine: Record<string, string> = {
    "linux/amd64": "x86_64",
    "linux/arm64": "aarch64",
    "linux/arm64/v8": "aarch64",
    "linux/arm/v7": "armv7l",
    "linux/ppc64le": "ppc64le",
    "linux/s390x": "s390x",
    "linux/386": "i686",
  };
  const m = machine[platform];
  return m ? `manylinux2014_${m}` : undefined;
}

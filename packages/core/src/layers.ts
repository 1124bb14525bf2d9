/**
 * The data model of an image spec. Layers are plain, JSON-serialisable data so a remote builder can
 * ship the spec; `Image` (image.ts) builds and validates them, `hash.ts` encodes them, `dockerfile.ts`
 * renders them and `context.ts` streams the files they reference.
 *
 * Host paths (`hostPath`) are absolute on the declaring machine. They never enter the content tag:
 * the tag covers the destination path and the files' contents, so it is the same in every checkout.
 */

export type Architecture = "linux/amd64" | "linux/arm64";
export const ARCHITECTURES: readonly Architecture[] = ["linux/amd64", "linux/arm64"];

/** How Python packages are installed: uv (copied from `uvImage`) or plain pip (no extra image). */
export type PythonInstaller = "uv" | "pip";
export type NodePackageManager = "npm" | "pnpm";

export interface PipOptions {
  indexUrl?: string;
  extraIndexUrls?: string[];
  pre?: boolean;
  /** Extra installer arguments, each one argv element (never split by a shell). */
  extraArgs?: string[];
}

/**
 * A build secret mounted into a RUN step (BuildKit `--mount=type=secret`). Only the id and the target
 * are part of the spec (and the tag); the value is supplied at build time (`build(image, { secrets })`,
 * `kiln build --secret`, or the environment variable named `id`) and never stored, hashed or logged.
 */
export interface SecretMount {
  /** The secret's id: `[A-Za-z_][A-Za-z0-9_.-]{0,63}`. By default also the environment variable read. */
  id: string;
  /** Absolute path of the secret file inside the RUN step; default Docker's `/run/secrets/<id>`. */
  target?: string;
}

export type Layer =
  | { kind: "aptPackages"; packages: string[] }
  | ({ kind: "pipPackages"; packages: string[] } & PipOptions)
  /** A requirements file copied into the image then installed. */
  | ({ kind: "requirements"; hostPath: string; name: string } & PipOptions)
  /** Shell commands, each run as its own `RUN` (the user asked for a shell). `secrets` (absent when
   * none were declared) are mounted into every one of these RUNs as BuildKit secret mounts. */
  | { kind: "commands"; commands: string[]; secrets?: SecretMount[] }
  | { kind: "env"; vars: Array<[key: string, value: string]> }
  | { kind: "workdir"; path: string }
  /** A directory copied to `dest`, filtered by the image's ignore rules. */
  | { kind: "sourceFolder"; hostPath: string; dest: string }
  | { kind: "sourceFile"; hostPath: string; dest: string }
  /** A .dockerignore file whose patterns apply to every later source folder (and uv/node projects). */
  | { kind: "dockerIgnore"; hostPath: string; patterns: string[] }
  /** pyproject.toml + uv.lock copied first, `uv sync --frozen` run, then (optionally) the project sources. */
  | { kind: "uvProject"; pyprojectHostPath: string; lockHostPath: string; extraArgs?: string[] }
  /** package.json + lockfile copied and installed first, then the sources of `hostPath` after. */
  | { kind: "nodeProject"; hostPath: string; dest: string; manager: NodePackageManager; lockfile: string }
  | { kind: "labels"; labels: Array<[key: string, value: string]> }
  | { kind: "user"; user: string };

export type LayerKind = Layer["kind"];

/** Where the files of layer `index` live inside the build context. Every layer gets its own folder so
 * files from anywhere on the host map into the context without clashes or `..` paths. */
export function contextDirForLayer(index: number): string {
  return `kiln-layers/${index}`;
}

export type BaseSpec =
  /** An existing image; `python`/`node` say which runtime it carries, for the Dockerfile recipe. */
  | {
      kind: "image";
      ref: string;
      python?: [number, number];
      node?: number;
      /**
       * A Kiln image used as the base (`fromBase(otherImage)`): its spec, nested. `ref` is then its
       * tagged reference (re-resolved to the built URI at build time), and its content tag, not `ref`,
       * goes into the dependent's tag (graph.ts).
       */
      image?: ImageSpec;
      /** The image's own pinBase choice; absent: the global setting (pinBase.ts). */
      pin?: boolean;
      /**
       * The manifest (or index) digest `ref` was resolved to by pinBase: part of the tag and of
       * `FROM ref@digest`. Absent for an unpinned base, whose tag is then unchanged.
       */
      digest?: string;
    }
  /** A user Dockerfile with its own context. */
  | {
      kind: "dockerfile";
      dockerfileHostPath: string;
      contextHostPath: string;
      buildArgs: Array<[key: string, value: string]>;
      target?: string;
      /** Ids of the build secrets the Dockerfile's own `RUN --mount=type=secret,id=…` steps use. */
      secrets?: string[];
    };

export interface ImageSpec {
  base: BaseSpec;
  layers: Layer[];
  /** Registry host[:port][/namespace], e.g. `ghcr.io/acme` or `localhost:5000`. Absent: local only. */
  registry?: string;
  name: string;
  /** Explicit tag; absent means the automatic content tag. */
  tag?: string;
  platform: Architecture[];
  installer: PythonInstaller;
  /** Image uv is copied from when `installer` is "uv". */
  uvImage: string;
  /**
   * The manifest (or index) digest `uvImage` was resolved to by pinBase (only for an image that copies
   * uv): part of the tag and of `COPY --from=uvImage@digest`. Absent when unpinned (tag unchanged).
   */
  uvDigest?: string;
  /** False for images that must not get further layers (e.g. a finished Dockerfile image). */
  extendable: boolean;
}

/**
 * OciImageBuilder: builds copy-only images with no daemon. The base is read from its registry (one
 * child per requested platform), the file layers are written here (sourceLayers.ts: deterministic
 * tar, fixed gzip), the config composed (imageConfig.ts), and everything stored by a sink: pushed
 * straight to the target registry with core's registry writes (registrySink.ts: blobs the registry
 * holds are skipped, base layers in the same registry are mounted from the base's repository, else
 * streamed across), or written into an OCI image layout for `registry: "oci:<dir>"` (layoutSink.ts);
 * then each platform's manifest by digest and the tag last (on the index when there are several).
 * Platform-independent layers are written and uploaded once.
 *
 * Reproducible: the same spec and sources give the same manifest digest in any clone, on any run
 * (sorted entries, mtime and `created` = SOURCE_DATE_EPOCH or 0, uid/gid 0 unless chowned, no user
 * names, gzip level 6, canonical JSON) — per Node/zlib version (gzip bytes depend on it).
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  baseReference,
  BuildFailedError,
  CannotBuildError,
  parseReference,
  type Architecture,
  type BuildImageOptions,
  type CanBuildAnswer,
  type Image,
  type ImageBuild,
  type ImageBuilder,
  type ImageCheckerLike,
  type ImageSpec,
} from "@kiln/core";
import {
  compareUtf8,
  RegistryClient,
  emit,
  normalizePlatform,
  openBlobStream,
  pinSources,
  snapshotOf,
  type RegistryClientOptions,
  type RegistryReference,
  type SourceSnapshot,
} from "@kiln/core/plugin";
import { join as joinPath } from "node:path";
import { OciLayoutImageChecker } from "./layoutChecker.js";
import { LayoutSink } from "./layoutSink.js";
import { layoutDirOf } from "./layoutTarget.js";
import { OciLayoutWriter } from "./layoutWriter.js";
import { RegistrySink } from "./registrySink.js";
import type { BlobSource, ImageSink } from "./sink.js";
import { readBase, type BasePlatformImage, type Descriptor } from "./base.js";
import { canonicalJson } from "./canonicalJson.js";
import { OciRegistryImageChecker } from "./checker.js";
import { buildEpochSeconds, epochIso } from "./epoch.js";
import { composeConfig } from "./imageConfig.js";
import { writeLayer, type WrittenLayer } from "./layerFile.js";
import { LayerCache, layerCacheDir, layerCacheKey, type CachedLayer } from "./layerCache.js";
import { pythonLayerEntries, resolvePythonPackages, type PythonLayer } from "./pythonPackages.js";
import { pythonTargetOf, type PythonTarget } from "./pythonTarget.js";
import { layerTarChunks, planSourceLayers, readPinnedFile } from "./sourceLayers.js";
import { ociCanBuild } from "./support.js";
import { aptHostTools, aptMissingReason } from "./aptHost.js";
import { aptLayerEntries, DebianImageState } from "./aptLayer.js";
import { debianArchOf } from "./debianArch.js";
import { readDebianRoot } from "./debianRootView.js";
import { DebianBaseCache, debianBaseKey } from "./debianBaseCache.js";

export interface OciImageBuilderOptions {
  /** The registry client (credentials, retries, timeouts); default one from `registry`. */
  client?: RegistryClient;
  /** Options for the default client. */
  registry?: RegistryClientOptions;
  /** Environment (SOURCE_DATE_EPOCH, TMPDIR); default process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * Bytes per PATCH when uploading a layer — also what the upload holds in memory, several times
   * over while buffers wait for the GC. Default 4 MiB (peak RSS ≈ 100 MB pushing a 2 GB layer, 16 MiB
   * gives ≈ 220 MB); raise it for a registry far away (one round trip per chunk).
   */
  chunkBytes?: number;
  /**
   * The layer-digest cache (layerCache.ts): a directory, or false for none. Default
   * `$XDG_CACHE_HOME/kiln/oci-layers`; `KILN_OCI_LAYER_CACHE=0` turns it off.
   */
  layerCache?: string | false;
}

const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

interface OwnLayer {
  digest: string;
  size: number;
  diffId: string;
  createdBy: string;
  /** The gzip file, when it was written in this build (not for a cached layer until it is needed). */
  path?: string;
  /** The layer's bytes (written on demand for a cached layer). */
  open(): Promise<Readable>;
}

export class OciImageBuilder implements ImageBuilder {
  readonly name = "oci";
  private readonly client: RegistryClient;
  private readonly env: NodeJS.ProcessEnv;
  private readonly layerCache: LayerCache | undefined;
  /** Base filesystem views for apt layers (debianBaseCache.ts), beside the layer cache and off with it. */
  private readonly debianBases: DebianBaseCache | undefined;
  /** apt lists kept between builds (aptListsCache.ts), beside the layer cache and off with it. */
  private readonly aptLists: string | undefined;

  constructor(private readonly options: OciImageBuilderOptions = {}) {
    this.env = options.env ?? process.env;
    this.client = options.client ?? new RegistryClient({ env: this.env, ...options.registry });
    const off = options.layerCache === false || this.env.KILN_OCI_LAYER_CACHE === "0";
    this.layerCache = off ? undefined : new LayerCache(typeof options.layerCache === "string" ? options.layerCache : layerCacheDir(this.env));
    const cacheRoot = typeof options.layerCache === "string" ? options.layerCache : layerCacheDir(this.env);
    this.debianBases = off ? undefined : new DebianBaseCache(join(cacheRoot, "debian-bases"));
    this.aptLists = off ? undefined : join(cacheRoot, "apt-lists");
  }

  canBuild(image: Image): CanBuildAnswer {
    return ociCanBuild(image, this.env);
  }

  getCheckers(): ImageCheckerLike[] {
    return [new OciLayoutImageChecker(), new OciRegistryImageChecker(this.client)];
  }

  async buildImage(image: Image, options: BuildImageOptions = {}): Promise<ImageBuild> {
    const answer = ociCanBuild(image, this.env);
    if (!answer.ok) {
      throw new CannotBuildError(`The oci builder cannot build ${image.uri}: ${answer.reason}`, {
        hint: 'Build it with a builder that runs build steps (e.g. builder: "docker"), or leave the builder unset so Kiln picks one that can.',
        details: { image: image.uri, builder: "oci", reason: answer.reason },
      });
    }
    if (options.dryRun) return { uri: image.uri };
    const pinned = snapshotOf(image) ? image : pinSources(image);
    const snapshot = snapshotOf(pinned)!;
    const uri = pinned.uri;
    const signal = options.signal;
    const platforms = pinned.spec.platform.length > 0 ? [...pinned.spec.platform] : (["linux/amd64"] as Architecture[]);
    emit(options.onEvent, { type: "build.start", image: uri, builder: "oci", platforms, dryRun: false });
    const sink = this.sinkFor(pinned);
    // A base pinned by pinBase is read by its digest (`ref@sha256:…`), exactly what the tag was computed from.
    const baseRef = baseReference(pinned.spec.base as Extract<ImageSpec["base"], { kind: "image" }>);
    const bases = await readBase(this.client, baseRef, platforms, signal);
    const epoch = buildEpochSeconds(this.env);
    const created = epochIso(epoch);
    const scratch = await mkdtemp(join(this.env.TMPDIR ?? tmpdir(), "kiln-oci-"));
    try {
      // Source layers depend on the platform only through the base's working directory (relative dests).
      const written = new Map<string, OwnLayer[]>();
      const children: Array<{ platform: Architecture; body: Buffer; mediaType: string; config: Record<string, unknown> }> = [];
      // Python and Debian package layers hold files of one platform, so they are written per platform.
      const perPlatform = pinned.spec.layers.some((l) => l.kind === "pipPackages" || l.kind === "requirements" || l.kind === "aptPackages");
      for (const platform of platforms) {
        const base = bases.get(platform)!;
        const workdir = ((base.config.config as { WorkingDir?: string } | undefined)?.WorkingDir ?? "").trim();
        const key = perPlatform ? `${workdir}\0${platform}` : workdir;
        let own = written.get(key);
        if (!own) {
          own = await this.writeSourceLayers(pinned, snapshot, base, baseRef, workdir, epoch, scratch, written.size, uri, platform, options);
          written.set(key, own);
        }
        children.push({ platform, ...(await this.pushPlatform(sink, base, own, pinned, created, uri, options)) });
      }
      await options.beforePush?.();
      const types = sink.outputTypes(bases.get(platforms[0]!)!.manifestMediaType);
      let digest: string;
      if (children.length === 1) {
        digest = await sink.putManifests([], children[0]!, { signal, beforeTag: options.beforePush });
      } else {
        const index = canonicalJson({
          schemaVersion: 2,
          mediaType: types.index,
          manifests: children.map((c) => ({
            mediaType: c.mediaType,
            digest: sha256(c.body),
            size: c.body.length,
            platform: platformFields(c.config, c.platform),
          })),
        });
        digest = await sink.putManifests(children, { body: index, mediaType: types.index }, { signal, beforeTag: options.beforePush });
      }
      emit(options.onEvent, { type: "push.done", image: uri, digest });
      return { uri, digest };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /** A registry, or the OCI layout `<dir>/<name>` for `registry: "oci:<dir>"`. */
  private sinkFor(image: Image): ImageSink {
    const layoutRoot = layoutDirOf(image.spec.registry ?? "");
    if (layoutRoot !== undefined) return new LayoutSink(new OciLayoutWriter(joinPath(layoutRoot, image.spec.name)), image.tag);
    return new RegistrySink(this.client, parseReference(image.uri) as RegistryReference, this.options.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  }

  private async writeSourceLayers(
    image: Image,
    snapshot: SourceSnapshot,
    base: BasePlatformImage,
    baseRef: string,
    workdir: string,
    epoch: number,
    scratch: string,
    round: number,
    uri: string,
    platform: Architecture,
    options: BuildImageOptions,
  ): Promise<OwnLayer[]> {
    const planned = planSourceLayers(image, snapshot, workdir, epoch);
    const out: OwnLayer[] = [];
    let python: PythonTarget | undefined;
    let debian: DebianImageState | undefined;
    for (const [i, layer] of planned.entries()) {
      if (options.signal?.aborted) throw options.signal.reason;
      const name = `w${round}-l${i}`;
      // An apt layer's entries are known only once resolved: never cached.
      const key = this.layerCache && !layer.apt ? layerCacheKey(layer, snapshot) : undefined;
      const cached = key ? await this.layerCache!.get(key) : undefined;
      const step = cached ? `${layer.createdBy} (cached)` : layer.createdBy;
      emit(options.onEvent, { type: "build.step", image: uri, platform, step, index: i + 1, total: planned.length });
      if (layer.python) {
        python ??= pythonTargetOf(image.spec, base.config, baseRef);
        const dir = await mkdtemp(join(scratch, "pip-"));
        let requirementsFile: string | undefined;
        if (layer.python.requirements) {
          requirementsFile = join(scratch, `requirements-${round}-${i}.txt`);
          await writeFile(requirementsFile, await readPinnedFile(layer.python.requirements, snapshot));
        }
        const spec = image.spec.layers[layer.layerIndex] as PythonLayer;
        await resolvePythonPackages({
          layer: spec,
          ...(requirementsFile ? { requirementsFile } : {}),
          target: python,
          platform,
          dir,
          env: this.env,
          signal: options.signal,
        });
        layer.entries = [...layer.entries, ...(await pythonLayerEntries(dir, python, epoch))].sort((a, b) => compareUtf8(a.header.name, b.header.name));
      }
      if (layer.apt) {
        debian ??= await this.debianState(base, baseRef, platform, options.signal);
        const tools = aptHostTools(this.env);
        if (!tools.ok) {
          throw new CannotBuildError(`The oci builder cannot build ${uri}: ${aptMissingReason(tools.missing)}`, {
            hint: 'Install apt (Debian, Ubuntu), or build it with a builder that runs steps (builder: "docker").',
            details: { image: uri, builder: "oci", missing: tools.missing },
          });
        }
        const dir = await mkdtemp(join(scratch, "apt-"));
        layer.entries = (
          await aptLayerEntries({
            packages: layer.apt.packages,
            state: debian,
            tools: tools.tools,
            env: this.env,
            dir,
            mtime: epoch,
            ...(this.aptLists ? { listsCache: this.aptLists } : {}),
            signal: options.signal,
          })
        ).entries;
      }
      if (cached) {
        out.push({ ...cached, createdBy: layer.createdBy, open: onDemand(() => writeLayer(scratch, name, layerTarChunks(layer, snapshot)), cached) });
        continue;
      }
      const file = await writeLayer(scratch, name, layerTarChunks(layer, snapshot));
      if (key) await this.layerCache!.set(key, file);
      out.push({ ...file, createdBy: layer.createdBy, open: async () => createReadStream(file.path) });
    }
    return out;
  }

  /** The base's Debian state (dpkg status, apt sources, paths) for apt layers, read from its layers. */
  private async debianState(base: BasePlatformImage, baseRef: string, platform: Architecture, signal: AbortSignal | undefined): Promise<DebianImageState> {
    const arch = debianArchOf(platform);
    if (!arch) {
      throw new BuildFailedError(`The oci builder does not know Debian's name for the platform ${platform} (withAptPackages)`, {
        hint: 'Build it with a builder that runs steps (builder: "docker").',
        details: { platform },
      });
    }
    const key = debianBaseKey(base.layers.map((l) => l.digest));
    let view = await this.debianBases?.get(key);
    if (!view) {
      view = await readDebianRoot(this.client, base, baseRef, signal);
      await this.debianBases?.set(key, view);
    }
    return new DebianImageState(view, arch, baseRef);
  }

  /** Pushes one platform's blobs (base layers, own layers, config); returns its manifest (not yet put). */
  private async pushPlatform(
    sink: ImageSink,
    base: BasePlatformImage,
    own: OwnLayer[],
    image: Image,
    created: string,
    uri: string,
    options: BuildImageOptions,
  ): Promise<{ body: Buffer; mediaType: string; config: Record<string, unknown> }> {
    const signal = options.signal;
    const types = sink.outputTypes(base.manifestMediaType);
    const config = composeConfig(base.config, image.spec, own, created);
    const configBody = canonicalJson(config);
    await options.beforePush?.();
    const mountFrom = sink.canMountFrom(base.ref.registry) ? [base.ref.repository] : [];
    for (const layer of base.layers) {
      await this.pushBlob(
        sink,
        uri,
        {
          digest: layer.digest,
          size: layer.size,
          open: () => openBlobStream(this.client, base.ref, layer.digest, { signal }),
        },
        mountFrom,
        options,
      );
    }
    for (const layer of own) {
      await this.pushBlob(
        sink,
        uri,
        { digest: layer.digest, size: layer.size, open: () => layer.open(), ...(layer.path ? { file: layer.path } : {}) },
        [],
        options,
      );
    }
    await this.pushBlob(sink, uri, { digest: sha256(configBody), size: configBody.length, open: () => bufferStream(configBody) }, [], options);
    const layers: Descriptor[] = [
      ...base.layers.map((l) => ({ ...l, mediaType: sink.layerMediaType(l.mediaType) })),
      ...own.map((l) => ({ mediaType: types.layer, digest: l.digest, size: l.size })),
    ];
    const manifest = canonicalJson({
      schemaVersion: 2,
      mediaType: types.manifest,
      config: { mediaType: types.config, digest: sha256(configBody), size: configBody.length },
      layers,
    });
    return { body: manifest, mediaType: types.manifest, config };
  }

  private async pushBlob(sink: ImageSink, uri: string, source: BlobSource, mountFrom: string[], options: BuildImageOptions): Promise<void> {
    const short = source.digest.slice(7, 19);
    const outcome = await sink.putBlob(source, {
      signal: options.signal,
      mountFrom,
      onProgress: (current) => emit(options.onEvent, { type: "push.progress", image: uri, layer: short, status: "uploading", current, total: source.size }),
    });
    emit(options.onEvent, { type: "push.progress", image: uri, layer: short, status: outcome === "existing" ? "exists" : outcome, total: source.size });
  }
}

/** A cached layer's bytes, written once when first needed; they must have the cached digest. */
function onDemand(write: () => Promise<WrittenLayer>, cached: CachedLayer): () => Promise<Readable> {
  let written: Promise<WrittenLayer> | undefined;
  return async () => {
    const file = await (written ??= write());
    if (file.digest !== cached.digest || file.diffId !== cached.diffId) {
      throw new BuildFailedError(`A layer written again does not match its cached digest (${cached.digest}, now ${file.digest})`, {
        hint: "Remove the oci layer cache ($XDG_CACHE_HOME/kiln/oci-layers) or set KILN_OCI_LAYER_CACHE=0, and build again.",
        details: { cached: cached.digest, written: file.digest },
      });
    }
    return createReadStream(file.path);
  };
}

function platformFields(config: Record<string, unknown>, platform: string): Record<string, string> {
  const [os, architecture, variant] = normalizePlatform(platform).split("/");
  const out: Record<string, string> = { architecture: (config.architecture as string) ?? architecture!, os: (config.os as string) ?? os! };
  const v = (config.variant as string | undefined) ?? variant;
  if (v) out.variant = v;
  return out;
}

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function bufferStream(data: Buffer): Readable {
  return Readable.from([data]);
}

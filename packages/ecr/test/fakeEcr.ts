/**
 * A wire-level fake of the ECR API: a loopback HTTP server speaking the AWS JSON 1.1 protocol
 * (`X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`, `application/x-amz-json-1.1`,
 * errors as `{"__type": "...Exception", "message": ...}` with HTTP 400). The real SDK reaches it
 * through the client's `endpoint` option, so signing, serialisation, error parsing and the retry
 * strategy all run for real. It also serves config blobs at the URLs GetDownloadUrlForLayer returns.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

const TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921.";

export interface FakeImage {
  manifest: string;
  mediaType: string;
  /** An index's child manifests, held by digest (untagged, as ECR stores them). */
  children?: Array<{ manifest: string; mediaType: string }>;
}

export interface RecordedRequest {
  operation: string;
  body: Record<string, any>;
  headers: http.IncomingHttpHeaders;
}

export class FakeEcr {
  readonly requests: RecordedRequest[] = [];
  readonly blobRequests: string[] = [];
  /** `${registryId}/${repository}` that exist. */
  readonly repositories = new Set<string>();
  /** `${registryId}/${repository}:${tag}` → image. */
  readonly images = new Map<string, FakeImage>();
  /** `${registryId}/${repository}@${digest}` → manifest (every tagged image and every child). */
  readonly manifests = new Map<string, FakeImage>();
  /** Child digest → a BatchGetImage failure code other than ImageNotFound (e.g. `KmsError`). */
  readonly failingDigests = new Map<string, string>();
  readonly blobs = new Map<string, Buffer>();
  /** Operation → how many of its next calls answer ThrottlingException. */
  readonly throttle = new Map<string, number>();
  /** Operations (or "blob" for config blob downloads) accepted and never answered. */
  readonly hang = new Set<string>();
  /** Requests matching this are accepted and never answered (finer than `hang`, e.g. BatchGetImage by digest only). */
  hangIf: ((operation: string, body: Record<string, any>) => boolean) | undefined;
  /** Client connections currently open; `closed` counts those that have closed. */
  readonly connections = { open: 0, closed: 0 };
  /** Registry id used when a request names none (the caller's own account). */
  defaultRegistryId = "123456789012";
  /** What GetAuthorizationToken hands out. */
  authorization = { username: "AWS", password: "fake-ecr-password", validForMs: 12 * 60 * 60 * 1000 };

  private server: http.Server | undefined;
  url = "";

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on("connection", (socket) => {
      this.connections.open++;
      socket.on("close", () => {
        this.connections.open--;
        this.connections.closed++;
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server = undefined;
  }

  addImage(registryId: string, repository: string, tag: string, image: FakeImage): void {
    this.repositories.add(`${registryId}/${repository}`);
    this.images.set(`${registryId}/${repository}:${tag}`, image);
    for (const held of [image, ...(image.children ?? [])]) {
      this.manifests.set(`${registryId}/${repository}@${sha256(held.manifest)}`, { manifest: held.manifest, mediaType: held.mediaType });
    }
  }

  /** Deletes a manifest by digest (as `aws ecr batch-delete-image` or a lifecycle policy would). */
  deleteManifest(registryId: string, repository: string, digest: string): void {
    this.manifests.delete(`${registryId}/${repository}@${digest}`);
  }

  addBlob(data: string | Buffer): string {
    const buffer = Buffer.from(data);
    const digest = `sha256:${createHash("sha256").update(buffer).digest("hex")}`;
    this.blobs.set(digest, buffer);
    return digest;
  }

  calls(operation: string): RecordedRequest[] {
    return this.requests.filter((r) => r.operation === operation);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (req.method === "GET" && req.url?.startsWith("/blobs/")) {
      if (this.hang.has("blob")) {
        this.blobRequests.push(req.url);
        return;
      }
      return this.serveBlob(req.url, res);
    }

    const target = String(req.headers["x-amz-target"] ?? "");
    if (req.method !== "POST" || !target.startsWith(TARGET_PREFIX) || req.headers["content-type"] !== "application/x-amz-json-1.1") {
      return this.error(res, 400, "UnknownOperationException", `unexpected ${req.method} ${target} ${String(req.headers["content-type"])}`);
    }
    const operation = target.slice(TARGET_PREFIX.length);
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, any>;
    this.requests.push({ operation, body, headers: req.headers });
    if (this.hang.has(operation) || this.hangIf?.(operation, body)) return;

    const throttled = this.throttle.get(operation) ?? 0;
    if (throttled > 0) {
      this.throttle.set(operation, throttled - 1);
      return this.error(res, 400, "ThrottlingException", "Rate exceeded");
    }
    switch (operation) {
      case "BatchGetImage":
        return this.batchGetImage(body, res);
      case "GetDownloadUrlForLayer":
        return this.getDownloadUrlForLayer(body, res);
      case "GetAuthorizationToken":
        return this.getAuthorizationToken(body, res);
      default:
        return this.error(res, 400, "UnknownOperationException", operation);
    }
  }

  private batchGetImage(body: Record<string, any>, res: http.ServerResponse): void {
    const registryId = body.registryId ?? this.defaultRegistryId;
    const repository = body.repositoryName as string;
    if (!this.repositories.has(`${registryId}/${repository}`)) {
      return this.error(
        res,
        400,
        "RepositoryNotFoundException",
        `The repository with name '${repository}' does not exist in the registry with id '${registryId}'`,
      );
    }
    const accepted = new Set<string>(body.acceptedMediaTypes ?? ["application/vnd.docker.distribution.manifest.v2+json"]);
    const images: unknown[] = [];
    const failures: unknown[] = [];
    for (const imageId of body.imageIds as Array<{ imageTag?: string; imageDigest?: string }>) {
      const failing = imageId.imageDigest ? this.failingDigests.get(imageId.imageDigest) : undefined;
      if (failing) {
        failures.push({ imageId, failureCode: failing, failureReason: "injected failure" });
        continue;
      }
      const image = imageId.imageDigest
        ? this.manifests.get(`${registryId}/${repository}@${imageId.imageDigest}`)
        : this.images.get(`${registryId}/${repository}:${imageId.imageTag}`);
      if (!image) {
        failures.push({ imageId, failureCode: "ImageNotFound", failureReason: "Requested image not found" });
      } else if (!accepted.has(image.mediaType)) {
        // What ECR does when the stored type is not accepted and cannot be converted.
        failures.push({ imageId, failureCode: "ImageNotFound", failureReason: "Requested image not found" });
      } else {
        const digest = sha256(image.manifest);
        images.push({
          registryId,
          repositoryName: repository,
          imageId: { ...(imageId.imageTag ? { imageTag: imageId.imageTag } : {}), imageDigest: digest },
          imageManifest: image.manifest,
          imageManifestMediaType: image.mediaType,
        });
      }
    }
    this.json(res, 200, { images, failures });
  }

  private getDownloadUrlForLayer(body: Record<string, any>, res: http.ServerResponse): void {
    const registryId = body.registryId ?? this.defaultRegistryId;
    if (!this.repositories.has(`${registryId}/${body.repositoryName}`)) {
      return this.error(res, 400, "RepositoryNotFoundException", "The repository does not exist");
    }
    if (!this.blobs.has(body.layerDigest)) return this.error(res, 400, "LayersNotFoundException", "The layer does not exist");
    this.json(res, 200, { downloadUrl: `${this.url}/blobs/${body.layerDigest}?X-Amz-Signature=presigned-secret`, layerDigest: body.layerDigest });
  }

  private getAuthorizationToken(_body: Record<string, any>, res: http.ServerResponse): void {
    const token = Buffer.from(`${this.authorization.username}:${this.authorization.password}`).toString("base64");
    this.json(res, 200, {
      authorizationData: [
        {
          authorizationToken: token,
          // JSON 1.1 timestamps are epoch seconds.
          expiresAt: (Date.now() + this.authorization.validForMs) / 1000,
          proxyEndpoint: `https://${this.defaultRegistryId}.dkr.ecr.us-east-1.amazonaws.com`,
        },
      ],
    });
  }

  private serveBlob(url: string, res: http.ServerResponse): void {
    this.blobRequests.push(url);
    const digest = decodeURIComponent(url.slice("/blobs/".length).split("?")[0]!);
    const blob = this.blobs.get(digest);
    if (!blob) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": blob.length }).end(blob);
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res
      .writeHead(status, {
        "content-type": "application/x-amz-json-1.1",
        "x-amzn-requestid": `req-${this.requests.length}`,
        "content-length": Buffer.byteLength(text),
      })
      .end(text);
  }

  private error(res: http.ServerResponse, status: number, type: string, message: string): void {
    this.json(res, status, { __type: type, message });
  }
}

function sha256(text: string | Buffer): string {
  return `sha256:${createHash("sha256").update(text).digest("hex")}`;
}

// Public API of @kiln/buildkit.
export { BuildKitImageBuilder } from "./builder.js";
export type { BuildKitImageBuilderOptions } from "./builder.js";
export { resolveEndpoints, parseEndpoint, DOCKER_ENGINE_ENDPOINT } from "./endpoints.js";
export type { BuildKitEndpoint, BuildKitEndpointOptions, BuildKitTlsOptions, EndpointKind } from "./endpoints.js";
export { BuildKitClient } from "./client.js";
export type { SolveCall } from "./client.js";
export type { WorkerRecord, WorkerPlatform, SolveRequest, CacheEntry } from "./controlMessages.js";
export { defaultCacheRef, groupCacheRef, parseCacheEntry, DEFAULT_CACHE_TAG } from "./cache.js";
export type { CacheOptions } from "./cache.js";
export { checkBasePlatforms, baseReferenceOf } from "./basePlatforms.js";
export { buildSources, CONTEXT_SOURCE, DOCKERFILE_SOURCE } from "./sources.js";
export type { BuildSources } from "./sources.js";
export { GrpcCallError } from "./grpcClient.js";

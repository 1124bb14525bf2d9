/**
 * `@kiln/docker/internal` — the BuildKit session, gRPC, protobuf and push pieces that
 * @kiln/buildkit shares with this package (one implementation, two builders). Not a stable public
 * API: it follows @kiln/docker's own version, and only Kiln's packages should import it.
 */
export { readFields, asString, asBytes, asNumber, asBool, encodeVarint, varintField, lengthDelimitedField } from "./session/protobuf.js";
export type { WireField, WireValue } from "./session/protobuf.js";
export {
  serveGrpc,
  GrpcStatus,
  GrpcStatusError,
  encodeGrpcFrame,
  grpcMessagePrefix,
  grpcFrameParts,
  decodeGrpcFrames,
  encodeGrpcMessageHeader,
  readGrpcMessages,
  writeWithBackpressure,
} from "./session/grpcServer.js";
export type { UnaryHandler, StreamingHandler, StreamingCall, GrpcConnection, GrpcConnectionOptions } from "./session/grpcServer.js";
export {
  GET_SECRET_METHOD,
  HEALTH_CHECK_METHOD,
  ServingStatus,
  decodeGetSecretRequest,
  encodeGetSecretRequest,
  decodeGetSecretResponse,
} from "./session/sessionMessages.js";
export { secretSessionHandlers, checkedSecrets, MAX_BUILD_SECRET_BYTES } from "./session/buildSession.js";
export type { SecretSessionHandlers } from "./session/buildSession.js";
export { HijackedStream } from "./session/hijackedStream.js";
export {
  DIFF_COPY_METHOD,
  SourceTree,
  comparePath,
  encodeStat,
  encodePacket,
  encodeDataPacketParts,
  decodePacket,
  diffCopyHandler,
} from "./session/filesync.js";
export type { SourceEntry, TransferProgress } from "./session/filesync.js";
export { followLinks } from "./session/followPaths.js";
export {
  CONTEXT_SOURCE,
  DOCKERFILE_SOURCE,
  SESSION_DOCKERFILE_NAME,
  contextTree,
  dockerfileTree,
  rootOf,
  contentExactModTime,
  contentModTime,
} from "./session/contextSources.js";
export { sourcesOf } from "./build/buildOne.js";
export { upgradeToH2c, sessionRequest } from "./session/engineUpgrade.js";
export type { UpgradeFailures, UpgradeTarget } from "./session/engineUpgrade.js";
export type { LinkLookup, DirLookup } from "./session/followPaths.js";
export { followBuild } from "./build/buildProgress.js";
export type { BuildOutcome, BuildProgressOptions } from "./build/buildProgress.js";
export { pushTag, pushIdleTimeoutMs, AUTH_FAILURE } from "./push/push.js";
export type { PushOptions, PushResult } from "./push/push.js";
export { encodeRegistryAuth, registryHost } from "./push/registryAuth.js";
export type { RegistryAuth } from "./push/registryAuth.js";
export { pushedManifest, presentPlatformManifests } from "./push/multiPlatform.js";
export type { PlatformManifest } from "./push/multiPlatform.js";
export { provenanceLabels } from "./provenance.js";

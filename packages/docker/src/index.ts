// Public API of @kiln/docker.
export { DockerImageBuilder } from "./builder.js";
export type { DockerImageBuilderOptions } from "./builder.js";
export { LocalDockerImageChecker, DockerRegistryImageChecker, RegistryImageChecker, hasRegistryHost } from "./checkers.js";
export type { LocalDockerImageCheckerOptions, DockerRegistryImageCheckerOptions, RegistryImageCheckerOptions } from "./checkers.js";
export { resolveDockerConnection, DEFAULT_DOCKER_SOCKET } from "./daemon/connection.js";
export type { DockerConnection } from "./daemon/connection.js";
export { SshHostKeyUnknownError, SshHostKeyMismatchError, SshHostKeyRevokedError } from "./session/sshHostKeyErrors.js";
export { DockerDaemon } from "./daemon/daemon.js";
export type { DaemonInfo } from "./daemon/daemon.js";
export { decodeStatusResponse, decodeTraceAux } from "./build/buildkitTrace.js";
export type { TraceStatusResponse, TraceVertex, TraceStatus, TraceLog } from "./build/buildkitTrace.js";
export { platformTag, assembleIndex } from "./push/multiPlatform.js";
export { LABEL_KILN_VERSION, LABEL_TAG_INPUTS, LABEL_REVISION } from "./provenance.js";
export { planStages, planDockerfileStage, stageRepository, LABEL_STAGE, STAGE_RECIPE_VERSION } from "./incremental/stages.js";
export type { Stage, StagePlan, DockerfileStage } from "./incremental/stages.js";

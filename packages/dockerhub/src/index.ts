// Public API of @kiln/dockerhub (registered through package.json "kiln": dockerhub, registry).
export {
  DockerHubImageChecker,
  DOCKER_HUB_REGISTRY_URL,
  DOCKER_HUB_AUTH_REALM,
  DOCKER_HUB_AUTH_SERVICE,
} from "./dockerHubChecker.js";
export type { DockerHubImageCheckerOptions } from "./dockerHubChecker.js";
export { RegistryImageChecker } from "./registryChecker.js";
export type { RegistryImageCheckerOptions } from "./registryChecker.js";

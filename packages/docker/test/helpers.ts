// Shared bits of the integration tests: they live in @kiln/test-utils, shared with @kiln/buildkit's tests.
export { collector, dockerConfigWith, tempTree, type Collector } from "@kiln/test-utils";

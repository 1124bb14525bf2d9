/**
 * `@kiln/core/testing` — conformance suites a plugin runs against its own checker and builder, so
 * every plugin behaves the way the engine (and the reference guide) expects — cancellation
 * included. Uses vitest (an optional peer dependency of @kiln/core, imported only by this entry).
 * Like unstorage's `testDriver`, a suite takes options and the plugin's own extra tests.
 *
 * ```ts
 * import { describeCheckerConformance } from "@kiln/core/testing";
 * describeCheckerConformance("MyImageChecker", {
 *   create: async () => ({
 *     checker: MyImageChecker,                        // a class with static imageExists, or an instance
 *     present: { repository: "localhost:5000/app", tag: "v1", platforms: ["linux/amd64"] },
 *     absent: { repository: "localhost:5000/app", tag: "nope", platforms: ["linux/amd64"] },
 *     wrongArch: { repository: "localhost:5000/app", tag: "v1", platforms: ["linux/amd64", "linux/arm64"] },
 *     failing: () => new MyImageChecker({ url: "http://127.0.0.1:1" }),
 *   }),
 *   // A server that accepts and never answers: an abort mid-request must reject at once.
 *   hanging: (server) => ({ checker: new MyImageChecker({ url: server.url }), target: { repository: `${server.host}/app`, tag: "v1", platforms: ["linux/amd64"] } }),
 *   extraTests: (setup) => { it("…", async () => { … }); },
 * });
 * ```
 */
export { describeCheckerConformance } from "./checkerConformance.js";
export type { CheckTarget, CheckerConformanceSetup, CheckerConformanceOptions, CheckerConformanceSuite, HangingCheck } from "./checkerConformance.js";
export { describeBuilderConformance } from "./builderConformance.js";
export type { BuilderConformanceSetup, BuilderConformanceOptions, BuilderConformanceSuite } from "./builderConformance.js";
export { startSilentServer } from "./silentServer.js";
export type { SilentServer } from "./silentServer.js";
export { isAbortError } from "./cancellation.js";

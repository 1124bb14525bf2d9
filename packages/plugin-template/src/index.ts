// Public API of the plugin. The package.json `kiln` field points at these exports by name.
export { MyImageBuilder, BUILDER_NAME } from "./builder.js";
export { MyImageChecker, CHECKER_NAME } from "./checker.js";
export { STORE_ENV, storeDir, readRecord } from "./store.js";
export type { CatalogueRecord } from "./store.js";

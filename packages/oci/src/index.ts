// @kiln/oci — the daemonless builder (builder name "oci").
export { OciImageBuilder } from "./builder.js";
export type { OciImageBuilderOptions } from "./builder.js";
export { OciRegistryImageChecker } from "./checker.js";
export { OciLayoutImageChecker } from "./layoutChecker.js";
export { layoutDirOf } from "./layoutTarget.js";
export { OciLayoutWriter, REF_NAME_ANNOTATION, readLayoutIndex, blobPath } from "./layoutWriter.js";
export type { LayoutDescriptor, LayoutIndex } from "./layoutWriter.js";
export { ociCanBuild } from "./support.js";
export { canonicalJson } from "./canonicalJson.js";
export { buildEpochSeconds, DEFAULT_EPOCH_SECONDS } from "./epoch.js";
export { MaintainerScriptError } from "./debianScripts.js";
export { UnsafeAptSourceError } from "./aptSourceCheck.js";

export * from "./registry.js";
export * from "./tokenServer.js";
export * from "./faultProxy.js";
export * from "./docker.js";
export * from "./baseImages.js";
export * from "./pyIndex.js";
export * from "./tlsDaemon.js";

// `pnpm run make-base`: make the local node base image and print its name.
import { ensureNodeBaseImage } from "./node-base.js";
console.log(await ensureNodeBaseImage());

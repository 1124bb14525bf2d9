// Selecting a plugin builder by name — the one `kiln-plugin-template` declares in its package.json
// ("kiln": { "imageBuilders": { "my_builder": … } }) — in the two ways of the reference guide.
import { ImageBuildEngine, build, init } from "@kiln/core";
import { analytics, greeter } from "./images.js";

// 1. The most common way: choose the builder once, at initialisation.
init({ imageBuilder: "my_builder" });
const first = await build(analytics);
console.log(`analytics: ${first.outcome} ${first.uri}`);

// 2. Name the builder explicitly on the engine call.
const second = await ImageBuildEngine.build(greeter, { builder: "my_builder" });
console.log(`greeter: ${second.outcome} ${second.uri}`);

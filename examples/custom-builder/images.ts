// The images this example builds. Declared once, used by main.ts in the two ways the reference
// guide shows. No registry is needed: the template builder writes to its local catalogue.
import { Image } from "@kiln/core";

const registry = process.env.KILN_IMAGE_REGISTRY || "registry.example.test/examples";

/** The guide's image: a Debian python base with pandas. Declaring it pulls nothing. */
export const analytics = Image.fromDebianBase({ pythonVersion: [3, 11], registry, name: "analytics" }).withPipPackages("pandas");

/** A second image, built by naming the builder on the call itself. */
export const greeter = Image.fromBase("busybox:1.36", { registry, name: "greeter" })
  .withSourceFile(new URL("./app/greeting.txt", import.meta.url), "/greeting.txt")
  .withEnvVars({ GREETING_FILE: "/greeting.txt" });

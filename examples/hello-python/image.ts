// The reference guide's image: a Debian python base with pip packages, plus a small program.
//
// Online the defaults apply: python:3.11-slim-bookworm from Docker Hub and `requests` from PyPI.
// Offline (scripts/quickstart.sh, CI) three environment variables point at local stand-ins:
//   KILN_PYTHON_BASE    a locally made Debian python 3.11 image
//   PIP_INDEX_URL       a package index served on this machine (reachable from build containers)
//   HELLO_PIP_PACKAGES  comma-separated packages that index has
import { Image, type PipOptions } from "@kiln/core";

const packages = (process.env.HELLO_PIP_PACKAGES || "requests")
  .split(",")
  .map((p) => p.trim())
  .filter(Boolean);
const indexUrl = process.env.PIP_INDEX_URL;
// pip ignores a plain-http index unless its host is trusted; each argument stays one argv element.
const pipOptions: PipOptions = indexUrl ? { indexUrl, extraArgs: ["--trusted-host", new URL(indexUrl).host] } : {};

export const image = Image.fromDebianBase({
  pythonVersion: [3, 11],
  ...(process.env.KILN_PYTHON_BASE ? { baseImage: process.env.KILN_PYTHON_BASE } : {}),
  installer: "pip", // plain pip from the base image: no uv image to fetch
  name: "hello-python",
})
  .withPipPackages(...packages, pipOptions)
  .withEnvVars({ GREETING: "hello from kiln", HELLO_PACKAGES: packages.join(",") })
  .withSourceFile(new URL("./app/hello.py", import.meta.url), "/app/hello.py");

export default image;

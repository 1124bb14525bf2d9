// `fromDockerfile(df).withUser("1234")` where the user's Dockerfile ends inside a line continuation
// (also with `# escape=` and a backtick, and CRLF with trailing blank, comment and escape-only lines),
// built on the machine's real Docker Engine both ways: incrementally (stage 0 = the Dockerfile alone,
// then Kiln's layers) and in one go (core's renderDockerfile). One tag, one image: both run as 1234,
// the user's RUN ran as root with exactly the text it has alone, and the image configs are the same.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { Image } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, inspectImage, runInImage, uniqueName } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { collector, tempTree } from "./helpers.js";

let busybox: string;
const cleanup = new DockerCleanup();
const dirs: string[] = [];

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
});

afterAll(async () => {
  await cleanup.run();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const CONFIG_FIELDS = ["Env", "WorkingDir", "User", "Labels", "Entrypoint", "Cmd", "OnBuild"] as const;

/** Builds `image` incrementally and in one go (under another name); returns both URIs and configs. */
async function buildBothWays(image: Image, buildkit: boolean) {
  const staged = image;
  const oneShot = image.clone({ name: `${image.name}-oneshot` });
  cleanup.image(staged.uri);
  cleanup.image(oneShot.uri);
  const c1 = collector();
  await new DockerImageBuilder({ buildkit }).buildImage(staged, { onEvent: c1.onEvent });
  for (const e of c1.of("build.stage")) cleanup.image(e.ref);
  // Really two paths: stage 0 (the Dockerfile alone) then Kiln's stage(s), against a single build.
  const builtStages = c1
    .of("build.stage")
    .filter((e) => e.status === "built")
    .map((e) => e.stage);
  expect(builtStages[0]).toBe(0);
  expect(builtStages.length).toBeGreaterThanOrEqual(2);
  const c2 = collector();
  await new DockerImageBuilder({ buildkit, incremental: false }).buildImage(oneShot, { onEvent: c2.onEvent });
  expect(c2.of("build.stage")).toHaveLength(0);
  const configs = await Promise.all([staged.uri, oneShot.uri].map(async (uri) => (await inspectImage(uri)).Config as Record<string, unknown>));
  for (const field of CONFIG_FIELDS) expect([field, configs[0]![field]]).toEqual([field, configs[1]![field]]);
  return { uris: [staged.uri, oneShot.uri], config: configs[0]! };
}

const REPORT = ["sh", "-c", "cat /ran-as /built; id -u"];

describe.each([true, false])("a user Dockerfile ending inside an instruction, then withUser (buildkit: %s)", (buildkit) => {
  it("a trailing `\\` continuation: the RUN ends at end of file, USER 1234 is its own instruction", async () => {
    const ctx = await tempTree({
      Dockerfile: `FROM ${busybox}\nRUN id -u > /ran-as && printf '%s\\n' building \\\n    more > /built \\\n`,
    });
    dirs.push(ctx);
    const image = Image.fromDockerfile(join(ctx, "Dockerfile"), { name: uniqueName("kiln-dfend") }).withUser("1234");
    const { uris, config } = await buildBothWays(image, buildkit);
    expect(config.User).toBe("1234");
    for (const uri of uris) expect((await runInImage(uri, REPORT)).trim().split("\n")).toEqual(["0", "building", "more", "1234"]);
  });

  it("# escape=` with a backtick continuation: Kiln's words are escaped with the backtick", async () => {
    const ctx = await tempTree({
      Dockerfile: `# escape=\`\nFROM ${busybox}\nRUN id -u > /ran-as && printf '%s\\n' 'C:\\dir' \`\n    more > /built \`\n`,
    });
    const src = await tempTree({ "we`ird$name.txt": "copied\n" });
    dirs.push(ctx, src);
    const env = 'a`b $HOME \\ "q" \'s';
    const label = 'l`$"\\';
    const image = Image.fromDockerfile(join(ctx, "Dockerfile"), { name: uniqueName("kiln-dfend") })
      .withCommands('printf "%s\\n" "`echo sub`" > /cmd-out')
      .withEnvVars({ WEIRD: env })
      .withWorkdir("/srv/we`ird $x")
      .withSourceFile(join(src, "we`ird$name.txt"), "/data/")
      .withLabels({ note: label })
      .withUser("1234");
    const { uris, config } = await buildBothWays(image, buildkit);
    expect(config.User).toBe("1234");
    expect(config.WorkingDir).toBe("/srv/we`ird $x");
    expect(config.Env).toContain(`WEIRD=${env}`);
    expect((config.Labels as Record<string, string>).note).toBe(label);
    for (const uri of uris) {
      expect(
        (await runInImage(uri, ["sh", "-c", "cat /ran-as /built /cmd-out '/data/we`ird$name.txt'; printf '%s\\n' \"$WEIRD\"; pwd; id -u"])).trim().split("\n"),
      ).toEqual(["0", "C:\\dir", "more", "sub", "copied", env, "/srv/we`ird $x", "1234"]);
    }
  });

  it("CRLF, then escape-only, blank and comment lines and no final newline: Docker continues through them, so does Kiln", async () => {
    const ctx = await tempTree({
      Dockerfile: `FROM ${busybox}\r\nRUN id -u > /ran-as && printf '%s\\n' building \\\r\n    more > /built \\\r\n  \\\r\n\r\n# a comment \\\r\n\\\r\n   `,
    });
    dirs.push(ctx);
    const image = Image.fromDockerfile(join(ctx, "Dockerfile"), { name: uniqueName("kiln-dfend") }).withUser("1234");
    const { uris, config } = await buildBothWays(image, buildkit);
    expect(config.User).toBe("1234");
    for (const uri of uris) expect((await runInImage(uri, REPORT)).trim().split("\n")).toEqual(["0", "building", "more", "1234"]);
  });
});

// Issue 12 item 2 on the machine's real Docker Engine: a source folder holding names that are not UTF-8
// (a Latin-1 `conf\xe9.ini`, a raw directory, a link to a raw name) is built by Kiln — BuildKit in
// stages, and the classic builder in one go — into an image that holds those names byte for byte, as
// `docker build` keeps them; and the tag counts them (it differs from the UTF-8 twin's).
import { mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { Image } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, runInImage, uniqueName } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { tempTree } from "./helpers.js";

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

const L = (s: string) => Buffer.from(s, "latin1");
const at = (dir: string, bytes: Buffer) => Buffer.concat([Buffer.from(`${dir}/`), bytes]);

/** A folder with raw names: conf\xe9.ini, r\xff/in\xe0.txt, ln -> conf\xe9.ini, and a plain file. */
async function rawTree(): Promise<string> {
  const dir = await tempTree({ "plain.txt": "plain\n" }, "kiln-raw-src-");
  dirs.push(dir);
  await writeFile(at(dir, L("conf\xe9.ini")), "x=1\n");
  await mkdir(at(dir, L("r\xff")));
  await writeFile(at(dir, L("r\xff/in\xe0.txt")), "inner\n");
  await symlink(L("conf\xe9.ini"), `${dir}/ln`);
  return dir;
}

/** Every path under /app in the image with its raw bytes (hex per line, from `od`), and link targets. */
async function rawListing(uri: string): Promise<string[]> {
  const script =
    'cd /app && find . -mindepth 1 | sort | while read -r p; do printf "%s" "$p" | od -An -tx1 -v | tr -d " \\n"; [ -L "$p" ] && { printf " -> "; readlink "$p" | tr -d "\\n" | od -An -tx1 -v | tr -d " \\n"; }; echo; done';
  return (await runInImage(uri, ["sh", "-c", script])).trim().split("\n");
}

const hex = (s: string) => L(s).toString("hex");

describe("a source folder with names that are not UTF-8", () => {
  for (const mode of [
    { label: "BuildKit, in stages", options: {} },
    { label: "classic builder, one go", options: { buildkit: false, incremental: false } },
  ]) {
    it(`${mode.label}: the image holds the names byte for byte, with their content`, async () => {
      const dir = await rawTree();
      const image = Image.fromBase(busybox, { name: uniqueName("kiln-raw") })
        .withCommands("echo base > /base.txt")
        .withSourceFolder(dir, "/app");
      const uri = cleanup.image(image.uri);
      await new DockerImageBuilder(mode.options).buildImage(image, {});
      expect(await rawListing(uri)).toEqual(
        [hex("./conf\xe9.ini"), `${hex("./ln")} -> ${hex("conf\xe9.ini")}`, hex("./plain.txt"), hex("./r\xff"), hex("./r\xff/in\xe0.txt")].sort(),
      );
      expect(await runInImage(uri, ["sh", "-c", "cat /app/conf*.ini /app/r*/in*.txt"])).toBe("x=1\ninner\n");
    });
  }

  it("the tag counts the raw name: it differs from the same folder with the UTF-8 name", async () => {
    const dir = await rawTree();
    const twin = await tempTree({ "plain.txt": "plain\n", "confé.ini": "x=1\n", "r\u00ff/in\u00e0.txt": "inner\n" }, "kiln-utf8-src-");
    dirs.push(twin);
    await symlink("confé.ini", `${twin}/ln`);
    const tag = (d: string) => Image.fromBase(busybox, { name: "kiln-raw-tag" }).withSourceFolder(d, "/app").tag;
    expect(tag(dir)).not.toBe(tag(twin));
  });
});

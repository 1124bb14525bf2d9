// A failed cache import is a miss to BuildKit, not a failed build (cacheImportStatus.ts): its vertex's
// error is taken out of the status stream before followBuild reads it, and reported; a real step's
// error still fails the build. (The real daemon's side: split-platforms.integration.test.ts and
// standalone.integration.test.ts :: cacheFrom of a ref nobody exported yet.)
import { followBuild, lengthDelimitedField } from "@kiln/docker/internal";
import { describe, expect, it } from "vitest";
import { withoutCacheImportErrors } from "../src/cacheImportStatus.js";

const vertex = (digest: string, name: string, error?: string) =>
  lengthDelimitedField(
    1,
    Buffer.concat([
      lengthDelimitedField(1, digest),
      lengthDelimitedField(3, name),
      lengthDelimitedField(5, Buffer.from([8, 1])), // started
      lengthDelimitedField(6, Buffer.from([8, 2])), // completed
      ...(error ? [lengthDelimitedField(7, error)] : []),
    ]),
  );

const IMPORT = "importing cache manifest from 127.0.0.1:5000/app:buildcache";
const IMPORT_ERROR = "failed to configure registry cache importer: 127.0.0.1:5000/app:buildcache: not found";

async function* lines(messages: Buffer[], result: object): AsyncGenerator<Buffer> {
  for (const m of messages) yield Buffer.from(`${JSON.stringify({ id: "moby.buildkit.trace", aux: m.toString("base64") })}\n`);
  yield Buffer.from(`${JSON.stringify(result)}\n`);
}

const solved = { aux: { ID: `sha256:${"1".repeat(64)}` } };

describe("cache import errors in BuildKit's status", () => {
  it("a build whose only error is a failed cache import succeeds once the import's error is taken out, and the import is reported", async () => {
    const message = Buffer.concat([vertex("sha256:a", IMPORT, IMPORT_ERROR), vertex("sha256:b", "[1/2] FROM base")]);
    // Unfiltered, followBuild fails the build on the import's error:
    await expect(followBuild(lines([message], solved), { image: "app" })).rejects.toThrow(/importing cache manifest/);

    const failedImports: Array<[string, string]> = [];
    const filtered = withoutCacheImportErrors(message, (ref, error) => failedImports.push([ref, error]));
    const outcome = await followBuild(lines([filtered], solved), { image: "app" });
    expect(outcome.imageId).toBe(solved.aux.ID);
    expect(failedImports).toEqual([["127.0.0.1:5000/app:buildcache", IMPORT_ERROR]]);
  });

  it("a real step's error still fails the build; messages without a cache import pass through as they are", async () => {
    const step = vertex("sha256:c", "[2/2] RUN exit 3", "process did not complete successfully: exit code: 3");
    const message = Buffer.concat([vertex("sha256:a", IMPORT, IMPORT_ERROR), step]);
    const filtered = withoutCacheImportErrors(message, () => undefined);
    await expect(followBuild(lines([filtered], { errorDetail: { message: "exit code: 3" } }), { image: "app" })).rejects.toThrow(/RUN exit 3/);
    expect(withoutCacheImportErrors(step, () => undefined)).toBe(step);
  });
});

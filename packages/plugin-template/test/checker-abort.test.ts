// MyImageChecker passes its signal on: an aborted check rejects instead of answering "absent".
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MyImageChecker } from "../src/index.js";
import { useTempStore } from "./helpers.js";

let store: Awaited<ReturnType<typeof useTempStore>>;
beforeAll(async () => {
  store = await useTempStore();
});
afterAll(async () => {
  await store.cleanup();
});

describe("MyImageChecker and the AbortSignal", () => {
  it("rejects with the abort reason for an aborted signal, where it would otherwise answer null", async () => {
    const repository = "registry.example.test/team/app";
    const tag = "0".repeat(32);
    expect(await MyImageChecker.imageExists(repository, tag, ["linux/amd64"])).toBeNull();
    const reason = new Error("build cancelled");
    await expect(MyImageChecker.imageExists(repository, tag, ["linux/amd64"], { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });
});

import { it, expect } from "vitest";
import { describeValue, KilnError, ValidationError } from "../src/errors.js";
import { Image } from "../src/image.js";
it("marks errors", () => {
  const e = new ValidationError("tag", "x\n", "bad");
  expect(KilnError.isInstance(e)).toBe(true);
  expect(ValidationError.isInstance(e)).toBe(true);
  expect(e.message).toContain("\\n");
});

it("describes values JSON cannot (BigInt, circular) instead of hiding the ValidationError", () => {
  expect(() => Image.fromNodeBase({ nodeVersion: 20n as never })).toThrow(ValidationError);
  expect(() => Image.fromNodeBase({ nodeVersion: 20n as never })).toThrow(/nodeVersion "20"/);
  const circular: Record<string, unknown> = { a: 1 };
  circular.self = circular;
  expect(describeValue(circular)).toBe(JSON.stringify("[object Object]"));
  expect(() => new ValidationError("x", circular, "bad")).not.toThrow();
  expect(describeValue(Object.create(null))).toBe('"{}"');
  const bare = Object.create(null) as Record<string, unknown>;
  bare.self = bare;
  expect(describeValue(bare)).toBe('"[object Object]"');
});

it("UsageError.isInstance recognises usage errors only, by code (not every KilnError)", async () => {
  const { AuthError, UsageError } = await import("../src/errors.js");
  const { UsageError: CliUsageError } = await import("../src/cli/args.js");
  expect(CliUsageError).toBe(UsageError);
  const usage = new UsageError("--checker needs at least one checker name");
  expect(UsageError.isInstance(usage)).toBe(true);
  expect(usage.code).toBe("KILN_USAGE");
  expect(usage.name).toBe("UsageError");
  expect(KilnError.isInstance(usage)).toBe(true);
  expect(UsageError.isInstance(new AuthError("x"))).toBe(false);
  expect(UsageError.isInstance(new KilnError("x"))).toBe(false);
  expect(AuthError.isInstance(usage)).toBe(false);
});

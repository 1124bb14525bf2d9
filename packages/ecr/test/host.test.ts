import { describe, expect, it } from "vitest";
import { KilnError } from "@kiln/core";
import { ecrRegistryHost, isEcrHost, parseEcrHost, splitRepository } from "../src/host.js";

describe("parseEcrHost", () => {
  const cases: Array<[string, { registryId: string; region: string; fips: boolean; dualStack: boolean }]> = [
    ["123456789012.dkr.ecr.us-east-1.amazonaws.com", { registryId: "123456789012", region: "us-east-1", fips: false, dualStack: false }],
    ["210987654321.dkr.ecr-fips.us-gov-west-1.amazonaws.com", { registryId: "210987654321", region: "us-gov-west-1", fips: true, dualStack: false }],
    ["123456789012.dkr-ecr.eu-central-1.on.aws", { registryId: "123456789012", region: "eu-central-1", fips: false, dualStack: true }],
    ["123456789012.dkr-ecr-fips.us-east-2.on.aws", { registryId: "123456789012", region: "us-east-2", fips: true, dualStack: true }],
    ["123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", { registryId: "123456789012", region: "cn-north-1", fips: false, dualStack: false }],
    ["123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn", { registryId: "123456789012", region: "cn-northwest-1", fips: false, dualStack: true }],
    ["123456789012.DKR.ECR.AP-SOUTHEAST-2.AMAZONAWS.COM", { registryId: "123456789012", region: "ap-southeast-2", fips: false, dualStack: false }],
  ];
  for (const [host, expected] of cases) {
    it(`reads account and region from ${host}`, () => {
      const parsed = parseEcrHost(host);
      expect(parsed).toEqual({ host: host.toLowerCase(), ...expected });
      // The canonical host built back from the parts is the same host.
      expect(ecrRegistryHost(parsed!)).toBe(host.toLowerCase());
    });
  }

  it.each([
    "ghcr.io",
    "docker.io",
    "12345.dkr.ecr.us-east-1.amazonaws.com", // account ids have 12 digits
    "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
    "evil.example/123456789012.dkr.ecr.us-east-1.amazonaws.com",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com:5000",
    "public.ecr.aws",
  ])("does not take %s for an ECR registry", (host) => {
    expect(parseEcrHost(host)).toBeUndefined();
    expect(isEcrHost(host)).toBe(false);
  });

  it("maps an alias host to a registry", () => {
    const aliases = { "127.0.0.1:5000": { registryId: "123456789012", region: "eu-west-1" } };
    expect(parseEcrHost("127.0.0.1:5000", aliases)).toEqual({
      host: "127.0.0.1:5000",
      registryId: "123456789012",
      region: "eu-west-1",
      fips: false,
      dualStack: false,
    });
  });

  it("rejects an alias with a malformed registry id, naming the field", () => {
    const error = (() => {
      try {
        parseEcrHost("proxy.local", { "proxy.local": { registryId: "12", region: "eu-west-1" } });
      } catch (e) {
        return e;
      }
    })() as KilnError & { field?: string };
    expect(KilnError.isInstance(error)).toBe(true);
    expect(error.field).toBe('registryAliases["proxy.local"].registryId');
    expect(error.message).toMatch(/12-digit/);
    expect(error.hint).toMatch(/account id/);
  });
});

describe("splitRepository", () => {
  it("splits the host from the repository path", () => {
    expect(splitRepository("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app")).toEqual({
      host: "123456789012.dkr.ecr.us-east-1.amazonaws.com",
      repositoryName: "team/app",
    });
    expect(splitRepository("team/app")).toEqual({ repositoryName: "team/app" });
    expect(splitRepository("localhost:5000/app")).toEqual({ host: "localhost:5000", repositoryName: "app" });
  });

  it.each(["Team/App", "app:tag", "a//b", "", "app\nFROM x"])("rejects the repository name %j", (repository) => {
    expect(() => splitRepository(repository)).toThrowError(expect.objectContaining({ code: "KILN_INVALID_REFERENCE" }));
  });
});

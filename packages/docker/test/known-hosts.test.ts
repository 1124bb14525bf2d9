// The known_hosts parser and lookup (session/knownHosts.ts) and the host key policy read from the
// environment (session/sshHostKeys.ts). OpenSSH's own ssh-keygen is the oracle: which lines
// `ssh-keygen -F` finds for a name, the names `ssh-keygen -H` hashes, the fingerprint `ssh-keygen -l`
// prints — so Kiln's answers are checked against the tool the docker CLI's ssh shares its code with.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "@kiln/core";
// ssh2 is CommonJS: Node's ESM loader does not see `utils` as a named export.
import ssh2 from "ssh2";
import { afterAll, describe, expect, it } from "vitest";
import { checkHostKey, entryMatchesName, keyTypeLabel, keyTypeOf, knownHostsName, parseKnownHosts, sha256Fingerprint } from "../src/session/knownHosts.js";
import { SshHostKeyUnknownError } from "../src/session/sshHostKeyErrors.js";
import { preferredHostKeyAlgorithms, refuseHostKey, resolveSshHostKeyPolicy } from "../src/session/sshHostKeys.js";
import { generateTestKeyPair } from "@kiln/test-utils";

const { utils } = ssh2;
const dir = mkdtempSync(join(tmpdir(), "kiln-known-hosts-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A fresh key pair: its OpenSSH public line (`type base64`) and the raw blob a server presents. */
function keyPair(type: "ed25519" | "ecdsa" | "rsa") {
  const pair = generateTestKeyPair(type);
  const parsed = utils.parseKey(pair.private);
  if (parsed instanceof Error) throw parsed;
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  return { line: pair.public.split(" ").slice(0, 2).join(" "), blob: key.getPublicSSH() };
}

let fileCount = 0;
function writeKnownHosts(text: string): string {
  const file = join(dir, `known_hosts_${++fileCount}`);
  writeFileSync(file, text);
  return file;
}

/** The 1-based lines `ssh-keygen -F name -f file` reports (it prints `# Host name found: line N`). */
function sshKeygenFinds(file: string, name: string): number[] {
  let output = "";
  try {
    output = execFileSync("ssh-keygen", ["-F", name, "-f", file], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 10_000 });
  } catch (error) {
    // Exit 1: not found.
    if ((error as { status?: number }).status !== 1) throw error;
  }
  return [...output.matchAll(/found: line (\d+)/g)].map((match) => Number(match[1])).sort((a, b) => a - b);
}

describe("known_hosts matching agrees with ssh-keygen -F", () => {
  const key = keyPair("ed25519").line;
  const text = [
    "# a comment",
    "",
    `*.example.com,!bad.example.com ${key}`,
    `[h]:2222 ${key}`,
    `foo?.org ${key}`,
    `alpha,beta,[gamma]:2200 ${key}`,
    `Mixed.Case.Host ${key}`,
    `[*.wild]:* ${key}`,
    `   indented.host ${key} with a comment`,
  ].join("\n");
  const file = writeKnownHosts(`${text}\n`);
  const names = [
    "a.example.com",
    "bad.example.com",
    "example.com",
    "[h]:2222",
    "h",
    "[h]:22",
    "foo1.org",
    "foo12.org",
    "alpha",
    "beta",
    "gamma",
    "[gamma]:2200",
    "[alpha]:2200",
    "mixed.case.host",
    "[x.wild]:2022",
    "indented.host",
    "nowhere",
  ];
  const entries = parseKnownHosts(text, file);

  for (const name of names) {
    it(`${name}`, () => {
      const ours = entries.filter((entry) => entryMatchesName(entry, name)).map((entry) => entry.line);
      expect(ours).toEqual(sshKeygenFinds(file, name));
    });
  }

  it("hashed entries (`ssh-keygen -H`): the same names match, others do not", () => {
    const hashable = [`example.org ${key}`, `[10.0.0.7]:2222 ${key}`, `10.0.0.7 ${key}`].join("\n");
    const hashedFile = writeKnownHosts(`${hashable}\n`);
    execFileSync("ssh-keygen", ["-H", "-f", hashedFile], { stdio: "ignore", timeout: 10_000 });
    const hashedText = readFileSync(hashedFile, "utf8");
    const hashed = parseKnownHosts(hashedText, hashedFile);
    expect(hashed).toHaveLength(3);
    expect(hashed.every((entry) => entry.hosts.startsWith("|1|"))).toBe(true);
    for (const name of ["example.org", "[10.0.0.7]:2222", "10.0.0.7", "[10.0.0.7]:22", "example.com", "[example.org]:2222"]) {
      expect(
        hashed.filter((entry) => entryMatchesName(entry, name)).map((entry) => entry.line),
        name,
      ).toEqual(sshKeygenFinds(hashedFile, name));
    }
    // And they did match something (ssh-keygen agrees it is not an empty answer).
    expect(sshKeygenFinds(hashedFile, "[10.0.0.7]:2222")).toEqual([2]);
  });
});

describe("parseKnownHosts", () => {
  it("reads each key type's blob; skips comments, blank, malformed and @cert-authority lines", () => {
    const ed = keyPair("ed25519");
    const ec = keyPair("ecdsa");
    const rsa = keyPair("rsa");
    const text = [
      `host1 ${ed.line}`,
      `host2 ${ec.line} comment`,
      `host3 ${rsa.line}`,
      "# host4 ssh-ed25519 AAAA",
      `@cert-authority *.example.com ${ed.line}`,
      "host5 ssh-ed25519 not-base64!",
      `host6 ssh-rsa ${ed.line.split(" ")[1]}`,
      "host7",
      `@revoked host8 ${rsa.line}`,
    ].join("\n");
    const entries = parseKnownHosts(text, "/kh");
    expect(entries.map((entry) => [entry.line, entry.hosts, entry.keyType, entry.marker])).toEqual([
      [1, "host1", "ssh-ed25519", undefined],
      [2, "host2", "ecdsa-sha2-nistp256", undefined],
      [3, "host3", "ssh-rsa", undefined],
      [9, "host8", "ssh-rsa", "revoked"],
    ]);
    expect(entries[0]?.key.equals(ed.blob)).toBe(true);
    expect(entries[1]?.key.equals(ec.blob)).toBe(true);
    expect(entries[2]?.key.equals(rsa.blob)).toBe(true);
  });

  it("knownHostsName: the bare name on port 22, [host]:port on any other, lowercased", () => {
    expect(knownHostsName("Build.Example", 22)).toBe("build.example");
    expect(knownHostsName("Build.Example", 2222)).toBe("[build.example]:2222");
  });
});

describe("checkHostKey", () => {
  const ed = keyPair("ed25519");
  const otherEd = keyPair("ed25519");
  const rsa = keyPair("rsa");

  it("known: the presented key is on a line for the host", () => {
    const entries = parseKnownHosts(`other ${otherEd.line}\n[h]:2222 ${rsa.line}\n[h]:2222 ${ed.line}\n`, "/kh");
    expect(checkHostKey(entries, "[h]:2222", ed.blob)).toMatchObject({ status: "known", entry: { line: 3 } });
    expect(checkHostKey(entries, "[h]:2222", rsa.blob)).toMatchObject({ status: "known", entry: { line: 2 } });
  });

  it("changed: another key of the same type for the host (possible man-in-the-middle)", () => {
    const entries = parseKnownHosts(`h ${otherEd.line}\n`, "/kh");
    expect(checkHostKey(entries, "h", ed.blob)).toMatchObject({ status: "changed", entries: [{ line: 1 }] });
  });

  it("unknown: no line for the host, or only keys of other types (listed)", () => {
    const entries = parseKnownHosts(`h ${rsa.line}\nelsewhere ${ed.line}\n`, "/kh");
    expect(checkHostKey(entries, "h", ed.blob)).toEqual({ status: "unknown", otherTypes: ["ssh-rsa"] });
    expect(checkHostKey(entries, "[h]:2222", ed.blob)).toEqual({ status: "unknown", otherTypes: [] });
  });

  it("revoked: an @revoked line for the host with that key wins over a plain line with it", () => {
    const entries = parseKnownHosts(`h ${ed.line}\n@revoked h ${ed.line}\n`, "/kh");
    expect(checkHostKey(entries, "h", ed.blob)).toMatchObject({ status: "revoked", entry: { line: 2 } });
    // A revoked line for another host does not touch this one.
    const elsewhere = parseKnownHosts(`h ${ed.line}\n@revoked other ${ed.line}\n`, "/kh");
    expect(checkHostKey(elsewhere, "h", ed.blob).status).toBe("known");
  });

  it("a negated pattern keeps a line from a host even though a wildcard matches it", () => {
    const entries = parseKnownHosts(`*,!h ${ed.line}\n`, "/kh");
    expect(checkHostKey(entries, "h", ed.blob).status).toBe("unknown");
    expect(checkHostKey(entries, "g", ed.blob).status).toBe("known");
  });
});

describe("fingerprints as ssh-keygen -l prints them", () => {
  for (const type of ["ed25519", "ecdsa", "rsa"] as const) {
    it(type, () => {
      const pair = keyPair(type);
      const file = writeKnownHosts(`${pair.line}\n`);
      // `<bits> SHA256:<base64> <comment> (<TYPE>)`
      const printed = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", file], { encoding: "utf8", timeout: 10_000 }).trim().split(/\s+/);
      expect(sha256Fingerprint(pair.blob)).toBe(printed[1]);
      expect(`(${keyTypeLabel(keyTypeOf(pair.blob))})`).toBe(printed.at(-1));
    });
  }
});

describe("host key settings", () => {
  it("reads ~/.ssh/known_hosts(2) and /etc/ssh/ssh_known_hosts(2) by default; KILN_SSH_KNOWN_HOSTS replaces them", () => {
    expect(resolveSshHostKeyPolicy({ HOME: "/home/u" })).toEqual({
      strict: true,
      knownHostsFiles: ["/home/u/.ssh/known_hosts", "/home/u/.ssh/known_hosts2", "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"],
      addTo: "/home/u/.ssh/known_hosts",
      home: "/home/u",
    });
    expect(resolveSshHostKeyPolicy({ HOME: "/home/u", KILN_SSH_KNOWN_HOSTS: "/ci/kh:/ci/kh2" })).toMatchObject({
      knownHostsFiles: ["/ci/kh", "/ci/kh2"],
      addTo: "/ci/kh",
    });
  });

  it("KILN_SSH_STRICT_HOST_KEY_CHECKING: yes/ask (strict), no/off (opt-out); anything else is a ConfigError", () => {
    for (const value of ["yes", "ask", "YES", ""]) expect(resolveSshHostKeyPolicy({ KILN_SSH_STRICT_HOST_KEY_CHECKING: value }).strict).toBe(true);
    for (const value of ["no", "off", "No"]) expect(resolveSshHostKeyPolicy({ KILN_SSH_STRICT_HOST_KEY_CHECKING: value }).strict).toBe(false);
    try {
      resolveSshHostKeyPolicy({ KILN_SSH_STRICT_HOST_KEY_CHECKING: "accept-new" });
      expect.unreachable();
    } catch (error) {
      expect(ConfigError.isInstance(error)).toBe(true);
      expect((error as ConfigError).details).toMatchObject({ field: "KILN_SSH_STRICT_HOST_KEY_CHECKING", value: "accept-new" });
    }
  });

  it("the host key algorithms of the key types on file for the host come first", () => {
    const entries = parseKnownHosts(`[h]:2222 ${keyPair("rsa").line}\nh ${keyPair("ed25519").line}\n`, "/kh");
    expect(preferredHostKeyAlgorithms(entries, "h", 2222)).toEqual({
      remove: ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
      prepend: ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
      append: [],
    });
    expect(preferredHostKeyAlgorithms(entries, "elsewhere", 22)).toBeUndefined();
  });
});

describe("KILN_SSH_STRICT_HOST_KEY_CHECKING=no covers hosts without any entry, nothing else", () => {
  const ed = keyPair("ed25519");
  const rsa = keyPair("rsa");
  const optedOut = { ...resolveSshHostKeyPolicy({ KILN_SSH_KNOWN_HOSTS: "/kh", KILN_SSH_STRICT_HOST_KEY_CHECKING: "no" }), home: "/home/u" };

  it("a host with an ED25519 key on file presenting an RSA key (a man-in-the-middle dodging the key on file) is refused", () => {
    const entries = parseKnownHosts(`[h]:2222 ${ed.line}\n`, "/kh");
    const refusal = refuseHostKey({ policy: optedOut, entries, host: "h", port: 2222, endpoint: "ssh://kiln@h:2222" }, rsa.blob);
    expect(SshHostKeyUnknownError.isInstance(refusal), String(refusal)).toBe(true);
    expect(refusal?.message).toContain(`known_hosts has ${keyTypeLabel(keyTypeOf(ed.blob))} keys for this host`);
    expect(refusal?.message).toContain(sha256Fingerprint(rsa.blob));
    expect(refusal?.hint).toContain("even with KILN_SSH_STRICT_HOST_KEY_CHECKING=no");
    expect(refusal?.details).toMatchObject({ knownKeyTypes: [keyTypeOf(ed.blob)] });
  });

  it("a host with no entry at all is let through (entries for other hosts or ports do not count)", () => {
    const entries = parseKnownHosts(`h ${ed.line}\nelsewhere ${rsa.line}\n`, "/kh");
    expect(refuseHostKey({ policy: optedOut, entries, host: "h", port: 2222, endpoint: "ssh://kiln@h:2222" }, rsa.blob)).toBeUndefined();
  });
});

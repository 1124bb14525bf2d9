/**
 * Host key checking for an ssh:// DOCKER_HOST, as OpenSSH's `ssh` (which the docker CLI runs) does
 * it with StrictHostKeyChecking: the key the host presents must be in known_hosts
 * (~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts, and their `…2` siblings), or Kiln does not
 * connect. Kiln never writes known_hosts and never prompts: an unknown host is an error whose hint
 * says how to add it after checking its fingerprint.
 *
 * Settings, from the environment Kiln was given (the builders' `env` option, or the process's):
 * - `KILN_SSH_KNOWN_HOSTS`: known_hosts files to read *instead* of the defaults, separated by `:` —
 *   for a UserKnownHostsFile set in ~/.ssh/config (Kiln does not read ssh_config), a CI job's own
 *   file, or tests, without touching the user's.
 * - `KILN_SSH_STRICT_HOST_KEY_CHECKING=no`: connect to a host that has no entry at all (a warning,
 *   once per host and process). Unlike OpenSSH's `no`, a key that contradicts an entry, a revoked one,
 *   or a key of a type not on file for a host that has entries of other types, is still refused:
 *   opting out covers hosts you have no entry for, never a changed key.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { ConfigError, type KilnError } from "@kiln/core";
import type { AlgorithmList, ServerHostKeyAlgorithm } from "ssh2";
import {
  checkHostKey,
  type KnownHostsEntry,
  keyTypeLabel,
  keyTypeOf,
  knownHostsName,
  knownKeyTypes,
  parseKnownHosts,
  sha256Fingerprint,
} from "./knownHosts.js";
import { SshHostKeyMismatchError, SshHostKeyRevokedError, SshHostKeyUnknownError } from "./sshHostKeyErrors.js";

export const KNOWN_HOSTS_ENV = "KILN_SSH_KNOWN_HOSTS";
export const STRICT_HOST_KEY_CHECKING_ENV = "KILN_SSH_STRICT_HOST_KEY_CHECKING";

export interface SshHostKeyPolicy {
  /** false only with KILN_SSH_STRICT_HOST_KEY_CHECKING=no: a host without any entry is let through, with a warning. */
  strict: boolean;
  /** The known_hosts files read, in order (a missing or unreadable one counts as empty, as in ssh). */
  knownHostsFiles: string[];
  /** The file the hint says to add a key to: the first of KILN_SSH_KNOWN_HOSTS, or ~/.ssh/known_hosts. */
  addTo: string;
  /** The home directory, to print paths under it as `~/…`. */
  home: string;
}

export function resolveSshHostKeyPolicy(env: NodeJS.ProcessEnv = process.env): SshHostKeyPolicy {
  const home = env.HOME || homedir();
  const override = (env[KNOWN_HOSTS_ENV] ?? "")
    .split(delimiter)
    .map((file) => file.trim())
    .filter(Boolean);
  const knownHostsFiles =
    override.length > 0
      ? override
      : [join(home, ".ssh", "known_hosts"), join(home, ".ssh", "known_hosts2"), "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];
  return { strict: parseStrict(env[STRICT_HOST_KEY_CHECKING_ENV]), knownHostsFiles, addTo: knownHostsFiles[0] as string, home };
}

function parseStrict(value: string | undefined): boolean {
  const setting = (value ?? "").trim().toLowerCase();
  // `ask`, OpenSSH's default, cannot prompt here: it is `yes`.
  if (setting === "" || setting === "yes" || setting === "ask") return true;
  if (setting === "no" || setting === "off") return false;
  throw new ConfigError(`Invalid ${STRICT_HOST_KEY_CHECKING_ENV} ${JSON.stringify(value)}`, {
    hint: `Use ${STRICT_HOST_KEY_CHECKING_ENV}=yes (the default: only hosts in known_hosts) or =no (also hosts without an entry, with a warning; a changed key is still refused).`,
    details: { field: STRICT_HOST_KEY_CHECKING_ENV, value: value ?? "" },
  });
}

/** Every entry of the policy's files; a missing or unreadable file counts as empty (as in ssh). */
export async function loadKnownHosts(policy: SshHostKeyPolicy): Promise<KnownHostsEntry[]> {
  const texts = await Promise.all(policy.knownHostsFiles.map((file) => readFile(file, "utf8").catch(() => "")));
  return texts.flatMap((text, index) => parseKnownHosts(text, policy.knownHostsFiles[index] as string));
}

/** ssh2's host key algorithms for each key type a known_hosts line can hold. */
const ALGORITHMS_BY_KEY_TYPE: Record<string, ServerHostKeyAlgorithm[]> = {
  "ssh-ed25519": ["ssh-ed25519"],
  "ecdsa-sha2-nistp256": ["ecdsa-sha2-nistp256"],
  "ecdsa-sha2-nistp384": ["ecdsa-sha2-nistp384"],
  "ecdsa-sha2-nistp521": ["ecdsa-sha2-nistp521"],
  "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
};

/**
 * ssh2's `algorithms.serverHostKey`: the algorithms of the key types known_hosts has for this host
 * first, as ssh orders HostKeyAlgorithms, so a host with several keys presents the one on file.
 */
export function preferredHostKeyAlgorithms(entries: readonly KnownHostsEntry[], host: string, port: number): AlgorithmList<ServerHostKeyAlgorithm> | undefined {
  const preferred = knownKeyTypes(entries, knownHostsName(host, port)).flatMap((type) => ALGORITHMS_BY_KEY_TYPE[type] ?? []);
  // Applied in key order: taken out of ssh2's default list, then put back at its head.
  return preferred.length > 0 ? { remove: preferred, prepend: preferred, append: [] } : undefined;
}

export interface HostKeyCheck {
  policy: SshHostKeyPolicy;
  entries: readonly KnownHostsEntry[];
  host: string;
  port: number;
  /** `ssh://user@host:port`, for messages. */
  endpoint: string;
}

/** Why the presented `key` must be refused, or undefined to accept it (warning once if unchecked). */
export function refuseHostKey(check: HostKeyCheck, key: Buffer): KilnError | undefined {
  const { policy, host, port } = check;
  const name = knownHostsName(host, port);
  const result = checkHostKey(check.entries, name, key);
  const type = keyTypeOf(key);
  const fingerprint = sha256Fingerprint(key);
  const keyText = `${keyTypeLabel(type)} key fingerprint is ${fingerprint}`;
  const details = { endpoint: check.endpoint, host: name, keyType: type, fingerprint };
  const addTo = shown(policy.addTo, policy.home);
  const keyscan = `ssh-keyscan -p ${port} ${host} >> ${addTo}`;
  if (result.status === "known") return undefined;
  if (result.status === "revoked") {
    return new SshHostKeyRevokedError(
      `Refusing the ssh host ${name} (${check.endpoint}): its host key is marked @revoked in ${shown(result.entry.file, policy.home)}:${result.entry.line}. ${keyText}.`,
      {
        hint: "A revoked key must never be accepted: have the host's administrator give it a new host key, then add that key to known_hosts after checking its fingerprint.",
        details: { ...details, knownHostsFile: result.entry.file, line: result.entry.line },
      },
    );
  }
  if (result.status === "changed") {
    const first = result.entries[0] as KnownHostsEntry;
    const where = result.entries.map((entry) => `${shown(entry.file, policy.home)}:${entry.line}`).join(", ");
    return new SshHostKeyMismatchError(
      `The ssh host key of ${name} (${check.endpoint}) has CHANGED: the host sent an ${keyText}, which does not match the key in ${where}. Someone could be eavesdropping on you (a man-in-the-middle attack), or the host key has just been changed. Kiln did not connect.`,
      {
        hint: `Check the new fingerprint with the host's administrator before anything else. If the change is expected, remove the old entry (\`ssh-keygen -R '${name}' -f ${shown(first.file, policy.home)}\`) and add the new key (\`ssh-keyscan -p ${port} ${host} >> ${shown(first.file, policy.home)}\`) once \`ssh-keyscan -p ${port} ${host} | ssh-keygen -lf -\` prints the fingerprint the administrator gave you. ${STRICT_HOST_KEY_CHECKING_ENV}=no does not skip this check.`,
        details: { ...details, knownHostsFile: first.file, line: first.line },
      },
    );
  }
  // The opt-out covers only a host with no entry at all. A host with keys of other types on file that
  // presents a type not on file is refused whatever the setting: ssh2 still offers every algorithm,
  // so a man-in-the-middle could otherwise dodge the key on file by presenting another type.
  const hasEntries = result.otherTypes.length > 0;
  if (!policy.strict && !hasEntries) {
    warnUncheckedOnce(
      check.endpoint,
      `${name} is not in known_hosts (${keyText}); connecting anyway because ${STRICT_HOST_KEY_CHECKING_ENV}=no. Its identity is not verified.`,
    );
    return undefined;
  }
  const otherTypes = hasEntries
    ? ` known_hosts has ${result.otherTypes.map(keyTypeLabel).join(", ")} keys for this host, but not the ${keyTypeLabel(type)} key it sent: Kiln did not connect.`
    : "";
  const optOut = hasEntries
    ? ` Until then Kiln does not connect, even with ${STRICT_HOST_KEY_CHECKING_ENV}=no: that setting only covers hosts without any entry, and a host presenting a key of another type than the one on file could be a man-in-the-middle.`
    : ` To connect to hosts that have no entry anyway, set ${STRICT_HOST_KEY_CHECKING_ENV}=no (their identity is then not verified).`;
  return new SshHostKeyUnknownError(
    `The authenticity of the ssh host ${name} (${check.endpoint}) cannot be established: its key is not in known_hosts (${policy.knownHostsFiles.map((file) => shown(file, policy.home)).join(", ")}). ${keyText}.${otherTypes}`,
    {
      hint: `Make sure ${fingerprint} is the host's key (on the host: \`ssh-keygen -lf ${hostKeyFile(type)}\`; from here: \`ssh-keyscan -p ${port} ${host} | ssh-keygen -lf -\`), then add it: \`${keyscan}\`.${optOut}`,
      details: { ...details, knownHostsFiles: policy.knownHostsFiles, ...(hasEntries ? { knownKeyTypes: result.otherTypes } : {}) },
    },
  );
}

/** Where sshd keeps its public key of that type. */
function hostKeyFile(type: string | undefined): string {
  const name = type === "ssh-rsa" ? "rsa" : type?.startsWith("ecdsa-") ? "ecdsa" : "ed25519";
  return `/etc/ssh/ssh_host_${name}_key.pub`;
}

function shown(file: string, home: string): string {
  return home && file.startsWith(`${home}/`) ? `~/${file.slice(home.length + 1)}` : file;
}

const warned = new Set<string>();

/** One process warning per endpoint: the opt-out is explicit but never silent. */
function warnUncheckedOnce(endpoint: string, message: string): void {
  if (warned.has(endpoint)) return;
  warned.add(endpoint);
  process.emitWarning(`ssh host key not checked for ${endpoint}: ${message}`, { code: "KILN_SSH_HOST_KEY_UNCHECKED" });
}

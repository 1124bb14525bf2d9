/**
 * OpenSSH's known_hosts format (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT") and the lookup `ssh` does
 * with it (hostfile.c): which entries name a host, and whether the key the host presented is one of
 * them, another key of the same type (changed: possible man-in-the-middle), revoked, or unknown.
 *
 * Supported: comma-separated host patterns with `*` / `?` wildcards and `!` negation, `[host]:port`
 * names for a port other than 22, hashed names (`|1|salt|hash`, HMAC-SHA1 of the name keyed by the
 * salt, as `ssh-keygen -H` and `HashKnownHosts yes` write them), and the `@revoked` marker. Lines
 * with `@cert-authority` are skipped: ssh2 does not negotiate host certificates, so a host only
 * trusted through a CA is unknown here.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export interface KnownHostsEntry {
  /** The file and 1-based line the entry came from, for messages. */
  file: string;
  line: number;
  marker: "revoked" | undefined;
  /** The host field as written (comma list or `|1|salt|hash`). */
  hosts: string;
  /** The key type written on the line (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`…). */
  keyType: string;
  /** The public key blob (the base64 field, decoded): what the server sends during key exchange. */
  key: Buffer;
}

/** The entries of one known_hosts file; comments, blank, malformed and `@cert-authority` lines are skipped (as ssh does). */
export function parseKnownHosts(text: string, file: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    const fields = (lines[index] ?? "").trim().split(/\s+/);
    if (!fields[0] || fields[0].startsWith("#")) continue;
    let marker: KnownHostsEntry["marker"];
    if (fields[0].startsWith("@")) {
      const name = fields.shift();
      // Any other marker (@cert-authority, or one ssh does not know) is not a plain host key.
      if (name !== "@revoked") continue;
      marker = "revoked";
    }
    const [hosts, keyType, base64] = fields;
    if (!hosts || !keyType || !base64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) continue;
    const key = Buffer.from(base64, "base64");
    // The blob starts with its own type; a line whose two disagree is corrupt.
    if (keyTypeOf(key) !== keyType) continue;
    entries.push({ file, line: index + 1, marker, hosts, keyType, key });
  }
  return entries;
}

/** The name ssh looks a host up by: `host` on port 22, `[host]:port` on any other. */
export function knownHostsName(host: string, port: number): string {
  const name = host.toLowerCase();
  return port === 22 ? name : `[${name}]:${port}`;
}

/** Whether an entry's host field names `name` (from knownHostsName). */
export function entryMatchesName(entry: Pick<KnownHostsEntry, "hosts">, name: string): boolean {
  if (entry.hosts.startsWith("|")) return hashedMatches(entry.hosts, name);
  let matched = false;
  for (const raw of entry.hosts.split(",")) {
    const negated = raw.startsWith("!");
    const pattern = (negated ? raw.slice(1) : raw).toLowerCase();
    if (!pattern || !wildcardMatches(pattern, name)) continue;
    // A negated pattern that matches rules the whole line out, whatever else matches.
    if (negated) return false;
    matched = true;
  }
  return matched;
}

/** `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`; any other hash type never matches (as in ssh). */
function hashedMatches(hosts: string, name: string): boolean {
  const [, type, salt, hash] = hosts.split("|");
  if (type !== "1" || !salt || !hash) return false;
  const expected = Buffer.from(hash, "base64");
  const actual = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** ssh's match_pattern: `*` any run of characters, `?` one character, everything else literal. */
function wildcardMatches(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let starP = -1;
  let starT = 0;
  while (t < text.length) {
    if (p < pattern.length && (pattern[p] === "?" || pattern[p] === text[t])) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === "*") {
      starP = p++;
      starT = t;
    } else if (starP >= 0) {
      p = starP + 1;
      t = ++starT;
    } else {
      return false;
    }
  }
  while (pattern[p] === "*") p++;
  return p === pattern.length;
}

export type HostKeyStatus =
  | { status: "known"; entry: KnownHostsEntry }
  /** `revoked`: a `@revoked` line for this host carries the presented key. */
  | { status: "revoked"; entry: KnownHostsEntry }
  /** Entries of the presented key's type name this host, none with this key. */
  | { status: "changed"; entries: KnownHostsEntry[] }
  /** No entry of the presented key's type names this host; `otherTypes` are the types that do. */
  | { status: "unknown"; otherTypes: string[] };

/** What ssh's check_key_in_hostkeys concludes for the key `key` presented by `name`. */
export function checkHostKey(entries: readonly KnownHostsEntry[], name: string, key: Buffer): HostKeyStatus {
  const forHost = entries.filter((entry) => entryMatchesName(entry, name));
  const revoked = forHost.find((entry) => entry.marker === "revoked" && entry.key.equals(key));
  if (revoked) return { status: "revoked", entry: revoked };
  const trusted = forHost.filter((entry) => entry.marker === undefined);
  const known = trusted.find((entry) => entry.key.equals(key));
  if (known) return { status: "known", entry: known };
  const type = keyTypeOf(key);
  const sameType = trusted.filter((entry) => entry.keyType === type);
  if (sameType.length > 0) return { status: "changed", entries: sameType };
  return { status: "unknown", otherTypes: [...new Set(trusted.map((entry) => entry.keyType))] };
}

/** The key types known_hosts trusts for `name`, in file order (for the host key algorithms to offer first). */
export function knownKeyTypes(entries: readonly KnownHostsEntry[], name: string): string[] {
  return [...new Set(entries.filter((entry) => entry.marker === undefined && entryMatchesName(entry, name)).map((entry) => entry.keyType))];
}

/** The type string a public key blob starts with (an SSH `string`: uint32 length, then the bytes). */
export function keyTypeOf(key: Buffer): string | undefined {
  if (key.length < 4) return undefined;
  const length = key.readUInt32BE(0);
  if (length === 0 || length > 64 || 4 + length > key.length) return undefined;
  return key.toString("latin1", 4, 4 + length);
}

/** `SHA256:<unpadded base64>`, as `ssh-keygen -l` and ssh's prompts print a key's fingerprint. */
export function sha256Fingerprint(key: Buffer): string {
  return `SHA256:${createHash("sha256").update(key).digest("base64").replace(/=+$/, "")}`;
}

/** ssh's short name for a key type in its messages: `ED25519`, `ECDSA`, `RSA`. */
export function keyTypeLabel(type: string | undefined): string {
  if (!type) return "unknown";
  if (type === "ssh-ed25519") return "ED25519";
  if (type.startsWith("ecdsa-sha2-")) return "ECDSA";
  if (type === "ssh-rsa") return "RSA";
  if (type === "ssh-dss") return "DSA";
  if (type.startsWith("sk-ssh-ed25519")) return "ED25519-SK";
  if (type.startsWith("sk-ecdsa-")) return "ECDSA-SK";
  return type;
}

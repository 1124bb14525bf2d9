/**
 * The base image's apt sources are untrusted input fed to this machine's apt-get (as root when the
 * build runs as root). Before apt sees them, every entry must fetch over the network and keep apt's
 * signature checks:
 *
 * - URIs: only `http:` and `https:` — `file:`, `copy:`, `cdrom:` read this machine's files, and
 *   `mirror+…`/`tor+…` and other methods hand the choice of location to something else;
 * - options (one-line `[key=value]` or deb822 fields) that turn verification off are refused:
 *   `trusted`, `allow-insecure`, `allow-weak`, `allow-downgrade-to-insecure` (unless set to `no`).
 *   `check-valid-until=no` is kept: the Release file's signature is still checked, and snapshot
 *   mirrors need it;
 * - `Signed-By` keyring paths must exist in the image (checked where they are copied, pointSignedBy).
 */
import { BuildFailedError } from "@kiln/core";

/** A base image's apt source that would let apt read this machine's files or skip verification. */
export class UnsafeAptSourceError extends BuildFailedError {
  static override isInstance(error: unknown): error is UnsafeAptSourceError {
    return BuildFailedError.isInstance(error) && (error as Error).name === "UnsafeAptSourceError";
  }
}

const ALLOWED_SCHEMES = new Set(["http", "https"]);
const WEAKENING_OPTIONS = new Set(["trusted", "allow-insecure", "allow-weak", "allow-downgrade-to-insecure"]);
const FALSE_VALUES = new Set(["no", "false", "off", "0", "without", "disable"]);

/** Throws UnsafeAptSourceError for the first entry of a base source file that is not plain signed http(s). */
export function checkBaseSource(name: string, text: string, baseRef?: string): void {
  const file = name === "sources.list" ? "/etc/apt/sources.list" : `/etc/apt/sources.list.d/${name}`;
  const refuse = (line: number, what: string, hint: string): never => {
    throw new UnsafeAptSourceError(`The base image${baseRef ? ` ${baseRef}` : ""}'s apt source ${file} line ${line} ${what}`, {
      hint,
      details: { ...(baseRef ? { base: baseRef } : {}), file, line },
    });
  };
  const checkUri = (uri: string, line: number) => {
    const scheme = /^([a-z0-9+.-]+):/i.exec(uri)?.[1]?.toLowerCase();
    if (scheme === undefined || !ALLOWED_SCHEMES.has(scheme)) {
      refuse(
        line,
        `uses ${JSON.stringify(uri)}: the oci builder only fetches packages over http:// or https://`,
        "Point the base image's apt sources at an http(s) mirror (a file:, copy:, cdrom: or mirror+ source would be read on the build machine), or build with a builder that runs steps.",
      );
    }
  };
  const checkOption = (key: string, value: string, line: number) => {
    if (!WEAKENING_OPTIONS.has(key.toLowerCase()) || FALSE_VALUES.has(value.trim().toLowerCase())) return;
    refuse(
      line,
      `sets ${key}=${value.trim()}, which turns off apt's signature checks`,
      "Remove the option and sign the repository (Signed-By a keyring in the image), or build with a builder that runs steps.",
    );
  };

  const lines = text.split("\n");
  if (name.endsWith(".sources")) {
    for (const stanza of deb822Stanzas(lines)) {
      if (stanza.some((f) => f.key.toLowerCase() === "enabled" && FALSE_VALUES.has(f.value.trim().toLowerCase()))) continue;
      for (const field of stanza) {
        if (field.key.toLowerCase() === "uris") for (const uri of field.value.split(/\s+/).filter(Boolean)) checkUri(uri, field.line);
        else checkOption(field.key, field.value, field.line);
      }
    }
    return;
  }
  lines.forEach((raw, index) => {
    const entry = /^\s*deb(?:-src)?\s+(?:\[([^\]]*)\]\s*)?(\S+)/.exec(raw.replace(/#.*$/, ""));
    if (!entry) return;
    for (const option of (entry[1] ?? "").split(/\s+/).filter(Boolean)) {
      const match = /^([^=+-]+(?:-[^=+-]+)*)[+-]?=(.*)$/.exec(option);
      if (match) checkOption(match[1]!, match[2]!, index + 1);
    }
    checkUri(entry[2]!, index + 1);
  });
}

interface Deb822Field {
  key: string;
  value: string;
  line: number;
}

/** deb822 stanzas (blank-line separated); continuation lines join their field's value. */
function deb822Stanzas(lines: string[]): Deb822Field[][] {
  const stanzas: Deb822Field[][] = [];
  let current: Deb822Field[] = [];
  lines.forEach((raw, index) => {
    if (raw.trim() === "") {
      if (current.length > 0) stanzas.push(current);
      current = [];
      return;
    }
    if (raw.startsWith("#")) return;
    const last = current[current.length - 1];
    if (/^\s/.test(raw) && last) {
      last.value += `\n${raw.trim()}`;
      return;
    }
    const field = /^([^:\s]+):(.*)$/.exec(raw);
    if (field) current.push({ key: field[1]!, value: field[2]!.trim(), line: index + 1 });
  });
  if (current.length > 0) stanzas.push(current);
  return stanzas;
}

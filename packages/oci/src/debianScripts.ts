/**
 * What the oci builder does instead of dpkg's configure step: nothing. So a package is accepted only
 * when running its maintainer scripts and triggers would change nothing that extraction does not
 * already give (or change only caches rebuilt at run time). Accepted:
 *
 * - no preinst / postinst / prerm, or ones whose every command is one of: `set -e`, `exit 0`,
 *   `ldconfig`, `dpkg-maintscript-helper …` (conffile/symlink moves — no-ops on a fresh install), `:`,
 *   `echo … >&2` / `exit 1` in the unknown-argument branch, and the `if [ … ]; then` / `case "$1" in`
 *   structure around them (conditions only with `[ … ]`, never a command substitution);
 * - a `triggers` file that only activates `ldconfig` (debhelper's `activate-noawait ldconfig` for
 *   shared libraries: the new libraries are found without it, see aptLayer.ts);
 * - file triggers of packages already in the image only when they rebuild a cache: man-db's index.
 *
 * Refused, naming the package and what it runs (`MaintainerScriptError`): anything else — adduser /
 * useradd, update-alternatives, debconf (a `templates`/`config` member, confmodule, `db_*`),
 * deb-systemd-helper / systemctl / update-rc.d / invoke-rc.d, py3compile, update-ca-certificates,
 * chown/chmod/mkdir of state, other triggers. prerm is checked too: it undoes what postinst did, so a
 * prerm that does more than the above means a postinst step was expected. postrm (removal only) is
 * kept in the image but not judged.
 */
import { BuildFailedError } from "@kiln/core";
import type { DebPackage } from "./debianPackage.js";

/** A package whose installation needs its maintainer scripts run: the oci builder cannot install it. */
export class MaintainerScriptError extends BuildFailedError {
  static override isInstance(error: unknown): error is MaintainerScriptError {
    return BuildFailedError.isInstance(error) && (error as Error).name === "MaintainerScriptError";
  }
}

export const CHECKED_SCRIPTS = ["preinst", "postinst", "prerm"] as const;

const ALLOWED_TRIGGERS = new Set(["ldconfig"]);
/** Packages whose file triggers only rebuild a cache the image rebuilds when it needs it. */
const HARMLESS_FILE_TRIGGER_OWNERS = new Set(["man-db"]);

const ALLOWED_LINES: RegExp[] = [
  /^set( [-+][a-z]+)*$/,
  /^exit [01]$/,
  /^:$/,
  /^ldconfig$/,
  /^dpkg-maintscript-helper [a-z_]+( [^`$;&|<>()]+| "\$@"| \$@| --)*$/,
  /^(if|elif) \[ [^`;&|()]* \]( (&&|\|\|) \[ [^`;&|()]* \])*; then$/,
  /^(if|elif) \[ [^`;&|()]* \]( (&&|\|\|) \[ [^`;&|()]* \])*$/,
  /^then$/,
  /^else$/,
  /^fi$/,
  /^case "?\$1"? in$/,
  /^[\w|*.-]+\)$/,
  /^[\w|*.-]+\) ?;;$/,
  /^;;$/,
  /^esac$/,
];

/** Throws MaintainerScriptError for the first package whose scripts or triggers need running. */
export function checkMaintainerScripts(pkg: DebPackage): void {
  const name = packageName(pkg);
  for (const member of ["templates", "config"]) {
    if (pkg.controlFiles.has(member)) refuse(name, `it asks debconf questions (a ${member} control member)`, "debconf");
  }
  for (const script of CHECKED_SCRIPTS) {
    const file = pkg.controlFiles.get(script);
    if (!file) continue;
    const offending = firstDisallowedCommand(file.data.toString("utf8"));
    if (offending !== undefined) refuse(name, `its ${script} runs \`${offending.slice(0, 200)}\``, commandOf(offending), script);
  }
  const triggers = pkg.controlFiles.get("triggers");
  if (triggers) {
    for (const raw of triggers.data.toString("utf8").split("\n")) {
      const line = raw.replace(/#.*/, "").trim();
      if (line === "") continue;
      const [directive, trigger] = line.split(/\s+/);
      if (/^activate(-await|-noawait)?$/.test(directive!) && ALLOWED_TRIGGERS.has(trigger!)) continue;
      refuse(name, `it declares the dpkg trigger \`${line}\``, "trigger");
    }
  }
}

/**
 * File triggers (`/var/lib/dpkg/triggers/File` of the image: `<path> <package>[/noawait]` lines) that
 * the package's files would fire. Throws for one whose owner is not known to be harmless.
 */
export function checkFileTriggers(pkg: DebPackage, fileTriggers: string | undefined): void {
  if (!fileTriggers) return;
  const interests = fileTriggers
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((parts) => parts.length >= 2 && parts[0]!.startsWith("/"))
    .map(([path, owner]) => ({ path: path!.replace(/\/+$/, ""), owner: owner!.split("/")[0]! }));
  for (const entry of pkg.entries) {
    const path = `/${entry.path}`;
    for (const interest of interests) {
      if (path !== interest.path && !path.startsWith(`${interest.path}/`)) continue;
      if (HARMLESS_FILE_TRIGGER_OWNERS.has(interest.owner)) continue;
      refuse(
        packageName(pkg),
        `its file ${path} fires the dpkg file trigger of ${interest.owner} (${interest.path}), which must run to finish the installation`,
        "file-trigger",
      );
    }
  }
}

/** The first command of a shell script that the oci builder cannot stand in for; undefined if none. */
export function firstDisallowedCommand(script: string): string | undefined {
  for (const command of commandsOf(script)) {
    if (ALLOWED_LINES.some((pattern) => pattern.test(command)) || isUsageMessage(command)) continue;
    return command;
  }
  return undefined;
}

/** `echo "… called with unknown argument \`$1'" >&2`: a message, no substitution but `$1`. */
function isUsageMessage(command: string): boolean {
  if (!command.startsWith("echo ") || !command.endsWith(" >&2")) return false;
  const words = command.slice(5, -4).replace(/\\`/g, "");
  return !words.includes("`") && !words.includes("$(") && !/[;&|<>]/.test(words);
}

/** The script's commands: comments and blank lines dropped, `\` continuations joined, `;`-separated
 * structure words split (`if …; then ldconfig; fi` → three), whitespace collapsed. */
function commandsOf(script: string): string[] {
  const joined = script.replace(/\\\n/g, " ");
  const out: string[] = [];
  for (const raw of joined.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const text = line
      .replace(/\s+#[^"'`]*$/, "")
      .replace(/\s+/g, " ")
      .trim();
    // `if [ … ]; then ldconfig; fi` and `configure) ldconfig ;;` on one line: split at `; then`, `; fi`, `;;`.
    for (const part of splitStructure(text)) if (part !== "") out.push(part);
  }
  return out;
}

function splitStructure(line: string): string[] {
  const parts: string[] = [];
  let rest = line;
  const then = /^(.*?\]); then (.+)$/.exec(rest);
  if (then && /^(if|elif) \[/.test(then[1]!)) {
    parts.push(`${then[1]}; then`);
    rest = then[2]!;
  }
  const arm = /^([\w|*.-]+\)) (.+)$/.exec(rest);
  if (arm) {
    parts.push(arm[1]!);
    rest = arm[2]!;
  }
  const tail: string[] = [];
  for (;;) {
    const ending = /^(.*?);? ?(;;|fi|esac)$/.exec(rest);
    if (!ending || ending[1] === "" || ending[1] === rest) break;
    tail.unshift(ending[2]!);
    rest = ending[1]!.replace(/;\s*$/, "").trim();
  }
  parts.push(rest, ...tail);
  return parts;
}

function commandOf(line: string): string {
  const words = line.split(" ");
  if (words.some((w) => w === ". /usr/share/debconf/confmodule" || w.startsWith("db_")) || line.includes("debconf")) return "debconf";
  return words[0] === "if" || words[0] === "then" ? (words[1] ?? words[0]!) : words[0]!;
}

function packageName(pkg: DebPackage): string {
  return `${pkg.fields.get("Package")}:${pkg.fields.get("Architecture")} ${pkg.fields.get("Version")}`;
}

function refuse(pkg: string, why: string, command: string, script?: string): never {
  throw new MaintainerScriptError(
    `The Debian package ${pkg} cannot be installed without running it: ${why}. The oci builder unpacks packages and runs nothing`,
    {
      hint: 'Build this image with a builder that runs steps (builder: "docker" or "buildkit"), or leave the package out.',
      details: { package: pkg.split(" ")[0], command, ...(script ? { script } : {}) },
    },
  );
}

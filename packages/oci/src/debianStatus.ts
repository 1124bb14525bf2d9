/**
 * dpkg's database files as text: a control stanza's fields (deb822: `Field: value`, continuation
 * lines start with a space or tab), and /var/lib/dpkg/status — the base's stanzas kept byte for
 * byte, each new package's stanza added (its control file with `Status: install ok installed` after
 * `Package`, and `Conffiles` with each conffile's md5 before `Description`, where dpkg puts them),
 * the whole sorted by package name then architecture, as dpkg writes it.
 */
export interface Stanza {
  /** The stanza's text without its trailing blank line, each line ending in `\n`. */
  text: string;
  fields: Map<string, string>;
}

export function parseStanzas(text: string): Stanza[] {
  const out: Stanza[] = [];
  for (const block of text.replace(/\r\n/g, "\n").split(/\n[ \t]*\n/)) {
    const trimmed = block.replace(/^\n+/, "").replace(/\n+$/, "");
    if (trimmed.trim() === "") continue;
    out.push({ text: `${trimmed}\n`, fields: parseFields(trimmed) });
  }
  return out;
}

export function parseFields(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  let current: string | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    if ((line.startsWith(" ") || line.startsWith("\t")) && current !== undefined) {
      fields.set(current, `${fields.get(current)}\n${line}`);
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    current = line.slice(0, colon).trim();
    fields.set(current, line.slice(colon + 1).trim());
  }
  return fields;
}

/** `name` or `name:arch` as dpkg names a package's info files (`Multi-Arch: same` gets the arch). */
export function dpkgInfoName(fields: Map<string, string>): string {
  const name = fields.get("Package")!;
  return fields.get("Multi-Arch") === "same" ? `${name}:${fields.get("Architecture")}` : name;
}

/** The status stanza of a newly installed package. `conffiles`: [absolute path, md5 hex]. */
export function installedStanza(control: string, conffiles: ReadonlyArray<[string, string]>): Stanza {
  const lines = control.replace(/\r\n/g, "\n").replace(/\n+$/, "").split("\n");
  const out: string[] = [];
  let wroteConffiles = conffiles.length === 0;
  for (const line of lines) {
    if (/^Status:/i.test(line)) continue;
    if (!wroteConffiles && /^Description:/.test(line)) {
      out.push(...conffileLines(conffiles));
      wroteConffiles = true;
    }
    out.push(line);
    if (/^Package:/.test(line)) out.push("Status: install ok installed");
  }
  if (!wroteConffiles) out.push(...conffileLines(conffiles));
  const text = `${out.join("\n")}\n`;
  return { text, fields: parseFields(text) };
}

function conffileLines(conffiles: ReadonlyArray<[string, string]>): string[] {
  return ["Conffiles:", ...conffiles.map(([path, md5]) => ` ${path} ${md5}`)];
}

/** The status file: stanzas sorted by (Package, Architecture), separated by blank lines. */
export function renderStatus(stanzas: readonly Stanza[]): Buffer {
  const key = (s: Stanza) => [s.fields.get("Package") ?? "", s.fields.get("Architecture") ?? ""] as const;
  const sorted = [...stanzas].sort((a, b) => {
    const [pa, aa] = key(a);
    const [pb, ab] = key(b);
    return pa < pb ? -1 : pa > pb ? 1 : aa < ab ? -1 : aa > ab ? 1 : 0;
  });
  return Buffer.from(sorted.map((s) => `${s.text}\n`).join(""));
}

/** Installed packages of a status file, as `name:arch` → stanza (for checks). */
export function installedPackages(stanzas: readonly Stanza[]): Map<string, Stanza> {
  const out = new Map<string, Stanza>();
  for (const s of stanzas) {
    const status = s.fields.get("Status") ?? "";
    if (!/\binstalled$/.test(status)) continue;
    out.set(`${s.fields.get("Package")}:${s.fields.get("Architecture")}`, s);
  }
  return out;
}

/**
 * The one detector of credentials in URLs: `scheme://userinfo@host` anywhere in a text (a requirement,
 * a shell command, an env value, a line of a requirements file or lockfile). Every place Kiln accepts
 * text that reaches the Dockerfile, the image history, the image config or a copied manifest asks it
 * (validate.ts, credentialFiles.ts), and ValidationError masks what it finds (errors.ts), so a
 * credential is refused at declaration and never echoed back.
 *
 * What counts as the userinfo: everything between `scheme://` and the LAST `@` before the authority
 * ends (at ASCII whitespace or a control character, `/`, `?`, `#`, `\`, `"`, `<` or `>`) — the way a
 * URL parser reads `https://user:p@ss@host`. Percent-encoded characters are part of it as written.
 *
 * What is a credential: a non-empty password (`user:pass@`), or a user name alone (`token@`, and also
 * `git@` on ssh URLs unless `allowSshLogin`). Not a credential: an empty userinfo, and a password (or a
 * lone user name) made only of variable references — `${NAME}`, `$NAME` (upper case) or `$(command)` —
 * which a shell, pip or npm fills in at build time, so the text itself holds no secret.
 *
 * No imports: errors.ts uses it to mask values.
 */

export interface CredentialUrlOptions {
  /**
   * A lone user name on an ssh URL (`git+ssh://git@github.com/...`) is the ssh login, not a secret.
   * npm writes GitHub dependencies that way into package-lock.json itself, so node manifests allow it;
   * everywhere else any userinfo is refused.
   */
  allowSshLogin?: boolean;
}

export interface CredentialUrl {
  /** Offset of the scheme in the text. */
  start: number;
  /** Offsets of the userinfo: `text.slice(userinfoStart, userinfoEnd)`; the `@` is at `userinfoEnd`. */
  userinfoStart: number;
  userinfoEnd: number;
  scheme: string;
}

/** What a masked userinfo becomes (the same mark redact.ts uses). */
export const CREDENTIAL_MASK = "***";

const REFERENCES = /^(?:\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Z_][A-Z0-9_]*|\$\([^()]*\))+$/;

function endsAuthority(code: number): boolean {
  // ASCII whitespace and controls, DEL, / ? # \ " < >
  return code <= 0x20 || code === 0x7f || code === 0x2f || code === 0x3f || code === 0x23 || code === 0x5c || code === 0x22 || code === 0x3c || code === 0x3e;
}

function isLetter(code: number): boolean {
  return (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a);
}

/** Letters, digits, `+`, `-`, `.`: the characters of a URL scheme. */
function isSchemeChar(code: number): boolean {
  return isLetter(code) || (code >= 0x30 && code <= 0x39) || code === 0x2b || code === 0x2d || code === 0x2e;
}

/**
 * Every credential-bearing URL in `text`, in order. Linear in the text's length whatever it holds (a
 * lockfile, a long run of letters, `a://a://…`): it looks for `://` and walks back over the scheme, never
 * further back than the previous `://`, and reads each authority once.
 */
export function findCredentialUrls(text: string, options: CredentialUrlOptions = {}): CredentialUrl[] {
  const found: CredentialUrl[] = [];
  if (typeof text !== "string") return found;
  let scannedTo = 0; // end of the last authority read: a `scheme://` inside it belongs to that userinfo
  for (let sep = text.indexOf("://"); sep >= 0; sep = text.indexOf("://", sep + 3)) {
    const authorityStart = sep + 3;
    if (authorityStart <= scannedTo) continue;
    let start = sep;
    while (start > scannedTo && isSchemeChar(text.charCodeAt(start - 1))) start--;
    while (start < sep && !isLetter(text.charCodeAt(start))) start++; // a scheme starts with a letter
    if (start === sep) continue;
    let end = authorityStart;
    let at = -1;
    for (; end < text.length; end++) {
      const code = text.charCodeAt(end);
      if (endsAuthority(code)) break;
      if (code === 0x40) at = end; // the last `@` ends the userinfo
    }
    scannedTo = end;
    if (at < 0) continue;
    const scheme = text.slice(start, sep);
    if (isCredential(text.slice(authorityStart, at), scheme, options)) {
      found.push({ start, userinfoStart: authorityStart, userinfoEnd: at, scheme });
    }
  }
  return found;
}

export function containsCredentialUrl(text: string, options: CredentialUrlOptions = {}): boolean {
  return findCredentialUrls(text, options).length > 0;
}

/** `text` with the userinfo of every credential-bearing URL replaced by `***` (any userinfo, ssh logins too). */
export function maskCredentialUrls(text: string): string {
  const found = findCredentialUrls(text);
  if (found.length === 0) return text;
  let out = "";
  let from = 0;
  for (const url of found) {
    out += text.slice(from, url.userinfoStart) + CREDENTIAL_MASK;
    from = url.userinfoEnd;
  }
  return out + text.slice(from);
}

/** Whether a value holds only references a shell or installer fills in (see the module comment). */
export function isVariableReference(text: string): boolean {
  return REFERENCES.test(text);
}

function isCredential(userinfo: string, scheme: string, options: CredentialUrlOptions): boolean {
  if (userinfo === "" || userinfo === CREDENTIAL_MASK) return false;
  const colon = userinfo.indexOf(":");
  const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
  const password = colon < 0 ? "" : userinfo.slice(colon + 1);
  if (password !== "") return !isVariableReference(password);
  if (user === "" || isVariableReference(user)) return false;
  if (options.allowSshLogin && /(?:^|\+)ssh(?:\+|$)/i.test(scheme)) return false;
  return true;
}

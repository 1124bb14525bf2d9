/**
 * Credential redaction. Anything that may end up in a message, an event or a log passes through
 * `redactSecrets`: URL userinfo (`https://user:pass@host`), `Authorization`/`X-Registry-Auth`
 * header values, bearer/basic tokens and `password`/`token`/`secret` JSON fields are replaced.
 */
import { maskCredentialUrls } from "./credentialUrls.js";
import { KilnError } from "./errors.js";
import type { SerializedError } from "./events.js";

const REDACTED = "***";

const PATTERNS: Array<[RegExp, string | ((...m: string[]) => string)]> = [
  // scheme://user:pass@host  and  scheme://token@host
  [/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@"'<>]+@/gi, `$1${REDACTED}@`],
  // Authorization: Bearer xyz / Basic xyz / raw value, as a header line or a JSON/object field
  [
    /\b((?:proxy-)?authorization|x-registry-auth|x-amz-security-token)(["']?\s*[:=]\s*["']?)(?:(bearer|basic|token)\s+)?[^\s"',}]+/gi,
    (_m, name: string, sep: string, scheme?: string) => `${name}${sep}${scheme ? `${scheme} ` : ""}${REDACTED}`,
  ],
  // Bare "Bearer <token>" / "Basic <b64>" anywhere else
  [/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`],
  // "password": "...", token=..., secret: ...
  [/\b(password|passwd|secret|access_token|refresh_token|identitytoken|registrytoken|auth)(["']?\s*[:=]\s*["']?)[^\s"',}&]+/gi, `$1$2${REDACTED}`],
];

/** Replaces every credential-looking part of a text. Idempotent. */
export function redactSecrets(text: string): string {
  // The whole userinfo up to the last `@` of the authority (`https://u:p@ss@host`), as declaration checks it.
  let out = maskCredentialUrls(text);
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement as never);
  return out;
}

/** A URL string with its userinfo (and any token query parameter) removed. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username || parsed.password) {
      parsed.username = REDACTED;
      parsed.password = "";
    }
    for (const key of [...parsed.searchParams.keys()]) {
      if (/token|secret|password|signature|credential/i.test(key)) parsed.searchParams.set(key, REDACTED);
    }
    return parsed.toString();
  } catch {
    return redactSecrets(url);
  }
}

/** Error → the event/JSON form, with credentials redacted from message and hint. */
export function serializeError(error: unknown): SerializedError {
  if (KilnError.isInstance(error)) {
    return {
      name: error.name,
      code: error.code,
      message: redactSecrets(error.message),
      ...(error.hint ? { hint: redactSecrets(error.hint) } : {}),
    };
  }
  if (error instanceof Error) {
    return { name: error.name, code: (error as { code?: string }).code ?? "ERROR", message: redactSecrets(error.message) };
  }
  return { name: "Error", code: "ERROR", message: redactSecrets(String(error)) };
}

/**
 * Validators run where the user declares a value (the `Image` constructors and `with*` methods, and
 * `Image.fromJSON`). Each failure is a `ValidationError` naming the field (e.g. `withAptPackages[2]`)
 * and the value, with a hint saying what to do.
 *
 * Validation is the first line of defence and is about clear errors; the Dockerfile renderer quotes
 * every value anyway (quote.ts), so a value that passes here still cannot add an instruction.
 */
import { findCredentialUrls, maskCredentialUrls, type CredentialUrlOptions } from "./credentialUrls.js";
import { InvalidReferenceError, ValidationError } from "./errors.js";
import { ARCHITECTURES, type Architecture, type SecretMount } from "./layers.js";
import { OCI_LAYOUT_PREFIX, isOciLayoutTarget, parseReference } from "./reference.js";

/** Longest single user string Kiln accepts; keeps every rendered instruction well under the 64 KiB
 * line limit of Docker's Dockerfile scanner. */
export const MAX_VALUE_LENGTH = 8192;

function fail(field: string, value: unknown, reason: string, hint?: string): never {
  throw new ValidationError(field, value, reason, hint === undefined ? {} : { hint });
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A string, well-formed UTF-16 (a lone surrogate cannot survive JSON round trips), no NUL. */
export function requireString(field: string, value: unknown, { allowEmpty = false } = {}): string {
  if (typeof value !== "string") fail(field, value, `expected a string, got ${value === null ? "null" : typeof value}`);
  if (!allowEmpty && value.length === 0) fail(field, value, "must not be empty");
  if (value.includes("\0")) fail(field, value, "contains a NUL character", "remove the \\0 character");
  if (LONE_SURROGATE.test(value)) fail(field, value, "contains a lone UTF-16 surrogate", "pass valid Unicode text");
  if (value.length > MAX_VALUE_LENGTH) fail(field, value, `is longer than ${MAX_VALUE_LENGTH} characters`);
  // A backstop for every other string field; the fields users put URLs in ask earlier, with their own hint.
  refuseCredentialUrls(field, value, "value");
  return value;
}

// ---------------------------------------------------------------------------------------------
// Credentials in URLs: refused wherever a value reaches the Dockerfile, the image history, the image
// config or a file copied into the image (credentialUrls.ts finds them; ValidationError masks them).

/** Where a refused credential would have gone, which decides what the hint suggests instead. */
export type CredentialContext = "python" | "command" | "config" | "buildArg" | "node" | "value";

const SECRETS_README = 'see "Build secrets" in the README';
/** The same advice for index URLs, requirements, VCS URLs, find-links and installer arguments. */
const PYTHON_CREDENTIALS_HINT =
  "remove the user:password@ part and give pip/uv/git the credential as a build secret, mounted only while the install runs: " +
  "a netrc file (`machine <host> login <user> password <password>`) or a pip.conf, e.g. " +
  `withCommands("pip install 'pkg @ https://<host>/pkg.whl'", { secrets: [{ id: "netrc", target: "/root/.netrc" }] }) ` +
  "built with `kiln build --secret id=netrc,src=$HOME/.netrc`; for git+ssh:// use git+https:// with the same netrc secret; " +
  SECRETS_README;
const CREDENTIAL_HINTS: Record<CredentialContext, string> = {
  python: PYTHON_CREDENTIALS_HINT,
  command:
    "remove the user:password@ part and let the command read the credential from a build secret, which exists only while " +
    `that RUN step runs: withCommands("curl -fsS --netrc-file /run/secrets/netrc https://<host>/x", { secrets: ["netrc"] }), ` +
    `or 'API_KEY="$(cat /run/secrets/api_key)" …' with { secrets: ["api_key"] }; values come from build(image, { secrets }) ` +
    `or \`kiln build --secret id=api_key\`; ${SECRETS_README}`,
  config:
    "environment variables and labels are stored in the image config pushed to the registry; pass the credential to the " +
    `step that needs it as a build secret (withCommands("…", { secrets: ["api_key"] }) mounts /run/secrets/api_key for ` +
    `that step only), or give it to the container when it runs; ${SECRETS_README}`,
  buildArg:
    "build args are recorded in the image history; mount the credential as a build secret in your Dockerfile " +
    `(RUN --mount=type=secret,id=api_key …) and declare it: Image.fromDockerfile(file, { secrets: ["api_key"] }); ` +
    SECRETS_README,
  node:
    "remove the credential from the project: Kiln copies the project into the image. Keep .npmrc out of the image " +
    `(add ".npmrc" to the project's .dockerignore) or write \${NPM_AUTH}-style references, and give npm the registry ` +
    `credential as a build secret: withCommands("npm ci", { secrets: [{ id: "npmrc", target: "/root/.npmrc" }] }); ` +
    SECRETS_README,
  value:
    "remove the user:password@ part; give credentials to the step that needs them as build secrets " +
    `(withCommands("…", { secrets: ["api_key"] })); ${SECRETS_README}`,
};

const CREDENTIAL_REASON: Record<CredentialContext, string> = {
  python: "contains a URL with credentials (user:password@ or token@), which would be stored in the Dockerfile and the image history",
  command: "contains a URL with credentials (user:password@ or token@), which would be stored in the Dockerfile and the image history",
  config: "contains a URL with credentials (user:password@ or token@), which would be stored in the image config",
  buildArg: "contains a URL with credentials (user:password@ or token@), which would be stored in the image history",
  node: "contains a credential, which would be copied into the image",
  value: "contains a URL with credentials (user:password@ or token@), which Kiln would store in the image or its Dockerfile",
};

/** The hint for a credential refused in `context`. */
export function credentialHint(context: CredentialContext): string {
  return CREDENTIAL_HINTS[context];
}

/** The reason for a credential refused in `context`. */
export function credentialReason(context: CredentialContext): string {
  return CREDENTIAL_REASON[context];
}

/**
 * Throws a ValidationError naming `field` when `value` holds a URL with credentials (see
 * credentialUrls.ts); the error shows the value with the userinfo masked as `***`. Non-strings pass
 * (the field's own validator reports them).
 */
export function refuseCredentialUrls(field: string, value: unknown, context: CredentialContext, options: CredentialUrlOptions = {}): void {
  if (typeof value !== "string" || findCredentialUrls(value, options).length === 0) return;
  fail(field, maskCredentialUrls(value), credentialReason(context), credentialHint(context));
}

/** An options argument: absent, or a plain object (null, arrays and primitives are rejected). */
export function optionsObject<T extends object>(field: string, value: T | undefined): T {
  if (value === undefined) return {} as T;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(
      field,
      value,
      `expected an options object, got ${value === null ? "null" : Array.isArray(value) ? "an array" : typeof value}`,
      'pass an object like { registry: "ghcr.io/acme" }, or leave it out',
    );
  }
  return value;
}

/** Rejects NUL, CR, LF and other C0/DEL control characters except tab (values must stay on one line). */
export function requireSingleLine(field: string, value: unknown, hint?: string): string {
  const text = requireString(field, value, { allowEmpty: true });
  // eslint-disable-next-line no-control-regex
  const bad = /[\u0000-\u0008\u000a-\u001f\u007f]/.exec(text);
  if (bad) {
    const what = bad[0] === "\n" ? "a newline" : bad[0] === "\r" ? "a carriage return" : "a control character";
    fail(field, value, `contains ${what}`, hint ?? "values must be a single line of text without control characters");
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// Python: PEP 508 requirement specifiers

const PEP508_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?/;
const VERSION_OP = /^(===|~=|==|!=|<=|>=|<|>)\s*/;
const VERSION = /^[A-Za-z0-9_.*+!-]+/;
const MARKER_VARIABLES = new Set([
  "python_version",
  "python_full_version",
  "os_name",
  "sys_platform",
  "platform_release",
  "platform_system",
  "platform_version",
  "platform_machine",
  "platform_python_implementation",
  "implementation_name",
  "implementation_version",
  "extra",
  "os.name",
  "sys.platform",
  "platform.version",
  "platform.machine",
  "platform.python_implementation",
  "python_implementation",
  "dependency_groups",
  "extras",
]);

/** Validates a PEP 508 marker expression token by token (variables, quoted strings, operators, and/or, parens). */
function checkMarker(field: string, spec: string, marker: string): void {
  const token = /\s*(\(|\)|===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b|and\b|or\b|'[^'\n]*'|"[^"\n]*"|[A-Za-z_][A-Za-z0-9_.]*)/y;
  let depth = 0;
  let pos = 0;
  let count = 0;
  while (pos < marker.length) {
    if (/^\s*$/.test(marker.slice(pos))) break;
    token.lastIndex = pos;
    const m = token.exec(marker);
    if (!m)
      fail(
        field,
        spec,
        `cannot parse the environment marker near ${JSON.stringify(marker.slice(pos, pos + 20))}`,
        'markers look like `; python_version < "3.12" and sys_platform == "linux"`',
      );
    const t = m[1]!;
    if (t === "(") depth++;
    else if (t === ")" && --depth < 0) fail(field, spec, "unbalanced parentheses in the environment marker");
    else if (/^[A-Za-z_]/.test(t) && !/^(not\s+in|in|and|or)$/.test(t) && !MARKER_VARIABLES.has(t)) {
      fail(
        field,
        spec,
        `unknown environment marker variable ${JSON.stringify(t)}`,
        "use a PEP 508 marker variable such as python_version, sys_platform or platform_machine",
      );
    }
    pos = token.lastIndex;
    count++;
  }
  if (depth !== 0) fail(field, spec, "unbalanced parentheses in the environment marker");
  if (count === 0) fail(field, spec, "empty environment marker after `;`");
}

/** A pip requirement: `name[extra1,extra2] (specifiers) ; marker` or `name @ url ; marker`. */
export function validatePipRequirement(field: string, value: unknown): string {
  // Direct references (`name @ url`), VCS URLs (`git+https://…`) and bare URLs alike.
  refuseCredentialUrls(field, value, "python");
  const spec = requireSingleLine(field, value, 'give one requirement per argument, e.g. "numpy<2"');
  const hint = 'use a PEP 508 requirement such as "pandas", "numpy<2", "uvicorn[standard]>=0.30" or "pkg @ https://host/pkg.whl"';
  if (spec.trim() !== spec) fail(field, spec, "has leading or trailing whitespace", hint);
  if (spec.startsWith("-"))
    fail(
      field,
      spec,
      "starts with `-` (pip would read it as an option)",
      "pass installer options through PipOptions (indexUrl, extraIndexUrls, pre, extraArgs)",
    );
  const nameMatch = PEP508_NAME.exec(spec);
  if (!nameMatch) fail(field, spec, "does not start with a package name", hint);
  let rest = spec.slice(nameMatch[0].length);
  const extras = /^\s*\[\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:\s*,\s*[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)*)?\s*\]/.exec(rest);
  if (extras) rest = rest.slice(extras[0].length);
  const [requirement, ...markerParts] = splitMarker(rest);
  let body = requirement.trim();
  if (body.startsWith("@")) {
    const url = body.slice(1).trim();
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\/\S+$/.test(url)) fail(field, spec, "the direct reference after `@` is not a URL", hint);
  } else if (body.length > 0) {
    const parenthesised = body.startsWith("(") && body.endsWith(")");
    if (parenthesised) body = body.slice(1, -1).trim();
    for (const clause of body.split(",")) {
      const c = clause.trim();
      const op = VERSION_OP.exec(c);
      if (!op) fail(field, spec, `version clause ${JSON.stringify(c)} has no comparison operator`, hint);
      const version = c.slice(op[0].length);
      const v = VERSION.exec(version);
      if (!v || v[0] !== version) fail(field, spec, `version clause ${JSON.stringify(c)} is not a valid version`, hint);
    }
  }
  if (markerParts.length > 0) checkMarker(field, spec, markerParts.join(";"));
  return spec;
}

/** Splits "specifiers ; marker" at the first `;` (a `;` inside a URL needs a following space, per PEP 508). */
function splitMarker(rest: string): [string, ...string[]] {
  const trimmed = rest.trimStart();
  if (trimmed.startsWith("@")) {
    const idx = rest.search(/\s;/);
    return idx < 0 ? [rest] : [rest.slice(0, idx), rest.slice(rest.indexOf(";", idx) + 1)];
  }
  const idx = rest.indexOf(";");
  return idx < 0 ? [rest] : [rest.slice(0, idx), rest.slice(idx + 1)];
}

// ---------------------------------------------------------------------------------------------
// Debian packages

const APT_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
const APT_ARCH = /^[a-z0-9][a-z0-9-]*$/;
const APT_VERSION = /^(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~:-]*$/;
const APT_RELEASE = /^[A-Za-z0-9][A-Za-z0-9.+_-]*$/;

/** `name`, `name=version`, `name:arch`, `name/release` (Debian policy §5.6.1 names). */
export function validateAptPackage(field: string, value: unknown): string {
  const pkg = requireString(field, value);
  const hint = 'use a Debian package name such as "git", "libpq-dev", "curl=7.88.1-10+deb12u5", "gcc:arm64" or "git/bookworm-backports"';
  if (pkg.startsWith("-")) fail(field, pkg, "starts with `-` (apt-get would read it as an option)", hint);
  const m = /^([^:=/]+)(?::([^=/]+))?(?:=([^/]+)|\/([^=]+))?$/.exec(pkg);
  if (!m) fail(field, pkg, "is not a package name", hint);
  const [, name, arch, version, release] = m;
  if (!APT_NAME.test(name!))
    fail(field, pkg, "package names are lowercase letters, digits, `+`, `-` and `.`, at least two characters, starting with a letter or digit", hint);
  if (arch !== undefined && !APT_ARCH.test(arch)) fail(field, pkg, `architecture ${JSON.stringify(arch)} is not valid`, hint);
  if (version !== undefined && !APT_VERSION.test(version)) fail(field, pkg, `version ${JSON.stringify(version)} is not a Debian version`, hint);
  if (release !== undefined && !APT_RELEASE.test(release)) fail(field, pkg, `release ${JSON.stringify(release)} is not valid`, hint);
  return pkg;
}

// ---------------------------------------------------------------------------------------------
// Environment, labels, paths, users

export function validateEnvKey(field: string, value: unknown): string {
  const key = requireString(field, value);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
    fail(field, key, "environment variable names are letters, digits and `_`, not starting with a digit", "rename the variable, e.g. MY_SETTING");
  }
  return key;
}

export function validateEnvValue(field: string, value: unknown): string {
  refuseCredentialUrls(field, value, "config");
  return requireSingleLine(field, value, "a Dockerfile ENV value is one line; encode newlines yourself (e.g. base64) or ship the text with withSourceFile");
}

export function validateLabelKey(field: string, value: unknown): string {
  const key = requireString(field, value);
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?$/.test(key) || key.length > 255) {
    fail(
      field,
      key,
      "label keys are letters, digits, `.`, `-`, `_` and `/`, starting and ending with a letter or digit",
      "use a reverse-DNS key such as org.opencontainers.image.source",
    );
  }
  return key;
}

export function validateLabelValue(field: string, value: unknown): string {
  refuseCredentialUrls(field, value, "config");
  return requireSingleLine(field, value, "a label value is one line of text without control characters");
}

/** A path inside the image: absolute POSIX or relative to the working directory. */
export function validateContainerPath(field: string, value: unknown): string {
  const path = requireSingleLine(field, value, "container paths are one line without control characters");
  if (path.length === 0) fail(field, path, "must not be empty", 'use an absolute path such as "/app" or a relative one such as "src"');
  if (path.trim() !== path) fail(field, path, "has leading or trailing whitespace", "remove the surrounding spaces");
  if (path.includes("\\")) fail(field, path, "contains a backslash", "container paths use `/` as the separator");
  return path;
}

/** `name`, `uid`, `name:group` or `uid:gid`. */
export function validateUser(field: string, value: unknown): string {
  const user = requireString(field, value);
  const part = "(?:[A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10})";
  if (!new RegExp(`^${part}(?::${part})?$`).test(user)) {
    fail(field, user, "expected `name`, `uid`, `name:group` or `uid:gid`", 'e.g. "app", "1000", "app:app" or "1000:1000"');
  }
  return user;
}

/** Arguments passed to an installer as separate argv elements. */
export function validateExtraArg(field: string, value: unknown): string {
  // `--extra-index-url https://user:TOKEN@host/...` or `--find-links=https://…` would put the token in
  // the RUN line, the image history and `kiln dockerfile`/`kiln explain`, as an index URL would.
  refuseCredentialUrls(field, value, "python");
  const arg = requireSingleLine(field, value, "each extra argument is one argv element on one line");
  if (arg.length === 0) fail(field, arg, "must not be empty");
  return arg;
}

/** A shell command the user wants run (multi-line scripts are allowed; NUL is not). */
export function validateCommand(field: string, value: unknown): string {
  refuseCredentialUrls(field, value, "command");
  const command = requireString(field, value);
  if (command.trim().length === 0) fail(field, command, "is blank", "pass the shell command to run");
  return command;
}

// ---------------------------------------------------------------------------------------------
// Build secrets (withCommands(..., { secrets })): ids and targets land inside a `--mount=` flag

/** Docker-like secret ids; they also name the environment variable read by default. */
export const SECRET_ID_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
/** One segment of a secret target: no `,` `=` quotes, whitespace, `$` or backslashes (they would break the
 * mount flag's CSV or be expanded by Docker), and not `.` or `..`. */
const SECRET_TARGET_SEGMENT = /^[A-Za-z0-9_.@+:~-]+$/;

export function validateSecretId(field: string, value: unknown): string {
  if (typeof value !== "string" || !SECRET_ID_PATTERN.test(value)) {
    const reason =
      typeof value !== "string"
        ? `expected a secret id string, got ${value === null ? "null" : typeof value}`
        : "secret ids are 1-64 letters, digits, `_`, `.` and `-`, starting with a letter or `_`";
    fail(field, value, reason, 'use an id such as "NPM_TOKEN" or "pip_conf" (by default it is also the environment variable that holds the value)');
  }
  return value;
}

/** Where the secret file appears in the RUN step: a clean absolute path (it is written into the mount flag). */
export function validateSecretTarget(field: string, value: unknown): string {
  const target = validateContainerPath(field, value);
  const hint = 'use a plain absolute path such as "/root/.npmrc" or "/run/secrets/npm_token"';
  if (!target.startsWith("/")) fail(field, target, "must be an absolute path", hint);
  const segments = target.slice(1).split("/");
  if (target === "/" || segments.some((s) => s === "" || s === "." || s === "..")) {
    fail(field, target, "must name a file: no empty, `.` or `..` segments and no trailing `/`", hint);
  }
  const bad = segments.find((s) => !SECRET_TARGET_SEGMENT.test(s));
  if (bad !== undefined) {
    fail(field, target, "may only contain letters, digits, `/`, `_`, `.`, `@`, `+`, `:`, `~` and `-` (it is written into a --mount flag)", hint);
  }
  return target;
}

/** `["NPM_TOKEN", { id: "pip_conf", target: "/root/.config/pip/pip.conf" }]` → normalised SecretMount[]:
 * valid ids and targets, no id or target twice. */
export function validateSecretMounts(field: string, value: unknown): SecretMount[] {
  if (!Array.isArray(value)) {
    fail(
      field,
      value,
      "expected a list of secret ids or { id, target } objects",
      'e.g. ["NPM_TOKEN", { id: "pip_conf", target: "/root/.config/pip/pip.conf" }]',
    );
  }
  const ids = new Set<string>();
  const targets = new Set<string>();
  return value.map((entry: unknown, i): SecretMount => {
    const at = `${field}[${i}]`;
    let mount: SecretMount;
    if (typeof entry === "string") mount = { id: validateSecretId(at, entry) };
    else if (typeof entry === "object" && entry !== null && !Array.isArray(entry)) {
      const o = entry as Record<string, unknown>;
      for (const key of Object.keys(o)) {
        if (key !== "id" && key !== "target") fail(at, key, "unknown secret option", "a secret is { id, target? }");
      }
      mount = { id: validateSecretId(`${at}.id`, o.id) };
      if (o.target !== undefined) mount.target = validateSecretTarget(`${at}.target`, o.target);
    } else {
      fail(at, entry, "expected a secret id or { id, target }", 'e.g. "NPM_TOKEN" or { id: "pip_conf", target: "/root/.config/pip/pip.conf" }');
    }
    if (ids.has(mount.id)) fail(at, mount.id, "is declared twice in this layer", "list each secret once");
    ids.add(mount.id);
    const target = mount.target ?? `/run/secrets/${mount.id}`;
    if (targets.has(target)) fail(at, target, "another secret of this layer is mounted at the same target", "give each secret its own target");
    targets.add(target);
    return mount;
  });
}

/** pip/uv index URLs: http or https, no credentials (they would be baked into the Dockerfile and the tag). */
export function validateIndexUrl(field: string, value: unknown): string {
  refuseCredentialUrls(field, value, "python");
  const text = requireSingleLine(field, value);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    fail(field, text, "is not a URL", 'use an http(s) URL such as "https://pypi.org/simple"');
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    fail(field, text, "only http and https index URLs are supported", 'use an http(s) URL such as "https://pypi.org/simple"');
  }
  // What the URL parser reads as userinfo, should the text scan have read it otherwise.
  if (url.username || url.password) {
    fail(field, `${url.protocol}//${"***"}@${url.host}${url.pathname}${url.search}${url.hash}`, credentialReason("python"), credentialHint("python"));
  }
  if (/\s/.test(text)) fail(field, text, "contains whitespace");
  return text;
}

// ---------------------------------------------------------------------------------------------
// Registries, repositories, tags, image references (OCI distribution reference grammar)

const PATH_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9A-Fa-f:.]+\\])(?::[0-9]{1,5})?`;
const TAG = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
const REPOSITORY_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const REGISTRY_RE = new RegExp(`^${DOMAIN}(?:/${PATH_COMPONENT})*$`);
const TAG_RE = new RegExp(`^${TAG}$`);

export function validateRegistry(field: string, value: unknown): string {
  const registry = requireString(field, value);
  if (isOciLayoutTarget(registry)) return validateOciLayoutRegistry(field, registry);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(registry)) {
    fail(field, registry, "must not include a URL scheme", `drop the scheme: ${JSON.stringify(registry.replace(/^[a-z][a-z0-9+.-]*:\/\//i, ""))}`);
  }
  if (!REGISTRY_RE.test(registry) || registry.length > 255) {
    fail(
      field,
      registry,
      "expected host[:port][/namespace] with a lowercase namespace",
      'e.g. "ghcr.io/acme", "localhost:5000" or "123456789012.dkr.ecr.eu-west-1.amazonaws.com"',
    );
  }
  // Docker's rule: a first component is a host only with a `.` or `:` in it, as `localhost`, or with an
  // uppercase letter (as parseReference splits it). Anything else is a Docker Hub namespace ("acme" is
  // docker.io/acme), so say so in the URI: the checkers and the push then reach Docker Hub with the
  // user's Docker Hub credentials.
  const first = registry.split("/")[0]!;
  if (!/[.:]/.test(first) && first !== "localhost" && first.toLowerCase() === first) return `docker.io/${registry}`;
  return registry;
}

/** `oci:<dir>`: an OCI image layout directory (relative paths are taken from the working directory). */
function validateOciLayoutRegistry(field: string, registry: string): string {
  const dir = registry.slice(OCI_LAYOUT_PREFIX.length);
  if (dir === "" || /[\u0000-\u001f]/.test(dir)) {
    fail(field, registry, "an OCI layout target is oci:<directory>", 'e.g. "oci:./images" or "oci:/var/lib/images"');
  }
  return `${OCI_LAYOUT_PREFIX}${dir.replace(/(.)\/+$/, "$1")}`;
}

export function validateRepositoryName(field: string, value: unknown, registry?: string): string {
  const name = requireString(field, value);
  if (!REPOSITORY_RE.test(name)) {
    fail(
      field,
      name,
      "repository names are lowercase letters and digits, separated by `.`, `_`, `__` or `-`, in `/`-joined components",
      name.toLowerCase() !== name ? `use lowercase: ${JSON.stringify(name.toLowerCase())}` : 'e.g. "my-app" or "team/my_app"',
    );
  }
  const full = registry === undefined ? name : `${registry}/${name}`;
  if (full.length > 255) fail(field, name, "the full repository name is longer than 255 characters", "use a shorter name");
  return name;
}

export function validateTag(field: string, value: unknown): string {
  const tag = requireString(field, value);
  if (!TAG_RE.test(tag)) {
    fail(field, tag, "tags are up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`", 'e.g. "v1.2.3" or "main-3f2a1c"');
  }
  return tag;
}

/** A full image reference as written in `FROM` (e.g. `python:3.11-slim-bookworm`, `localhost:5000/x@sha256:...`).
 * The grammar is reference.ts's `parseReference` (one copy of it); its reason and hint are kept. */
export function validateImageReference(field: string, value: unknown): string {
  const ref = requireSingleLine(field, value, 'an image reference is one line, e.g. "python:3.11-slim-bookworm"');
  if (ref.length === 0) fail(field, ref, "must not be empty", 'e.g. "python:3.11-slim-bookworm" or "ghcr.io/acme/base@sha256:<64 hex>"');
  try {
    parseReference(ref);
  } catch (error) {
    if (!InvalidReferenceError.isInstance(error)) throw error;
    const prefix = `Invalid image reference ${JSON.stringify(ref)}: `;
    const reason = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
    fail(field, ref, reason, error.hint);
  }
  return ref;
}

/** Build stage names (FROM ... AS name / --target). */
export function validateStageName(field: string, value: unknown): string {
  const stage = requireString(field, value);
  if (!/^[A-Za-z][A-Za-z0-9_.-]*$/.test(stage)) fail(field, stage, "stage names are letters, digits, `_`, `.` and `-`, starting with a letter");
  return stage;
}

// ---------------------------------------------------------------------------------------------
// Platforms and runtime versions

export function validatePlatforms(field: string, value: unknown): Architecture[] {
  if (!Array.isArray(value) || value.length === 0) {
    fail(field, value, "expected a non-empty list of platforms", `choose from ${ARCHITECTURES.join(", ")}`);
  }
  const seen = new Set<string>();
  value.forEach((p, i) => {
    if (typeof p !== "string" || !(ARCHITECTURES as readonly string[]).includes(p)) {
      fail(`${field}[${i}]`, p, "is not a supported platform", `choose from ${ARCHITECTURES.join(", ")}`);
    }
    if (seen.has(p)) fail(`${field}[${i}]`, p, "is listed twice", "list each platform once");
    seen.add(p);
  });
  return [...value] as Architecture[];
}

export function validatePythonVersion(field: string, value: unknown): [number, number] {
  if (!Array.isArray(value) || value.length !== 2 || !value.every((n) => Number.isInteger(n))) {
    fail(field, value, "expected [major, minor], e.g. [3, 12]");
  }
  const [major, minor] = value as [number, number];
  if (major !== 3 || minor < 8 || minor > 30) fail(field, value, "supported Python versions are 3.8 and later", "e.g. [3, 12]");
  return [major, minor];
}

export function validateNodeVersion(field: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 18 || value > 99) {
    fail(field, value, "expected a Node.js major version, 18 or later", "e.g. 20 or 22");
  }
  return value;
}

/** A file name inside the build context (basename of a copied file): no globbing or escape characters,
 * because Docker's COPY treats `*`, `?`, `[` and `\` in sources as patterns. */
export function validateContextFileName(field: string, value: unknown): string {
  const name = requireSingleLine(field, value, "rename the file so its name has no control characters");
  if (name === "" || name === "." || name === ".." || /[*?[\]\\/]/.test(name)) {
    fail(
      field,
      name,
      "file names copied into an image must not contain `*`, `?`, `[`, `]`, `\\` or `/`",
      "rename the file, or copy its folder with withSourceFolder",
    );
  }
  return name;
}

/**
 * Secrets sweep: credentials from EVERY source Kiln reads — docker config `auths` (base64 `auth`;
 * `identitytoken` for a Bearer registry), a `credHelpers` program and a `credsStore` program on PATH,
 * a registered credential provider, and an index URL with credentials in a spec — are put in play,
 * then checks, failing checks (wrong password / wrong identity token), builds with pushes, failing
 * pushes, and the CLI's `check`/`plan`/`build` (with `--json` and without, and with KILN_DEBUG=1) are
 * run. Every stdout/stderr line, event, result, error message, hint, details object and inspected
 * error is collected into one transcript, which must hold no secret — neither as is, nor base64, nor
 * as the base64 of `user:secret`.
 */
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { inspect } from "node:util";
import {
  AuthError,
  build,
  checkImage,
  Image,
  init,
  KilnError,
  registerCredentialProvider,
  RegistryClient,
  serializeError,
  ValidationError,
  type BuildEvent,
} from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../../src/builder.js";
import { linkedKilnProject, runKiln, type CliRun } from "./kilnProject.js";

const tag = uniqueName("s").slice(2);

/** Every secret in play, with the user it belongs to (for the `user:secret` base64 form). */
const SECRETS = {
  auths: { user: "u-auths", value: `AuthsPw-${tag}-x1` },
  bearerPassword: { user: "u-idt", value: `BearerPw-${tag}-x2` },
  identityToken: { user: "u-idt", value: `IdentityTok-${tag}-x3` },
  helper: { user: "u-helper", value: `HelperPw-${tag}-x4` },
  store: { user: "u-store", value: `StorePw-${tag}-x5` },
  provider: { user: "u-prov", value: `ProviderPw-${tag}-x6` },
  wrongPassword: { user: "u-auths", value: `WrongPw-${tag}-x7` },
  wrongIdentityToken: { user: "u-idt", value: `WrongTok-${tag}-x8` },
  indexUrl: { user: "u-idx", value: `IndexPw-${tag}-x9` },
  // Build secrets (BuildKit secret mounts): from build({ secrets }), `--secret id=,env=` and `--secret id=,src=`.
  buildSecret: { user: "build", value: `BuildTok-${tag}-y1` },
  buildSecretEnv: { user: "build", value: `BuildEnvTok-${tag}-y2` },
  buildSecretFile: { user: "build", value: `BuildFileTok-${tag}-y3` },
} as const;

const b64 = (s: string) => Buffer.from(s).toString("base64");
const b64url = (s: string) => b64(s).replace(/\+/g, "-").replace(/\//g, "_");
/** The forms a leak can take. */
function formsOf(secret: { user: string; value: string }): string[] {
  const pair = `${secret.user}:${secret.value}`;
  return [...new Set([secret.value, b64(secret.value), b64url(secret.value), b64(pair), b64url(pair)].map((f) => f.replace(/=+$/, "")))];
}

/** Everything the suite saw Kiln produce. */
const transcript: Array<{ source: string; text: string }> = [];
const record = (source: string, text: string) => transcript.push({ source, text });
function recordError(source: string, error: unknown) {
  record(`${source}:inspect`, inspect(error, { depth: 8 }));
  record(`${source}:serialized`, JSON.stringify(serializeError(error)));
  if (KilnError.isInstance(error)) {
    record(`${source}:message`, error.message);
    record(`${source}:hint`, error.hint ?? "");
    record(`${source}:details`, JSON.stringify(error.details ?? {}));
    record(`${source}:string`, String(error));
  }
}
function recordEvents(source: string, events: BuildEvent[]) {
  for (const e of events) record(`${source}:event:${e.type}`, JSON.stringify(e));
}

let busybox: string;
let project: string;
let goodConfig: string;
let wrongConfig: string;
let bin: string;
const registries: Record<"auths" | "bearer" | "helper" | "store" | "provider", TestRegistry> = {} as never;
const cleanup = new DockerCleanup();
const saved = { DOCKER_CONFIG: process.env.DOCKER_CONFIG, PATH: process.env.PATH, DOCKER_BUILDKIT: process.env.DOCKER_BUILDKIT };
let unregisterProvider: (() => void) | undefined;

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  const [auths, bearer, helper, store, provider] = await Promise.all([
    startRegistry({ auth: "basic", username: SECRETS.auths.user, password: SECRETS.auths.value }),
    startRegistry({
      auth: "bearer",
      username: SECRETS.bearerPassword.user,
      password: SECRETS.bearerPassword.value,
      identityTokens: [SECRETS.identityToken.value],
    }),
    startRegistry({ auth: "basic", username: SECRETS.helper.user, password: SECRETS.helper.value }),
    startRegistry({ auth: "basic", username: SECRETS.store.user, password: SECRETS.store.value }),
    startRegistry({ auth: "basic", username: SECRETS.provider.user, password: SECRETS.provider.value }),
  ]);
  Object.assign(registries, { auths, bearer, helper, store, provider });

  project = linkedKilnProject("kiln-rel-secrets-", "secrets-app");
  mkdirSync(join(project, "locks"));

  // docker-credential-* programs speaking the helper protocol (server URL on stdin, JSON on stdout).
  bin = join(project, "bin");
  mkdirSync(bin);
  const helperScript = (host: string, user: string, secret: string) =>
    `#!/bin/sh\nread url\nif [ "$url" = "${host}" ]; then printf '{"ServerURL":"%s","Username":"${user}","Secret":"${secret}"}' "$url"; else echo "credentials not found in native keychain"; exit 1; fi\n`;
  writeFileSync(join(bin, "docker-credential-kilnsweep"), helperScript(helper.host, SECRETS.helper.user, SECRETS.helper.value));
  writeFileSync(join(bin, "docker-credential-kilnstore"), helperScript(store.host, SECRETS.store.user, SECRETS.store.value));
  chmodSync(join(bin, "docker-credential-kilnsweep"), 0o755);
  chmodSync(join(bin, "docker-credential-kilnstore"), 0o755);

  goodConfig = join(project, "docker-good");
  wrongConfig = join(project, "docker-wrong");
  mkdirSync(goodConfig);
  mkdirSync(wrongConfig);
  writeFileSync(
    join(goodConfig, "config.json"),
    JSON.stringify({
      auths: {
        [auths.host]: { auth: b64(`${SECRETS.auths.user}:${SECRETS.auths.value}`) },
        [bearer.host]: { username: SECRETS.identityToken.user, identitytoken: SECRETS.identityToken.value },
      },
      credHelpers: { [helper.host]: "kilnsweep" },
      credsStore: "kilnstore",
    }),
  );
  writeFileSync(
    join(wrongConfig, "config.json"),
    JSON.stringify({
      auths: {
        [auths.host]: { auth: b64(`${SECRETS.wrongPassword.user}:${SECRETS.wrongPassword.value}`) },
        [bearer.host]: { username: SECRETS.wrongIdentityToken.user, identitytoken: SECRETS.wrongIdentityToken.value },
      },
    }),
  );

  // The spec the CLI builds, also imported in-process so both declare the very same images.
  writeFileSync(
    join(project, "spec.mjs"),
    [
      `import { Image } from "@kiln/core";`,
      `const img = (host, name) => Image.fromBase(process.env.SWEEP_BASE, { registry: host, name }).withCommands("echo " + name + " " + process.env.SWEEP_SALT + " > /s.txt");`,
      `export const auths = img(process.env.SWEEP_AUTHS, "sweep/auths");`,
      `export const bearer = img(process.env.SWEEP_BEARER, "sweep/bearer");`,
      `export const helper = img(process.env.SWEEP_HELPER, "sweep/helper");`,
      `export const store = img(process.env.SWEEP_STORE, "sweep/store");`,
      ``,
    ].join("\n"),
  );

  process.env.KILN_LOCK_DIR = join(project, "locks");
  process.env.DOCKER_CONFIG = goodConfig;
  process.env.PATH = `${bin}:${process.env.PATH}`;
  process.env.DOCKER_BUILDKIT = "0";
  unregisterProvider = registerCredentialProvider({
    name: "sweep-provider",
    matches: (host) => host === provider.host,
    getCredentials: () => ({ username: SECRETS.provider.user, password: SECRETS.provider.value }),
  });
  init({ projectDir: project });
}, 60_000);

afterAll(async () => {
  unregisterProvider?.();
  for (const [key, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  await cleanup.run();
  await Promise.all(Object.values(registries).map((r) => r?.stop()));
  if (project) rmSync(project, { recursive: true, force: true });
});

function specEnv(salt: string, config = goodConfig): Record<string, string> {
  return {
    SWEEP_BASE: busybox,
    SWEEP_SALT: salt,
    SWEEP_AUTHS: registries.auths.host,
    SWEEP_BEARER: registries.bearer.host,
    SWEEP_HELPER: registries.helper.host,
    SWEEP_STORE: registries.store.host,
    DOCKER_CONFIG: config,
    DOCKER_BUILDKIT: "0",
  };
}

async function specImages(salt: string): Promise<Record<"auths" | "bearer" | "helper" | "store", Image>> {
  Object.assign(process.env, specEnv(salt));
  const module = (await import(`${join(project, "spec.mjs")}?salt=${salt}`)) as Record<"auths" | "bearer" | "helper" | "store", Image>;
  for (const image of Object.values(module)) cleanup.image(image.uri);
  return module;
}

async function kiln(label: string, args: string[], env: Record<string, string>): Promise<CliRun> {
  const run = await runKiln(project, args, { env: { ...process.env, ...env }, timeoutMs: 150_000 });
  record(`cli ${label}:stdout`, run.stdout);
  record(`cli ${label}:stderr`, run.stderr);
  return run;
}

describe("secrets sweep: no credential from any source appears in anything Kiln produces", () => {
  const salt = `s${Date.now()}`;

  it("in-process: builds and pushes through every credential source, then finds each image again (with its digest)", async () => {
    const images = await specImages(salt);
    const providerImage = Image.fromBase(busybox, { registry: registries.provider.host, name: "sweep/provider" }).withCommands(
      `echo provider ${salt} > /s.txt`,
    );
    cleanup.image(providerImage.uri);
    const all = { ...images, provider: providerImage };
    const builder = new DockerImageBuilder({ buildkit: false });
    for (const [name, image] of Object.entries(all)) {
      const events: BuildEvent[] = [];
      const built = await build(image, { builder, onEvent: (e) => events.push(e) });
      record(`api build ${name}:result`, JSON.stringify(built));
      recordEvents(`api build ${name}`, events);
      expect(built.outcome, name).toBe("built");
      expect(built.digest, name).toMatch(/^sha256:/);
      const again: BuildEvent[] = [];
      const found = await build(image, { builder: new DockerImageBuilder({ buildkit: false }), onEvent: (e) => again.push(e) });
      record(`api found ${name}:result`, JSON.stringify(found));
      recordEvents(`api found ${name}`, again);
      expect(found.outcome, name).toBe("found");
      expect(found.digest, `${name}: a found image reports the digest its build reported`).toBe(built.digest);
      const checked = await checkImage(image.uri, { platforms: ["linux/amd64"], client: new RegistryClient() });
      record(`api check ${name}`, JSON.stringify(checked));
      expect(checked.present, name).toBe(true);
    }
  }, 240_000);

  it("in-process: wrong password and wrong identity token — failing checks, failing pushes, typed errors", async () => {
    process.env.DOCKER_CONFIG = wrongConfig;
    try {
      for (const which of ["auths", "bearer"] as const) {
        const image = Image.fromBase(busybox, { registry: registries[which].host, name: `sweep/wrong-${which}` }).withCommands(`echo wrong ${salt} > /w.txt`);
        cleanup.image(image.uri);
        const events: BuildEvent[] = [];
        const error = await build(image, { builder: new DockerImageBuilder({ buildkit: false }), onEvent: (e) => events.push(e) }).catch((e: unknown) => e);
        recordEvents(`api wrong ${which}`, events);
        recordError(`api wrong ${which}`, error);
        expect(KilnError.isInstance(error), String(error)).toBe(true);
        expect(AuthError.isInstance(error) || (error as KilnError).code === "KILN_PUSH_FAILED", String(error)).toBe(true);
        expect(
          events.some((e) => e.type === "check.result" && e.result === "error"),
          `${which}: the check failed too`,
        ).toBe(true);
        const checkError = await checkImage(image.uri, { client: new RegistryClient() }).catch((e: unknown) => e);
        recordError(`api wrong check ${which}`, checkError);
        expect(AuthError.isInstance(checkError), String(checkError)).toBe(true);
        // Explicit credentials given in code, wrong: the same.
        const explicit = await checkImage(image.uri, {
          client: new RegistryClient({
            useDockerConfig: false,
            credentials: { [registries[which].host]: { username: SECRETS.wrongPassword.user, password: SECRETS.wrongPassword.value } },
          }),
        }).catch((e: unknown) => e);
        recordError(`api wrong explicit ${which}`, explicit);
        expect(AuthError.isInstance(explicit), String(explicit)).toBe(true);
      }
    } finally {
      process.env.DOCKER_CONFIG = goodConfig;
    }
  }, 180_000);

  it("an index URL with credentials is rejected at declaration, the value redacted", () => {
    const url = `https://${SECRETS.indexUrl.user}:${SECRETS.indexUrl.value}@pypi.example/simple`;
    const attempts: Array<() => unknown> = [
      () => Image.fromDebianBase().withPipPackages("pandas", { indexUrl: url }),
      () => Image.fromDebianBase().withPipPackages("pandas", { extraIndexUrls: [url] }),
      () => Image.fromDebianBase().withRequirements(join(project, "package.json"), { indexUrl: url }),
      () =>
        Image.fromJSON({
          ...Image.fromDebianBase().withPipPackages("pandas").toJSON(),
          layers: [{ kind: "pip", packages: ["pandas"], options: { indexUrl: url } }],
        }),
    ];
    for (const [i, attempt] of attempts.entries()) {
      let error: unknown;
      try {
        attempt();
      } catch (e) {
        error = e;
      }
      recordError(`index url ${i}`, error);
      expect(error, `attempt ${i}`).toBeDefined();
      expect(KilnError.isInstance(error), `attempt ${i}: ${String(error)}`).toBe(true);
      if (i < 2) expect(ValidationError.isInstance(error) && /credentials/.test((error as KilnError).message), String(error)).toBe(true);
    }
  });

  it("CLI: check, plan and build with --json and without (found and fresh), and failing ones with wrong credentials", async () => {
    const images = await specImages(salt);
    const env = specEnv(salt);
    const uris = Object.values(images).map((i) => i.uri);
    // Checks of present images, every source.
    const checks = await Promise.all(
      uris.flatMap((uri, k) => [kiln(`check ${k} --json`, ["check", uri, "--json"], env), kiln(`check ${k}`, ["check", uri], env)]),
    );
    for (const run of checks) expect(run.code, run.stderr).toBe(0);
    // Plans and builds that find everything.
    const [planJson, planPlain, foundJson, foundPlain] = await Promise.all([
      kiln("plan --json", ["plan", "spec.mjs", "--json"], env),
      kiln("plan", ["plan", "spec.mjs"], env),
      kiln("build found --json", ["build", "spec.mjs", "--json"], env),
      kiln("build found", ["build", "spec.mjs"], env),
    ]);
    for (const run of [planJson, planPlain, foundJson, foundPlain]) expect(run.code, run.stderr.slice(-800)).toBe(0);
    expect(foundJson.stdout.trim().split("\n")).toEqual(uris);
    // Fresh images: the CLI itself checks, builds and pushes with every source.
    const fresh = `${salt}-cli`;
    await specImages(fresh);
    const built = await kiln("build fresh --json", ["build", "spec.mjs", "--json"], specEnv(fresh));
    expect(built.code, built.stderr.slice(-800)).toBe(0);
    expect(built.stderr.split("\n").filter((l) => l.includes('"type":"push.done"')).length).toBe(4);
    const fresh2 = `${salt}-cli2`;
    await specImages(fresh2);
    const builtPlain = await kiln("build fresh plain", ["build", "spec.mjs"], specEnv(fresh2));
    expect(builtPlain.code, builtPlain.stderr.slice(-800)).toBe(0);

    // Wrong credentials: checks that cannot tell (exit 2), builds whose push is refused (exit 1).
    const wrong = specEnv(`${salt}-wrong`, wrongConfig);
    const failing = await Promise.all([
      kiln("wrong check auths --json", ["check", uris[0]!, "--json"], wrong),
      kiln("wrong check auths", ["check", uris[0]!], wrong),
      kiln("wrong check bearer --json", ["check", uris[1]!, "--json"], wrong),
      kiln("wrong check bearer", ["check", uris[1]!], { ...wrong, KILN_DEBUG: "1" }),
      kiln("wrong plan --json", ["plan", "spec.mjs", "--json"], wrong),
    ]);
    for (const run of failing) expect(run.code, run.stdout + run.stderr).toBe(2);
    const wrongBuild = await kiln("wrong build --json", ["build", "spec.mjs", "--json"], wrong);
    const wrongBuildDebug = await kiln("wrong build debug", ["build", "spec.mjs"], { ...wrong, KILN_DEBUG: "1" });
    for (const run of [wrongBuild, wrongBuildDebug]) {
      expect(run.code, run.stderr.slice(-800)).toBe(1);
      expect(run.stderr).toMatch(/KILN_AUTH|refused|unauthori[sz]ed|denied/i);
    }
  }, 400_000);

  it("build secrets: served to BuildKit, echoed by the step, yet in no event, error, CLI line or image layer", async () => {
    const sha = (v: string) => createHash("sha256").update(v).digest("hex");
    // The step proves it got the exact value (by hash: the value itself is in no instruction), then
    // prints it — the log line Kiln reports must show *** instead.
    const step = (id: string, value: string, extra = "") =>
      `test "$(sha256sum < /run/secrets/${id} | cut -d' ' -f1)" = "${sha(value)}" && echo "leaking ${id}: $(cat /run/secrets/${id})"${extra}`;
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-sweep-bsec") }).withCommands(
      `${step("SWEEP_TOKEN", SECRETS.buildSecret.value)} && echo ok > /proof`,
      { secrets: ["SWEEP_TOKEN"] },
    );
    cleanup.image(image.uri);
    const events: BuildEvent[] = [];
    const built = await build(image, {
      builder: new DockerImageBuilder({ buildkit: true }),
      secrets: { SWEEP_TOKEN: SECRETS.buildSecret.value },
      onEvent: (e) => events.push(e),
    });
    record("api build-secret:result", JSON.stringify(built));
    recordEvents("api build-secret", events);
    expect(built.outcome).toBe("built");
    const logs = events
      .filter((e) => e.type === "build.log")
      .map((e) => JSON.stringify(e))
      .join("\n");
    expect(logs).toContain("leaking SWEEP_TOKEN: ***");
    // Nothing of it in the image: every layer, the config and the history.
    const saved = spawnSync("docker", ["save", image.uri], { maxBuffer: 1 << 28 });
    expect(saved.status).toBe(0);
    expect(saved.stdout.length).toBeGreaterThan(1000);
    expect(saved.stdout.includes(Buffer.from(SECRETS.buildSecret.value))).toBe(false);
    expect(spawnSync("docker", ["run", "--rm", image.uri, "cat", "/proof"], { encoding: "utf8" }).stdout.trim()).toBe("ok");

    // A failing step that printed the secret: the BuildFailedError and its log tail carry *** only.
    const failing = Image.fromBase(busybox, { name: uniqueName("kiln-sweep-bsec-fail") }).withCommands(
      `${step("SWEEP_TOKEN", SECRETS.buildSecret.value)} && exit 3`,
      { secrets: ["SWEEP_TOKEN"] },
    );
    const failEvents: BuildEvent[] = [];
    const error = await build(failing, {
      builder: new DockerImageBuilder({ buildkit: true }),
      secrets: { SWEEP_TOKEN: SECRETS.buildSecret.value },
      onEvent: (e) => failEvents.push(e),
    }).catch((e: unknown) => e);
    recordError("api build-secret failing", error);
    recordEvents("api build-secret failing", failEvents);
    expect(KilnError.isInstance(error) && error.code).toBe("KILN_BUILD_FAILED");

    // The CLI: one value from an environment variable, one from a file, --json and plain.
    const secretFile = join(project, "build-secret.txt");
    writeFileSync(secretFile, SECRETS.buildSecretFile.value);
    writeFileSync(
      join(project, "secret-spec.mjs"),
      [
        `import { Image } from "@kiln/core";`,
        `export const secretImage = Image.fromBase(process.env.SWEEP_BASE, { name: process.env.SWEEP_NAME })`,
        `  .withCommands(${JSON.stringify(step("ENV_TOKEN", SECRETS.buildSecretEnv.value))}, ${JSON.stringify(step("FILE_TOKEN", SECRETS.buildSecretFile.value))}, { secrets: ["ENV_TOKEN", "FILE_TOKEN"] });`,
        ``,
      ].join("\n"),
    );
    for (const [label, extra] of [
      ["--json", ["--json"]],
      ["plain", []],
    ] as const) {
      const name = uniqueName("kiln-sweep-bsec-cli");
      const run = await kiln(
        `build secrets ${label}`,
        ["build", "secret-spec.mjs", "--secret", "id=ENV_TOKEN,env=SWEEP_ENV_VALUE", "--secret", `id=FILE_TOKEN,src=${secretFile}`, ...extra],
        {
          ...specEnv(`${salt}-bsec`),
          DOCKER_BUILDKIT: "1",
          SWEEP_NAME: name,
          SWEEP_ENV_VALUE: SECRETS.buildSecretEnv.value,
        },
      );
      if (/^\S+:[0-9a-f]{32}$/.test(run.stdout.trim())) cleanup.image(run.stdout.trim());
      expect(run.code, run.stderr.slice(-800)).toBe(0);
      expect(run.stdout.trim()).toMatch(new RegExp(`^${name}:[0-9a-f]{32}$`));
      if (label === "--json") expect(run.stderr).toContain("leaking ENV_TOKEN: ***");
    }
  }, 240_000);

  it("the transcript holds no secret in any form", () => {
    const total = transcript.reduce((n, t) => n + t.text.length, 0);
    console.info(`[reliability] secrets sweep: ${transcript.length} outputs, ${total} characters scanned for ${Object.keys(SECRETS).length} secrets × 5 forms`);
    // The sweep saw real work: errors, events and CLI output of every kind.
    expect(transcript.length).toBeGreaterThan(200);
    expect(transcript.some((t) => t.source.includes("wrong") && /KILN_AUTH/.test(t.text))).toBe(true);
    const leaksIn = (entries: typeof transcript): string[] => {
      const leaks: string[] = [];
      for (const [label, secret] of Object.entries(SECRETS)) {
        for (const form of formsOf(secret)) {
          for (const entry of entries)
            if (entry.text.includes(form))
              leaks.push(
                `${label} (${form === secret.value ? "plain" : "encoded"}) in ${entry.source}: …${entry.text.slice(Math.max(0, entry.text.indexOf(form) - 80), entry.text.indexOf(form) + form.length + 40)}…`,
              );
        }
      }
      return leaks;
    };
    // The scanner itself catches an encoded leak (a docker config "auth" value inside JSON).
    expect(leaksIn([{ source: "control", text: JSON.stringify({ auth: b64(`${SECRETS.store.user}:${SECRETS.store.value}`) }) }])).toHaveLength(1);
    expect(leaksIn(transcript)).toEqual([]);
  });
});

/** Help texts. Plain strings only: `kiln --help` must load nothing else. */
export const COMMANDS = ["build", "plan", "explain", "dockerfile", "check", "plugins", "promote"] as const;
export type CommandName = (typeof COMMANDS)[number];

export const MAIN_HELP = `kiln — declare container images in code; build them only when no registry has them

Usage: kiln <command> [options]

Commands:
  build <spec>[#name]     check, then build and push what is missing, concurrently (URIs on stdout)
  plan <spec>             per image: uri, tag, exists, action — builds nothing
  explain <spec>          the hash inputs behind each image's tag
  dockerfile <spec>       the rendered Dockerfile of each image
  check <image-ref>       is this image in its registry? (exit 0 present, 1 absent, 2 unknown)
  promote <ref> <registry> copy an image to another registry (mount or stream), no rebuild
  plugins                 the builders, checkers, credential providers, lock providers and check caches discovered

Options:
  -h, --help              help for kiln or a command (kiln build --help)
  -v, --version           print the version

A spec is a module exporting Image values (default or named exports): .ts/.mts/.cts (no
TypeScript compiler needed) or .js/.mjs/.cjs, an ES module or CommonJS by Node's rules.
spec.ts#name picks one export.

Exit codes: 0 success, 1 operation failed (build failed, image absent), 2 bad usage or could not
determine, 130 interrupted.

Examples:
  kiln plan images.ts
  kiln build images.ts#api --registry localhost:5000
  kiln check ghcr.io/acme/api:1f0c… --platform linux/amd64,linux/arm64
`;

export const COMMAND_HELP: Record<CommandName, string> = {
  build: `Usage: kiln build <spec>[#export|#group] [options]

Checks every selected image with the builder's checkers and builds and pushes the ones missing.
Progress goes to stderr; the final image URIs go to stdout, one per line.
Before building an image whose name had another tag, a "why:" line names what changed since
(files, layers, platforms, base, installer; from .kiln/explain, which every build updates).

Several images: every image the spec exports (or the members of group("name", [...]) with
spec.ts#name, or one image with spec.ts#export) is built concurrently, at most --concurrency at a
time. An image built on another Kiln image (Image.fromBase(otherImage)) waits for it; a base shared by
several images is built once. A failure does not stop the others: each one is reported, and the exit
code is 1 at the end (--fail-fast stops at the first, cancelling the rest). With more than one
image, a summary ends the run on stderr: image, action (found/built/promoted/failed/cancelled),
time, digest — with --json, one {"type":"summary",...} line per image instead.

Options:
  --builder <name>        builder to use (beats KILN_IMAGE_BUILDER and kiln.config.json)
  --checker <list>        checkers to ask, in order, by the names \`kiln plugins\` lists
                          (beats KILN_IMAGE_CHECKERS and "imageCheckers"; default: the builder's own)
  --registry <registry>   registry for images declared without one (host[:port][/namespace]);
                          an image whose spec names a registry keeps it
  --platform <list>       comma-separated platforms, e.g. linux/amd64,linux/arm64 (for the whole
                          chain of an image built on Kiln images)
  --concurrency <n>       images checked/built at the same time (default 4)
  --fail-fast             stop at the first failed image and cancel the others
  --force                 skip the existence check and build
  --dry-run               check only; print the URIs that would be built, build nothing
  --strict                fail instead of building when no checker found the image and a checker
                          that answers for its registry could not tell (auth, network), or when
                          a shared lock provider (KILN_LOCK_PROVIDER) is unreachable (also KILN_STRICT=1)
  --json                  NDJSON events on stderr instead of progress
  --project <dir>         project whose package.json/kiln.config.json is used (default: cwd)
  --pin-base              resolve base images to their registry digests first (tag and FROM
                          include the digest; also KILN_PIN_BASE=1 or "pinBase" in kiln.config.json)
  --promote-from <list>   registries holding images to copy instead of building, comma-separated
                          (beats KILN_PROMOTE_FROM and "promoteFrom" in kiln.config.json); only
                          content-tagged images are promoted (an explicit tag can move)
  --secret <spec>         a build secret's value (repeatable), docker's syntax:
                            id=ID            from the environment variable ID
                            id=ID,env=VAR    from the environment variable VAR
                            id=ID,src=PATH   the contents of the file PATH
                          Without --secret, a secret the image declares is read from the env var
                          of its id. Values are never hashed, logged or printed. BuildKit only.

Examples:
  kiln build images.ts
  kiln build images.ts#api --registry localhost:5000 --platform linux/amd64,linux/arm64
  kiln build images.ts#services --concurrency 8 --fail-fast
  kiln build images.ts --dry-run --json 2>events.ndjson
  kiln build images.ts --secret id=NPM_TOKEN --secret id=pip_conf,src=$HOME/.config/pip/pip.conf
`,
  plan: `Usage: kiln plan <spec>[#export] [options]

For each image: its URI, tag, whether it already exists (true/false/unknown) and the action a
build would take (skip/build/promote — promote: absent, but a promoteFrom registry holds it; the
source is shown; never for an explicit tag, which can move). The answer comes from the selected
builder's checkers, exactly as \`kiln build\` would ask them (the registry directly when no
builder is installed). Checks run concurrently over one registry connection pool. Builds nothing.
Exit 2 when some answer is unknown.

Options:
  --builder <name>        builder whose checkers answer (default: as for kiln build)
  --checker <list>        checkers to ask, in order (default: as for kiln build)
  --registry <registry>   registry for images declared without one
  --platform <list>       override the platforms to check
  --concurrency <n>       parallel checks (default 8)
  --promote-from <list>   registries to promote from, comma-separated (beats KILN_PROMOTE_FROM
                          and "promoteFrom" in kiln.config.json)
  --json                  one JSON object per image on stdout
  --project <dir>         project directory (default: cwd)

Examples:
  kiln plan images.ts
  kiln plan images.ts --json | jq 'select(.action == "build")'
`,
  explain: `Usage: kiln explain <spec>[#export] [--diff | --against <ref>] [--pin-base] [--registry <registry>] [--json] [--project <dir>]

Lists the inputs hashed into each image's automatic tag (base, layers, file digests, platforms),
so you can see why a tag changed. With pinBase on (KILN_PIN_BASE=1, "pinBase" in kiln.config.json,
or --pin-base) the base is first resolved to its registry digest, as kiln build does. An image
built on other Kiln images (Image.fromBase(otherImage)) also shows its chain, top first (with
--json: "chain", the bases' URIs and tags).

Options:
  --diff                  what changed since the last recorded tag of the same image name: files
                          added/removed/changed, layers, platforms, base, installer, Kiln's recipe.
                          kiln build records every tag it builds or finds in .kiln/explain/
  --against <ref>         like --diff, against the record kept next to that image in its registry
                          (kiln build attaches one to every image it pushes: tag sha256-<digest>.kiln)
  --pin-base              resolve base images (and the uv image) to their digests (needs their registries)
  --registry <registry>   registry for images declared without one (as kiln build --registry)
  --json                  one JSON object per image (with "previous" and "diff" for --diff)
  --project <dir>         project whose config and .kiln/ are used (default: cwd's)

Examples:
  kiln explain images.ts
  kiln explain images.ts#api --json
  kiln explain images.ts#api --diff
  kiln explain images.ts#api --against ghcr.io/acme/api:3f2a…
`,
  dockerfile: `Usage: kiln dockerfile <spec>[#export] [--no-buildkit] [--registry <registry>] [--pin-base] [--project <dir>]

Prints the Dockerfile Kiln renders for each image (with BuildKit cache mounts unless --no-buildkit),
as kiln build would build it: the default registry applied to the images declared without one (so
an image built on a Kiln image names that base where the build puts it; the build then reads it by
the digest it was built at), and with pinBase on, the base and uv images by their digests.

Options:
  --no-buildkit           plain RUN steps (no cache mounts)
  --registry <registry>   registry for images declared without one (as kiln build --registry)
  --pin-base              resolve the base and uv images to their registry digests (needs their registries)
  --project <dir>         project whose config applies (default: cwd's)

Examples:
  kiln dockerfile images.ts#api
  kiln dockerfile images.ts --no-buildkit > Dockerfile
`,
  check: `Usage: kiln check <image-ref> [--platform <list>] [--json]

Asks the image's registry whether it has <image-ref> for every platform given (default
linux/amd64), using your docker credentials. Exit 0 present, 1 absent, 2 could not tell.

Options:
  --platform <list>       comma-separated platforms (default linux/amd64)
  --json                  print the answer as JSON

Examples:
  kiln check localhost:5000/app:1.0
  kiln check ghcr.io/acme/api:2f1e… --platform linux/amd64,linux/arm64 --json
`,
  promote: `Usage: kiln promote <image-ref> <target-registry> [options]

Copies an image from one registry to another instead of rebuilding it (what build() does for an
absent image with promoteFrom): blobs by cross-repository mount when both are on the same registry
host, otherwise streamed from one to the other (never through the local disk); child manifests
before the index; every blob and manifest checked against its digest; the target tag written last
(nothing is tagged when a step fails). Credentials for both registries come from the docker config,
credential helpers and credential providers, as for kiln build.

The target is <target-registry>/<name>:<tag>: <name> is the last path segment of the source
repository, <tag> the source's tag. The URI@digest promoted goes to stdout.

Options:
  --platform <list>       platforms that must be copied (default: whatever the source has); a
                          source without one of them is not promoted (exit 1)
  --name <name>           repository name under the target registry (default: the source's last segment)
  --tag <tag>             tag at the target (default: the source's; required for a ref by digest)
  --json                  NDJSON events on stderr, the result as JSON on stdout
  --project <dir>         project whose plugins' credential providers are used (default: cwd)

Exit codes: 0 promoted (or already there with the same digest), 1 failed or the source lacks the
image, 2 bad usage, 130 interrupted.

Examples:
  kiln promote ghcr.io/acme-staging/api:1f0c… ghcr.io/acme
  kiln promote localhost:5000/cache/api:1f0c… registry.example.com/prod --platform linux/amd64,linux/arm64
`,
  plugins: `Usage: kiln plugins [--json] [--project <dir>]

Lists the image builders, checkers, credential providers, lock providers and check caches that
the project's dependencies declare in their package.json "kiln" field, with their packages, and any
problem found: each entry is imported and its export checked (exit 1 when one is broken).
Lock providers and check caches are selected with KILN_LOCK_PROVIDER /
KILN_CHECK_CACHE or "lockProvider" / "checkCache" in kiln.config.json (built in: file / none).

Examples:
  kiln plugins
  kiln plugins --json
`,
};

/** Help texts. Plain strings only: `kiln --help` must load nothing else. */
export const COMMANDS = ["build", "plan", "explain", "dockerfile", "check", "plugins"] as const;
export type CommandName = (typeof COMMANDS)[number];

export const MAIN_HELP = `kiln — declare container images in code; build them only when no registry has them

Usage: kiln <command> [options]

Commands:
  build <spec>[#export]   check, then build and push what is missing (URIs on stdout)
  plan <spec>             per image: uri, tag, exists, action — builds nothing
  explain <spec>          the hash inputs behind each image's tag
  dockerfile <spec>       the rendered Dockerfile of each image
  check <image-ref>       is this image in its registry? (exit 0 present, 1 absent, 2 unknown)
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
  build: `Usage: kiln build <spec>[#export] [options]

Checks every selected image with the builder's checkers and builds and pushes the ones missing.
Progress goes to stderr; the final image URIs go to stdout, one per line.

Options:
  --builder <name>        builder to use (beats KILN_IMAGE_BUILDER and kiln.config.json)
  --checker <list>        checkers to ask, in order, by the names \`kiln plugins\` lists
                          (beats KILN_IMAGE_CHECKERS and "imageCheckers"; default: the builder's own)
  --registry <registry>   registry for images declared without one (host[:port][/namespace]);
                          an image whose spec names a registry keeps it
  --platform <list>       comma-separated platforms, e.g. linux/amd64,linux/arm64
  --force                 skip the existence check and build
  --dry-run               check only; print the URIs that would be built, build nothing
  --strict                fail instead of building when no checker found the image and a checker
                          that answers for its registry could not tell (auth, network), or when
                          a shared lock provider (KILN_LOCK_PROVIDER) is unreachable (also KILN_STRICT=1)
  --json                  NDJSON events on stderr instead of progress
  --project <dir>         project whose package.json/kiln.config.json is used (default: cwd)
  --secret <spec>         a build secret's value (repeatable), docker's syntax:
                            id=ID            from the environment variable ID
                            id=ID,env=VAR    from the environment variable VAR
                            id=ID,src=PATH   the contents of the file PATH
                          Without --secret, a secret the image declares is read from the env var
                          of its id. Values are never hashed, logged or printed. BuildKit only.

Examples:
  kiln build images.ts
  kiln build images.ts#api --registry localhost:5000 --platform linux/amd64,linux/arm64
  kiln build images.ts --dry-run --json 2>events.ndjson
  kiln build images.ts --secret id=NPM_TOKEN --secret id=pip_conf,src=$HOME/.config/pip/pip.conf
`,
  plan: `Usage: kiln plan <spec>[#export] [options]

For each image: its URI, tag, whether it already exists (true/false/unknown) and the action a
build would take (skip/build). The answer comes from the selected builder's checkers, exactly as
\`kiln build\` would ask them (the registry directly when no builder is installed). Checks run
concurrently over one registry connection pool. Builds nothing. Exit 2 when some answer is unknown.

Options:
  --builder <name>        builder whose checkers answer (default: as for kiln build)
  --checker <list>        checkers to ask, in order (default: as for kiln build)
  --registry <registry>   registry for images declared without one
  --platform <list>       override the platforms to check
  --concurrency <n>       parallel checks (default 8)
  --json                  one JSON object per image on stdout
  --project <dir>         project directory (default: cwd)

Examples:
  kiln plan images.ts
  kiln plan images.ts --json | jq 'select(.action == "build")'
`,
  explain: `Usage: kiln explain <spec>[#export] [--json]

Lists the inputs hashed into each image's automatic tag (base, layers, file digests, platforms),
so you can see why a tag changed.

Examples:
  kiln explain images.ts
  kiln explain images.ts#api --json
`,
  dockerfile: `Usage: kiln dockerfile <spec>[#export] [--no-buildkit]

Prints the Dockerfile Kiln renders for each image (with BuildKit cache mounts unless --no-buildkit).

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

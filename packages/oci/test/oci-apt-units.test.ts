/**
 * The parts of the oci builder's apt support that need no network: which maintainer scripts it can
 * stand in for, apt's simulated plan, paths taken through a merged /usr, and dpkg status stanzas.
 * The scripts are the ones bookworm's packages carry (netcat-openbsd's postinst, debhelper snippets).
 */
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasEntries, parseSimulation, pointSignedBy } from "../src/aptResolve.js";
import { checkBaseSource, UnsafeAptSourceError } from "../src/aptSourceCheck.js";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import tarStream from "tar-stream";
import { applyLayer, DebianRootView } from "../src/debianRootView.js";
import { checkFileTriggers, checkMaintainerScripts, firstDisallowedCommand, MaintainerScriptError } from "../src/debianScripts.js";
import { dpkgInfoName, installedStanza, parseFields, parseStanzas, renderStatus } from "../src/debianStatus.js";
import type { DebPackage } from "../src/debianPackage.js";

const NETCAT_POSTINST = `#!/bin/sh

set -e

if [ "$1" = "configure" ]; then
    update-alternatives \\
        --install /bin/nc nc /bin/nc.openbsd 50 \\
        --slave /bin/netcat netcat /bin/nc.openbsd
fi


exit 0
`;

const TEMPLATE_POSTINST = `#!/bin/sh
# postinst script for foo
set -e

case "$1" in
    configure)
    ;;

    abort-upgrade|abort-remove|abort-deconfigure)
    ;;

    *)
        echo "postinst called with unknown argument \\\`$1'" >&2
        exit 1
    ;;
esac

# Automatically added by dh_installdeb/13.11.4
dpkg-maintscript-helper rm_conffile /etc/foo/old.conf 1.2-1~ -- "$@"
# End automatically added section
if [ "$1" = "configure" ]; then ldconfig; fi

exit 0
`;

function pkg(controlFiles: Record<string, string>, paths: string[] = []): DebPackage {
  const control = "Package: demo\nVersion: 1.0-1\nArchitecture: amd64\nDescription: demo\n";
  return {
    deb: "/tmp/demo.deb",
    control,
    fields: parseFields(control),
    controlFiles: new Map(Object.entries(controlFiles).map(([k, v]) => [k, { data: Buffer.from(v), mode: 0o755 }])),
    entries: paths.map((path) => ({ path, type: "file" as const, mode: 0o644, uid: 0, gid: 0, size: 0 })),
  };
}

describe("maintainer scripts the oci builder can stand in for", () => {
  it("update-alternatives, adduser, debconf, systemd are refused, naming the command; ldconfig, dpkg-maintscript-helper and the template's structure are not", () => {
    expect(firstDisallowedCommand(NETCAT_POSTINST)).toMatch(/^update-alternatives --install \/bin\/nc/);
    expect(firstDisallowedCommand(TEMPLATE_POSTINST)).toBeUndefined();
    expect(firstDisallowedCommand('#!/bin/sh\nset -e\nif [ "$1" = configure ]; then\n  adduser --system --group demo\nfi\n')).toBe(
      "adduser --system --group demo",
    );
    expect(firstDisallowedCommand("#!/bin/sh\nset -e\n. /usr/share/debconf/confmodule\ndb_get demo/x\n")).toBe(". /usr/share/debconf/confmodule");
    expect(
      firstDisallowedCommand("#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then\n\tsystemctl --system daemon-reload >/dev/null || true\nfi\n"),
    ).toMatch(/^systemctl/);
    expect(firstDisallowedCommand('#!/bin/sh\nif [ "$(id -u)" = 0 ]; then\n:\nfi\n')).toMatch(/^if \[ "\$\(id -u\)"/);
    expect(firstDisallowedCommand('echo "$(touch /x)" >&2\n')).toMatch(/^echo/);
  });

  it("checkMaintainerScripts: a MaintainerScriptError with the package, script and command; debconf templates and non-ldconfig triggers are refused too", () => {
    const error = (() => {
      try {
        checkMaintainerScripts(pkg({ postinst: NETCAT_POSTINST }));
      } catch (e) {
        return e;
      }
    })();
    expect(MaintainerScriptError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("demo:amd64 1.0-1");
    expect((error as { details: unknown }).details).toEqual({ package: "demo:amd64", command: "update-alternatives", script: "postinst" });
    expect(() =>
      checkMaintainerScripts(
        pkg({ postinst: TEMPLATE_POSTINST, prerm: "#!/bin/sh\nset -e\nexit 0\n", triggers: "# dh_makeshlibs\nactivate-noawait ldconfig\n" }),
      ),
    ).not.toThrow();
    expect(() => checkMaintainerScripts(pkg({ templates: "Template: demo/x\n" }))).toThrow(/debconf/);
    expect(() => checkMaintainerScripts(pkg({ triggers: "interest-noawait /usr/share/demo\n" }))).toThrow(/dpkg trigger `interest-noawait \/usr\/share\/demo`/);
    expect(() => checkMaintainerScripts(pkg({ prerm: "#!/bin/sh\nupdate-alternatives --remove demo /usr/bin/demo\n" }))).toThrow(
      /prerm runs `update-alternatives/,
    );
  });

  it("file triggers of the image's packages: debianutils' shells.d is refused, man-db's index is not", () => {
    const triggers = "/usr/share/debianutils/shells.d debianutils/noawait\n/usr/share/man man-db/noawait\n";
    expect(() => checkFileTriggers(pkg({}, ["usr/share/man/man1/demo.1.gz"]), triggers)).not.toThrow();
    expect(() => checkFileTriggers(pkg({}, ["usr/share/debianutils/shells.d/demo"]), triggers)).toThrow(/file trigger of debianutils/);
  });
});

describe("apt's plan", () => {
  it("Inst lines are the plan; an upgrade of an installed package or a removal is a change", () => {
    const out = [
      "NOTE: This is only a simulation!",
      "Inst libonig5 (6.9.8-1 Debian:12.15/oldstable [amd64])",
      "Inst libjq1:arm64 (1.6-2.1+deb12u2 Debian:12.15/oldstable [arm64])",
      "Inst tzdata (2025b-0+deb12u1 Debian:12.15/oldstable [all])",
      "Inst libc6 [2.36-9] (2.36-9+deb12u10 Debian:12.15/oldstable [amd64])",
      "Remv mawk [1.3.4.20200120-3.1]",
      "Conf libonig5 (6.9.8-1 Debian:12.15/oldstable [amd64])",
    ].join("\n");
    expect(parseSimulation(out, "amd64")).toEqual({
      plan: [
        { name: "libonig5", arch: "amd64", version: "6.9.8-1" },
        { name: "libjq1", arch: "arm64", version: "1.6-2.1+deb12u2" },
        { name: "tzdata", arch: "all", version: "2025b-0+deb12u1" },
      ],
      changes: ["libc6:amd64 2.36-9 → 2.36-9+deb12u10", "mawk removed"],
    });
  });
});

describe("the base's apt sources", () => {
  it("Signed-By keyrings (deb822 and one-line) point at copies of the base's files; disabled or commented sources do not count", async () => {
    const view = new DebianRootView();
    view.set("usr/share/keyrings/debian-archive-keyring.gpg", { type: "file", mode: 0o644 }, Buffer.from("base keyring"));
    view.set("etc/apt/keyrings/extra.gpg", { type: "symlink", mode: 0o777, linkname: "/usr/share/keyrings/debian-archive-keyring.gpg" });
    const dir = mkdtempSync(join(tmpdir(), "kiln-oci-apt-keyrings-"));
    const deb822 =
      "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
    const rewritten = await pointSignedBy(deb822, view, dir, createHash("sha256"));
    const copy = join(dir, "usr_share_keyrings_debian-archive-keyring.gpg");
    expect(rewritten).toContain(`Signed-By: ${copy}\n`);
    expect(readFileSync(copy, "utf8")).toBe("base keyring");
    const oneLine = await pointSignedBy(
      "deb [arch=amd64 signed-by=/etc/apt/keyrings/extra.gpg] http://x/debian bookworm main\n",
      view,
      dir,
      createHash("sha256"),
    );
    expect(oneLine).toBe(`deb [arch=amd64 signed-by=${join(dir, "etc_apt_keyrings_extra.gpg")}] http://x/debian bookworm main\n`);
    expect(readFileSync(join(dir, "etc_apt_keyrings_extra.gpg"), "utf8")).toBe("base keyring"); // the link followed inside the image
    expect(hasEntries("debian.sources", deb822)).toBe(true);
    expect(hasEntries("debian.sources", `${deb822}Enabled: no\n`)).toBe(false);
    expect(hasEntries("sources.list", "# deb http://deb.debian.org/debian bookworm main\n")).toBe(false);
    expect(hasEntries("sources.list", "deb http://deb.debian.org/debian bookworm main\n")).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });

  it("file:, copy:, cdrom:, mirror+ URIs and options that turn off signature checks are refused, naming the file and line; plain signed http(s) passes", () => {
    const refused = (name: string, text: string) => {
      try {
        checkBaseSource(name, text, "base:1");
      } catch (error) {
        expect(UnsafeAptSourceError.isInstance(error)).toBe(true);
        return { message: (error as Error).message, details: (error as UnsafeAptSourceError).details };
      }
      return undefined;
    };
    const good = "# deb file:/srv/repo ./\ndeb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] https://deb.debian.org/debian bookworm main\n";
    expect(refused("sources.list", good)).toBeUndefined();
    expect(
      refused("sources.list", "deb [check-valid-until=no trusted=no] http://snapshot.debian.org/archive/debian/20240101T000000Z bookworm main\n"),
    ).toBeUndefined();
    for (const uri of ["file:/etc", "copy:/root/repo", "cdrom:[Debian]/", "mirror+file:/etc/mirrors.txt", "mirror+http://x/list"]) {
      const result = refused("extra.list", `# a comment\ndeb ${uri} bookworm main\n`);
      expect(result?.message).toContain(`/etc/apt/sources.list.d/extra.list line 2 uses "${uri}"`);
      expect(result?.details).toMatchObject({ file: "/etc/apt/sources.list.d/extra.list", line: 2, base: "base:1" });
    }
    for (const option of ["trusted=yes", "allow-insecure=yes", "allow-weak=true", "allow-downgrade-to-insecure=yes"]) {
      expect(refused("sources.list", `deb [arch=amd64 ${option}] http://x/debian bookworm main\n`)?.message).toContain(
        `/etc/apt/sources.list line 1 sets ${option}`,
      );
    }
    const deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n";
    expect(refused("debian.sources", `${deb822}Signed-By: /usr/share/keyrings/k.gpg\n`)).toBeUndefined();
    expect(refused("debian.sources", `${deb822}Trusted: yes\n`)?.message).toContain("/etc/apt/sources.list.d/debian.sources line 5 sets Trusted=yes");
    expect(refused("debian.sources", `${deb822}\nTypes: deb\nURIs: http://x/debian\n file:/srv/repo\nSuites: ./\n`)?.message).toContain(
      'line 7 uses "file:/srv/repo"',
    );
    expect(refused("debian.sources", `Types: deb\nURIs: file:/srv/repo\nSuites: ./\nEnabled: no\n`)).toBeUndefined();
  });

  it("a Signed-By keyring the image does not hold is an error naming it (never this machine's file); one only in a comment is not", async () => {
    const view = new DebianRootView();
    const dir = mkdtempSync(join(tmpdir(), "kiln-oci-apt-keyrings-"));
    const text = "deb http://x/debian bookworm main\ndeb [signed-by=/etc/ssl/private/host.key] http://x/debian bookworm main\n";
    const error = await pointSignedBy(text, view, dir, createHash("sha256"), "x.list").catch((e: unknown) => e);
    expect(UnsafeAptSourceError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("/etc/apt/sources.list.d/x.list line 2 is Signed-By /etc/ssl/private/host.key, which is not in the image");
    const commented = "# deb [signed-by=/etc/ssl/private/host.key] http://x/debian bookworm main\n";
    expect(await pointSignedBy(commented, view, dir, createHash("sha256"), "x.list")).toBe(commented);
    rmSync(dir, { recursive: true, force: true });
  });
});

/** A layer tar (gzip'd when asked) of [name, content | "dir" | {link}] entries. */
async function layerTar(entries: Array<[string, string | { dir: true } | { link: string }]>, gzip: boolean): Promise<Readable> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const [name, what] of entries) {
    if (typeof what === "string") pack.entry({ name, mode: 0o644 }, what);
    else if ("dir" in what) pack.entry({ name, type: "directory", mode: 0o755 });
    else pack.entry({ name, type: "symlink", linkname: what.link, mode: 0o777 });
  }
  pack.finalize();
  await done;
  const tar = Buffer.concat(chunks);
  return Readable.from([gzip ? gzipSync(tar) : tar]);
}

describe("the base's layers, stacked", () => {
  it("a whiteout removes a lower file, an opaque directory empties the lower one but keeps its own layer's entries; gzip and plain tar both read", async () => {
    const view = new DebianRootView();
    await applyLayer(
      view,
      await layerTar(
        [
          ["bin", { link: "usr/bin" }],
          ["etc/apt/sources.list", "deb http://a/debian bookworm main\n"],
          ["etc/apt/sources.list.d/a.list", "deb http://a/extra bookworm main\n"],
          ["var/lib/dpkg/status", "Package: base-files\nStatus: install ok installed\n"],
          ["usr/bin/ls", "binary, not kept"],
        ],
        true,
      ),
    );
    expect(view.read("etc/apt/sources.list")?.toString()).toContain("http://a/debian");
    expect(view.entries.get("usr/bin/ls")?.type).toBe("file");
    expect(view.contents.has("usr/bin/ls")).toBe(false);
    await applyLayer(
      view,
      await layerTar(
        [
          ["etc/apt/.wh.sources.list", ""],
          ["etc/apt/sources.list.d/b.list", "deb http://b/debian bookworm main\n"],
          ["etc/apt/sources.list.d/.wh..wh..opq", ""],
          ["var/lib/dpkg/status", "Package: base-files\nStatus: install ok installed\n\nPackage: jq\nStatus: install ok installed\n"],
        ],
        false,
      ),
    );
    expect(view.entries.has("etc/apt/sources.list")).toBe(false);
    expect(view.listKept("etc/apt/sources.list.d").map(([name]) => name)).toEqual(["b.list"]);
    expect(view.read("var/lib/dpkg/status")?.toString()).toContain("Package: jq");
    expect(view.resolveParents("bin/jq")).toBe("usr/bin/jq");
  });

  it("the kept files of all layers together have a byte budget: past it, an error naming the file; files not kept do not count", async () => {
    const view = new DebianRootView();
    const key = "k".repeat(40);
    await applyLayer(
      view,
      await layerTar(
        [
          ["usr/share/keyrings/a.gpg", key],
          ["usr/bin/big", "x".repeat(500)],
        ],
        false,
      ),
      100,
    );
    await applyLayer(view, await layerTar([["usr/share/keyrings/b.gpg", key]], false), 100);
    const error = await applyLayer(view, await layerTar([["etc/apt/trusted.gpg.d/c.gpg", key]], true), 100).catch((e: unknown) => e);
    expect((error as Error).message).toContain("/etc/apt/trusted.gpg.d/c.gpg and before) exceed");
    expect(view.contents.has("etc/apt/trusted.gpg.d/c.gpg")).toBe(false);
  });
});

describe("paths in a merged-/usr image", () => {
  it("a parent symlink is followed (relative or absolute target), the last component is not", () => {
    const view = new DebianRootView();
    view.set("usr", { type: "directory", mode: 0o755 });
    view.set("usr/bin", { type: "directory", mode: 0o755 });
    view.set("bin", { type: "symlink", mode: 0o777, linkname: "usr/bin" });
    view.set("lib64", { type: "symlink", mode: 0o777, linkname: "/usr/lib64" });
    view.set("usr/bin/sh", { type: "symlink", mode: 0o777, linkname: "dash" });
    expect(view.resolveParents("bin/nc.openbsd")).toBe("usr/bin/nc.openbsd");
    expect(view.resolveParents("lib64/ld-linux-x86-64.so.2")).toBe("usr/lib64/ld-linux-x86-64.so.2");
    expect(view.resolveParents("bin/sh")).toBe("usr/bin/sh");
    expect(view.resolveAll("bin")).toBe("usr/bin");
    expect(view.resolveParents("usr/share/doc/jq")).toBe("usr/share/doc/jq");
    view.set("loop", { type: "symlink", mode: 0o777, linkname: "loop" });
    expect(() => view.resolveParents("loop/x")).toThrow(/too many levels/);
  });
});

describe("dpkg status", () => {
  it("a new package's stanza says installed, lists its conffiles before the description; the file is sorted by name; Multi-Arch: same names info files pkg:arch", () => {
    const base = parseStanzas(
      "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\nPackage: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5\n",
    );
    const added = installedStanza("Package: libjq1\nVersion: 1.6\nArchitecture: amd64\nMulti-Arch: same\nDescription: lib\n more\n", [
      ["/etc/jq.conf", "d41d8cd98f00b204e9800998ecf8427e"],
    ]);
    expect(added.text).toBe(
      "Package: libjq1\nStatus: install ok installed\nVersion: 1.6\nArchitecture: amd64\nMulti-Arch: same\nConffiles:\n /etc/jq.conf d41d8cd98f00b204e9800998ecf8427e\nDescription: lib\n more\n",
    );
    expect(dpkgInfoName(added.fields)).toBe("libjq1:amd64");
    expect(dpkgInfoName(parseFields("Package: jq\nArchitecture: amd64\nMulti-Arch: foreign\n"))).toBe("jq");
    const status = renderStatus([...base, added]).toString();
    expect(status.split("\n\n").map((s) => s.split("\n")[0])).toEqual(["Package: bash", "Package: libjq1", "Package: zlib1g", ""]);
  });
});

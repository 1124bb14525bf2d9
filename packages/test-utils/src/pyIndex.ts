/**
 * A local PEP 503 "simple" Python package index for tests: pure-Python wheels generated in memory
 * (a wheel is a zip with the package, METADATA, WHEEL and RECORD), served over HTTP. It listens on
 * the docker bridge address (172.17.0.1 on a default install) so build containers reach it on the
 * default network as well as with `networkmode=host`; without a bridge it uses 127.0.0.1.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";

export interface WheelSpec {
  /** Distribution name, e.g. `kiln-demo`. */
  name: string;
  version: string;
  /** Importable module written as `<module>/__init__.py` (default: name with `-` → `_`). */
  module?: string;
  /** The module's source (default: `VERSION = "<version>"`). */
  source?: string;
  /** Requirements (`Requires-Dist`). */
  requires?: string[];
  /** Console scripts (`entry_points.txt` `[console_scripts]`), e.g. `{ "kiln-demo": "kiln_demo:main" }`. */
  consoleScripts?: Record<string, string>;
}

export interface PyIndex {
  /** `http://<host>:<port>/simple/` — pass as pip's `indexUrl`. */
  url: string;
  host: string;
  port: number;
  /** Paths requested so far (e.g. `/files/kiln_demo-1.0-py3-none-any.whl`). */
  requests: string[];
  wheels: Array<{ file: string; sha256: string }>;
  close(): Promise<void>;
}

/** PEP 503 name normalisation. */
export function normalizeProjectName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, "-");
}

export async function startPyIndex(packages: WheelSpec[], options: { host?: string } = {}): Promise<PyIndex> {
  const files = new Map<string, { data: Buffer; sha256: string; project: string }>();
  for (const spec of packages) {
    const { file, data } = makeWheel(spec);
    files.set(file, { data, sha256: createHash("sha256").update(data).digest("hex"), project: normalizeProjectName(spec.name) });
  }
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0]!);
    requests.push(path);
    if (path === "/simple/" || path === "/simple") {
      const projects = [...new Set([...files.values()].map((f) => f.project))];
      return html(res, projects.map((p) => `<a href="/simple/${p}/">${p}</a>`).join("\n"));
    }
    const project = /^\/simple\/([^/]+)\/?$/.exec(path);
    if (project) {
      const wanted = normalizeProjectName(project[1]!);
      const links = [...files].filter(([, f]) => f.project === wanted).map(([file, f]) => `<a href="/files/${file}#sha256=${f.sha256}">${file}</a>`);
      if (links.length === 0) {
        res.writeHead(404).end("not found");
        return;
      }
      return html(res, links.join("\n"));
    }
    const file = /^\/files\/([^/]+)$/.exec(path);
    if (file && files.has(file[1]!)) {
      const entry = files.get(file[1]!)!;
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": entry.data.length });
      res.end(entry.data);
      return;
    }
    res.writeHead(404).end("not found");
  });
  const host = options.host ?? dockerBridgeAddress() ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}/simple/`,
    host,
    port,
    requests,
    wheels: [...files].map(([file, f]) => ({ file, sha256: f.sha256 })),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function html(res: http.ServerResponse, body: string): void {
  res.writeHead(200, { "content-type": "text/html" });
  res.end(`<!DOCTYPE html><html><body>\n${body}\n</body></html>\n`);
}

/**
 * The IPv4 address of the `docker0` bridge, when there is one. `os.networkInterfaces()` omits a
 * bridge with no container attached (it is "down" until then), so ask `ip` first.
 */
export function dockerBridgeAddress(): string | undefined {
  try {
    const out = execFileSync("ip", ["-4", "-o", "addr", "show", "dev", "docker0"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const match = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out);
    if (match) return match[1];
  } catch {
    // no `ip`, or no docker0
  }
  return os.networkInterfaces().docker0?.find((a) => a.family === "IPv4")?.address;
}

/** Builds a pure-Python wheel: `<module>/__init__.py` + the dist-info files, with a valid RECORD. */
export function makeWheel(spec: WheelSpec): { file: string; data: Buffer } {
  const dist = spec.name.replace(/[-_.]+/g, "_");
  const module = spec.module ?? dist.toLowerCase();
  const distInfo = `${dist}-${spec.version}.dist-info`;
  const entries: Array<[string, Buffer]> = [
    [`${module}/__init__.py`, Buffer.from(spec.source ?? `VERSION = ${JSON.stringify(spec.version)}\n`)],
    [
      `${distInfo}/METADATA`,
      Buffer.from(
        [`Metadata-Version: 2.1`, `Name: ${spec.name}`, `Version: ${spec.version}`, ...(spec.requires ?? []).map((r) => `Requires-Dist: ${r}`), ""].join("\n"),
      ),
    ],
    [`${distInfo}/WHEEL`, Buffer.from("Wheel-Version: 1.0\nGenerator: kiln-test-utils\nRoot-Is-Purelib: true\nTag: py3-none-any\n")],
  ];
  if (spec.consoleScripts && Object.keys(spec.consoleScripts).length > 0) {
    const lines = Object.entries(spec.consoleScripts).map(([name, target]) => `${name} = ${target}`);
    entries.push([`${distInfo}/entry_points.txt`, Buffer.from(`[console_scripts]\n${lines.join("\n")}\n`)]);
  }
  const record = entries
    .map(([path, data]) => `${path},sha256=${createHash("sha256").update(data).digest("base64url")},${data.length}`)
    .concat(`${distInfo}/RECORD,,`, "")
    .join("\n");
  entries.push([`${distInfo}/RECORD`, Buffer.from(record)]);
  return { file: `${dist}-${spec.version}-py3-none-any.whl`, data: zipStored(entries) };
}

/** A zip archive with stored (uncompressed) entries — all a wheel needs. */
export function zipStored(entries: Array<[string, Buffer]>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBuf = Buffer.from(name, "utf8");
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(0, 10); // time
    local.writeUInt16LE(0x21, 12); // date 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, nameBuf, data);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(0x0314, 4); // made by: unix, 2.0
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBuf.length, 28);
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38); // external attrs: regular file 0644
    central.writeUInt32LE(offset, 42);
    centrals.push(central, nameBuf);
    offset += 30 + nameBuf.length + data.length;
  }
  const centralSize = centrals.reduce((n, b) => n + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, ...centrals, end]);
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * The `moby.buildkit.v1.Control` messages Kiln sends and reads, hand-coded from BuildKit v0.11's
 * api/services/control/control.proto, api/types/worker.proto and solver/pb/ops.proto (field numbers
 * are the wire contract; unknown fields are skipped, so newer daemons stay readable):
 *
 *   ListWorkersRequest { repeated string filter = 1; }
 *   ListWorkersResponse { repeated WorkerRecord record = 1; }
 *   WorkerRecord { string ID = 1; map<string,string> Labels = 2; repeated pb.Platform platforms = 3; …; BuildkitVersion BuildkitVersion = 5; }
 *   BuildkitVersion { string package = 1; string version = 2; string revision = 3; }
 *   pb.Platform { string Architecture = 1; string OS = 2; string Variant = 3; }
 *   SolveRequest { string Ref = 1; string Exporter = 3; map<string,string> ExporterAttrs = 4; string Session = 5;
 *                  string Frontend = 6; map<string,string> FrontendAttrs = 7; CacheOptions Cache = 8; repeated string Entitlements = 9; }
 *   CacheOptions { repeated CacheOptionsEntry Exports = 4; repeated CacheOptionsEntry Imports = 5; }
 *   CacheOptionsEntry { string Type = 1; map<string,string> Attrs = 2; }
 *   SolveResponse { map<string,string> ExporterResponse = 1; }
 *   StatusRequest { string Ref = 1; }
 *   BytesMessage { bytes data = 1; }   (the Session tunnel)
 * StatusResponse is decoded by @kiln/docker's buildkitTrace (the same message the Engine's build stream carries).
 */
import { asBytes, asString, encodeVarint, lengthDelimitedField, readFields } from "@kiln/docker/internal";

export const CONTROL_SERVICE = "/moby.buildkit.v1.Control";
export const LIST_WORKERS_METHOD = `${CONTROL_SERVICE}/ListWorkers`;
export const SOLVE_METHOD = `${CONTROL_SERVICE}/Solve`;
export const STATUS_METHOD = `${CONTROL_SERVICE}/Status`;
export const SESSION_METHOD = `${CONTROL_SERVICE}/Session`;
export const INFO_METHOD = `${CONTROL_SERVICE}/Info`;

export interface WorkerPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface WorkerRecord {
  id: string;
  labels: Record<string, string>;
  platforms: WorkerPlatform[];
  /** BuildKit's version, when the daemon reports it (v0.11+). */
  buildkitVersion?: string;
}

export interface CacheEntry {
  type: string;
  attrs: Record<string, string>;
}

export interface SolveRequest {
  ref: string;
  exporter?: string;
  exporterAttrs?: Record<string, string>;
  session?: string;
  frontend?: string;
  frontendAttrs?: Record<string, string>;
  cacheExports?: CacheEntry[];
  cacheImports?: CacheEntry[];
  entitlements?: string[];
}

/** A `map<string,string>` field: one embedded { key = 1; value = 2; } entry per pair, in key order (deterministic bytes). */
export function mapField(field: number, map: Record<string, string> | undefined): Buffer[] {
  return Object.keys(map ?? {})
    .sort()
    .map((key) => lengthDelimitedField(field, Buffer.concat([lengthDelimitedField(1, key), lengthDelimitedField(2, map![key]!)])));
}

export function decodeMapEntry(buf: Buffer): [string, string] {
  let key = "";
  let value = "";
  for (const { field, wire } of readFields(buf)) {
    if (field === 1) key = asString(wire);
    else if (field === 2) value = asString(wire);
  }
  return [key, value];
}

function stringField(field: number, value: string | undefined): Buffer[] {
  return value ? [lengthDelimitedField(field, value)] : [];
}

export function encodeListWorkersRequest(filters: readonly string[] = []): Buffer {
  return Buffer.concat(filters.map((f) => lengthDelimitedField(1, f)));
}

export function decodeListWorkersResponse(buf: Buffer): WorkerRecord[] {
  const records: WorkerRecord[] = [];
  for (const { field, wire } of readFields(buf)) if (field === 1 && wire.wireType === 2) records.push(decodeWorkerRecord(wire.value));
  return records;
}

function decodeWorkerRecord(buf: Buffer): WorkerRecord {
  const record: WorkerRecord = { id: "", labels: {}, platforms: [] };
  for (const { field, wire } of readFields(buf)) {
    if (field === 1) record.id = asString(wire);
    else if (field === 2 && wire.wireType === 2) {
      const [key, value] = decodeMapEntry(wire.value);
      record.labels[key] = value;
    } else if (field === 3 && wire.wireType === 2) record.platforms.push(decodePlatform(wire.value));
    else if (field === 5 && wire.wireType === 2) {
      for (const v of readFields(wire.value)) if (v.field === 2) record.buildkitVersion = asString(v.wire);
    }
  }
  return record;
}

function decodePlatform(buf: Buffer): WorkerPlatform {
  const platform: WorkerPlatform = { os: "", architecture: "" };
  for (const { field, wire } of readFields(buf)) {
    if (field === 1) platform.architecture = asString(wire);
    else if (field === 2) platform.os = asString(wire);
    else if (field === 3) platform.variant = asString(wire) || undefined;
  }
  return platform;
}

function encodeCacheEntry(entry: CacheEntry): Buffer {
  return Buffer.concat([...stringField(1, entry.type), ...mapField(2, entry.attrs)]);
}

export function encodeSolveRequest(request: SolveRequest): Buffer {
  const cache = Buffer.concat([
    ...(request.cacheExports ?? []).map((e) => lengthDelimitedField(4, encodeCacheEntry(e))),
    ...(request.cacheImports ?? []).map((e) => lengthDelimitedField(5, encodeCacheEntry(e))),
  ]);
  return Buffer.concat([
    ...stringField(1, request.ref),
    ...stringField(3, request.exporter),
    ...mapField(4, request.exporterAttrs),
    ...stringField(5, request.session),
    ...stringField(6, request.frontend),
    ...mapField(7, request.frontendAttrs),
    ...(cache.length > 0 ? [lengthDelimitedField(8, cache)] : []),
    ...(request.entitlements ?? []).map((e) => lengthDelimitedField(9, e)),
  ]);
}

export function decodeSolveResponse(buf: Buffer): Record<string, string> {
  const response: Record<string, string> = {};
  for (const { field, wire } of readFields(buf)) {
    if (field === 1 && wire.wireType === 2) {
      const [key, value] = decodeMapEntry(wire.value);
      response[key] = value;
    }
  }
  return response;
}

export function encodeStatusRequest(ref: string): Buffer {
  return Buffer.concat(stringField(1, ref));
}

export function encodeBytesMessage(data: Buffer): Buffer {
  return data.length === 0 ? Buffer.alloc(0) : lengthDelimitedField(1, data);
}

/** The bytes of a BytesMessage that precede `length` bytes of data (to send the data after it uncopied). */
export function encodeBytesMessageHeader(length: number): Buffer {
  // Field 1, wire type 2 (length-delimited): key byte (1 << 3) | 2.
  return length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), encodeVarint(length)]);
}

export function decodeBytesMessage(buf: Buffer): Buffer {
  let data: Buffer = Buffer.alloc(0);
  for (const { field, wire } of readFields(buf)) if (field === 1) data = asBytes(wire);
  return data;
}

/**
 * Decodes the `moby.buildkit.trace` aux messages of `POST /build?version=2`: base64 protobuf
 * `moby.buildkit.v1.StatusResponse` { vertexes = 1, statuses = 2, logs = 3, warnings = 4 }.
 * Field numbers follow buildkit's api/services/control/control.proto.
 */
import { asBool, asBytes, asNumber, asString, readFields } from "../session/protobuf.js";

export interface TraceVertex {
  digest: string;
  name: string;
  cached: boolean;
  /** Milliseconds since the epoch, when the vertex started / completed. */
  started?: number;
  completed?: number;
  error?: string;
}

export interface TraceStatus {
  id: string;
  vertex: string;
  name: string;
  current: number;
  total: number;
}

export interface TraceLog {
  vertex: string;
  /** 1 stdout, 2 stderr. */
  stream: number;
  data: Buffer;
}

export interface TraceStatusResponse {
  vertexes: TraceVertex[];
  statuses: TraceStatus[];
  logs: TraceLog[];
}

/** google.protobuf.Timestamp { seconds = 1; nanos = 2 } as epoch milliseconds. */
function decodeTimestamp(buf: Buffer): number {
  let seconds = 0;
  let nanos = 0;
  for (const { field, wire } of readFields(buf)) {
    if (field === 1) seconds = asNumber(wire);
    else if (field === 2) nanos = asNumber(wire);
  }
  return seconds * 1000 + Math.floor(nanos / 1e6);
}

function decodeVertex(buf: Buffer): TraceVertex {
  const vertex: TraceVertex = { digest: "", name: "", cached: false };
  for (const { field, wire } of readFields(buf)) {
    switch (field) {
      case 1:
        vertex.digest = asString(wire);
        break;
      case 3:
        vertex.name = asString(wire);
        break;
      case 4:
        vertex.cached = asBool(wire);
        break;
      case 5:
        vertex.started = decodeTimestamp(asBytes(wire));
        break;
      case 6:
        vertex.completed = decodeTimestamp(asBytes(wire));
        break;
      case 7:
        vertex.error = asString(wire);
        break;
    }
  }
  return vertex;
}

function decodeStatus(buf: Buffer): TraceStatus {
  const status: TraceStatus = { id: "", vertex: "", name: "", current: 0, total: 0 };
  for (const { field, wire } of readFields(buf)) {
    switch (field) {
      case 1:
        status.id = asString(wire);
        break;
      case 2:
        status.vertex = asString(wire);
        break;
      case 3:
        status.name = asString(wire);
        break;
      case 4:
        status.current = asNumber(wire);
        break;
      case 5:
        status.total = asNumber(wire);
        break;
    }
  }
  return status;
}

function decodeLog(buf: Buffer): TraceLog {
  const log: TraceLog = { vertex: "", stream: 0, data: Buffer.alloc(0) };
  for (const { field, wire } of readFields(buf)) {
    switch (field) {
      case 1:
        log.vertex = asString(wire);
        break;
      case 3:
        log.stream = asNumber(wire);
        break;
      case 4:
        log.data = asBytes(wire);
        break;
    }
  }
  return log;
}

export function decodeStatusResponse(buf: Buffer): TraceStatusResponse {
  const out: TraceStatusResponse = { vertexes: [], statuses: [], logs: [] };
  for (const { field, wire } of readFields(buf)) {
    if (wire.wireType !== 2) continue;
    if (field === 1) out.vertexes.push(decodeVertex(wire.value));
    else if (field === 2) out.statuses.push(decodeStatus(wire.value));
    else if (field === 3) out.logs.push(decodeLog(wire.value));
  }
  return out;
}

/** Decodes the `aux` of a `moby.buildkit.trace` line (a base64 string). */
export function decodeTraceAux(aux: string): TraceStatusResponse {
  return decodeStatusResponse(Buffer.from(aux, "base64"));
}

/**
 * The protobuf messages of the gRPC services a build session serves, hand-coded from their .proto
 * definitions (field numbers are the wire contract):
 * - moby/buildkit session/secrets/secrets.proto (package moby.buildkit.secrets.v1):
 *     GetSecretRequest { string ID = 1; map<string, string> annotations = 2; }
 *     GetSecretResponse { bytes data = 1; }
 * - grpc/health/v1/health.proto (package grpc.health.v1):
 *     HealthCheckRequest { string service = 1; }
 *     HealthCheckResponse { ServingStatus status = 1; }  // UNKNOWN 0, SERVING 1, NOT_SERVING 2
 */
import { asString, lengthDelimitedField, readFields, varintField } from "./protobuf.js";

export const GET_SECRET_METHOD = "/moby.buildkit.secrets.v1.Secrets/GetSecret";
export const HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check";

export interface GetSecretRequest {
  id: string;
  annotations: Map<string, string>;
}

export function decodeGetSecretRequest(buf: Buffer): GetSecretRequest {
  const request: GetSecretRequest = { id: "", annotations: new Map() };
  for (const { field, wire } of readFields(buf)) {
    if (field === 1) request.id = asString(wire);
    else if (field === 2 && wire.wireType === 2) {
      // A map entry is an embedded message { key = 1; value = 2; }.
      let key = "";
      let value = "";
      for (const entry of readFields(wire.value)) {
        if (entry.field === 1) key = asString(entry.wire);
        else if (entry.field === 2) value = asString(entry.wire);
      }
      request.annotations.set(key, value);
    }
  }
  return request;
}

export function encodeGetSecretRequest(request: { id: string; annotations?: ReadonlyMap<string, string> }): Buffer {
  const parts = [lengthDelimitedField(1, request.id)];
  for (const [key, value] of request.annotations ?? []) {
    parts.push(lengthDelimitedField(2, Buffer.concat([lengthDelimitedField(1, key), lengthDelimitedField(2, value)])));
  }
  return Buffer.concat(parts);
}

export function encodeGetSecretResponse(data: Buffer): Buffer {
  // proto3 leaves a default (empty) field out.
  return data.length === 0 ? Buffer.alloc(0) : lengthDelimitedField(1, data);
}

export function decodeGetSecretResponse(buf: Buffer): Buffer {
  let data: Buffer = Buffer.alloc(0);
  for (const { field, wire } of readFields(buf)) if (field === 1 && wire.wireType === 2) data = wire.value;
  return data;
}

export const ServingStatus = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2 } as const;

export function decodeHealthCheckRequest(buf: Buffer): { service: string } {
  let service = "";
  for (const { field, wire } of readFields(buf)) if (field === 1) service = asString(wire);
  return { service };
}

export function encodeHealthCheckResponse(status: number): Buffer {
  return status === 0 ? Buffer.alloc(0) : varintField(1, status);
}

/**
 * A fault-injecting HTTP proxy put in front of the test registry. Each request that matches the
 * plan takes the next fault from its list (then `then`, by default a clean pass-through): an error
 * status (429 with or without Retry-After, 5xx), a reset before answering, a reset in the middle of
 * the body, a slow drip, a truncated body, a body replaced by invalid JSON, or no answer at all.
 * Every request is logged so tests can count attempts.
 */
import http from "node:http";
import type { Socket } from "node:net";
import { FaultCursor, type PlanOf } from "./faultPlan.js";
import { listenOnLoopback } from "./loopbackServer.js";

export type Fault =
  | { kind: "pass" }
  | { kind: "status"; status: number; retryAfter?: string; headers?: Record<string, string>; body?: string }
  /** Close the connection before any answer. */
  | { kind: "reset" }
  /** Send the real status and headers and half the body, then reset the connection. */
  | { kind: "reset-mid-body" }
  /** The real answer, its body sent `chunkBytes` at a time every `intervalMs`. */
  | { kind: "drip"; intervalMs: number; chunkBytes?: number }
  /** The real headers (full Content-Length) but only half the body, then the connection ends. */
  | { kind: "truncate" }
  /** The real status and headers (digest included), the body replaced by text that is not JSON. */
  | { kind: "invalid-json" }
  /** Accept the request and never answer. */
  | { kind: "hang" };

export type FaultPlan = PlanOf<Fault>;

export interface ProxiedRequest {
  method: string;
  path: string;
  fault: Fault["kind"];
  /** The Authorization header the client sent, so tests can scan it was never logged elsewhere. */
  authorization?: string;
}

export interface FaultProxy {
  host: string;
  url: string;
  requests: ProxiedRequest[];
  /** Replaces the plan (and resets its position). */
  setPlan(plan: FaultPlan | Fault[]): void;
  stop(): Promise<void>;
}

export async function startFaultProxy(target: string, plan: FaultPlan | Fault[] = []): Promise<FaultProxy> {
  const upstream = new URL(target);
  const cursor = new FaultCursor<Fault>(plan);
  const requests: ProxiedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const nextFault = (method: string, path: string): Fault => cursor.next(method, path) as Fault;

  const server = http.createServer((req, res) => {
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    const fault = nextFault(method, path);
    requests.push({ method, path, fault: fault.kind, authorization: req.headers.authorization });
    const body: Buffer[] = [];
    req.on("data", (c: Buffer) => body.push(c));
    req.on("end", () => {
      if (fault.kind === "reset") return req.socket.destroy();
      if (fault.kind === "hang") return;
      if (fault.kind === "status") {
        const headers: Record<string, string> = { "content-type": "application/json", ...fault.headers };
        if (fault.retryAfter !== undefined) headers["retry-after"] = fault.retryAfter;
        res.writeHead(fault.status, headers);
        res.end(fault.body ?? JSON.stringify({ errors: [{ code: fault.status === 429 ? "TOOMANYREQUESTS" : "UNAVAILABLE", message: "injected fault" }] }));
        return;
      }
      forward(method, path, req.headers, Buffer.concat(body))
        .then((answer) => deliver(fault, method, answer, res, req.socket))
        .catch(() => req.socket.destroy());
    });
  });

  const forward = (method: string, path: string, headers: http.IncomingHttpHeaders, body: Buffer) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      const outgoing = { ...headers, host: upstream.host, connection: "close" };
      const request = http.request(new URL(path, upstream), { method, headers: outgoing, agent: false }, (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (c: Buffer) => chunks.push(c));
        response.on("end", () => resolve({ status: response.statusCode ?? 502, headers: response.headers, body: Buffer.concat(chunks) }));
        response.on("error", reject);
      });
      request.on("error", reject);
      request.end(body.length ? body : undefined);
    });

  const deliver = (
    fault: Fault,
    method: string,
    answer: { status: number; headers: http.IncomingHttpHeaders; body: Buffer },
    res: http.ServerResponse,
    socket: Socket,
  ) => {
    const headers = { ...answer.headers };
    delete headers.connection;
    delete headers["transfer-encoding"];
    const { body } = answer;
    switch (fault.kind) {
      case "reset-mid-body": {
        res.writeHead(answer.status, { ...headers, "content-length": String(body.length) });
        res.write(body.subarray(0, Math.floor(body.length / 2)), () => socket.destroy());
        return;
      }
      case "truncate": {
        res.writeHead(answer.status, { ...headers, "content-length": String(body.length) });
        res.write(body.subarray(0, Math.floor(body.length / 2)), () => socket.end());
        return;
      }
      case "invalid-json": {
        const garbage = Buffer.from(method === "HEAD" ? "" : "<html>not json{".padEnd(Math.max(16, body.length), "#"));
        res.writeHead(answer.status, { ...headers, "content-length": String(method === "HEAD" ? body.length : garbage.length) });
        res.end(method === "HEAD" ? undefined : garbage);
        return;
      }
      case "drip": {
        res.writeHead(answer.status, headers);
        const size = fault.chunkBytes ?? 1;
        let offset = 0;
        const tick = () => {
          if (offset >= body.length || res.destroyed) {
            res.end();
            return;
          }
          res.write(body.subarray(offset, offset + size));
          offset += size;
          const timer = setTimeout(() => {
            timers.delete(timer);
            tick();
          }, fault.intervalMs);
          timers.add(timer);
        };
        if (method === "HEAD") {
          const timer = setTimeout(() => res.end(), fault.intervalMs * 20);
          timers.add(timer);
          return;
        }
        tick();
        return;
      }
      default:
        res.writeHead(answer.status, headers);
        res.end(method === "HEAD" ? undefined : body);
    }
  };

  const listening = await listenOnLoopback(server, timers);
  return {
    host: listening.host,
    url: listening.url,
    requests,
    setPlan: (next) => cursor.set(next),
    stop: listening.stop,
  };
}

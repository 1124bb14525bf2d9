/**
 * A fault-injecting proxy for PUSHES, put between a client (the Docker daemon, or RegistryClient)
 * and the test registry. Unlike `startFaultProxy` it streams request bodies (layer uploads are not
 * held in memory) and keeps the client's Host header, so the registry writes upload `Location`
 * URLs that point back at the proxy — every PATCH/PUT of a blob upload passes through it too.
 *
 * The daemon treats a registry on 127.0.0.0/8 as insecure (plain http), so a loopback proxy port
 * works as a push target without daemon configuration.
 */
import http from "node:http";
import type { Socket } from "node:net";
import { FaultCursor, type PlanOf } from "./faultPlan.js";
import { listenOnLoopback } from "./loopbackServer.js";
import type { Fault } from "./faultProxy.js";

export type PushFault =
  | Fault
  /** Forward half of the request body (a layer upload), then reset both connections. */
  | { kind: "reset-mid-upload" };

export type PushFaultPlan = PlanOf<PushFault>;

export interface PushProxiedRequest {
  method: string;
  path: string;
  fault: PushFault["kind"];
  status?: number;
  /** The Authorization header sent (so tests can check it is never reported elsewhere). */
  authorization?: string;
}

export interface PushFaultProxy {
  /** `127.0.0.1:<port>` — use it as the image's registry. */
  host: string;
  url: string;
  requests: PushProxiedRequest[];
  setPlan(plan: PushFaultPlan | PushFault[]): void;
  stop(): Promise<void>;
}

/** Request matchers for the steps of a push (distribution API paths). */
export const pushSteps = {
  blobHead: (r: { method: string; path: string }) => r.method === "HEAD" && r.path.includes("/blobs/"),
  uploadStart: (r: { method: string; path: string }) => r.method === "POST" && r.path.includes("/blobs/uploads/"),
  uploadData: (r: { method: string; path: string }) => (r.method === "PATCH" || r.method === "PUT") && r.path.includes("/blobs/uploads/"),
  manifestPut: (r: { method: string; path: string }) => r.method === "PUT" && r.path.includes("/manifests/"),
};

export async function startPushFaultProxy(target: string, plan: PushFaultPlan | PushFault[] = []): Promise<PushFaultProxy> {
  const upstream = new URL(target);
  const cursor = new FaultCursor<PushFault>(plan);
  const requests: PushProxiedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  const nextFault = (method: string, path: string): PushFault => cursor.next(method, path) as PushFault;

  const server = http.createServer((req, res) => {
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    const fault = nextFault(method, path);
    const entry: PushProxiedRequest = { method, path, fault: fault.kind, authorization: req.headers.authorization };
    requests.push(entry);

    if (fault.kind === "status" || fault.kind === "reset" || fault.kind === "hang") {
      req.resume();
      req.on("end", () => {
        if (fault.kind === "reset") return req.socket.destroy();
        if (fault.kind === "hang") return;
        const headers: Record<string, string> = { "content-type": "application/json", ...fault.headers };
        if (fault.retryAfter !== undefined) headers["retry-after"] = fault.retryAfter;
        entry.status = fault.status;
        res.writeHead(fault.status, headers);
        res.end(
          fault.body ??
            JSON.stringify({
              errors: [{ code: fault.status === 429 ? "TOOMANYREQUESTS" : fault.status === 401 ? "UNAUTHORIZED" : "UNAVAILABLE", message: "injected fault" }],
            }),
        );
      });
      return;
    }

    // Forward, keeping the client's Host so the registry's Location headers name the proxy.
    const outgoing = http.request(new URL(path, upstream), { method, headers: { ...req.headers, connection: "close" }, agent: false }, (answer) => {
      entry.status = answer.statusCode;
      const chunks: Buffer[] = [];
      answer.on("data", (c: Buffer) => chunks.push(c));
      answer.on("error", () => req.socket.destroy());
      answer.on("end", () => deliver(fault, method, answer, Buffer.concat(chunks), res, req.socket));
    });
    outgoing.on("error", () => req.socket.destroy());

    if (fault.kind === "reset-mid-upload") {
      const total = Number(req.headers["content-length"] ?? 0);
      let sent = 0;
      req.on("data", (chunk: Buffer) => {
        const room = total > 0 ? Math.floor(total / 2) - sent : chunk.length;
        if (room > 0) outgoing.write(chunk.subarray(0, room));
        sent += chunk.length;
        if (total === 0 || sent >= total / 2) {
          outgoing.destroy();
          req.socket.destroy();
        }
      });
      return;
    }
    req.pipe(outgoing);
  });

  const deliver = (fault: PushFault, method: string, answer: http.IncomingMessage, body: Buffer, res: http.ServerResponse, socket: Socket) => {
    const headers = { ...answer.headers };
    delete headers.connection;
    delete headers["transfer-encoding"];
    const status = answer.statusCode ?? 502;
    switch (fault.kind) {
      case "reset-mid-body":
        res.writeHead(status, { ...headers, "content-length": String(body.length) });
        res.write(body.subarray(0, Math.floor(body.length / 2)), () => socket.destroy());
        return;
      case "truncate":
        res.writeHead(status, { ...headers, "content-length": String(body.length) });
        res.write(body.subarray(0, Math.floor(body.length / 2)), () => socket.end());
        return;
      case "invalid-json": {
        const garbage = Buffer.from("<html>not json{".padEnd(Math.max(16, body.length), "#"));
        res.writeHead(status, { ...headers, "content-length": String(method === "HEAD" ? body.length : garbage.length) });
        res.end(method === "HEAD" ? undefined : garbage);
        return;
      }
      case "drip": {
        // The answer held back: headers and body trickle out `chunkBytes` every `intervalMs`.
        const size = fault.chunkBytes ?? 1;
        later(fault.intervalMs, () => {
          res.writeHead(status, headers);
          let offset = 0;
          const tick = () => {
            if (offset >= body.length || res.destroyed || method === "HEAD") return void res.end();
            res.write(body.subarray(offset, offset + size));
            offset += size;
            later(fault.intervalMs, tick);
          };
          tick();
        });
        return;
      }
      default:
        res.writeHead(status, headers);
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

/**
 * One HTTP exchange on node:http/https with keep-alive agents. Built on the raw modules rather than
 * fetch so each failure is told apart precisely: refused/unreachable, connect timeout, idle timeout
 * (a stalled server), total deadline (a dripping one: connect, headers and the whole body must fit
 * in it), reset mid-body and truncated body all surface as a `TransportError` with a `reason` the
 * retry policy can act on. Bodies are capped: a registry
 * answer bigger than `maxBodyBytes` is refused, never buffered.
 */
import http from "node:http";
import https from "node:https";

/** `timeout`: no connection or no data for a while (retryable); `deadline`: the whole exchange ran out of time (not retried). */
export type TransportFailure = "connect" | "reset" | "timeout" | "deadline" | "truncated" | "too-large" | "aborted";

export class TransportError extends Error {
  constructor(
    readonly reason: TransportFailure,
    message: string,
    readonly syscallCode?: string,
  ) {
    super(message);
    this.name = "TransportError";
  }
  get retryable(): boolean {
    return this.reason !== "too-large" && this.reason !== "aborted" && this.reason !== "deadline";
  }
}

export interface HttpRequest {
  method: "GET" | "HEAD" | "PUT" | "POST" | "PATCH";
  url: URL;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Time allowed to open the TCP (and TLS) connection. */
  connectTimeoutMs: number;
  /** Longest silence allowed while waiting for or reading the answer. */
  idleTimeoutMs: number;
  /** Deadline for the whole exchange — connect, headers and body (guards against a slow drip that never goes idle). */
  totalTimeoutMs: number;
  maxBodyBytes: number;
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

// Idle keep-alive sockets are reused across checks (one TLS handshake per registry per process).
const agents = {
  "http:": new http.Agent({ keepAlive: true, maxSockets: 32 }),
  "https:": new https.Agent({ keepAlive: true, maxSockets: 32 }),
};

export function httpRequest(request: HttpRequest): Promise<HttpResponse> {
  return new Promise<HttpResponse>((resolve, reject) => {
    const { url } = request;
    const transport = url.protocol === "https:" ? https : http;
    const agent = agents[url.protocol as "http:" | "https:"];
    if (!agent) {
      reject(new TransportError("connect", `unsupported protocol ${url.protocol}`));
      return;
    }
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const finish = (error: Error | null, response?: HttpResponse) => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      request.signal?.removeEventListener("abort", onAbort);
      if (error) {
        req.destroy();
        reject(error);
      } else resolve(response!);
    };
    const onAbort = () => finish(new TransportError("aborted", "request aborted"));

    const body = request.body === undefined ? undefined : Buffer.from(request.body);
    const headers: Record<string, string> = { "user-agent": "kiln", ...request.headers };
    if (body) headers["content-length"] = String(body.length);

    const req = transport.request(url, { method: request.method, headers, agent });
    timers.push(setTimeout(() => finish(new TransportError("deadline", `no complete answer within ${request.totalTimeoutMs} ms`)), request.totalTimeoutMs));
    req.setTimeout(request.idleTimeoutMs, () => finish(new TransportError("timeout", `no data for ${request.idleTimeoutMs} ms`)));
    req.on("socket", (socket) => {
      // A reused keep-alive socket is already connected; only a new one gets a connect deadline.
      if (!socket.connecting) return;
      const connectTimer = setTimeout(
        () => finish(new TransportError("timeout", `could not connect within ${request.connectTimeoutMs} ms`)),
        request.connectTimeoutMs,
      );
      timers.push(connectTimer);
      socket.once("connect", () => clearTimeout(connectTimer));
    });
    req.on("error", (error: NodeJS.ErrnoException) => finish(classify(error)));
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let received = 0;
      const declared = res.headers["content-length"] === undefined ? undefined : Number(res.headers["content-length"]);
      if (declared !== undefined && declared > request.maxBodyBytes && request.method !== "HEAD") {
        finish(new TransportError("too-large", `answer of ${declared} bytes exceeds the ${request.maxBodyBytes}-byte limit`));
        return;
      }
      res.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received > request.maxBodyBytes) {
          finish(new TransportError("too-large", `answer exceeds the ${request.maxBodyBytes}-byte limit`));
          return;
        }
        chunks.push(chunk);
      });
      // The peer closed (FIN or RST) before the declared length arrived.
      res.on("aborted", () =>
        finish(
          declared !== undefined && received < declared
            ? new TransportError("truncated", `answer truncated: connection closed after ${received} of ${declared} bytes`)
            : new TransportError("reset", "connection closed in the middle of the answer"),
        ),
      );
      res.on("error", (error: NodeJS.ErrnoException) => finish(classify(error, true)));
      res.on("end", () => {
        if (!res.complete || (declared !== undefined && request.method !== "HEAD" && received < declared)) {
          finish(new TransportError("truncated", `answer truncated: ${received} of ${declared ?? "?"} bytes`));
          return;
        }
        finish(null, { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
    });
    if (request.signal) {
      if (request.signal.aborted) return onAbort();
      request.signal.addEventListener("abort", onAbort, { once: true });
    }
    req.end(body);
  });
}

function classify(error: NodeJS.ErrnoException, midBody = false): TransportError {
  if (error instanceof TransportError) return error;
  const code = error.code;
  if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EHOSTUNREACH" || code === "ENETUNREACH") {
    return new TransportError("connect", `cannot connect (${code})`, code);
  }
  if (code === "ETIMEDOUT") return new TransportError("timeout", "connection timed out", code);
  if (midBody || code === "ECONNRESET" || code === "EPIPE" || error.message === "socket hang up" || error.message === "aborted") {
    return new TransportError("reset", `connection reset${midBody ? " in the middle of the answer" : ""} (${code ?? error.message})`, code);
  }
  return new TransportError("reset", `network error (${code ?? error.message})`, code);
}

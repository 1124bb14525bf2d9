/**
 * The connection left by an HTTP upgrade, as one Duplex that starts with the bytes Node's HTTP
 * client already read past the 101 response (`head`: here the daemon's HTTP/2 preface and first
 * SETTINGS frame, sent at once). `socket.unshift(head)` is not enough: HTTP/2 on a net.Socket reads
 * its native handle directly and would never see unshifted bytes, so it gets this JS stream instead.
 */
import { Duplex } from "node:stream";
import type { Socket } from "node:net";

export class HijackedStream extends Duplex {
  private socketClosed = false;

  constructor(
    private readonly socket: Socket,
    head: Buffer,
  ) {
    super();
    if (head.length > 0) this.push(head);
    socket.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("error", (error) => this.destroy(error));
    socket.once("close", () => {
      this.socketClosed = true;
      this.destroy();
    });
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(callback);
  }

  /** Completes (and 'close' is emitted) only once the socket's handle is released. */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.socketClosed) return callback(error);
    this.socket.once("close", () => callback(error));
    this.socket.destroy();
  }
}

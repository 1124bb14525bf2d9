/**
 * Keeps a build lease while the builder works, and decides whether it may push.
 *
 * A lease with an expiry is renewed every third of its length (an unref'd timer). Each renewal
 * that the provider confirms extends the lease's validity to a full lease from the moment the
 * request was sent (a conservative local deadline: the provider counts from when it received it).
 *
 * `beforePush` (handed to the builder) renews once more, right before the push, and:
 *  - confirmed → push;
 *  - the provider says the lease is gone (expired, another host holds it now) → LeaseLostError;
 *  - the provider cannot be reached → push only while the local deadline has a safety margin left
 *    (nobody else can have the lease before it expires); past that, LeaseLostError — the host may be
 *    cut off while another one took over.
 */
import { LeaseLostError } from "../errors.js";
import { emit, type EventListener } from "../events.js";
import { redactSecrets } from "../redact.js";
import type { Lease } from "./types.js";

export interface LeaseKeeperOptions {
  provider: string;
  image: string;
  onEvent: EventListener;
}

type Renewal = "held" | "lost" | "unreachable";

export class LeaseKeeper {
  readonly fencingToken: number;
  readonly waited: boolean;
  private validUntil: number;
  private lostReason: string | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private renewing: Promise<Renewal> | undefined;
  private warnedUnreachable = false;
  private released = false;

  constructor(
    private readonly lease: Lease,
    private readonly options: LeaseKeeperOptions,
    acquiredAt = Date.now(),
  ) {
    this.fencingToken = lease.fencingToken;
    this.waited = lease.waited;
    this.validUntil = lease.leaseMs === undefined ? Infinity : acquiredAt + lease.leaseMs;
    if (lease.leaseMs !== undefined) {
      this.timer = setInterval(() => void this.renew(), Math.max(50, Math.floor(lease.leaseMs / 3)));
      this.timer.unref();
    }
  }

  /** The hook the builder calls before each push (see the file comment). */
  readonly beforePush = async (): Promise<void> => {
    if (this.lostReason !== undefined) throw this.lostError();
    if (this.lease.leaseMs === undefined) return;
    await this.renewing; // a renewal already on its way answers first
    const result = await this.renew();
    if (result === "held") return;
    if (result === "lost") throw this.lostError();
    const left = this.validUntil - Date.now();
    if (left > this.safetyMarginMs()) {
      emit(this.options.onEvent, {
        type: "warning",
        image: this.options.image,
        message: `cannot reach the ${this.options.provider} lock provider to confirm the build lease; it is still valid for ${left} ms, pushing`,
      });
      return;
    }
    this.markLost(`the ${this.options.provider} lock provider could not be reached to renew the lease, and it has expired (another host may have taken over)`);
    throw this.lostError();
  };

  /** Stops renewing and gives the lease up (errors are reported, never thrown: the build's own outcome matters). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    try {
      await this.lease.release();
    } catch (error) {
      emit(this.options.onEvent, {
        type: "warning",
        image: this.options.image,
        message: `could not release the build lease with ${this.options.provider} (it expires on its own): ${redactSecrets((error as Error)?.message ?? String(error))}`,
      });
    }
  }

  private safetyMarginMs(): number {
    return Math.max(200, Math.floor((this.lease.leaseMs ?? 0) / 10));
  }

  private renew(): Promise<Renewal> {
    if (this.lostReason !== undefined || this.released) return Promise.resolve("lost");
    if (this.renewing) return this.renewing;
    const sentAt = Date.now();
    this.renewing = this.lease
      .renew()
      .then(
        (held): Renewal => {
          if (held) {
            this.validUntil = sentAt + (this.lease.leaseMs ?? 0);
            return "held";
          }
          this.markLost("the lease expired and was taken over by another holder");
          return "lost";
        },
        (error): Renewal => {
          if (!this.warnedUnreachable) {
            this.warnedUnreachable = true;
            emit(this.options.onEvent, {
              type: "warning",
              image: this.options.image,
              message: `cannot renew the build lease with ${this.options.provider}: ${redactSecrets((error as Error)?.message ?? String(error))}`,
            });
          }
          return "unreachable";
        },
      )
      .finally(() => {
        this.renewing = undefined;
      });
    return this.renewing;
  }

  private markLost(reason: string): void {
    if (this.lostReason !== undefined) return;
    this.lostReason = reason;
    if (this.timer) clearInterval(this.timer);
    emit(this.options.onEvent, { type: "lock.lost", image: this.options.image, provider: this.options.provider, message: reason });
  }

  private lostError(): LeaseLostError {
    return new LeaseLostError(`The build lease for ${this.options.image} was lost before the push: ${this.lostReason}`, {
      hint: "Nothing was pushed under the lost lease. Another host builds the image now; run the build again to use its result.",
      details: { image: this.options.image, provider: this.options.provider, fencingToken: this.fencingToken },
    });
  }
}

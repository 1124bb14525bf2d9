// The cursor both fault proxies walk: faults in order for matching requests, then `then` (default pass).
export interface PlanOf<F extends { kind: string }> {
  /** Faults applied, in order, to matching requests. */
  faults: F[];
  /** Which requests the plan applies to (default: every request). */
  match?: (request: { method: string; path: string }) => boolean;
  /** What matching requests get once `faults` is used up (default pass). */
  then?: F;
}

export class FaultCursor<F extends { kind: string }> {
  private plan: PlanOf<F>;
  private position = 0;

  constructor(plan: PlanOf<F> | F[]) {
    this.plan = Array.isArray(plan) ? { faults: plan } : plan;
  }

  /** Replaces the plan and resets its position. */
  set(plan: PlanOf<F> | F[]): void {
    this.plan = Array.isArray(plan) ? { faults: plan } : plan;
    this.position = 0;
  }

  next(method: string, path: string): F | { kind: "pass" } {
    if (this.plan.match && !this.plan.match({ method, path })) return { kind: "pass" };
    const fault = this.plan.faults[this.position];
    if (fault) {
      this.position++;
      return fault;
    }
    return this.plan.then ?? { kind: "pass" };
  }
}

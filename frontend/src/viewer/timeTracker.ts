// Time spent on the scan, counted only while the tab is visible; reset at every save.
export class VisibleTimeTracker {
  private accumulated = 0;
  private since: number | null = null;

  constructor() {
    if (document.visibilityState === "visible") this.since = performance.now();
    document.addEventListener("visibilitychange", this.onVisibility);
  }

  private onVisibility = () => {
    if (document.visibilityState === "visible") {
      this.since ??= performance.now();
    } else if (this.since !== null) {
      this.accumulated += performance.now() - this.since;
      this.since = null;
    }
  };

  /** Seconds counted since the last reset. */
  seconds(): number {
    const running = this.since === null ? 0 : performance.now() - this.since;
    return (this.accumulated + running) / 1000;
  }

  /** Start a new period; returns the seconds of the one that ended. */
  reset(): number {
    const spent = this.seconds();
    this.accumulated = 0;
    this.since = document.visibilityState === "visible" ? performance.now() : null;
    return spent;
  }

  /** Give back seconds taken by a save that failed, so they count with the next one. */
  restore(seconds: number): void {
    this.accumulated += seconds * 1000;
  }

  destroy(): void {
    document.removeEventListener("visibilitychange", this.onVisibility);
  }
}

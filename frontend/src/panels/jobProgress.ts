// Progress of long work: a native <progress> with a readable line of text, and polling of a
// job's status route until it is finished.
import { el } from "./dom";

let counter = 0;

export class ProgressView {
  readonly root: HTMLElement;
  private readonly bar: HTMLProgressElement;
  private readonly text: HTMLElement;

  constructor(label: string) {
    counter += 1;
    const id = `job-progress-${counter}`;
    this.bar = el("progress", { id, max: 1 });
    this.text = el("span", { className: "job-text", attrs: { "aria-live": "polite" } });
    this.root = el(
      "div",
      { className: "job" },
      el("label", { htmlFor: id }, label),
      this.bar,
      this.text,
    );
  }

  /** fraction in [0, 1]; null shows an indeterminate bar (work started, size unknown). */
  set(fraction: number | null, text: string): void {
    if (fraction === null) this.bar.removeAttribute("value");
    else this.bar.value = Math.max(0, Math.min(1, fraction));
    this.bar.setAttribute(
      "aria-valuetext",
      fraction === null ? text : `${Math.round(100 * fraction)} percent: ${text}`,
    );
    this.text.textContent = text;
  }

  finish(kind: "ok" | "error", text: string): void {
    this.set(kind === "ok" ? 1 : (this.bar.value ?? 0), text);
    this.root.classList.toggle("job-failed", kind === "error");
    this.root.classList.toggle("job-done", kind === "ok");
  }
}

export interface Poll<T> {
  /** Resolves with the last value once isDone(value) holds; rejects after repeated failures. */
  done: Promise<T>;
  stop: () => void;
}

/** Call `fetchOnce` every `intervalMs` (slower while the tab is hidden) until `isDone`. */
export function poll<T>(
  fetchOnce: () => Promise<T>,
  onUpdate: (value: T) => void,
  isDone: (value: T) => boolean,
  intervalMs = 1000,
): Poll<T> {
  let stopped = false;
  let timer: number | undefined;
  let failures = 0;
  const done = new Promise<T>((resolve, reject) => {
    const tick = async () => {
      if (stopped) return;
      try {
        const value = await fetchOnce();
        failures = 0;
        if (stopped) return;
        onUpdate(value);
        if (isDone(value)) {
          resolve(value);
          return;
        }
      } catch (error) {
        // A blip (a restart, a dropped connection) should not end the watch; five in a row do.
        failures += 1;
        if (failures >= 5) {
          reject(error);
          return;
        }
      }
      timer = window.setTimeout(tick, document.hidden ? Math.max(intervalMs, 5000) : intervalMs);
    };
    void tick();
  });
  return {
    done,
    stop: () => {
      stopped = true;
      window.clearTimeout(timer);
    },
  };
}

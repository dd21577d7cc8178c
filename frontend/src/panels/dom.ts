// Small DOM and formatting helpers shared by the QC and management pages.
import { errorMessage } from "../api/http";

type Props<K extends keyof HTMLElementTagNameMap> = Partial<
  Omit<HTMLElementTagNameMap[K], "style" | "dataset">
> & {
  attrs?: Record<string, string | number | boolean | null | undefined>;
  dataset?: Record<string, string | number>;
};

/** document.createElement with properties, attributes (`attrs`, for aria-* and the like) and children. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props<K> = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  const { attrs, dataset, ...rest } = props;
  Object.assign(node, rest);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const [name, value] of Object.entries(dataset ?? {})) node.dataset[name] = String(value);
  node.append(
    ...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false),
  );
  return node;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node as T;
}

/** The page's element for a CSS selector; one that is missing is a bug of the template. */
export function $<T extends HTMLElement = HTMLElement>(selector: string): T {
  const node = document.querySelector<T>(selector);
  if (!node) throw new Error(`missing element ${selector}`);
  return node;
}

/** The JSON a Django template put in the page with {{ value|json_script:"id" }}. */
export function pageData<T>(id: string, fallback: T): T {
  const node = document.getElementById(id);
  if (!node?.textContent) return fallback;
  return JSON.parse(node.textContent) as T;
}

/** A message region: role=status for news, role=alert for errors (read out at once). */
export function say(
  region: HTMLElement,
  message: string,
  kind: "info" | "ok" | "error" = "info",
): void {
  region.className = `notice notice-${kind}`;
  region.setAttribute("role", kind === "error" ? "alert" : "status");
  region.textContent = message;
  region.hidden = !message;
}

export function sayError(region: HTMLElement, what: string, error: unknown): void {
  say(region, `${what}: ${errorMessage(error)}`, "error");
}

/** Replace a container's content with an error a person can act on. */
export function showLoadError(root: HTMLElement, what: string, error: unknown): void {
  root.replaceChildren(
    el("p", { className: "error", attrs: { role: "alert" } }, `${what}: ${errorMessage(error)}`),
  );
  root.setAttribute("aria-busy", "false");
}

export function table(
  caption: string,
  headers: string[],
  rows: (Node | string)[][],
  options: { className?: string; captionHidden?: boolean } = {},
): HTMLTableElement {
  return el(
    "table",
    { className: options.className ?? "data" },
    el("caption", { className: options.captionHidden ? "visually-hidden" : "" }, caption),
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { attrs: { scope: "col" } }, h)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))))),
  );
}

// --- formatting ---------------------------------------------------------------------------

export const DASH = "—";

export function pct(value: number | null | undefined, digits = 0): string {
  return value === null || value === undefined ? DASH : `${(100 * value).toFixed(digits)} %`;
}

export function num(value: number | null | undefined, digits = 2): string {
  return value === null || value === undefined || !Number.isFinite(value)
    ? DASH
    : value.toFixed(digits);
}

export function ml(value: number | null | undefined): string {
  return value === null || value === undefined ? DASH : `${value.toFixed(1)} mL`;
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return DASH;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return DASH;
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

/** A <time> element: local date and time, the ISO value machine-readable. */
export function when(iso: string | null | undefined): HTMLElement | string {
  if (!iso) return DASH;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return el("time", { dateTime: iso, title: iso }, date.toLocaleString());
}

/** "3 h ago" style age, for queues. */
export function age(iso: string | null | undefined): string {
  if (!iso) return "";
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 90) return "just now";
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

export const STATE_LABELS: Record<string, string> = {
  not_started: "Not started",
  in_progress: "In progress",
  submitted: "In check",
  needs_revision: "Needs revision",
  checked: "Checked",
  spot_check: "In spot check",
  curated: "Curated",
  annotating: "Annotating",
  approved: "Approved",
  open: "Open",
  closed: "Closed",
  queued: "Queued",
  running: "Running",
  done: "Done",
  failed: "Failed",
  lost: "Lost",
  skipped: "Skipped",
  done_with_failures: "Done, some failed",
  pending: "Pending",
  pass: "Pass",
  fail: "Fail",
  hidden: "Hidden until you decide",
};

export function badge(state: string): HTMLElement {
  return el("span", { className: `state state-${state}` }, STATE_LABELS[state] ?? state);
}

/** Single-letter shortcuts that stay quiet while the user types in a field. */
export function onKey(key: string, action: () => void): void {
  document.addEventListener("keydown", (evt) => {
    if (evt.ctrlKey || evt.metaKey || evt.altKey || evt.key.toLowerCase() !== key) return;
    const target = evt.target as HTMLElement;
    if (["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName) || target.isContentEditable)
      return;
    evt.preventDefault();
    action();
  });
}

/** Disable a button while `work` runs, so a double click cannot send twice. */
export async function busy<T>(button: HTMLButtonElement, work: () => Promise<T>): Promise<T> {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

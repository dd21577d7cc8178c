// The verdict form of a check or a spot check (pass / fail with findings), the list of a
// review's findings, and the visible-time counter behind `time_spent_s`.
import { errorMessage } from "../api/http";
import {
  FINDING_KINDS,
  kindLabel,
  type Finding,
  type FindingKind,
  type VerdictIn,
} from "../api/qc";
import { confirmOnce } from "./confirm";
import { badge, DASH, el, say, when } from "./dom";
import { sliceNumber, sliceWords, sliceZ, type SliceGeometry } from "./slices";

const MAX_FINDING_TEXT = 2000; // qc/services/rules.py

export interface ScanBounds extends SliceGeometry {
  slices: number;
  rows: number;
  columns: number;
}

/** Seconds the tab was visible since the page opened (the reviewer's time on this scan). */
export class VisibleTime {
  private total = 0;
  private since: number | null = document.hidden ? null : performance.now();

  constructor() {
    document.addEventListener("visibilitychange", () => {
      if (document.hidden && this.since !== null) {
        this.total += performance.now() - this.since;
        this.since = null;
      } else if (!document.hidden && this.since === null) {
        this.since = performance.now();
      }
    });
  }

  seconds(): number {
    const running = this.since === null ? 0 : performance.now() - this.since;
    return Math.round((this.total + running) / 100) / 10;
  }
}

/** Where a finding is, as a person reads it: "slice 12, x 40, y 51" (slices from the head end). */
export function whereText(f: Finding, g: SliceGeometry | null = null): string {
  if (f.slice === null) return "whole scan";
  const pos = f.position ? `, x ${Math.round(f.position[0])}, y ${Math.round(f.position[1])}` : "";
  return `${sliceWords(f.slice, g)}${pos}`;
}

/** A review's findings as a list; `link` gives a viewer URL for a finding with a slice. */
export function findingsList(
  findings: Finding[],
  link?: (f: Finding) => string | null,
  g: SliceGeometry | null = null,
): HTMLElement {
  if (!findings.length) return el("p", { className: "muted" }, "No findings.");
  return el(
    "ol",
    { className: "findings" },
    ...findings.map((f) => {
      const href = link?.(f) ?? null;
      return el(
        "li",
        { className: "finding" },
        el("strong", {}, kindLabel(f.kind)),
        " · ",
        el("span", { className: "where" }, whereText(f, g)),
        f.text ? el("p", { className: "finding-text" }, f.text) : null,
        href
          ? el("a", { href, className: "button small" }, `Show ${whereText(f, g)} in the viewer`)
          : null,
      );
    }),
  );
}

/** A closed review (another checker's, or an earlier round's) as a small card. */
export function reviewCard(
  title: string,
  verdict: string,
  findings: Finding[],
  decidedAt: string | null,
  link?: (f: Finding) => string | null,
  g: SliceGeometry | null = null,
): HTMLElement {
  return el(
    "section",
    { className: "review" },
    el("h3", {}, title, " ", badge(verdict)),
    el("p", { className: "muted" }, "Decided ", decidedAt ? when(decidedAt) : DASH),
    findingsList(findings, link, g),
  );
}

let rowCounter = 0;

function numberInput(label: string, max: number | null, value: number | null): HTMLLabelElement {
  rowCounter += 1;
  const input = el("input", {
    type: "number",
    min: "0",
    step: "1",
    inputMode: "numeric",
    id: `finding-field-${rowCounter}`,
  });
  if (max !== null) input.max = String(max);
  if (value !== null) input.value = String(value);
  return el("label", { className: "field small" }, el("span", {}, label), input);
}

function findingRow(bounds: ScanBounds | null, initial?: Partial<Finding>): HTMLLIElement {
  const kind = el(
    "select",
    { className: "finding-kind" },
    ...FINDING_KINDS.map((k) =>
      el(
        "option",
        { value: k.value, selected: k.value === (initial?.kind ?? "missed_lesion") },
        k.label,
      ),
    ),
  );
  const slice = numberInput(
    bounds ? `Slice (1–${bounds.slices}, 1 = top)` : "Slice index (from 0)",
    bounds ? bounds.slices : null,
    initial?.slice === null || initial?.slice === undefined
      ? null
      : bounds
        ? sliceNumber(initial.slice, bounds)
        : initial.slice,
  );
  if (bounds) slice.querySelector("input")!.min = "1";
  slice.classList.add("finding-slice");
  const x = numberInput(
    bounds ? `x (0–${bounds.columns - 1})` : "x",
    bounds ? bounds.columns - 1 : null,
    initial?.position?.[0] ?? null,
  );
  x.classList.add("finding-x");
  const y = numberInput(
    bounds ? `y (0–${bounds.rows - 1})` : "y",
    bounds ? bounds.rows - 1 : null,
    initial?.position?.[1] ?? null,
  );
  y.classList.add("finding-y");
  const text = el("textarea", {
    className: "finding-text-input",
    rows: 2,
    maxLength: MAX_FINDING_TEXT,
    value: initial?.text ?? "",
  });
  const remove = el("button", { type: "button", className: "remove-finding" }, "Remove");
  const row = el(
    "li",
    { className: "finding-row" },
    el("label", { className: "field" }, el("span", {}, "Kind"), kind),
    slice,
    x,
    y,
    el("label", { className: "field grow" }, el("span", {}, "What to fix"), text),
    remove,
  );
  remove.addEventListener("click", () => {
    const list = row.parentElement;
    const next = (row.nextElementSibling ?? row.previousElementSibling) as HTMLElement | null;
    row.remove();
    if (list) renumber(list);
    (next?.querySelector("select") ?? document.querySelector<HTMLElement>(".add-finding"))?.focus();
  });
  return row;
}

function renumber(list: Element): void {
  list.querySelectorAll<HTMLLIElement>(".finding-row").forEach((row, i) => {
    row.setAttribute("aria-label", `Finding ${i + 1}`);
    row.querySelector(".remove-finding")?.setAttribute("aria-label", `Remove finding ${i + 1}`);
  });
}

class FindingError extends Error {
  constructor(
    message: string,
    readonly field: HTMLElement,
  ) {
    super(message);
  }
}

function readInt(label: HTMLElement | null): number | null {
  const input = label?.querySelector("input");
  if (!input || input.value.trim() === "") return null;
  return Number(input.value);
}

function readFinding(row: HTMLLIElement, index: number, bounds: ScanBounds | null): Finding {
  const where = `Finding ${index + 1}`;
  const kind = row.querySelector<HTMLSelectElement>(".finding-kind")!.value as FindingKind;
  const text = row.querySelector<HTMLTextAreaElement>(".finding-text-input")!.value.trim();
  const sliceLabel = row.querySelector<HTMLElement>(".finding-slice")!;
  const xLabel = row.querySelector<HTMLElement>(".finding-x")!;
  const yLabel = row.querySelector<HTMLElement>(".finding-y")!;
  const n = readInt(sliceLabel);
  const x = readInt(xLabel);
  const y = readInt(yLabel);
  if (kind === "wrong_scan_label" && n === null && x === null && y === null) {
    return { slice: null, position: null, kind, text };
  }
  const check = (
    value: number | null,
    label: HTMLElement,
    name: string,
    max: number | undefined,
    min = 0,
  ) => {
    const field = label.querySelector("input")!;
    if (value === null) throw new FindingError(`${where}: give the ${name}`, field);
    if (!Number.isInteger(value) || value < min || (max !== undefined && value > max)) {
      const range = max !== undefined ? ` from ${min} to ${max}` : "";
      throw new FindingError(`${where}: the ${name} must be a whole number${range}`, field);
    }
  };
  // The person types the slice number they read in the viewer (1 = top); the API takes z.
  check(n, sliceLabel, "slice", bounds ? bounds.slices : undefined, bounds ? 1 : 0);
  check(x, xLabel, "x position", bounds ? bounds.columns - 1 : undefined);
  check(y, yLabel, "y position", bounds ? bounds.rows - 1 : undefined);
  return { slice: bounds ? sliceZ(n!, bounds) : n, position: [x!, y!], kind, text };
}

function findingsCount(n: number): string {
  return `${n} finding${n === 1 ? "" : "s"}`;
}

/** What a recorded verdict did, in the viewer's words: "Fail recorded — sent back with 1 finding".
 * `pendingOther`: a check whose round waits for the other checker (nothing goes back yet). */
export function recordedWords(verdict: string, findings: number, pendingOther = false): string {
  if (verdict === "pass") return "Pass recorded";
  const back = `sent back with ${findingsCount(findings)}`;
  return pendingOther
    ? `Fail recorded — ${back} once the other checker's verdict is in`
    : `Fail recorded — ${back}`;
}

export interface VerdictFormOptions {
  bounds: ScanBounds | null;
  /** Heading of the form, e.g. "Your verdict on revision 2". */
  title: string;
  time: VisibleTime;
  submit: (body: VerdictIn) => Promise<void>;
}

/** The pass / fail form with a findings editor. Errors, the client's or the API's, are shown in it. */
export function verdictForm(options: VerdictFormOptions): HTMLFormElement {
  const headingId = `verdict-heading-${++rowCounter}`;
  const radio = (value: "pass" | "fail", label: string, hint: string) =>
    el(
      "label",
      { className: `choice choice-${value}` },
      el("input", { type: "radio", name: "verdict", value }),
      el("span", {}, el("strong", {}, label), " ", el("span", { className: "muted" }, hint)),
    );
  const rows = el("ol", { className: "finding-rows" });
  const add = el("button", { type: "button", className: "add-finding" }, "Add finding");
  const notice = el("div", { className: "notice", hidden: true });
  const submit = el(
    "button",
    { type: "submit", className: "primary record-verdict" },
    "Record verdict",
  );
  const form = el(
    "form",
    { className: "card verdict-form", noValidate: true, attrs: { "aria-labelledby": headingId } },
    el("h2", { id: headingId }, options.title),
    el(
      "fieldset",
      { className: "verdict-choice" },
      el("legend", {}, "Verdict"),
      radio("pass", "Pass", "— the annotation is right as it is"),
      radio("fail", "Fail", "— send it back; say what to fix, and where"),
    ),
    el(
      "fieldset",
      { className: "findings-fieldset" },
      el(
        "legend",
        {},
        "Findings ",
        el("span", { className: "muted" }, "(at least one for a fail)"),
      ),
      el(
        "p",
        { className: "muted hint" },
        "Slice is the number the viewer shows (1 = the top slice, towards the head); x and y are pixel columns and rows. ",
        "A wrong scan label needs no place.",
      ),
      rows,
      add,
    ),
    notice,
    el("div", { className: "actions" }, submit),
  );

  const addRow = (initial?: Partial<Finding>) => {
    const row = findingRow(options.bounds, initial);
    rows.append(row);
    renumber(rows);
    return row;
  };
  add.addEventListener("click", () => addRow().querySelector("select")?.focus());
  form.addEventListener("change", (evt) => {
    const target = evt.target as HTMLInputElement;
    // Choosing fail with nothing written yet opens the first finding.
    if (target.name === "verdict" && target.value === "fail" && !rows.children.length) addRow();
  });

  form.addEventListener("submit", async (evt) => {
    evt.preventDefault();
    const chosen = form.querySelector<HTMLInputElement>("input[name=verdict]:checked");
    if (!chosen) {
      say(notice, "Choose pass or fail.", "error");
      form.querySelector<HTMLInputElement>("input[name=verdict]")?.focus();
      return;
    }
    let findings: Finding[];
    try {
      findings = [...rows.querySelectorAll<HTMLLIElement>(".finding-row")].map((row, i) =>
        readFinding(row, i, options.bounds),
      );
    } catch (error) {
      if (error instanceof FindingError) {
        say(notice, error.message, "error");
        error.field.focus();
        return;
      }
      throw error;
    }
    const verdict = chosen.value as "pass" | "fail";
    if (verdict === "fail" && !findings.length) {
      say(notice, "A fail needs at least one finding saying what to fix, and where.", "error");
      add.focus();
      return;
    }
    // Asked once, in the viewer's words (panels/review.ts): a recorded verdict cannot be changed.
    const what =
      verdict === "pass"
        ? "Pass: the annotation is right as it is"
        : `Fail: send it back with ${findingsCount(findings.length)}`;
    notice.hidden = true;
    if (
      !(await confirmOnce(
        submit,
        `${what}? A recorded verdict cannot be changed.`,
        `Record ${verdict}`,
      ))
    ) {
      submit.focus();
      return;
    }
    say(notice, "Recording your verdict…");
    submit.disabled = true;
    try {
      await options.submit({ verdict, findings, time_spent_s: options.time.seconds() });
    } catch (error) {
      say(notice, `The verdict was not recorded: ${errorMessage(error)}`, "error");
      submit.disabled = false;
    }
  });
  return form;
}

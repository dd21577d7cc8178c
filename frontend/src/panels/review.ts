// Reviewing in the viewer: the markers of findings on their slices (a DOM layer over the axial
// view), the reviewer's panel of check mode (place findings by clicking, pass / fail), and the
// annotator's panel of the findings to fix.
import { Enums as CoreEnums } from "@cornerstonejs/core";

import { errorMessage } from "../api/http";
import {
  FINDING_KINDS,
  kindLabel,
  type AnnotatorFindings,
  type Finding,
  type FindingKind,
  type VerdictIn,
} from "../api/qc";
import type { Scene } from "../viewer/scene";
import { confirmOnce } from "./confirm";
import { el, say } from "./dom";
import { sliceWords, type SliceGeometry } from "./slices";
import { VisibleTime } from "./verdictForm";

const MAX_FINDING_TEXT = 2000; // qc/services/rules.py

export interface MarkedFinding {
  finding: Finding;
  /** Short text in the marker, e.g. "1" or "A2". */
  label: string;
  /** Who placed it, for the marker's title ("checker A"). */
  reviewer?: string;
}

/** Markers of findings on the slice shown in the axial view, kept in place at every render. */
export class FindingMarkers {
  private readonly layer: HTMLDivElement;
  private marked: MarkedFinding[] = [];
  /** Hidden with the O key: the image under the markers, unobstructed. */
  private shown = true;

  constructor(
    private readonly scene: Scene,
    element: HTMLElement,
  ) {
    this.layer = el("div", { className: "finding-markers", attrs: { "aria-hidden": "true" } });
    (element.parentElement ?? element).append(this.layer);
    element.addEventListener(CoreEnums.Events.IMAGE_RENDERED, () => this.update());
  }

  set(marked: MarkedFinding[]): void {
    this.marked = marked;
    this.update();
  }

  /** Show or hide the markers (the O key). */
  toggle(): void {
    this.shown = !this.shown;
    this.layer.hidden = !this.shown;
    this.update();
  }

  /** Markers drawn now (those of the slice on screen). */
  visible(): { slice: number; x: number; y: number; label: string }[] {
    return [...this.layer.querySelectorAll<HTMLElement>(".finding-marker")].map((m) => ({
      slice: Number(m.dataset.slice),
      x: Number(m.dataset.x),
      y: Number(m.dataset.y),
      label: m.textContent ?? "",
    }));
  }

  update(): void {
    let z: number;
    try {
      z = this.scene.currentZ();
    } catch {
      return; // not on screen yet
    }
    const markers: HTMLElement[] = [];
    if (!this.shown) {
      this.layer.replaceChildren();
      return;
    }
    for (const { finding, label, reviewer } of this.marked) {
      if (finding.slice !== z || !finding.position) continue;
      const [x, y] = finding.position;
      const [cx, cy] = this.scene.canvasOf(z, y, x);
      // A hollow ring around the voxel and the label on a pin beside it: the small lesion it
      // points at stays visible.
      const marker = el(
        "div",
        {
          className: `finding-marker kind-${finding.kind}`,
          title: `${reviewer ? `${reviewer}: ` : ""}${kindLabel(finding.kind)}${finding.text ? ` — ${finding.text}` : ""}`,
          dataset: { slice: z, x, y },
        },
        el("span", { className: "finding-pin" }, label),
      );
      marker.style.left = `${cx}px`;
      marker.style.top = `${cy}px`;
      markers.push(marker);
    }
    this.layer.replaceChildren(...markers);
  }
}

/** Where a finding is, as a person reads it (slices numbered from the head end). */
export function whereText(f: Finding, g: SliceGeometry | null): string {
  if (f.slice === null) return "whole scan";
  const pos = f.position ? ` · x ${Math.round(f.position[0])}, y ${Math.round(f.position[1])}` : "";
  return `${sliceWords(f.slice, g)}${pos}`;
}

// --- The reviewer's panel (check mode) ------------------------------------------------------

export interface ReviewTarget {
  kind: "check" | "spot_check";
  id: number;
  campaignId: number;
  scanId: number;
  revisionId: number;
  revisionNumber: number;
  scanLabels: Record<string, string>;
  /** Open for this person's verdict (pending and theirs). */
  open: boolean;
  /** Why it is not open, when it is not. */
  closedReason: string;
  findings: Finding[];
  queueUrl: string;
  submit: (body: VerdictIn) => Promise<unknown>;
}

export interface ReviewPanelOptions {
  target: ReviewTarget;
  markers: FindingMarkers;
  geometry: SliceGeometry;
  jumpTo: (z: number) => void;
  /** Arm (true) or disarm (false) one finding placement: the finding tool, or window/level. */
  setFindingTool: (on: boolean) => void;
  findingToolOn: () => boolean;
  /** The viewer's status line, where a recorded verdict says so too. */
  status: (text: string, kind?: "" | "ok" | "warn" | "error") => void;
}

/** The review panel: the findings placed so far, the kind of the next one, the verdict. */
export class ReviewPanel {
  readonly findings: Finding[];
  private readonly list: HTMLOListElement;
  private readonly kind: HTMLSelectElement;
  private readonly toolButton: HTMLButtonElement;
  private readonly notice: HTMLElement;
  private readonly hint: HTMLElement;
  private readonly time = new VisibleTime();
  submitted = false;

  constructor(
    readonly root: HTMLElement,
    private readonly options: ReviewPanelOptions,
  ) {
    const { target } = options;
    this.findings = target.findings.map((f) => ({ ...f }));
    const what = target.kind === "check" ? "Check" : "Spot check";
    this.kind = el(
      "select",
      { id: "finding-kind" },
      ...FINDING_KINDS.map((k) => el("option", { value: k.value }, k.label)),
    );
    this.toolButton = el(
      "button",
      { type: "button", id: "finding-tool", title: "Arm one finding placement (F); Esc cancels" },
      "Place finding ",
      el("kbd", {}, "F"),
    );
    this.toolButton.setAttribute("aria-pressed", "false");
    this.hint = el("p", {
      className: "muted finding-hint",
      id: "finding-hint",
      attrs: { "aria-live": "polite" },
    });
    this.list = el("ol", { className: "review-findings", id: "review-findings" });
    this.notice = el("div", { className: "notice", id: "review-notice", hidden: true });
    const labels = Object.entries(target.scanLabels);
    root.replaceChildren();
    root.append(
      el(
        "h2",
        { id: "review-heading" },
        `${what} ${target.id} · revision ${target.revisionNumber}`,
      ),
      el(
        "p",
        { className: "muted" },
        target.open ? "The revision under review is read-only." : target.closedReason,
      ),
      labels.length
        ? el(
            "p",
            { className: "muted", id: "review-scan-labels" },
            "Scan labels: ",
            labels.map(([k, v]) => `${k}: ${v}`).join(" · "),
          )
        : "",
    );
    if (target.open) {
      const addWhole = el(
        "button",
        { type: "button", className: "link", id: "add-scan-label-finding" },
        "Add a wrong scan label finding (whole scan)",
      );
      addWhole.addEventListener("click", () =>
        this.add({ slice: null, position: null, kind: "wrong_scan_label", text: "" }),
      );
      this.toolButton.addEventListener("click", () =>
        options.setFindingTool(!options.findingToolOn()),
      );
      this.kind.addEventListener("change", () => this.toolChanged(options.findingToolOn()));
      root.append(
        el("div", { className: "row" }, this.toolButton),
        this.hint,
        el("label", { className: "field" }, el("span", {}, "Kind of the next finding"), this.kind),
        this.list,
        addWhole,
        this.verdictForm(),
        this.notice,
      );
    } else {
      root.append(this.list);
    }
    root.hidden = false;
    this.render();
  }

  /** Open for the reviewer's findings and verdict. */
  get open(): boolean {
    return this.options.target.open && !this.submitted;
  }

  /** The finding tool's state changed: show it on the button, and say what a click will do. */
  toolChanged(armed: boolean): void {
    this.toolButton.setAttribute("aria-pressed", String(armed));
    this.toolButton.firstChild!.textContent = armed ? "Cancel placing " : "Place finding ";
    const kind = this.kind.selectedOptions[0]?.textContent ?? "";
    this.hint.textContent = armed
      ? `A click on the image places finding ${this.findings.length + 1} (${kind.toLowerCase()}). Esc cancels.`
      : "A click on the image sets window/level. Press Place finding (F) to place one finding.";
    this.root.classList.toggle("placing", armed);
  }

  /** A click on the image at server voxel (z, y, x): places one finding, then disarms. */
  place(z: number, y: number, x: number): void {
    if (!this.open) return;
    this.add({ slice: z, position: [x, y], kind: this.kind.value as FindingKind, text: "" });
    this.options.setFindingTool(false);
  }

  private add(finding: Finding): void {
    this.findings.push(finding);
    this.render();
    this.list.querySelector<HTMLTextAreaElement>("li:last-child textarea")?.focus();
  }

  private render(): void {
    const open = this.options.target.open;
    this.list.replaceChildren(
      ...this.findings.map((f, i) => {
        const where = el(
          "button",
          { type: "button", className: "link jump", disabled: f.slice === null },
          `${i + 1}. ${whereText(f, this.options.geometry)}`,
        );
        where.addEventListener("click", () => f.slice !== null && this.options.jumpTo(f.slice));
        if (!open) {
          return el(
            "li",
            { className: "review-finding" },
            where,
            " ",
            el("strong", {}, kindLabel(f.kind)),
            f.text ? el("p", { className: "finding-text" }, f.text) : null,
          );
        }
        const kind = el(
          "select",
          { className: "finding-kind", attrs: { "aria-label": `Kind of finding ${i + 1}` } },
          ...FINDING_KINDS.filter((k) => f.slice !== null || k.value === "wrong_scan_label").map(
            (k) => el("option", { value: k.value, selected: k.value === f.kind }, k.label),
          ),
        );
        kind.addEventListener("change", () => {
          f.kind = kind.value as FindingKind;
          this.refreshMarkers();
        });
        const text = el("textarea", {
          className: "finding-text-input",
          rows: 2,
          maxLength: MAX_FINDING_TEXT,
          value: f.text,
          placeholder: "What to fix",
          attrs: { "aria-label": `What to fix, finding ${i + 1}` },
        });
        text.addEventListener("input", () => {
          f.text = text.value;
          this.refreshMarkers();
        });
        const remove = el(
          "button",
          {
            type: "button",
            className: "link remove-finding",
            attrs: { "aria-label": `Remove finding ${i + 1}` },
          },
          "Remove",
        );
        remove.addEventListener("click", () => {
          this.findings.splice(i, 1);
          this.render();
        });
        return el("li", { className: "review-finding" }, where, kind, text, remove);
      }),
    );
    if (!this.findings.length) {
      this.list.append(
        el("li", { className: "muted empty" }, open ? "No finding placed yet." : "No findings."),
      );
    }
    this.refreshMarkers();
  }

  private refreshMarkers(): void {
    this.options.markers.set(
      this.findings.map((finding, i) => ({ finding, label: String(i + 1) })),
    );
  }

  private verdictForm(): HTMLFormElement {
    const radio = (value: "pass" | "fail", label: string) =>
      el(
        "label",
        { className: `check choice-${value}` },
        el("input", { type: "radio", name: "review-verdict", value }),
        ` ${label}`,
      );
    const submit = el(
      "button",
      { type: "submit", className: "primary", id: "submit-verdict" },
      "Record verdict",
    );
    const form = el(
      "form",
      { className: "review-verdict", noValidate: true },
      el(
        "fieldset",
        {},
        el("legend", {}, "Verdict"),
        radio("pass", "Pass — right as it is"),
        radio("fail", "Fail — send it back with the findings"),
      ),
      el("div", { className: "row" }, submit),
    );
    form.addEventListener("submit", async (evt) => {
      evt.preventDefault();
      const chosen = form.querySelector<HTMLInputElement>("input[name=review-verdict]:checked");
      if (!chosen) {
        say(this.notice, "Choose pass or fail.", "error");
        return;
      }
      const verdict = chosen.value as "pass" | "fail";
      if (verdict === "fail" && !this.findings.length) {
        say(
          this.notice,
          "A fail needs at least one finding: click on the image to place one.",
          "error",
        );
        return;
      }
      const n = this.findings.length;
      const withFindings = `${n} finding${n === 1 ? "" : "s"}`;
      const what =
        verdict === "pass"
          ? "Pass: the annotation is right as it is"
          : `Fail: send it back with ${withFindings}`;
      this.notice.hidden = true;
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
      submit.disabled = true;
      say(this.notice, "Recording your verdict…");
      try {
        await this.options.target.submit({
          verdict,
          findings: this.findings.map((f) => ({ ...f, text: f.text.trim() })),
          time_spent_s: this.time.seconds(),
        });
        this.submitted = true;
        this.options.setFindingTool(false);
        const recorded =
          verdict === "pass" ? "Pass recorded" : `Fail recorded — sent back with ${withFindings}`;
        this.notice.replaceChildren(
          `${recorded}. `,
          el("a", { href: this.options.target.queueUrl, id: "back-to-queue" }, "Back to the queue"),
        );
        this.notice.className = "notice notice-ok";
        this.notice.setAttribute("role", "status");
        this.notice.hidden = false;
        this.options.status(recorded, "ok");
        form
          .querySelectorAll<HTMLInputElement | HTMLButtonElement>("input, button")
          .forEach((c) => (c.disabled = true));
        this.toolButton.disabled = true;
        this.notice.querySelector<HTMLElement>("a")?.focus();
      } catch (error) {
        say(this.notice, `The verdict was not recorded: ${errorMessage(error)}`, "error");
        submit.disabled = false;
      }
    });
    return form;
  }
}

// --- The annotator's findings ---------------------------------------------------------------

/** The findings of the last failed review, each a button to its slice; markers on the image. */
export function showAnnotatorFindings(
  root: HTMLElement,
  data: AnnotatorFindings,
  markers: FindingMarkers,
  jumpTo: (z: number) => void,
  geometry: SliceGeometry,
): MarkedFinding[] {
  const marked: MarkedFinding[] = [];
  const sections = data.reviews.map((review, r) => {
    const prefix = data.reviews.length > 1 ? String.fromCharCode(65 + r) : "";
    const items = review.findings.map((f, i) => {
      const label = `${prefix}${i + 1}`;
      marked.push({ finding: f, label, reviewer: review.reviewer });
      const jump = el(
        "button",
        { type: "button", className: "link jump", disabled: f.slice === null },
        `${label}. ${kindLabel(f.kind)} · ${whereText(f, geometry)}`,
      );
      jump.addEventListener("click", () => f.slice !== null && jumpTo(f.slice));
      return el(
        "li",
        { className: "annotator-finding", dataset: { slice: f.slice ?? "" } },
        jump,
        f.text ? el("p", { className: "finding-text" }, f.text) : null,
      );
    });
    return el(
      "section",
      { className: "review" },
      el("h3", {}, `${review.reviewer}: ${review.verdict}`),
      items.length
        ? el("ol", { className: "review-findings" }, ...items)
        : el("p", { className: "muted" }, "No findings."),
    );
  });
  root.replaceChildren(
    el("h2", { id: "findings-heading" }, "Findings to fix"),
    ...(sections.length ? sections : [el("p", { className: "muted" }, "No findings.")]),
  );
  root.hidden = false;
  markers.set(marked);
  return marked;
}

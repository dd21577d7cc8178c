// The data manager's batches (/manage/batches/): build a batch, list, reassign and close
// batches with their pre-segmentation progress; and one batch's board (/manage/batches/<id>/):
// each scan's state and who holds it, the spot-check draw, reopening an approved batch.
import "../styles/app.css";
import "../styles/pages.css";

import { errorMessage } from "../api/http";
import { manageApi, type BatchBuildIn, type BatchOut, type PresegProgress } from "../api/manage";
import { qcApi, type BatchBoard, type BoardItem } from "../api/qc";
import { batchControls, presegScanCell, presegWatch, type Person } from "../panels/batchActions";
import {
  badge,
  busy,
  byId,
  el,
  pageData,
  say,
  sayError,
  showLoadError,
  STATE_LABELS,
  table,
  when,
} from "../panels/dom";
import type { Poll } from "../panels/jobProgress";
import { viewerUrl } from "../panels/reviewParts";

interface CampaignChoice {
  id: number;
  slug: string;
  name: string;
  batch_size: number;
  annotators: Person[];
}

let watches: Poll<PresegProgress>[] = [];
function stopWatches(): void {
  watches.forEach((w) => w.stop());
  watches = [];
}

// --- the list ------------------------------------------------------------------------------------

function listPage(): void {
  const campaigns = pageData<CampaignChoice[]>("batch-campaigns", []);
  const select = byId<HTMLSelectElement>("batch-campaign");
  const root = byId("batches");
  const notice = byId("batch-notice");
  const showClosed = byId<HTMLInputElement>("show-closed");
  const form = byId<HTMLFormElement>("build-batch");
  const buildNotice = byId("build-notice");
  byId("batch-campaign-field").closest<HTMLElement>(".card")!.hidden = campaigns.length < 2;

  const campaign = () => campaigns.find((c) => c.id === Number(select.value)) ?? campaigns[0];

  const setupForm = () => {
    const c = campaign();
    const size = byId<HTMLInputElement>("build-size");
    size.max = String(c.batch_size);
    size.value = String(c.batch_size);
    byId("build-size-hint").textContent = `(at most ${c.batch_size})`;
    const annotator = byId<HTMLSelectElement>("build-annotator");
    annotator.replaceChildren(
      ...c.annotators.map((a) => el("option", { value: String(a.id) }, a.username)),
    );
    if (!c.annotators.length) {
      annotator.append(
        el(
          "option",
          { value: "", disabled: true, selected: true },
          "no annotator in this campaign",
        ),
      );
    }
  };

  const refresh = async () => {
    stopWatches();
    const c = campaign();
    root.setAttribute("aria-busy", "true");
    try {
      const all = await manageApi.batches(c.id);
      const batches = all.filter((b) => showClosed.checked || b.status === "open").reverse();
      if (!batches.length) {
        root.replaceChildren(
          el(
            "p",
            { className: "card empty" },
            all.length
              ? "Every batch of this campaign is closed."
              : "No batch yet: build one above.",
          ),
        );
        return;
      }
      root.replaceChildren(
        table(
          `Batches of ${c.name}`,
          ["Batch", "Status", "Annotator", "Scans", "Created", "Pre-segmentation", "Actions"],
          batches.map((b) => batchRow(b, c)),
          { className: "data batches" },
        ),
      );
    } catch (error) {
      showLoadError(root, "Could not load the batches", error);
    } finally {
      root.setAttribute("aria-busy", "false");
    }
  };

  const batchRow = (b: BatchOut, c: CampaignChoice): (Node | string)[] => {
    let preseg: Node = el("span", { className: "muted" }, "—");
    if (b.status === "open") {
      const { view, watch } = presegWatch(b.id);
      watches.push(watch);
      preseg = view.root;
    }
    return [
      el("a", { href: `/manage/batches/${b.id}/`, className: "board-link" }, b.name),
      badge(b.status),
      b.annotator ?? el("span", { className: "muted" }, "unassigned"),
      String(b.scan_ids.length),
      when(b.created_at),
      preseg,
      batchControls(b, c.annotators, notice, () => void refresh()),
    ];
  };

  form.addEventListener("submit", async (evt) => {
    evt.preventDefault();
    const c = campaign();
    const size = Number(byId<HTMLInputElement>("build-size").value);
    if (!Number.isInteger(size) || size < 1 || size > c.batch_size) {
      say(buildNotice, `The size must be a whole number from 1 to ${c.batch_size}.`, "error");
      byId("build-size").focus();
      return;
    }
    const mode =
      form.querySelector<HTMLInputElement>("input[name=assign]:checked")?.value ?? "none";
    const body: BatchBuildIn = { size, auto_assign: false };
    const name = byId<HTMLInputElement>("build-name").value.trim();
    if (name) body.name = name;
    if (mode === "annotator") {
      const annotator = byId<HTMLSelectElement>("build-annotator").value;
      if (!annotator) {
        say(buildNotice, "Choose an annotator, or auto-assign.", "error");
        byId("build-annotator").focus();
        return;
      }
      body.annotator_id = Number(annotator);
    }
    if (mode === "auto") body.auto_assign = true;
    const from = byId<HTMLInputElement>("build-date-from").value;
    const to = byId<HTMLInputElement>("build-date-to").value;
    if (from) body.study_date_from = from;
    if (to) body.study_date_to = to;
    await busy(byId<HTMLButtonElement>("build-submit"), async () => {
      try {
        const batch = await manageApi.buildBatch(c.id, body);
        buildNotice.replaceChildren();
        say(
          buildNotice,
          `Built batch ${batch.name} of ${batch.scan_ids.length} scans${batch.annotator ? `, assigned to ${batch.annotator}` : ", not assigned yet"}.`,
          "ok",
        );
        buildNotice.append(
          " ",
          el("a", { href: `/manage/batches/${batch.id}/` }, "Open its board"),
        );
        byId<HTMLInputElement>("build-name").value = "";
        await refresh();
      } catch (error) {
        sayError(buildNotice, "The batch was not built", error);
      }
    });
  });

  select.addEventListener("change", () => {
    setupForm();
    void refresh();
  });
  showClosed.addEventListener("change", () => void refresh());
  setupForm();
  void refresh();
}

// --- one batch's board -------------------------------------------------------------------------

const PASSED = new Set(["checked", "spot_check", "curated"]);

function holderText(item: BoardItem): string {
  const { role, users } = item.holder;
  if (!role) return item.state === "curated" ? "nobody: curated" : "nobody: waits for the batch";
  return `${role}${users.length ? `: ${users.join(", ")}` : ""}`;
}

function checksText(item: BoardItem): Node | string {
  if (!item.checks.length) return item.checkers.length ? item.checkers.join(", ") : "—";
  return el(
    "span",
    { className: "stack" },
    ...item.checks.map((c) => el("span", {}, `${c.slot} ${c.checker}: `, badge(c.verdict))),
  );
}

function drawText(board: BatchBoard): string {
  const d = board.review.draw;
  if (!d) return "no spot-check draw yet (the batch is drawn once every scan passed both checkers)";
  const added = d.added_scan_ids.length ? `; added on redraw: ${d.added_scan_ids.join(", ")}` : "";
  return `draw ${d.number}: ${Math.round(100 * d.share)} % → ${d.sample_size} scans (${d.sampled_scan_ids.join(", ")}), seed ${d.seed}${added}`;
}

function reopenForm(
  board: BatchBoard,
  rerender: (b: BatchBoard) => void,
  notice: HTMLElement,
): HTMLElement {
  const reason = el("textarea", { id: "reopen-reason", rows: 2, required: true, maxLength: 1000 });
  const scans = el(
    "fieldset",
    { className: "field-group" },
    el(
      "legend",
      {},
      "Scans to reopen ",
      el("span", { className: "muted" }, "(none ticked: every scan)"),
    ),
    ...board.items.map((item) =>
      el(
        "label",
        { className: "choice" },
        el("input", { type: "checkbox", value: String(item.scan_id), className: "reopen-scan" }),
        ` Scan ${item.scan_id}`,
      ),
    ),
  );
  const submit = el("button", { type: "submit", className: "danger" }, "Reopen batch");
  const form = el(
    "form",
    { className: "card", id: "reopen-form", noValidate: true },
    el("h2", {}, "Reopen this approved batch"),
    el(
      "p",
      { className: "muted" },
      "Reopened scans go back to the annotator for revision and through QC again; their curated labels are withdrawn from future exports.",
    ),
    el(
      "label",
      { className: "field", htmlFor: "reopen-reason" },
      el("span", {}, "Reason (goes into the audit trail)"),
    ),
    reason,
    scans,
    el("div", { className: "actions" }, submit),
  );
  form.addEventListener("submit", async (evt) => {
    evt.preventDefault();
    if (!reason.value.trim()) {
      say(notice, "Say why the batch is reopened.", "error");
      reason.focus();
      return;
    }
    const ids = [...form.querySelectorAll<HTMLInputElement>(".reopen-scan:checked")].map((i) =>
      Number(i.value),
    );
    await busy(submit, async () => {
      try {
        const updated = await qcApi.reopen(board.batch.id, reason.value.trim(), ids);
        say(notice, `Reopened ${ids.length ? `${ids.length} scan(s)` : "the batch"}.`, "ok");
        rerender(updated);
      } catch (error) {
        sayError(notice, "The batch was not reopened", error);
      }
    });
  });
  return form;
}

function boardPage(root: HTMLElement): void {
  const batchId = Number(root.dataset.batchId);
  const campaignId = Number(root.dataset.campaignId);
  const campaign = pageData<CampaignChoice | null>("board-campaign", null);
  const notice = byId("board-notice");
  const presegByScan = new Map<number, PresegProgress["scans"][number]>();

  const render = (board: BatchBoard) => {
    stopWatches();
    const counts = new Map<string, number>();
    board.items.forEach((i) => counts.set(i.state, (counts.get(i.state) ?? 0) + 1));
    const passed = board.items.filter((i) => PASSED.has(i.state)).length;
    const progressId = "board-passed";
    const bar = el("progress", { id: progressId, max: board.items.length || 1, value: passed });
    const rerun = el(
      "button",
      { type: "button", id: "preseg-rerun", hidden: true },
      "Retry failed pre-segmentation",
    );
    const { view, watch } = presegWatch(batchId, (p) => {
      p.scans.forEach((s) => presegByScan.set(s.scan_id, s));
      root.querySelectorAll<HTMLElement>("[data-preseg-scan]").forEach((cell) => {
        cell.replaceChildren(presegScanCell(presegByScan.get(Number(cell.dataset.presegScan))));
      });
      rerun.hidden = !(p.status === "done_with_failures");
    });
    watches.push(watch);
    rerun.addEventListener("click", () =>
      busy(rerun, async () => {
        try {
          await manageApi.presegRerun(batchId);
          say(notice, "Pre-segmentation restarted for the failed scans.", "ok");
          render(board);
        } catch (error) {
          sayError(notice, "Pre-segmentation was not restarted", error);
        }
      }),
    );

    const header = el(
      "section",
      { className: "card" },
      el(
        "dl",
        { className: "summary" },
        el("dt", {}, "Status"),
        // An approved batch stays "open" in the data (its annotator keeps it); saying "Open"
        // beside "Approved" read as a contradiction, so the board says what it means.
        el(
          "dd",
          {},
          board.review.state === "approved"
            ? el("span", { className: "state state-approved" }, "Approved — its labels are curated")
            : board.batch.status === "open"
              ? el("span", { className: "state state-open" }, "Open — in annotation or QC")
              : badge(board.batch.status),
        ),
        el("dt", {}, "Annotator"),
        el("dd", {}, board.batch.annotator || "unassigned"),
        el("dt", {}, "QC"),
        el(
          "dd",
          {},
          badge(board.review.state),
          board.review.state === "approved" && board.review.approved_at
            ? el("span", {}, " on ", when(board.review.approved_at))
            : "",
        ),
        el("dt", {}, "Spot check"),
        el("dd", {}, drawText(board)),
      ),
      el(
        "div",
        { className: "job" },
        el("label", { htmlFor: progressId }, "Passed both checkers"),
        bar,
        el(
          "span",
          { className: "job-text" },
          `${passed} of ${board.items.length} scans · ${[...counts].map(([s, n]) => `${n} ${(STATE_LABELS[s] ?? s).toLowerCase()}`).join(", ")}`,
        ),
      ),
      view.root,
      el("div", { className: "actions" }, rerun),
      campaign
        ? el(
            "div",
            { className: "actions" },
            batchControls(
              {
                id: board.batch.id,
                name: board.batch.name,
                status: board.batch.status as "open" | "closed",
                annotator_id:
                  campaign.annotators.find((a) => a.username === board.batch.annotator)?.id ?? null,
              },
              campaign.annotators,
              notice,
              () => void load(),
            ),
          )
        : null,
    );
    const rows = board.items.map((item) => [
      String(item.position + 1),
      el("a", { href: viewerUrl(campaignId, item.scan_id) }, `Scan ${item.scan_id}`),
      badge(item.state),
      holderText(item),
      String(item.round || "—"),
      checksText(item),
      item.sampled ? "yes" : "no",
      item.spot_check
        ? el("span", {}, `${item.spot_check.senior ?? "—"}: `, badge(item.spot_check.verdict))
        : "—",
      el(
        "span",
        { dataset: { presegScan: item.scan_id } },
        presegScanCell(presegByScan.get(item.scan_id)),
      ),
      el(
        "span",
        { className: "row-actions" },
        el("a", { href: `/qc/findings/${campaignId}/${item.scan_id}/` }, "Findings"),
        el("a", { href: `/reports/${campaignId}/${item.scan_id}/` }, "Report"),
        el("a", { href: qcApi.auditCsvUrl(campaignId, item.scan_id), download: "" }, "Audit CSV"),
      ),
    ]);
    const parts: HTMLElement[] = [
      header,
      table(
        `Scans of batch ${board.batch.name}`,
        [
          "#",
          "Scan",
          "State",
          "Held by",
          "Round",
          "Checks",
          "Sampled",
          "Spot check",
          "Pre-segmentation",
          "Links",
        ],
        rows,
        { className: "data board" },
      ),
    ];
    if (board.review.state === "approved") parts.push(reopenForm(board, render, notice));
    root.replaceChildren(...parts);
    root.setAttribute("aria-busy", "false");
  };

  const load = async () => {
    try {
      render(await qcApi.board(batchId));
    } catch (error) {
      showLoadError(root, "Could not load the board", error);
    }
  };
  void load();
  window.setInterval(() => {
    // Refresh the states quietly, but never under the user's hands.
    if (!document.hidden && !root.contains(document.activeElement)) {
      qcApi
        .board(batchId)
        .then(render, (error) =>
          say(notice, `Could not refresh the board: ${errorMessage(error)}`, "error"),
        );
    }
  }, 30_000);
}

if (document.getElementById("batches")) listPage();
const boardRoot = document.getElementById("board");
if (boardRoot) boardPage(boardRoot);

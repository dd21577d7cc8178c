// The checker's pages: the queue of pending checks (/qc/checks/) and one check
// (/qc/checks/<id>/) with the verdict form, for use with or without the viewer's check mode.
import "../styles/app.css";
import "../styles/pages.css";

import { qcApi, type CheckDetail, type CheckQueueItem } from "../api/qc";
import type { Campaign } from "../api/types";
import { badge, el, onKey, showLoadError, table, when } from "../panels/dom";
import {
  assignedCell,
  campaignOrNull,
  recordedNotice,
  roundsSection,
  scanBounds,
  scanLabelsTable,
  summaryList,
  viewerUrl,
  voxelCountsTable,
  withSlice,
} from "../panels/reviewParts";
import {
  recordedWords,
  reviewCard,
  verdictForm,
  VisibleTime,
  type ScanBounds,
} from "../panels/verdictForm";

const checkViewerUrl = (c: { id: number; campaign: { id: number }; scan_id: number }) =>
  viewerUrl(c.campaign.id, c.scan_id, { check: c.id });
const checkPageUrl = (id: number) => `/qc/checks/${id}/`;

// --- the queue --------------------------------------------------------------------------------

function renderQueue(root: HTMLElement, checks: CheckQueueItem[]): void {
  if (!checks.length) {
    root.replaceChildren(
      el(
        "p",
        { className: "card empty" },
        "No checks are waiting for you. New ones appear here when annotators submit.",
      ),
    );
    return;
  }
  const first = checks[0];
  const next = el(
    "div",
    { className: "actions card" },
    el(
      "a",
      { className: "button primary", id: "open-next", href: checkViewerUrl(first) },
      "Open next check in the viewer",
    ),
    el(
      "a",
      { className: "button", href: checkPageUrl(first.id), id: "open-next-form" },
      "…or as a form",
    ),
    el("span", { className: "muted" }, `${checks.length} waiting, oldest first`),
  );
  const rows = checks.map((c, i) => [
    String(i + 1),
    `Scan ${c.scan_id}`,
    c.campaign.slug,
    `#${c.revision.number}`,
    String(c.round),
    assignedCell(c.assigned_at),
    el(
      "span",
      { className: "row-actions" },
      el(
        "a",
        {
          href: checkViewerUrl(c),
          attrs: { "aria-label": `Open check ${c.id} (scan ${c.scan_id}) in the viewer` },
        },
        "Viewer",
      ),
      el(
        "a",
        {
          href: checkPageUrl(c.id),
          className: "check-form-link",
          attrs: { "aria-label": `Verdict form of check ${c.id} (scan ${c.scan_id})` },
        },
        "Form",
      ),
    ),
  ]);
  root.replaceChildren(
    next,
    table(
      "Your pending checks",
      ["#", "Scan", "Campaign", "Revision", "Round", "Assigned", "Open"],
      rows,
      {
        className: "data queue",
      },
    ),
  );
}

async function queuePage(root: HTMLElement): Promise<void> {
  const refresh = async () => {
    // Keep the keyboard where it was: the same link (by address) gets the focus back.
    const focused = root.contains(document.activeElement)
      ? (document.activeElement as HTMLAnchorElement).getAttribute("href")
      : null;
    try {
      renderQueue(root, await qcApi.checks());
      if (focused) root.querySelector<HTMLElement>(`a[href="${CSS.escape(focused)}"]`)?.focus();
    } catch (error) {
      showLoadError(root, "Could not load your checks", error);
    } finally {
      root.setAttribute("aria-busy", "false");
    }
  };
  await refresh();
  root.querySelector<HTMLElement>("#open-next")?.focus();
  // New submissions arrive while the checker works: refresh quietly every half minute.
  window.setInterval(() => {
    if (!document.hidden) void refresh();
  }, 30_000);
  onKey("n", () => {
    const next = document.querySelector<HTMLAnchorElement>("#open-next");
    if (next) window.location.href = next.href;
  });
}

// --- one check -----------------------------------------------------------------------------

function decidedPart(
  check: CheckDetail,
  linkOf: (slice: number | null) => string | null,
  bounds: ScanBounds | null,
): HTMLElement {
  const own = reviewCard(
    `Your verdict (checker ${check.slot})`,
    check.verdict,
    check.findings,
    check.decided_at,
    (f) => linkOf(f.slice),
    bounds,
  );
  const other = check.other
    ? reviewCard(
        `The other verdict (${check.other.label})`,
        check.other.verdict,
        check.other.findings,
        check.other.decided_at,
        (f) => linkOf(f.slice),
        bounds,
      )
    : el(
        "section",
        { className: "review" },
        el("h3", {}, "The other checker's verdict"),
        el(
          "p",
          { className: "muted" },
          "You will see it once both verdicts of this round are in (the checks are blind).",
        ),
      );
  return el(
    "section",
    { className: "card reviews", id: "verdicts" },
    el("h2", { tabIndex: -1, id: "verdicts-heading" }, "Verdicts of this round"),
    own,
    other,
  );
}

function renderCheck(
  root: HTMLElement,
  check: CheckDetail,
  campaign: Campaign | null,
  bounds: ScanBounds | null,
  time: VisibleTime,
  viewer: string,
): void {
  const linkOf = (slice: number | null) => withSlice(viewer, slice);
  const parts: (HTMLElement | null)[] = [
    el(
      "section",
      { className: "card" },
      summaryList([
        ["Campaign", campaign?.name ?? check.campaign.slug],
        ["Scan", `Scan ${check.scan_id}`],
        ["Revision", `#${check.revision.number} (id ${check.revision.id})`],
        ["Round", String(check.round)],
        ["You are", check.mine ? `checker ${check.slot}` : "not this check's checker (read only)"],
        ["Annotation", badge(check.annotation_state)],
        ["Assigned", when(check.assigned_at)],
      ]),
      el(
        "div",
        { className: "actions" },
        el(
          "a",
          { className: "button", href: viewer, id: "open-viewer" },
          "Open in the viewer (check mode)",
        ),
        el("a", { className: "button", href: "/qc/checks/" }, "Back to your queue"),
      ),
    ),
    el(
      "section",
      { className: "card two-col" },
      el("div", {}, el("h2", {}, "Scan labels"), scanLabelsTable(check.revision.scan_labels)),
      el(
        "div",
        {},
        el("h2", {}, "Labelled voxels"),
        voxelCountsTable(check.revision.voxel_counts, campaign),
      ),
    ),
  ];
  if (check.mine && check.verdict === "pending") {
    parts.push(
      verdictForm({
        bounds,
        time,
        title: `Your verdict on revision #${check.revision.number}`,
        submit: async (body) => {
          const decided = await qcApi.checkVerdict(check.id, body);
          renderCheck(root, decided, campaign, bounds, time, viewer);
          const next = (await qcApi.checks().catch(() => [])).find((c) => c.id !== decided.id);
          root.prepend(
            recordedNotice(
              `${recordedWords(decided.verdict, decided.findings.length, !decided.other)}. `,
              next ? { href: checkPageUrl(next.id), label: "Next check" } : null,
              "No other check is waiting for you.",
            ),
          );
          root.querySelector<HTMLElement>("#verdicts-heading")?.focus();
        },
      }),
    );
  } else if (check.verdict === "pending") {
    parts.push(el("p", { className: "card muted" }, "This check waits for its checker's verdict."));
  } else {
    parts.push(decidedPart(check, linkOf, bounds));
  }
  parts.push(roundsSection("Earlier rounds", check.history, linkOf, bounds));
  root.replaceChildren(...parts.filter((p): p is HTMLElement => p !== null));
  root.setAttribute("aria-busy", "false");
}

async function checkPage(root: HTMLElement): Promise<void> {
  const id = Number(root.dataset.checkId);
  const time = new VisibleTime();
  try {
    const check = await qcApi.check(id);
    const [campaign, bounds] = await Promise.all([
      campaignOrNull(check.campaign.id),
      scanBounds(check.scan_id),
    ]);
    renderCheck(
      root,
      check,
      campaign,
      bounds,
      time,
      root.dataset.viewerUrl ?? checkViewerUrl(check),
    );
  } catch (error) {
    showLoadError(root, "Could not load this check", error);
  }
}

const queueRoot = document.getElementById("check-queue");
const checkRoot = document.getElementById("check");
if (queueRoot) void queuePage(queueRoot);
if (checkRoot) void checkPage(checkRoot);

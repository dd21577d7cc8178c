// The senior's pages: the queue of pending spot checks (/qc/spot-checks/) and one spot check
// (/qc/spot-checks/<id>/) with the checkers' rounds and the verdict form.
import "../styles/app.css";
import "../styles/pages.css";

import { qcApi, type SpotCheckDetail } from "../api/qc";
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
  withSlice,
} from "../panels/reviewParts";
import {
  recordedWords,
  reviewCard,
  verdictForm,
  VisibleTime,
  type ScanBounds,
} from "../panels/verdictForm";

const spotViewerUrl = (s: SpotCheckDetail) =>
  viewerUrl(s.campaign.id, s.scan_id, { spot_check: s.id });
const spotPageUrl = (id: number) => `/qc/spot-checks/${id}/`;

function renderQueue(root: HTMLElement, items: SpotCheckDetail[]): void {
  if (!items.length) {
    root.replaceChildren(
      el(
        "p",
        { className: "card empty" },
        "No spot checks are waiting for you. They arrive when every scan of a batch has passed both checkers.",
      ),
    );
    return;
  }
  const first = items[0];
  const rows = items.map((s, i) => [
    String(i + 1),
    `Scan ${s.scan_id}`,
    s.batch.name,
    `#${s.revision.number}`,
    String(s.draw),
    assignedCell(s.assigned_at),
    el(
      "span",
      { className: "row-actions" },
      el(
        "a",
        {
          href: spotPageUrl(s.id),
          className: "spot-check-form-link",
          attrs: { "aria-label": `Spot check ${s.id} (scan ${s.scan_id})` },
        },
        "Open",
      ),
      el(
        "a",
        { href: spotViewerUrl(s), attrs: { "aria-label": `Scan ${s.scan_id} in the viewer` } },
        "Viewer",
      ),
    ),
  ]);
  root.replaceChildren(
    el(
      "div",
      { className: "actions card" },
      el(
        "a",
        { className: "button primary", id: "open-next", href: spotPageUrl(first.id) },
        "Open next spot check",
      ),
      el("span", { className: "muted" }, `${items.length} waiting, oldest first`),
    ),
    table(
      "Your pending spot checks",
      ["#", "Scan", "Batch", "Revision", "Draw", "Assigned", "Open"],
      rows,
      {
        className: "data queue",
      },
    ),
  );
}

async function queuePage(root: HTMLElement): Promise<void> {
  try {
    renderQueue(root, await qcApi.spotChecks());
    root.querySelector<HTMLElement>("#open-next")?.focus();
  } catch (error) {
    showLoadError(root, "Could not load your spot checks", error);
  } finally {
    root.setAttribute("aria-busy", "false");
  }
  onKey("n", () => {
    const next = document.querySelector<HTMLAnchorElement>("#open-next");
    if (next) window.location.href = next.href;
  });
}

function renderSpotCheck(
  root: HTMLElement,
  spot: SpotCheckDetail,
  campaign: Campaign | null,
  bounds: ScanBounds | null,
  time: VisibleTime,
  mine: boolean,
  viewer: string,
): void {
  const linkOf = (slice: number | null) => withSlice(viewer, slice);
  const parts: HTMLElement[] = [
    el(
      "section",
      { className: "card" },
      summaryList([
        ["Campaign", campaign?.name ?? spot.campaign.slug],
        ["Batch", spot.batch.name],
        ["Scan", `Scan ${spot.scan_id}`],
        ["Revision", `#${spot.revision.number} (id ${spot.revision.id})`],
        ["Draw", `${spot.draw}`],
        ["Annotation", badge(spot.annotation_state)],
        ["Assigned", when(spot.assigned_at)],
      ]),
      el(
        "div",
        { className: "actions" },
        el("a", { className: "button", href: viewer, id: "open-viewer" }, "Open in the viewer"),
        el("a", { className: "button", href: "/qc/spot-checks/" }, "Back to your queue"),
      ),
    ),
    el(
      "section",
      { className: "card" },
      el("h2", {}, "Scan labels"),
      scanLabelsTable(spot.revision.scan_labels),
    ),
  ];
  if (spot.verdict === "pending" && mine) {
    parts.push(
      verdictForm({
        bounds,
        time,
        title: `Your spot-check verdict on revision #${spot.revision.number}`,
        submit: async (body) => {
          const decided = await qcApi.spotCheckVerdict(spot.id, body);
          renderSpotCheck(root, decided, campaign, bounds, time, mine, viewer);
          const next = (await qcApi.spotChecks().catch(() => [])).find((s) => s.id !== decided.id);
          root.prepend(
            recordedNotice(
              `${recordedWords(decided.verdict, decided.findings.length)}. `,
              next ? { href: spotPageUrl(next.id), label: "Next spot check" } : null,
              "No other spot check is waiting for you.",
            ),
          );
          root.querySelector<HTMLElement>("#verdicts-heading")?.focus();
        },
      }),
    );
  } else if (spot.verdict === "pending") {
    parts.push(
      el("p", { className: "card muted" }, "This spot check waits for its senior's verdict."),
    );
  } else {
    parts.push(
      el(
        "section",
        { className: "card reviews" },
        el("h2", { tabIndex: -1, id: "verdicts-heading" }, "Spot-check verdict"),
        reviewCard(
          "Senior",
          spot.verdict,
          spot.findings,
          spot.decided_at,
          (f) => linkOf(f.slice),
          bounds,
        ),
      ),
    );
  }
  const rounds = roundsSection("The checkers' rounds", spot.check_rounds, linkOf, bounds);
  if (rounds) parts.push(rounds);
  root.replaceChildren(...parts);
  root.setAttribute("aria-busy", "false");
}

async function spotCheckPage(root: HTMLElement): Promise<void> {
  const time = new VisibleTime();
  try {
    const spot = await qcApi.spotCheck(Number(root.dataset.spotCheckId));
    const [campaign, bounds] = await Promise.all([
      campaignOrNull(spot.campaign.id),
      scanBounds(spot.scan_id),
    ]);
    renderSpotCheck(
      root,
      spot,
      campaign,
      bounds,
      time,
      root.dataset.mine === "true",
      root.dataset.viewerUrl ?? spotViewerUrl(spot),
    );
  } catch (error) {
    showLoadError(root, "Could not load this spot check", error);
  }
}

const queueRoot = document.getElementById("spot-check-queue");
const spotRoot = document.getElementById("spot-check");
if (queueRoot) void queuePage(queueRoot);
if (spotRoot) void spotCheckPage(spotRoot);

// The annotator's findings (/qc/findings/<campaign>/<scan>/): what the last failed review
// asked to fix, reviewers anonymised by the API, each finding linked to its slice in the viewer.
import "../styles/app.css";
import "../styles/pages.css";

import { qcApi } from "../api/qc";
import { badge, el, showLoadError, when } from "../panels/dom";
import { scanBounds, withSlice } from "../panels/reviewParts";
import { findingsList } from "../panels/verdictForm";

async function main(root: HTMLElement): Promise<void> {
  const campaignId = Number(root.dataset.campaignId);
  const scanId = Number(root.dataset.scanId);
  const viewer = root.dataset.viewerUrl ?? `/viewer/${campaignId}/${scanId}/`;
  try {
    const [result, bounds] = await Promise.all([
      qcApi.findings(campaignId, scanId),
      scanBounds(scanId),
    ]);
    const state = el("p", {}, "This scan is ", badge(result.state), ".");
    if (!result.reviews.length) {
      root.replaceChildren(
        state,
        el(
          "p",
          { className: "card empty" },
          "No review has sent this scan back: there is nothing to fix.",
        ),
      );
      return;
    }
    const source =
      result.source === "spot_check"
        ? "The senior's spot check failed this scan."
        : `Round ${result.round} of the back-to-back check did not pass.`;
    // The API reports the last failed review even after later rounds passed.
    const addressed =
      result.state === "needs_revision"
        ? []
        : [
            el(
              "p",
              { className: "notice notice-info" },
              "A later revision has been submitted since; these findings are shown for reference.",
            ),
          ];
    root.replaceChildren(
      state,
      ...addressed,
      el(
        "p",
        {},
        source,
        result.revision_id ? ` (reviewed revision id ${result.revision_id})` : "",
      ),
      ...result.reviews.map((review) =>
        el(
          "section",
          { className: "card review" },
          el("h2", {}, review.reviewer, " ", badge(review.verdict)),
          el("p", { className: "muted" }, "Decided ", when(review.decided_at)),
          findingsList(review.findings, (f) => withSlice(viewer, f.slice), bounds),
        ),
      ),
    );
  } catch (error) {
    showLoadError(root, "Could not load the findings", error);
  } finally {
    root.setAttribute("aria-busy", "false");
  }
}

const root = document.getElementById("findings");
if (root) void main(root);

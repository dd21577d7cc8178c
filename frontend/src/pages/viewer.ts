// The annotation viewer page (/viewer/<campaign>/<scan>/, with ?check= or ?spot_check= to
// review a revision): reads the page's data attributes and starts one Viewer.
import "../styles/app.css";
import "../styles/viewer.css";

import { $ } from "../panels/dom";
import { Viewer } from "../viewer/viewer";

const root = $("main.viewer");
const viewer = new Viewer(root, {
  campaignId: Number(root.dataset.campaignId),
  scanId: Number(root.dataset.scanId),
  ref: {
    origin: window.location.origin,
    study: root.dataset.studyUid ?? "",
    series: root.dataset.seriesUid ?? "",
  },
  params: new URLSearchParams(window.location.search),
});
viewer.start().catch((error) => viewer.fail(error));

// Federation (/manage/federation/): the runs this site coordinates or joined, each with its
// sites and rounds; for this site's own part of a run, the outgoing log (what left, its size and
// sha256, the sample count, to which coordinator, when) and what came back each round (the
// global model's test figures on this site's test split, promoted or not). Join a run by its key
// with one of the site's curated exports; start this site's SuperNode; leave a run. A run of
// another CurateCT arrives as an invitation (downloaded by its coordinator here, imported at the
// site): importing it makes this site's copy, which is then joined by its key.
import "../styles/app.css";
import "../styles/pages.css";

import { errorMessage, request } from "../api/http";
import {
  badge,
  busy,
  byId,
  bytes,
  DASH,
  duration,
  el,
  num,
  pageData,
  say,
  sayError,
  showLoadError,
  table,
  when,
} from "../panels/dom";

// Hand-written: the shapes of federation/serializers.py (RunOut, SiteOut, RoundOut).
interface Participant {
  site: number | null; // this installation's site row; null for a site of another installation
  site_key?: string;
  institution?: string; // as the site's ClientApp reported it
  samples: number;
  bytes?: number;
  sha256?: string;
}

interface HistoryEntry {
  round: number;
  participants: Participant[];
  failed_replies?: number;
  at?: string;
}

interface FederationSite {
  id: number;
  run: number;
  institution: string;
  campaign: number;
  export: number;
  export_version: number | null;
  status: string;
  message: string;
  error: string;
  joined_at: string | null;
  left_at: string | null;
  left_reason: string;
}

interface FederationRun {
  id: number;
  key: string;
  institution: string;
  is_remote: boolean; // this site's copy of a run coordinated by another installation
  coordinator: string;
  name: string;
  architecture: string;
  rounds: number;
  local_epochs: number;
  strategy: string;
  proximal_mu: number;
  server_momentum: number;
  dp_enabled: boolean;
  dp_noise_multiplier: number;
  dp_clipping_norm: number;
  secagg_enabled: boolean;
  min_sites: number;
  superlink_address: string;
  status: string;
  progress: number;
  message: string;
  error: string;
  history: HistoryEntry[];
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  sites: FederationSite[];
}

interface DiceFigures {
  mean?: number | null;
  label?: string;
}

// The round's global scan classifier on the site's test split (federation.services.rounds).
interface ClassifierSummary {
  trained: boolean;
  reason?: string;
  test_cases?: number;
  candidate?: { auc_micro: number | null };
  incumbent?: { label: string; auc_micro: number | null } | null;
}

interface FederationRound {
  number: number;
  sample_count: number;
  sent_bytes: number | null;
  sent_sha256: string;
  sent_to: string;
  sent_at: string | null;
  train_loss: number | null;
  train_seconds: number | null;
  global_sha256: string;
  participants: Participant[];
  test_figures: {
    test_cases?: number;
    candidate?: DiceFigures;
    incumbent?: DiceFigures | null;
    classifier?: ClassifierSummary;
  };
  model_version: number | null;
  promoted: boolean | null;
  decision: string;
  received_at: string | null;
}

interface PageData {
  institutions: { slug: string; name: string }[];
  exports: { id: number; version: number; campaign: string; cases: number | null }[];
}

const api = {
  runs: () => request<FederationRun[]>("/api/federation/runs/"),
  join: (key: string, exportId: number, start: boolean) =>
    request<FederationSite>("/api/federation/sites/", {
      method: "POST",
      body: { key, export: exportId, start },
    }),
  siteStart: (id: number) =>
    request<FederationSite>(`/api/federation/sites/${id}/start/`, { method: "POST" }),
  siteLeave: (id: number, reason: string) =>
    request<FederationSite>(`/api/federation/sites/${id}/leave/`, {
      method: "POST",
      body: { reason },
    }),
  rounds: (id: number) => request<FederationRound[]>(`/api/federation/sites/${id}/rounds/`),
  invitation: (id: number) =>
    request<Record<string, unknown>>(`/api/federation/runs/${id}/invitation/`),
  importInvitation: (invitation: string, institution: string) =>
    request<FederationRun>("/api/federation/invitations/", {
      method: "POST",
      body: { invitation, institution },
    }),
  runStart: (id: number) =>
    request<FederationRun>(`/api/federation/runs/${id}/start/`, { method: "POST" }),
  runCancel: (id: number, reason: string) =>
    request<FederationRun>(`/api/federation/runs/${id}/cancel/`, {
      method: "POST",
      body: { reason },
    }),
};

const page = pageData<PageData>("federation-page", { institutions: [], exports: [] });
const mine = new Set(page.institutions.map((i) => i.slug));
const STATE_WORDS: Record<string, string> = { joined: "Joined", left: "Left" };
const LEAVABLE = new Set(["joined", "queued", "running"]);
const STARTABLE = new Set(["joined"]);
const INVITABLE = new Set(["open", "queued", "running"]);
const INVITATION_MAX_BYTES = 64 * 1024; // the server's limit: an invitation is a few KiB
let refreshTimer: number | undefined;

function state(status: string): HTMLElement {
  const node = badge(status);
  if (STATE_WORDS[status]) node.textContent = STATE_WORDS[status];
  return node;
}

function sha(value: string | null | undefined): Node | string {
  return value ? el("code", { title: value, className: "sha" }, value.slice(0, 12)) : DASH;
}

function dice(f: DiceFigures | null | undefined): string {
  return f && f.mean !== undefined && f.mean !== null ? num(f.mean, 3) : DASH;
}

function classifierAuc(c: ClassifierSummary | undefined): string | HTMLElement {
  if (!c) return DASH;
  if (!c.trained) return el("span", { title: c.reason ?? "" }, "not trained");
  const auc = (v: number | null | undefined) => (v === null || v === undefined ? DASH : num(v, 3));
  return `${auc(c.candidate?.auc_micro)} / ${c.incumbent ? auc(c.incumbent.auc_micro) : DASH}`;
}

// --- one run -----------------------------------------------------------------------------------

function runFacts(run: FederationRun): HTMLElement {
  const dp = run.dp_enabled
    ? `on (noise multiplier ${run.dp_noise_multiplier}, clipping norm ${run.dp_clipping_norm})`
    : "off";
  const strategy =
    run.strategy === "fedprox"
      ? `FedProx (μ = ${run.proximal_mu})`
      : run.strategy === "fedavgm"
        ? `FedAvgM (server momentum ${run.server_momentum})`
        : run.strategy.toUpperCase();
  const coordinator = run.is_remote
    ? `${run.coordinator} (another CurateCT) · ${run.superlink_address}`
    : `${run.institution} · ${run.superlink_address}`;
  const facts: [string, Node | string][] = [
    ["Coordinator", coordinator],
    [
      "Progress",
      `${run.history.length} of ${run.rounds} rounds${run.message ? ` — ${run.message}` : ""}`,
    ],
    ["Training", `${run.architecture}, ${run.local_epochs} local epoch(s) per round, ${strategy}`],
    ["Differential privacy", dp],
    [
      "Secure aggregation",
      run.secagg_enabled
        ? "on (SecAgg+: each site sends a masked update; the coordinator can unmask only their sum)"
        : "off",
    ],
    ["Run key", el("code", { className: "run-key" }, run.key)],
    ["Declared", when(run.created_at)],
  ];
  if (run.error) facts.push(["Error", el("span", { className: "error" }, run.error)]);
  return el(
    "dl",
    { className: "facts" },
    ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]),
  );
}

function siteActions(site: FederationSite, notice: HTMLElement): Node | string {
  if (!mine.has(site.institution)) return DASH;
  const buttons: HTMLButtonElement[] = [];
  if (STARTABLE.has(site.status)) {
    const start = el("button", { type: "button", className: "small" }, "Start SuperNode");
    start.addEventListener("click", () => void act(start, notice, () => api.siteStart(site.id)));
    buttons.push(start);
  }
  if (LEAVABLE.has(site.status)) {
    const leave = el(
      "button",
      {
        type: "button",
        className: "small danger",
        attrs: { "aria-label": `Leave run ${site.run}` },
      },
      "Leave the run",
    );
    leave.addEventListener("click", () => {
      const reason = byId<HTMLInputElement>("leave-reason").value.trim();
      void act(leave, notice, () => api.siteLeave(site.id, reason), "This site left the run.");
    });
    buttons.push(leave);
  }
  return buttons.length ? el("span", { className: "actions" }, ...buttons) : DASH;
}

function coordinatorActions(run: FederationRun, notice: HTMLElement): HTMLElement | null {
  // A copy of another installation's run is started and cancelled there, not here.
  if (!mine.has(run.institution) || run.is_remote) return null;
  const buttons: HTMLButtonElement[] = [];
  if (INVITABLE.has(run.status)) {
    const invite = el(
      "button",
      {
        type: "button",
        className: "small",
        attrs: { "aria-label": `Download the invitation of run ${run.id}` },
      },
      "Download the invitation",
    );
    invite.addEventListener("click", () => {
      void act(
        invite,
        notice,
        async () =>
          download(`curatect-invitation-run-${run.id}.json`, await api.invitation(run.id)),
        "Invitation downloaded: send the file to each site's data manager (it holds no key).",
      );
    });
    buttons.push(invite);
  }
  if (run.status === "open") {
    const start = el("button", { type: "button", className: "primary small" }, "Start the run");
    start.addEventListener("click", () => void act(start, notice, () => api.runStart(run.id)));
    buttons.push(start);
  }
  if (run.status === "open" || run.status === "queued") {
    const cancel = el("button", { type: "button", className: "small danger" }, "Cancel the run");
    cancel.addEventListener("click", () => {
      const reason = byId<HTMLInputElement>("leave-reason").value.trim();
      void act(cancel, notice, () => api.runCancel(run.id, reason), "The run was cancelled.");
    });
    buttons.push(cancel);
  }
  return buttons.length ? el("div", { className: "actions" }, ...buttons) : null;
}

function sitesTable(run: FederationRun, notice: HTMLElement): HTMLTableElement {
  return table(
    `Sites of ${run.name}`,
    ["Site", "Export", "Status", "Joined", "Left", ""],
    run.sites.map((s) => [
      mine.has(s.institution) ? el("strong", {}, `${s.institution} (this site)`) : s.institution,
      s.export_version ? `v${s.export_version}` : `export ${s.export}`,
      el(
        "span",
        { className: "stack" },
        state(s.status),
        s.error ? el("span", { className: "error" }, s.error) : null,
        s.left_reason ? el("span", { className: "muted" }, s.left_reason) : null,
      ),
      when(s.joined_at),
      when(s.left_at),
      siteActions(s, notice),
    ]),
    { className: "data federation-sites" },
  );
}

function download(filename: string, document_: unknown): void {
  const url = URL.createObjectURL(
    new Blob([JSON.stringify(document_, null, 2)], { type: "application/json" }),
  );
  const link = el("a", { attrs: { href: url, download: filename } });
  document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function siteName(p: Participant): string {
  return p.institution || (p.site !== null ? `site ${p.site}` : "a site");
}

function historyTable(run: FederationRun): HTMLElement {
  if (run.is_remote && !run.history.length) {
    return el(
      "p",
      { className: "muted" },
      `The rounds are aggregated at ${run.coordinator}; this site's own rounds are below.`,
    );
  }
  if (!run.history.length) return el("p", { className: "muted" }, "No round aggregated yet.");
  return table(
    `Rounds of ${run.name} at the coordinator`,
    ["Round", "Sites", "Samples", "Parameters received", "Failed replies", "Aggregated"],
    [...run.history]
      .sort((a, b) => a.round - b.round)
      .map((h) => [
        String(h.round),
        h.participants.map(siteName).join(", ") || DASH,
        String(h.participants.reduce((n, p) => n + p.samples, 0)),
        bytes(h.participants.reduce((n, p) => n + (p.bytes ?? 0), 0)),
        String(h.failed_replies ?? 0),
        when(h.at),
      ]),
    { className: "data federation-history" },
  );
}

async function outgoingLog(site: FederationSite, run: FederationRun): Promise<HTMLElement> {
  const rows = await api.rounds(site.id);
  const heading = el("h4", {}, `What left this site (${site.institution}) and what came back`);
  if (!rows.length) {
    return el(
      "div",
      {},
      heading,
      el("p", { className: "muted" }, "Nothing has left this site yet."),
    );
  }
  const masked = run.secagg_enabled
    ? el(
        "p",
        { className: "muted" },
        "Secure aggregation: what left each round is the masked update (SecAgg+); size and SHA-256 are those of the masked vector as it left.",
      )
    : null;
  return el(
    "div",
    {},
    heading,
    masked,
    table(
      `Outgoing log of ${site.institution} in ${run.name}`,
      [
        "Round",
        "Samples",
        "Size",
        "SHA-256",
        "To",
        "Sent",
        "Train loss",
        "Train time",
        "Global model",
        "Test Dice (global / active)",
        "Classifier micro-AUC (global / active)",
        "Promoted",
        "Received",
      ],
      rows.map((r) => [
        String(r.number),
        String(r.sample_count),
        bytes(r.sent_bytes),
        sha(r.sent_sha256),
        r.sent_to || DASH,
        when(r.sent_at),
        num(r.train_loss, 4),
        duration(r.train_seconds),
        sha(r.global_sha256),
        `${dice(r.test_figures?.candidate)} / ${dice(r.test_figures?.incumbent)}`,
        classifierAuc(r.test_figures?.classifier),
        r.promoted === null
          ? DASH
          : el(
              "span",
              { title: r.decision },
              r.promoted ? "yes" : "no",
              r.decision ? ` — ${r.decision}` : "",
            ),
        when(r.received_at),
      ]),
      { className: "data federation-rounds" },
    ),
  );
}

async function runCard(run: FederationRun, notice: HTMLElement): Promise<HTMLElement> {
  const card = el(
    "article",
    { className: "card federation-run", dataset: { run: run.id } },
    el(
      "h3",
      {},
      run.name,
      " ",
      // The copy's own status never moves: the run goes on at the coordinator.
      run.is_remote
        ? el("span", { className: "state" }, "coordinated elsewhere")
        : state(run.status),
    ),
    runFacts(run),
    coordinatorActions(run, notice),
    sitesTable(run, notice),
    el("h4", {}, "Rounds"),
    historyTable(run),
  );
  for (const site of run.sites.filter((s) => mine.has(s.institution))) {
    try {
      card.append(await outgoingLog(site, run));
    } catch (error) {
      card.append(
        el(
          "p",
          { className: "error" },
          `Could not load this site's rounds: ${errorMessage(error)}`,
        ),
      );
    }
  }
  return card;
}

// --- the page ----------------------------------------------------------------------------------

async function loadRuns(): Promise<void> {
  const root = byId("runs");
  const notice = byId("runs-notice");
  window.clearTimeout(refreshTimer);
  try {
    const runs = await api.runs();
    if (!runs.length) {
      root.replaceChildren(
        el("p", { className: "muted" }, "This site takes part in no federation run yet."),
      );
    } else {
      root.replaceChildren(...(await Promise.all(runs.map((r) => runCard(r, notice)))));
    }
    // A run in progress changes every round: follow it without a reload.
    if (runs.some((r) => r.status === "queued" || r.status === "running")) {
      refreshTimer = window.setTimeout(refreshWhenIdle, 5000);
    }
  } catch (error) {
    showLoadError(root, "Could not load the federation runs", error);
  } finally {
    root.setAttribute("aria-busy", "false");
  }
}

/** Re-render the runs only while the keyboard is not inside them: a redraw would drop the focus
 * of someone about to press "Leave the run". */
function refreshWhenIdle(): void {
  if (byId("runs").contains(document.activeElement)) {
    refreshTimer = window.setTimeout(refreshWhenIdle, 5000);
    return;
  }
  void loadRuns();
}

async function act(
  button: HTMLButtonElement,
  notice: HTMLElement,
  work: () => Promise<unknown>,
  done = "Done.",
): Promise<void> {
  try {
    await busy(button, work);
    say(notice, done, "ok");
    await loadRuns();
  } catch (error) {
    sayError(notice, "That did not work", error);
  }
}

byId<HTMLFormElement>("join-form").addEventListener("submit", (evt) => {
  evt.preventDefault();
  const notice = byId("join-notice");
  const keyInput = byId<HTMLInputElement>("join-key");
  const key = keyInput.value.trim();
  const exportId = Number(byId<HTMLSelectElement>("join-export").value);
  if (!key) {
    say(notice, "Enter the run key the coordinator gave you.", "error");
    keyInput.focus();
    return;
  }
  if (!exportId) {
    say(
      notice,
      "This site has no finished export yet: export its curated labels first (Exports & models).",
      "error",
    );
    return;
  }
  const start = byId<HTMLInputElement>("join-start").checked;
  void busy(byId<HTMLButtonElement>("join-submit"), () => api.join(key, exportId, start)).then(
    async (site) => {
      say(notice, `This site joined the run with export v${site.export_version}.`, "ok");
      keyInput.value = "";
      await loadRuns();
    },
    (error) => {
      sayError(notice, "Could not join the run", error);
      keyInput.focus();
    },
  );
});

const inviteText = byId<HTMLTextAreaElement>("invite-text");

byId<HTMLInputElement>("invite-file").addEventListener("change", (evt) => {
  const file = (evt.target as HTMLInputElement).files?.[0];
  const notice = byId("invite-notice");
  if (!file) return;
  if (file.size > INVITATION_MAX_BYTES) {
    say(
      notice,
      `${file.name} is ${bytes(file.size)}; an invitation is a few KB: is it the right file?`,
      "error",
    );
    return;
  }
  void file.text().then(
    (text) => {
      inviteText.value = text;
      say(notice, `${file.name} read; check it and import it.`, "info");
    },
    (error) => sayError(notice, `Could not read ${file.name}`, error),
  );
});

byId<HTMLFormElement>("invite-form").addEventListener("submit", (evt) => {
  evt.preventDefault();
  const notice = byId("invite-notice");
  const text = inviteText.value.trim();
  if (!text) {
    say(notice, "Choose the invitation file or paste its text first.", "error");
    inviteText.focus();
    return;
  }
  const institution = document.querySelector<HTMLSelectElement>("#invite-institution")?.value ?? "";
  void busy(byId<HTMLButtonElement>("invite-submit"), () =>
    api.importInvitation(text, institution),
  ).then(
    async (run) => {
      say(
        notice,
        `Imported "${run.name}", coordinated by ${run.coordinator}. Now join it below with one of your exports.`,
        "ok",
      );
      inviteText.value = "";
      byId<HTMLInputElement>("join-key").value = run.key;
      byId<HTMLSelectElement>("join-export").focus();
      await loadRuns();
    },
    (error) => {
      sayError(notice, "Could not import the invitation", error);
      inviteText.focus();
    },
  );
});

void loadRuns();

// The models view: what is missing (first run), catalog downloads with
// live progress, pause/resume/cancel, installed versions (activate, roll
// back, verify, clean up) and offline import.
import { h, humanBytes, humanDuration, icon } from "./dom.js";
import { post } from "./api.js";
import { confirmDialog, errorToast, toast } from "./dialogs.js";

export function renderModels(app) {
  const data = app.models;
  const page = h("div", { class: "page-inner" });
  if (!data) {
    page.append(h("p", { class: "muted" }, "Loading models…"));
  } else {
    if (data.missing_required.length) page.append(firstRunCard(app, data));
    // The import form is kept across refreshes: what the person typed and
    // an import in flight survive the live progress updates.
    app.importCard ||= importCard(app);
    page.append(catalogCard(app, data), installedCard(app, data), app.importCard);
  }
  return h("section", { class: "view", "aria-label": "Models" },
    h("header", { class: "view-header" }, h("h1", {}, "Models")),
    h("div", { class: "page", tabindex: 0 }, page));
}

function firstRunCard(app, data) {
  const missing = data.catalog.filter((m) => data.missing_required.includes(m.name));
  const total = missing.reduce((n, m) => n + m.size, 0);
  const anyRunning = missing.some((m) => downloadOf(data, m.name)?.status === "running");
  return h("div", { class: "card", id: "first-run" },
    h("h2", {}, "Finish setting up Jarvis"),
    h("p", {}, "Jarvis runs its AI models on this computer. These are needed before it can answer:"),
    h("ul", {}, missing.map((m) => h("li", {}, h("strong", {}, m.name), ` — ${m.description || m.role} (${humanBytes(m.size)})`))),
    h("div", { class: "row-actions" },
      h("button", {
        type: "button", class: "btn primary", id: "download-required", disabled: anyRunning,
        onclick: () => Promise.all(missing.map((m) => startDownload(app, m.name))),
      }, icon("download"), `Download ${humanBytes(total)}`),
      h("span", { class: "muted small" }, "Or import a model you already have, below.")));
}

function catalogCard(app, data) {
  const card = h("div", { class: "card", id: "catalog" }, h("h2", {}, "Available models"));
  if (data.catalog_error) {
    card.append(h("p", { class: "error-text" }, `The model catalog could not be read: ${data.catalog_error}`));
  }
  for (const m of data.catalog) {
    const download = downloadOf(data, m.name);
    const installedModel = data.installed.find((i) => i.name === m.name);
    const badges = [
      m.required && h("span", { class: "badge required" }, "required"),
      m.installed && h("span", { class: "badge active" }, "installed"),
    ];
    const row = h("div", { class: "model-row", dataset: { model: m.name } },
      h("div", { class: "info" },
        h("div", { class: "name" }, m.name, " ", h("span", { class: "muted small" }, m.version), badges),
        h("div", { class: "muted small" }, `${m.description || m.role} · ${humanBytes(m.size)}`)),
      h("div", { class: "row-actions" }, catalogActions(app, m, download, installedModel)));
    if (download && download.status !== "done") row.append(progressElement(download));
    card.append(row);
  }
  return card;
}

function catalogActions(app, m, download) {
  const status = download?.status;
  if (status === "running") {
    return [
      h("button", { type: "button", class: "btn", onclick: () => act(app, `/launcher/models/${m.name}/pause`) }, "Pause"),
      h("button", { type: "button", class: "btn danger", onclick: () => cancelDownload(app, m) }, "Cancel"),
    ];
  }
  if (status === "paused" || status === "failed") {
    return [
      h("button", { type: "button", class: "btn primary", onclick: () => startDownload(app, m.name) }, status === "failed" ? "Retry" : "Resume"),
      h("button", { type: "button", class: "btn danger", onclick: () => cancelDownload(app, m) }, "Cancel"),
    ];
  }
  if (m.installed) return [];
  const label = m.staged_bytes > 0 ? `Resume (${humanBytes(m.staged_bytes)} of ${humanBytes(m.size)} done)` : "Download";
  return [h("button", { type: "button", class: "btn", onclick: () => startDownload(app, m.name) }, icon("download"), label)];
}

function progressElement(d) {
  const percent = d.bytes_total ? Math.min(100, (100 * d.bytes_done) / d.bytes_total) : 0;
  // Through the CSSOM: the CSP allows no inline style attributes.
  const fill = h("span");
  fill.style.width = `${percent.toFixed(1)}%`;
  const bar = h("div", { class: "progress-bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": Math.round(percent), "aria-label": `Download of ${d.name}` }, fill);
  const parts = [h("span", { class: "bytes" }, `${humanBytes(d.bytes_done)} of ${humanBytes(d.bytes_total)} (${percent.toFixed(0)}%)`)];
  if (d.status === "running") {
    if (d.stalled) parts.push(h("span", { class: "stall" }, "No data is arriving — still trying…"));
    else if (d.bytes_per_second > 0) parts.push(h("span", {}, `${humanBytes(d.bytes_per_second)}/s`));
    if (d.eta_seconds && !d.stalled) parts.push(h("span", {}, `${humanDuration(d.eta_seconds)} left`));
    if (d.phase && !["downloading", "starting"].includes(d.phase)) parts.push(h("span", {}, d.phase));
  } else if (d.status === "paused") {
    parts.push(h("span", {}, "Paused"));
  } else if (d.status === "failed") {
    parts.push(h("span", { class: "error-text" }, d.error || "Failed"));
  }
  return h("div", { class: `progress${d.stalled ? " stalled" : ""}`, dataset: { status: d.status } }, bar, h("div", { class: "progress-text" }, parts));
}

function installedCard(app, data) {
  const card = h("div", { class: "card", id: "installed" },
    h("h2", {}, "Installed"),
    h("div", { class: "row-actions" },
      h("button", { type: "button", class: "btn", id: "verify-models", onclick: () => verify(app) }, "Verify files"),
      h("button", { type: "button", class: "btn", id: "gc-models", onclick: () => gc(app) }, "Remove unused versions")));
  if (!data.installed.length) {
    card.append(h("p", { class: "muted" }, "No model is installed yet."));
  }
  for (const model of data.installed) {
    for (const v of model.versions) {
      const badges = [
        v.active && h("span", { class: "badge active" }, "active"),
        v.previous && h("span", { class: "badge" }, "previous"),
      ];
      const actions = [];
      if (!v.active) {
        actions.push(h("button", {
          type: "button", class: "btn", onclick: () => act(app, `/launcher/models/${model.name}/activate`, { version: v.version }, `${model.name} ${v.version} is now active.`),
        }, "Activate"));
      }
      if (v.active && model.previous) {
        actions.push(h("button", { type: "button", class: "btn", onclick: () => act(app, `/launcher/models/${model.name}/rollback`, {}, `${model.name} rolled back.`) }, "Roll back"));
      }
      card.append(h("div", { class: "model-row", dataset: { installed: `${model.name}/${v.version}` } },
        h("div", { class: "info" },
          h("div", { class: "name" }, model.name, " ", h("span", { class: "muted small" }, v.version), badges),
          h("div", { class: "muted small" }, `${v.role === "llm" ? "chat" : "speech to text"} · ${humanBytes(v.size)} · installed ${new Date(v.installed_at).toLocaleString()}`)),
        h("div", { class: "row-actions" }, actions)));
    }
  }
  return card;
}

function importCard(app) {
  const path = h("input", { id: "import-path", class: "grow", placeholder: "/home/me/Downloads/model.gguf", autocomplete: "off" });
  const name = h("input", { id: "import-name", placeholder: "optional" });
  const version = h("input", { id: "import-version", placeholder: "optional" });
  const result = h("p", { class: "small", id: "import-result", "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "btn primary" }, "Import");
  const form = h("form", {
    class: "form-row",
    onsubmit: async (e) => {
      e.preventDefault();
      button.disabled = true;
      result.className = "small muted";
      result.textContent = "Importing… (large files take a moment to check)";
      try {
        const reply = await post("/launcher/models/import", { path: path.value.trim(), name: name.value.trim() || undefined, version: version.value.trim() || undefined });
        const names = reply.imported.map((r) => `${r.name} ${r.version}`).join(", ");
        result.className = "small ok-text";
        result.textContent = `Imported ${names}${reply.activated.length ? " and activated it" : ""}.`;
        await app.refreshModels();
      } catch (err) {
        result.className = "small error-text";
        result.textContent = err.hint ? `${err.message} — ${err.hint}` : err.message;
      } finally {
        button.disabled = false;
      }
    },
  },
  h("label", { class: "grow" }, "File, folder or model pack (.zip)", path),
  h("label", {}, "Name", name),
  h("label", {}, "Version", version),
  button);
  return h("div", { class: "card", id: "import" },
    h("h2", {}, "Import a model (offline)"),
    h("p", { class: "muted small" }, "A GGUF file is a chat model; a whisper.cpp file or a faster-whisper folder is speech to text. Catalog models are recognised by their contents; name others yourself."),
    form, result);
}

function downloadOf(data, name) {
  return data.downloads.find((d) => d.name === name);
}

async function startDownload(app, name) {
  await act(app, `/launcher/models/${name}/download`);
}

async function cancelDownload(app, m) {
  const ok = await confirmDialog({
    title: `Cancel the download of ${m.name}?`,
    message: "What was downloaded so far is deleted; starting again downloads it from the beginning.",
    confirm: "Cancel download",
    danger: true,
  });
  if (ok) await act(app, `/launcher/models/${m.name}/cancel`, {}, `The download of ${m.name} was cancelled.`);
}

async function act(app, path, body = {}, done) {
  try {
    await post(path, body);
    if (done) toast(done);
  } catch (e) {
    errorToast(e);
  }
  await app.refreshModels();
}

async function verify(app) {
  toast("Checking every model file…");
  try {
    const reply = await post("/launcher/models/verify");
    if (reply.damaged) toast(`${reply.damaged} file(s) are damaged; download the model again.`, { error: true, timeout: 10000 });
    else toast(`All ${reply.checks.length} model files are intact.`);
  } catch (e) { errorToast(e); }
}

async function gc(app) {
  const ok = await confirmDialog({
    title: "Remove unused model versions?",
    message: "Versions that are neither active nor the previous one are deleted from disk.",
    confirm: "Remove",
    danger: true,
  });
  if (!ok) return;
  try {
    const reply = await post("/launcher/models/gc");
    const freed = reply.removed.reduce((n, r) => n + r.size, 0);
    toast(reply.removed.length ? `Removed ${reply.removed.length} version(s), ${humanBytes(freed)} freed.` : "Nothing to remove.");
  } catch (e) { errorToast(e); }
  await app.refreshModels();
}

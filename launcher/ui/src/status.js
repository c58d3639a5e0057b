// The status view: the core's health (Redis, models), versions, folders,
// and `jarvis doctor`'s checks in words.
import { h } from "./dom.js";
import { get } from "./api.js";

export function renderStatus(app) {
  const page = h("div", { class: "page-inner" });
  const section = h("section", { class: "view", "aria-label": "Status" },
    h("header", { class: "view-header" }, h("h1", {}, "Status"),
      h("button", { type: "button", class: "btn", onclick: () => app.show("status") }, "Check again")),
    h("div", { class: "page", tabindex: 0 }, page));
  page.append(h("p", { class: "muted" }, "Checking…"));
  load(page);
  return section;
}

async function load(page) {
  let status, doctor;
  try {
    [status, doctor] = await Promise.all([get("/launcher/status"), get("/launcher/doctor")]);
  } catch (e) {
    page.replaceChildren(h("p", { class: "error-text" }, e.message));
    return;
  }
  const core = status.core || {};
  const redisOk = core.redis?.ok;
  const missing = core.models?.missing || [];
  const instance = status.instance || {};
  const health = h("div", { class: "card", id: "health" },
    h("h2", {}, core.ready && !missing.length ? "Jarvis is running well" : "Jarvis needs attention"),
    h("dl", { class: "kv" },
      h("dt", {}, "Memory (Redis)"), h("dd", { class: redisOk ? "ok-text" : "error-text" }, redisOk ? `connected${instance.redis ? ` (Redis ${instance.redis.version}, port ${instance.redis.port})` : ""}` : (core.redis?.detail || "not reachable")),
      h("dt", {}, "Brain (core)"), h("dd", { class: core.error ? "error-text" : "ok-text" }, core.error || `running${instance.core ? ` (version ${instance.core.version}, restarts ${instance.core.restarts})` : ""}`),
      h("dt", {}, "Models"), h("dd", { class: missing.length ? "error-text" : "ok-text" }, missing.length ? `missing: ${missing.join(", ")}` : "all required models are ready")));
  const about = h("div", { class: "card", id: "about" },
    h("h2", {}, "This installation"),
    h("dl", { class: "kv" },
      h("dt", {}, "Launcher"), h("dd", {}, status.launcher_version),
      h("dt", {}, "App version"), h("dd", {}, status.app_version || "development build"),
      h("dt", {}, "Updates"), h("dd", { id: "updates-mode" }, status.updates || ""),
      h("dt", {}, "Data folder"), h("dd", {}, status.paths.data),
      h("dt", {}, "Models folder"), h("dd", {}, status.paths.models),
      h("dt", {}, "Logs"), h("dd", {}, status.paths.logs)));
  const checks = h("div", { class: "card", id: "doctor" }, h("h2", {}, "Checks"),
    doctor.checks.map((c) => h("div", { class: `check ${c.ok ? "ok" : "fail"}` },
      h("span", { class: "mark", "aria-label": c.ok ? "passed" : "failed" }, c.ok ? "✓" : "✗"),
      h("div", {}, h("strong", {}, c.name), h("div", { class: "small muted" }, c.detail),
        c.hints.map((hint) => h("div", { class: "small" }, `How to fix: ${hint}`))))));
  page.replaceChildren(health, about, checks);
}

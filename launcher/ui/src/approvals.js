// The approval page: its own origin, apart from the chat UI. It shows
// each action Jarvis asked for, complete and as plain text, and sends the
// person's decision with the hash of exactly what was shown. Buttons wake
// up only a moment after a request appears (and after the page comes to
// the front), so a click meant for something else cannot approve it.
import { get, post } from "./api.js";
import { h, relativeTime } from "./dom.js";

const ARM_DELAY_MS = 800;
const SOURCES = {
  slash: "You typed a command in the chat",
  model: "The AI model asked for it",
  api: "An app using Jarvis' API asked for it",
};

const theme = matchMedia("(prefers-color-scheme: dark)");
const applyTheme = () => { document.documentElement.dataset.theme = theme.matches ? "dark" : "light"; };
applyTheme();
theme.addEventListener("change", applyTheme);

const root = document.getElementById("approvals");
const state = { pending: [], shownAt: new Map(), visibleAt: performance.now(), timeout: 0 };
window.jarvisApprovals = state;

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) state.visibleAt = performance.now();
});
window.addEventListener("focus", () => { state.visibleAt = performance.now(); });

function toast(message, kind = "") {
  const el = h("div", { class: `toast ${kind}` }, message);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), 5000);
}

function armed(id) {
  const since = Math.max(state.shownAt.get(id) ?? 0, state.visibleAt);
  return performance.now() - since >= ARM_DELAY_MS;
}

function requestCard(p) {
  if (!state.shownAt.has(p.id)) state.shownAt.set(p.id, performance.now());
  const args = h("pre", { class: "arguments", "aria-label": "Complete arguments" });
  args.textContent = p.arguments_text; // text, never HTML
  const decide = async (choice, button) => {
    if (!armed(p.id)) return;
    for (const b of card.querySelectorAll("button")) b.disabled = true;
    try {
      const result = await post("/gate/decide", { id: p.id, arguments_hash: p.arguments_hash, choice });
      const s = result.state;
      toast(s.status === "done" ? `Done: ${p.tool}` : s.status === "denied" ? `Denied: ${p.tool}` : `${p.tool}: ${s.status}${s.reason ? ` (${s.reason})` : ""}`, s.status === "failed" ? "error" : "");
    } catch (e) {
      toast(e.message, "error");
    }
    await refresh(true);
    button?.blur();
  };
  const buttons = [
    h("button", { type: "button", class: "btn primary", "data-choice": "once", onclick: (e) => decide("once", e.currentTarget) }, "Allow once"),
    p.conversation_id && h("button", { type: "button", class: "btn", "data-choice": "conversation", onclick: (e) => decide("conversation", e.currentTarget) }, "Allow in this conversation"),
    p.may_always_allow && h("button", { type: "button", class: "btn", "data-choice": "always", onclick: (e) => decide("always", e.currentTarget) }, "Always allow"),
    h("button", { type: "button", class: "btn danger", "data-choice": "deny", onclick: (e) => decide("deny", e.currentTarget) }, "Deny"),
  ];
  const card = h("article", { class: "card approval", dataset: { id: p.id, tool: p.tool } },
    h("h2", {}, p.description, h("span", { class: `badge tier-${p.tier}` }, p.tier.replace("_", " "))),
    h("p", { class: "muted small" }, `${p.tool} · ${p.tier_description} · ${SOURCES[p.source] || p.source}`,
      p.conversation_id ? ` · conversation ${p.conversation_id.slice(0, 8)}` : ""),
    args,
    h("p", { class: "muted small" }, `Denied automatically at ${new Date(p.expires_at).toLocaleTimeString()} unless you decide.`),
    h("div", { class: "row-actions" }, buttons));
  return card;
}

function permissionsCard(permissions) {
  const card = h("section", { class: "card", id: "permissions", "aria-labelledby": "permissions-title" },
    h("h2", { id: "permissions-title" }, "Standing permissions"));
  if (!permissions.grants.length) card.append(h("p", { class: "muted" }, "None: every action asks you first."));
  for (const g of permissions.grants) {
    card.append(h("div", { class: "model-row", dataset: { grant: `${g.tool}/${g.scope}` } },
      h("div", {}, h("strong", {}, g.tool), " ", g.scope === "always" ? "always" : `in conversation ${String(g.conversation_id).slice(0, 8)}`,
        h("div", { class: "muted small" }, `given ${new Date(g.granted_at).toLocaleString()}`)),
      h("div", { class: "row-actions" }, h("button", {
        type: "button", class: "btn", "aria-label": `Revoke ${g.tool} ${g.scope}`,
        onclick: async () => {
          try { await post("/gate/permissions/revoke", { tool: g.tool, conversation_id: g.conversation_id ?? null }); toast(`Revoked: ${g.tool} asks again`); } catch (e) { toast(e.message, "error"); }
          refresh(true);
        },
      }, "Revoke"))));
  }
  const input = h("input", { id: "folder-path", class: "grow", type: "text", placeholder: "/home/me/Documents", "aria-label": "Folder to allow", autocomplete: "off" });
  card.append(h("h3", {}, "Folders Jarvis may read and open"));
  if (!permissions.folders.length) card.append(h("p", { class: "muted" }, "No folder yet: reading and opening files is refused."));
  for (const folder of permissions.folders) {
    card.append(h("div", { class: "model-row", dataset: { folder } }, h("code", {}, folder),
      h("div", { class: "row-actions" }, h("button", {
        type: "button", class: "btn", "aria-label": `Stop allowing ${folder}`,
        onclick: async () => { try { await post("/gate/folders/remove", { path: folder }); } catch (e) { toast(e.message, "error"); } refresh(true); },
      }, "Remove"))));
  }
  card.append(h("form", {
    class: "form-row", id: "folder-form",
    onsubmit: async (e) => {
      e.preventDefault();
      try { await post("/gate/folders", { path: input.value.trim() }); input.value = ""; } catch (err) { toast(err.message, "error"); }
      refresh(true);
    },
  }, input, h("button", { type: "submit", class: "btn" }, "Allow folder")));
  return card;
}

function auditCard(entries) {
  const list = h("ol", { class: "audit" });
  for (const e of entries.slice(0, 40)) {
    const what = e.event === "decided" ? `${e.decision} (by ${e.by})` : e.event === "result" ? e.status : e.event.replaceAll("_", " ");
    list.append(h("li", {}, h("span", { class: "muted small" }, new Date(e.at).toLocaleTimeString()), " ",
      h("code", {}, e.tool || (e.id ? e.id.slice(0, 8) : "")), " ", what, e.reason ? ` — ${e.reason}` : ""));
  }
  return h("section", { class: "card", id: "audit", "aria-labelledby": "audit-title" },
    h("h2", { id: "audit-title" }, "Recent activity"), entries.length ? list : h("p", { class: "muted" }, "Nothing yet."));
}

function remindersCard(reminders) {
  const card = h("section", { class: "card", id: "reminders", "aria-labelledby": "reminders-title" }, h("h2", { id: "reminders-title" }, "Reminders"));
  if (!reminders.upcoming.length && !reminders.fired.length) card.append(h("p", { class: "muted" }, "No reminders."));
  for (const r of reminders.upcoming) card.append(h("p", {}, `${new Date(r.due_at).toLocaleString()}: ${r.text}`));
  for (const r of reminders.fired.slice(0, 5)) card.append(h("p", { class: "muted" }, `Reminded ${relativeTime(r.fired_at)}: ${r.text}`));
  return card;
}

// Pending requests are polled every second; the rest (permissions, the
// audit log, reminders) when the pending set changes, after an action
// here, and every 10 seconds: the audit log is read from disk each time.
const SLOW_REFRESH_MS = 10_000;
let rendered = "";
let slow = null; // { permissions, audit, reminders, at, ids }
async function refresh(force = false) {
  try {
    const pending = await get("/gate/pending");
    const ids = pending.pending.map((p) => p.id).join(",");
    if (force || !slow || slow.ids !== ids || performance.now() - slow.at > SLOW_REFRESH_MS) {
      const [permissions, audit, reminders] = await Promise.all([
        get("/gate/permissions"), get("/gate/audit"), get("/gate/reminders").catch(() => ({ upcoming: [], fired: [] })),
      ]);
      slow = { permissions, audit, reminders, at: performance.now(), ids };
    }
    const { permissions, audit, reminders } = slow;
    const key = JSON.stringify([ids, permissions, audit.entries[0]?.at, reminders]);
    state.pending = pending.pending;
    if (key === rendered && root.childElementCount) return;
    rendered = key;
    const focused = document.activeElement?.id;
    root.replaceChildren(
      h("header", { class: "approvals-header" }, h("h1", {}, "Jarvis approvals"),
        h("p", { class: "muted" }, "Jarvis never acts on your computer without you. Check each request in full before you allow it.")),
      h("section", { id: "pending", "aria-labelledby": "pending-title", "aria-live": "polite" },
        h("h2", { id: "pending-title", class: "visually-hidden" }, "Waiting for you"),
        pending.pending.length ? pending.pending.map(requestCard) : h("p", { class: "card muted", id: "nothing-pending" }, "Nothing waits for your approval.")),
      permissionsCard(permissions), remindersCard(reminders), auditCard(audit.entries));
    root.setAttribute("aria-busy", "false");
    document.body.dataset.ready = "true";
    if (focused) document.getElementById(focused)?.focus();
  } catch (e) {
    if (e.status === 401) {
      root.replaceChildren(h("div", { class: "card" }, h("h1", {}, "Signed out"), h("p", {}, "Open the approvals again from Jarvis.")));
      return;
    }
    toast(e.message, "error");
  }
}

refresh(true);
setInterval(() => refresh(), 1000);

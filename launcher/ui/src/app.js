// The Jarvis UI: layout, conversations, views, banners, shortcuts.
import { h, icon, iconButton, relativeTime } from "./dom.js";
import { ApiError, ChatSocket, del, get, patch, post } from "./api.js";
import { ChatView } from "./chat.js";
import { renderModels } from "./models.js";
import { renderStatus } from "./status.js";
import { confirmDialog, errorToast, openDialog, promptDialog, showShortcuts, toast } from "./dialogs.js";
import { exportConversation } from "./export.js";

const SHORTCUTS = [
  [["Enter"], "Send the message"],
  [["Shift", "Enter"], "New line in the message"],
  [["Esc"], "Stop the answer"],
  [["Ctrl", "Shift", "Space"], "Push to talk (press again to stop)"],
  [["Ctrl", "Shift", "O"], "New conversation"],
  [["Ctrl", "K"], "Search conversations"],
  [["Ctrl", "/"], "Show these shortcuts"],
];

// How long a deleted conversation can be brought back before it is gone.
const UNDO_DELETE_MS = 6000;

class App {
  constructor(root) {
    this.root = root;
    this.view = "chat";
    this.conversations = [];
    this.query = "";
    this.current = null; // the open conversation, with messages
    this.models = null;
    this.updates = null;
    this.pendingDeletes = new Map();
    this.marks = {};
    this.engines = []; // the core's engines: {role, name, version, state, detail}
    this.chat = new ChatView(this);
  }

  async start() {
    try {
      await get("/launcher/session");
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return this.signedOut();
      throw e;
    }
    this.socket = new ChatSocket((m) => this.onSocketMessage(m), (s) => this.onSocketState(s));
    this.layout();
    await Promise.all([this.refreshConversations(), this.refreshModels(), this.refreshUpdates()]);
    this.show("chat");
    this.installShortcuts();
    setInterval(() => this.refreshUpdates(), 60_000);
    this.refreshGate();
    setInterval(() => this.refreshGate(), 3_000);
    this.root.removeAttribute("aria-busy");
    document.body.dataset.ready = "true";
  }

  signedOut() {
    this.root.className = "signed-out";
    this.root.removeAttribute("aria-busy");
    this.root.replaceChildren(h("main", { class: "signed-out-card" },
      h("h1", {}, "Open Jarvis to sign in"),
      h("p", {}, "For your safety this page only works when Jarvis opens it for you. Start Jarvis from its icon (or run ", h("code", {}, "jarvis open"), ") and it opens a signed-in window."),
      h("p", { class: "muted small" }, "Sign-in links work once and expire after two minutes.")));
    document.body.dataset.ready = "true";
  }

  layout() {
    this.root.className = "";
    this.search = h("input", {
      type: "search", class: "search", id: "search", placeholder: "Search conversations", "aria-label": "Search conversations",
      oninput: () => { clearTimeout(this.searchTimer); this.searchTimer = setTimeout(() => { this.query = this.search.value.trim(); this.refreshConversations(); }, 200); },
    });
    this.list = h("ul", { class: "conversation-list", id: "conversations", "aria-label": "Conversations" });
    this.navButtons = {
      chat: h("button", { type: "button", class: "btn", onclick: () => this.show("chat") }, "Chat"),
      models: h("button", { type: "button", class: "btn", id: "nav-models", onclick: () => this.show("models") }, "Models"),
      status: h("button", { type: "button", class: "btn", id: "nav-status", onclick: () => this.show("status") }, "Status"),
    };
    this.themeSelect = h("select", { id: "theme", "aria-label": "Theme", onchange: () => { localStorage.setItem("jarvis-theme", this.themeSelect.value); applyTheme(this.themeSelect.value); } },
      h("option", { value: "system" }, "Theme: system"), h("option", { value: "light" }, "Theme: light"), h("option", { value: "dark" }, "Theme: dark"));
    this.themeSelect.value = localStorage.getItem("jarvis-theme") || "system";
    const sidebar = h("nav", { class: "sidebar", "aria-label": "Jarvis" },
      h("div", { class: "brand" }, h("img", { src: "/assets/icon.svg", alt: "" }), "Jarvis"),
      h("div", { class: "sidebar-actions" },
        h("button", { type: "button", class: "btn primary", id: "new-chat", onclick: () => this.newConversation() }, icon("plus"), "New conversation"),
        this.search),
      this.list,
      h("div", { class: "nav" }, Object.values(this.navButtons),
        h("button", { type: "button", class: "btn", id: "export-all", onclick: () => this.exportAll() }, "Export all"),
        iconButton("keyboard", "Keyboard shortcuts (Ctrl+/)", () => showShortcuts(SHORTCUTS)),
        this.themeSelect));
    this.banners = h("div", { class: "banners", id: "banners" });
    this.main = h("main", { class: "main", id: "main" }, this.banners, h("div", { class: "view" }));
    this.root.replaceChildren(h("a", { href: "#main", class: "skip-link" }, "Skip to content"), sidebar, this.main);
  }

  show(view) {
    this.view = view;
    for (const [name, button] of Object.entries(this.navButtons)) {
      if (name === view) button.setAttribute("aria-current", "page");
      else button.removeAttribute("aria-current");
    }
    let el;
    if (view === "models") el = renderModels(this);
    else if (view === "status") el = renderStatus(this);
    else el = this.chat.render(this.current);
    this.main.replaceChildren(this.banners, el);
    this.renderBanners();
    if (view === "chat") this.chat.input.focus();
    if (view === "models") this.pollModels();
  }

  // Conversations.
  async refreshConversations() {
    try {
      const q = this.query ? `&q=${encodeURIComponent(this.query)}` : "";
      const reply = await get(`/v1/conversations?limit=200${q}`);
      this.conversations = reply.conversations.filter((c) => !this.pendingDeletes.has(c.id));
    } catch (e) {
      this.conversations = [];
      if (e.code !== "memory_unavailable") errorToast(e);
    }
    this.renderList();
  }

  renderList() {
    this.list.replaceChildren();
    if (!this.conversations.length) {
      this.list.append(h("li", { class: "empty-list" }, this.query ? "No conversation matches." : "No conversations yet."));
    }
    for (const c of this.conversations) {
      const current = this.current?.id === c.id;
      this.list.append(h("li", {},
        h("div", { class: `conversation-item${current ? " current" : ""}`, dataset: { id: c.id } },
          h("button", { type: "button", class: "open", "aria-current": current ? "true" : undefined, onclick: () => this.open(c.id) },
            c.title || "New conversation",
            h("span", { class: "conversation-when" }, relativeTime(c.updated_at))),
          iconButton("more", `Actions for “${c.title || "New conversation"}”`, () => this.conversationMenu(c), { class: "icon-btn menu" }))));
    }
  }

  async open(id) {
    try {
      this.current = await get(`/v1/conversations/${id}`);
      this.current.title = this.current.title || "";
      this.show("chat");
      this.renderList();
    } catch (e) { errorToast(e); }
  }

  async createConversation() {
    const created = await post("/v1/conversations");
    this.current = { id: created.id, title: "", created_at: created.created_at, messages: [] };
    this.chat.conversation = this.current;
    await this.refreshConversations();
    return this.current;
  }

  newConversation() {
    this.current = null;
    this.show("chat");
    this.renderList();
  }

  conversationMenu(c) {
    openDialog({
      title: c.title || "New conversation",
      body: h("p", { class: "muted" }, "What would you like to do with this conversation?"),
      actions: [
        h("button", { class: "btn", value: "cancel" }, "Close"),
        h("button", { class: "btn", value: "export-md" }, "Export Markdown"),
        h("button", { class: "btn", value: "export-json" }, "Export JSON"),
        h("button", { class: "btn", value: "rename", autofocus: true }, "Rename"),
        h("button", { class: "btn danger", value: "delete" }, "Delete"),
      ],
      onClose: async (value) => {
        if (value === "rename") this.rename(c);
        else if (value === "delete") this.delete(c);
        else if (value === "export-md" || value === "export-json") {
          try {
            exportConversation([await get(`/v1/conversations/${c.id}`)], value === "export-md" ? "md" : "json");
          } catch (e) { errorToast(e); }
        }
      },
    });
  }

  async rename(c) {
    const title = await promptDialog({ title: "Rename conversation", label: "Title", value: c.title });
    if (title === null || !title.trim()) return;
    try {
      await patch(`/v1/conversations/${c.id}`, { title });
      if (this.current?.id === c.id) {
        this.current.title = title.trim();
        if (this.view === "chat") this.show("chat");
      }
      await this.refreshConversations();
    } catch (e) { errorToast(e); }
  }

  // Deleting waits a few seconds for an undo before the conversation is
  // really removed; closing the page meanwhile keeps it.
  delete(c) {
    const timer = setTimeout(async () => {
      this.pendingDeletes.delete(c.id);
      try { await del(`/v1/conversations/${c.id}`); } catch (e) { errorToast(e); }
    }, UNDO_DELETE_MS);
    this.pendingDeletes.set(c.id, timer);
    if (this.current?.id === c.id) this.newConversation();
    this.conversations = this.conversations.filter((x) => x.id !== c.id);
    this.renderList();
    toast(`Deleted “${c.title || "New conversation"}”.`, {
      action: "Undo",
      timeout: UNDO_DELETE_MS,
      onAction: () => {
        clearTimeout(this.pendingDeletes.get(c.id));
        this.pendingDeletes.delete(c.id);
        this.refreshConversations();
      },
    });
  }

  async exportAll() {
    const ok = await confirmDialog({ title: "Export all conversations", message: "Download every conversation as one Markdown file (a JSON file is offered next).", confirm: "Export" });
    if (!ok) return;
    try {
      const list = await get("/v1/conversations?limit=500");
      const full = await Promise.all(list.conversations.map((c) => get(`/v1/conversations/${c.id}`)));
      exportConversation(full, "md");
      if (await confirmDialog({ title: "Also as JSON?", message: "JSON keeps every detail, for other programs.", confirm: "Export JSON" })) {
        exportConversation(full, "json");
      }
    } catch (e) { errorToast(e); }
  }

  // Models (the first-run state lives here, polled while downloads run).
  // `quiet` polls say nothing when a fetch fails (the next one retries).
  async refreshModels({ quiet = false } = {}) {
    try {
      this.models = await get("/launcher/models");
    } catch (e) {
      if (!quiet) errorToast(e);
      return;
    }
    if (this.view === "models") this.rerenderModels();
    this.renderBanners();
    this.pollModels();
  }

  // Polls while the models view is open or a download runs.
  pollModels() {
    clearTimeout(this.modelsTimer);
    const running = this.models?.downloads.some((d) => d.status === "running");
    if (this.view !== "models" && !running) return;
    this.modelsTimer = setTimeout(() => this.refreshModels({ quiet: true }), running ? 500 : 3000);
  }

  // Re-renders the models view in place, keeping focus and typed text.
  rerenderModels() {
    const active = document.activeElement;
    const focusedText = active?.textContent;
    this.main.replaceChildren(this.banners, renderModels(this));
    if (active && this.importCard?.contains(active)) {
      active.focus(); // the import form is the same element, moved
    } else if (focusedText) {
      const again = [...this.main.querySelectorAll("button")].find((b) => b.textContent === focusedText);
      again?.focus();
    }
  }

  missingChatModel() {
    return Boolean(this.models?.missing_required.length);
  }

  // Updates and first-run banners.
  async refreshUpdates() {
    try { this.updates = await get("/launcher/updates"); } catch { return; }
    this.renderBanners();
  }

  // Approvals waiting and reminders that fired (the details of approvals
  // are on the approval page, another origin, never here).
  async refreshGate() {
    try {
      const [approvals, reminders] = await Promise.all([get("/launcher/approvals"), get("/launcher/reminders")]);
      const changed = approvals.pending !== this.approvals?.pending;
      this.approvals = approvals;
      if (changed) this.renderBanners();
      // Each reminder is shown once per browser, from the first visit on.
      let seen = Number(localStorage.getItem("jarvis.reminders.seen"));
      if (!seen) {
        seen = Date.now();
        localStorage.setItem("jarvis.reminders.seen", String(seen));
      }
      const fresh = reminders.fired.filter((r) => Date.parse(r.fired_at) > seen);
      if (fresh.length) {
        localStorage.setItem("jarvis.reminders.seen", String(Date.parse(fresh[0].fired_at)));
        for (const r of fresh.reverse()) toast(`Reminder: ${r.text}`, { timeout: 60_000, action: "Dismiss" });
      }
    } catch {
      // The next poll retries.
    }
  }

  renderBanners() {
    if (!this.banners) return;
    const banners = [];
    const u = this.updates;
    if (u?.notice?.kind === "updated") {
      banners.push(banner("info", `Jarvis was updated to ${u.notice.version}.`, "update-notice", () => this.dismissNotice()));
    } else if (u?.notice?.kind === "rolled_back") {
      banners.push(banner("", `Jarvis ${u.notice.version} did not keep running and was rolled back to ${u.notice.previous}: ${u.notice.reason}`, "update-notice", () => this.dismissNotice()));
    }
    if (u?.staged) {
      banners.push(banner("info", `An update is ready (Jarvis ${u.staged}) — restart Jarvis to apply it.`, "update-ready"));
    }
    if (this.approvals?.pending) {
      const n = this.approvals.pending;
      const b = banner("info", `${n} action${n === 1 ? "" : "s"} wait${n === 1 ? "s" : ""} for your approval.`, "approvals-banner");
      b.append(h("button", { type: "button", class: "btn primary", onclick: async () => { try { await post("/launcher/approvals/open"); } catch (e) { errorToast(e); } } }, "Review"));
      banners.push(b);
    }
    if (this.models?.missing_required.length && this.view !== "models") {
      const b = banner("", `Jarvis needs ${this.models.missing_required.join(" and ")} before it can answer.`, "setup-banner");
      b.append(h("button", { type: "button", class: "btn primary", onclick: () => this.show("models") }, "Set up"));
      banners.push(b);
    }
    this.banners.replaceChildren(...banners);
  }

  async dismissNotice() {
    try { await post("/launcher/updates/dismiss"); } catch (e) { errorToast(e); }
    await this.refreshUpdates();
  }

  // The WebSocket.
  onSocketMessage(m) {
    if (m.type === "hello") {
      this.engines = Array.isArray(m.engines) ? m.engines : [];
      this.chat.showEngines();
      return;
    }
    if (m.type === "event") {
      const e = m.event || {};
      if (e.type === "model_status") {
        this.engines = [...this.engines.filter((x) => x.role !== e.role), e];
        this.chat.showEngines();
      }
      if (e.type === "model_activated" || e.type === "model_status") this.refreshModels();
      return;
    }
    this.chat.onSocketMessage(m);
  }

  onSocketState(state) {
    if (state === "closed" && this.chat.turn) {
      this.chat.finishTurn({ type: "error", error: { message: "The connection to Jarvis was lost." } });
    }
  }

  installShortcuts() {
    document.addEventListener("keydown", (e) => {
      const mod = e.ctrlKey || e.metaKey;
      if (e.key === "Escape" && this.chat.turn && !document.querySelector("dialog[open]")) {
        e.preventDefault();
        this.chat.stop();
      } else if (mod && e.shiftKey && e.code === "Space") {
        e.preventDefault();
        if (this.view !== "chat") this.show("chat");
        this.chat.toggleTalking();
      } else if (mod && e.shiftKey && (e.key === "O" || e.key === "o")) {
        e.preventDefault();
        this.newConversation();
      } else if (mod && (e.key === "k" || e.key === "K")) {
        e.preventDefault();
        this.search.focus();
      } else if (mod && e.key === "/") {
        e.preventDefault();
        showShortcuts(SHORTCUTS);
      }
    });
  }
}

function banner(kind, text, id, onDismiss) {
  const el = h("div", { class: `banner ${kind}`, id, role: "status" }, h("p", {}, text));
  if (onDismiss) el.append(h("button", { type: "button", class: "btn", onclick: onDismiss }, "Dismiss"));
  return el;
}

const SYSTEM_DARK = window.matchMedia("(prefers-color-scheme: dark)");

// "system" follows the OS, now and when it changes; "light"/"dark" stick.
function applyTheme(theme) {
  const resolved = theme === "light" || theme === "dark" ? theme : SYSTEM_DARK.matches ? "dark" : "light";
  document.documentElement.dataset.theme = resolved;
}
SYSTEM_DARK.addEventListener("change", () => applyTheme(localStorage.getItem("jarvis-theme") || "system"));
applyTheme(localStorage.getItem("jarvis-theme") || "system");

const app = new App(document.getElementById("app"));
window.jarvis = app; // for the browser tests' timing marks
app.start().catch((e) => {
  document.getElementById("app").replaceChildren(h("p", { class: "error-text" }, `Jarvis could not start its UI: ${e.message}`));
});

// The chat view: messages (Markdown for answers), the composer, streaming
// over the WebSocket, Stop, regenerate, push-to-talk, settings, export.
import { h, icon, iconButton } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { get, post, put, request } from "./api.js";
import { openDialog, toast, errorToast } from "./dialogs.js";
import { Recorder } from "./voice.js";
import { exportConversation } from "./export.js";

export class ChatView {
  constructor(app) {
    this.app = app;
    this.turn = null; // { id, conversationId, text, body, startedAt, firstAt, pieces }
    this.follow = true; // auto-scroll until the person scrolls up
    this.recorder = null;
    this.el = null;
  }

  // Builds the view for `conversation` (or the empty state when null).
  render(conversation) {
    this.conversation = conversation;
    const title = conversation ? conversation.title || "New conversation" : "Jarvis";
    this.messagesInner = h("div", { class: "messages-inner" });
    this.log = h("div", { class: "messages", role: "log", "aria-live": "polite", "aria-relevant": "additions text", "aria-label": "Conversation" }, this.messagesInner);
    this.log.addEventListener("scroll", () => {
      const gap = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight;
      this.follow = gap < 48;
    });
    this.input = h("textarea", {
      id: "composer", rows: 1, placeholder: "Message Jarvis…", "aria-label": "Message",
      onkeydown: (e) => this.onComposerKey(e), oninput: () => this.autosize(),
    });
    this.sendButton = h("button", { type: "button", class: "icon-btn", id: "send", "aria-label": "Send (Enter)", title: "Send (Enter)", onclick: () => this.send() }, icon("send"));
    this.stopButton = h("button", { type: "button", class: "icon-btn", id: "stop", "aria-label": "Stop answering (Esc)", title: "Stop answering (Esc)", hidden: true, onclick: () => this.stop() }, icon("stop"));
    this.micButton = h("button", {
      type: "button", class: "icon-btn", id: "talk", "aria-label": "Push to talk (hold, or Ctrl+Shift+Space)", title: "Push to talk (hold, or Ctrl+Shift+Space)", "aria-pressed": "false",
      onpointerdown: (e) => { e.preventDefault(); this.startTalking(); },
      onpointerup: () => this.stopTalking(),
      onpointerleave: () => { if (this.recorder) this.stopTalking(); },
      onkeydown: (e) => { if ((e.key === " " || e.key === "Enter") && !e.repeat) { e.preventDefault(); this.toggleTalking(); } },
    }, icon("mic"));
    this.speed = h("span", { class: "speed", id: "speed" });
    this.voiceStatus = h("span", { id: "voice-status", "aria-live": "polite" });
    this.engineStatus = h("span", { id: "engine-status", "aria-live": "polite" });
    const header = h("header", { class: "view-header" },
      h("h1", { id: "conversation-title" }, title),
      conversation && iconButton("download", "Export this conversation", () => this.exportDialog()),
      conversation && iconButton("settings", "Conversation settings", () => this.settingsDialog()));
    this.el = h("section", { class: "view", "aria-label": "Chat" },
      header,
      this.log,
      h("div", { class: "composer-wrap" },
        h("div", { class: "composer" }, this.micButton, this.input, this.stopButton, this.sendButton),
        h("div", { class: "composer-hint" },
          h("span", {}, this.engineStatus, this.voiceStatus, " Enter sends · Shift+Enter new line · Esc stops"),
          this.speed)));
    this.renderMessages();
    this.showEngines();
    return this.el;
  }

  // The chat model's state, as the core reports it (loading after an
  // install or a switch, failed with a reason).
  showEngines() {
    if (!this.engineStatus) return;
    const llm = this.app.engines.find((e) => e.role === "llm");
    // `hello` nests the model; `model_status` events carry it flat.
    const name = llm?.name || llm?.model?.name || "the chat model";
    const text = !llm ? ""
      : llm.state === "loading" ? `Loading ${name}… `
        : llm.state === "failed" ? `${name} could not be loaded${llm.detail ? `: ${llm.detail}` : ""}. `
          : "";
    this.engineStatus.textContent = text;
    this.engineStatus.className = llm?.state === "failed" ? "error-text" : "";
  }

  renderMessages() {
    this.messagesInner.replaceChildren();
    const messages = this.conversation?.messages || [];
    if (!messages.length) {
      this.messagesInner.append(this.emptyState());
    }
    messages.forEach((m, i) => this.messagesInner.append(this.messageElement(m, i === messages.length - 1)));
    if (this.turn && this.turn.conversationId === this.conversation?.id) {
      this.messagesInner.append(this.turn.element);
    }
    this.scrollToEnd(true);
  }

  emptyState() {
    const missing = this.app.missingChatModel();
    return h("div", { class: "empty-chat" },
      h("h2", {}, "How can I help?"),
      missing
        ? h("p", {}, "Jarvis needs a chat model before it can answer. ",
          h("button", { type: "button", class: "btn primary", onclick: () => this.app.show("models") }, "Set up models"))
        : h("p", {}, "Everything stays on this computer. Type a message, or hold the microphone to talk. To let Jarvis act, type /note, /remind 5m, /open, /read or /sysinfo: you approve each action first."));
  }

  messageElement(message, isLast) {
    const body = h("div", { class: "body" });
    if (message.role === "assistant") renderMarkdown(body, message.content);
    else body.textContent = message.content;
    const actions = message.role === "assistant" && isLast
      ? h("div", { class: "message-actions" },
        h("button", { type: "button", class: "btn small", onclick: () => this.regenerate() }, icon("refresh"), "Regenerate"))
      : null;
    return h("article", { class: `message ${message.role}` },
      h("span", { class: "who" }, message.role === "user" ? "You" : message.role === "assistant" ? "Jarvis" : "System"),
      body, actions);
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 220)}px`;
  }

  onComposerKey(e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      this.send();
    }
  }

  scrollToEnd(force = false) {
    if (force || this.follow) this.log.scrollTop = this.log.scrollHeight;
  }

  setBusy(busy) {
    this.stopButton.hidden = !busy;
    this.sendButton.hidden = busy;
  }

  async send() {
    const content = this.input.value.trim();
    if (!content || this.turn) return;
    let conversation = this.conversation;
    if (!conversation) {
      try {
        conversation = await this.app.createConversation();
      } catch (e) { errorToast(e); return; }
    }
    this.input.value = "";
    this.autosize();
    if (!conversation.title) {
      conversation.title = content.slice(0, 80);
      this.el.querySelector("#conversation-title").textContent = conversation.title;
    }
    this.conversation.messages.push({ role: "user", content, created_at: new Date().toISOString() });
    this.renderMessages();
    this.follow = true;
    this.startTurn({ type: "chat", conversation_id: conversation.id, content });
  }

  regenerate() {
    if (this.turn || !this.conversation) return;
    const messages = this.conversation.messages;
    if (messages.length && messages[messages.length - 1].role === "assistant") messages.pop();
    this.renderMessages();
    this.follow = true;
    this.startTurn({ type: "regenerate", conversation_id: this.conversation.id });
  }

  startTurn(message) {
    const id = `turn-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    const body = h("div", { class: "body streaming" });
    const element = h("article", { class: "message assistant", id: "streaming-answer" }, h("span", { class: "who" }, "Jarvis"), body);
    this.turn = { id, conversationId: message.conversation_id, text: "", body, element, sentAt: performance.now(), firstAt: null, pieces: 0, pending: false };
    this.messagesInner.querySelector(".empty-chat")?.remove();
    this.messagesInner.append(element);
    this.scrollToEnd(true);
    this.setBusy(true);
    this.speed.textContent = "";
    this.app.socket.send({ ...message, turn_id: id });
  }

  stop() {
    if (!this.turn) return;
    this.app.socket.send({ type: "cancel", turn_id: this.turn.id });
  }

  // Server messages for turns of this view.
  onSocketMessage(m) {
    const turn = this.turn;
    if (!turn || m.turn_id !== turn.id) return;
    if (m.type === "token") {
      turn.text += m.text;
      turn.pieces++;
      if (turn.firstAt === null) {
        turn.firstAt = performance.now();
        this.app.marks.firstTokenPainted?.(turn);
      }
      if (!turn.pending) {
        turn.pending = true;
        requestAnimationFrame(() => {
          turn.pending = false;
          renderMarkdown(turn.body, turn.text);
          this.scrollToEnd();
        });
      }
    } else if (m.type === "action") {
      this.showAction(turn, m.action);
    } else if (m.type === "done" || m.type === "cancelled") {
      this.finishTurn(m);
    } else if (m.type === "error") {
      this.finishTurn(m);
      errorToast({ message: m.error?.message || "The answer failed", hint: hintFor(m.error?.code) });
    }
  }

  // A slash command (or the model) asked the launcher for an action: say
  // that it waits for the person, with a button that has the launcher open
  // its approval page (on its own origin; this page never sees its
  // sign-in link).
  showAction(turn, action) {
    turn.action = action;
    turn.element.querySelector(".action-wait")?.remove();
    if (action.status !== "pending") return;
    const box = h("div", { class: "action-wait", role: "status" },
      h("span", {}, action.source === "model"
        ? `The model asks to use ${action.tool}: ${action.description || ""} Waiting for your approval.`
        : `Waiting for your approval: ${action.description || action.tool}`),
      h("button", {
        type: "button", class: "btn small primary", id: "review-approval",
        onclick: async () => {
          try { await post("/launcher/approvals/open"); } catch (e) { errorToast(e); }
        },
      }, "Review request"));
    turn.element.append(box);
    this.scrollToEnd();
  }

  finishTurn(m) {
    const turn = this.turn;
    this.turn = null;
    this.setBusy(false);
    turn.body.classList.remove("streaming");
    renderMarkdown(turn.body, turn.text);
    if (m.type === "done" && turn.firstAt !== null) {
      const tokens = m.usage?.completion_tokens ?? turn.pieces;
      const seconds = Math.max((performance.now() - turn.firstAt) / 1000, 0.001);
      this.speed.textContent = `${tokens} tokens · ${(tokens / seconds).toFixed(1)} tok/s`;
    } else if (m.type === "cancelled") {
      this.speed.textContent = "Stopped";
    }
    if (this.conversation && this.conversation.id === turn.conversationId && turn.text) {
      this.conversation.messages.push({ role: "assistant", content: turn.text, created_at: new Date().toISOString() });
    }
    if (m.type === "error" && !turn.text) turn.element.remove();
    this.renderMessages();
    this.app.refreshConversations();
    this.input.focus();
  }

  // Push-to-talk.
  async startTalking() {
    if (this.recorder) return;
    const recorder = new Recorder();
    this.recorder = recorder;
    this.micButton.classList.add("recording");
    this.micButton.setAttribute("aria-pressed", "true");
    this.voiceStatus.textContent = "Listening…";
    try {
      await recorder.start();
    } catch (e) {
      if (this.recorder === recorder) this.recorder = null;
      this.micButton.classList.remove("recording");
      this.micButton.setAttribute("aria-pressed", "false");
      this.voiceStatus.textContent = "";
      errorToast({ message: `The microphone could not be used: ${e.message}`, hint: "Allow microphone access for this page." });
    }
  }

  async stopTalking() {
    const recorder = this.recorder;
    if (!recorder) return;
    this.recorder = null;
    this.micButton.classList.remove("recording");
    this.micButton.setAttribute("aria-pressed", "false");
    try {
      // A quick tap can let go before the microphone opened.
      await recorder.ready;
    } catch {
      return; // startTalking said why
    }
    if (recorder.seconds() < 0.3) {
      await recorder.stop();
      this.voiceStatus.textContent = "Hold the microphone button while you speak.";
      return;
    }
    this.voiceStatus.textContent = "Transcribing…";
    try {
      const wav = await recorder.stop();
      const form = new FormData();
      form.append("file", wav, "speech.wav");
      const result = await request("POST", "/v1/audio/transcriptions", form);
      const text = (result?.text || "").trim();
      if (text) {
        this.input.value = this.input.value ? `${this.input.value} ${text}` : text;
        this.autosize();
        this.voiceStatus.textContent = "";
      } else {
        this.voiceStatus.textContent = "No speech heard.";
      }
      this.input.focus();
    } catch (e) {
      this.voiceStatus.textContent = "";
      errorToast(e);
    }
  }

  toggleTalking() {
    if (this.recorder) this.stopTalking();
    else this.startTalking();
  }

  async settingsDialog() {
    const id = this.conversation.id;
    let settings;
    try { settings = await get(`/v1/conversations/${id}/settings`); } catch (e) { errorToast(e); return; }
    const system = h("textarea", { id: "setting-system" });
    system.value = settings.system_prompt || "";
    const temperature = h("input", { id: "setting-temperature", type: "number", min: 0, max: 2, step: 0.1, value: settings.temperature ?? "" });
    const maxTokens = h("input", { id: "setting-max-tokens", type: "number", min: 1, step: 1, value: settings.max_tokens ?? "" });
    const modelActions = h("input", { id: "setting-model-actions", type: "checkbox" });
    modelActions.checked = settings.model_actions === true;
    openDialog({
      title: "Conversation settings",
      body: [
        h("div", { class: "field" }, h("label", { for: "setting-system" }, "System prompt"), system),
        h("div", { class: "field" }, h("label", { for: "setting-temperature" }, "Temperature (0–2, empty for the default)"), temperature),
        h("div", { class: "field" }, h("label", { for: "setting-max-tokens" }, "Longest answer in tokens (empty for the default)"), maxTokens),
        h("div", { class: "field-check" }, modelActions,
          h("label", { for: "setting-model-actions" },
            "Let the model ask for actions (notes, reminders, opening things). You approve each one; small models choose poorly and answer more slowly.")),
      ],
      actions: [
        h("button", { class: "btn", value: "cancel", formnovalidate: true }, "Cancel"),
        h("button", { class: "btn primary", value: "ok", id: "save-settings" }, "Save"),
      ],
      onClose: async (value) => {
        if (value !== "ok") return;
        const body = {};
        if (system.value.trim()) body.system_prompt = system.value;
        if (temperature.value !== "") body.temperature = Number(temperature.value);
        if (maxTokens.value !== "") body.max_tokens = Number(maxTokens.value);
        if (modelActions.checked) body.model_actions = true;
        try {
          await put(`/v1/conversations/${id}/settings`, body);
          toast("Settings saved.");
        } catch (e) { errorToast(e); }
      },
    });
  }

  exportDialog() {
    const conversation = this.conversation;
    openDialog({
      title: "Export conversation",
      body: h("p", {}, "Save this conversation as a file."),
      actions: [
        h("button", { class: "btn", value: "cancel" }, "Cancel"),
        h("button", { class: "btn", value: "json" }, "JSON"),
        h("button", { class: "btn primary", value: "md", autofocus: true }, "Markdown"),
      ],
      onClose: (value) => {
        if (value === "md" || value === "json") exportConversation([conversation], value);
      },
    });
  }
}

function hintFor(code) {
  switch (code) {
    case "model_not_installed":
    case "model_unavailable":
      return "Install or activate a chat model under Models.";
    case "context_length_exceeded":
      return "Start a new conversation or shorten the message.";
    default:
      return undefined;
  }
}

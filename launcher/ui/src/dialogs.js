// Modal dialogs on the native <dialog> element: focus moves into the
// dialog, Tab stays inside, Esc cancels, focus returns where it was.
import { h } from "./dom.js";

export function openDialog({ title, body, actions, onClose, label }) {
  const previous = document.activeElement;
  const titleId = `dialog-title-${Math.random().toString(36).slice(2)}`;
  const dialog = h("dialog", { "aria-labelledby": titleId, "aria-label": label },
    h("form", { method: "dialog" },
      h("div", { class: "dialog-body" }, h("h2", { id: titleId }, title), body),
      h("div", { class: "dialog-actions" }, actions)));
  // Cancel buttons never submit: Enter in a field submits with the first
  // *submit* button, which must be the dialog's main action.
  for (const button of dialog.querySelectorAll("button[value=cancel]")) {
    button.type = "button";
    button.addEventListener("click", () => dialog.close("cancel"));
  }
  document.body.append(dialog);
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (previous && previous.focus) previous.focus();
    onClose?.(dialog.returnValue);
  });
  dialog.showModal();
  const first = dialog.querySelector("[autofocus]") || dialog.querySelector("input, textarea, select, button");
  first?.focus();
  return dialog;
}

// Resolves true when confirmed.
export function confirmDialog({ title, message, confirm = "OK", danger = false }) {
  return new Promise((resolve) => {
    openDialog({
      title,
      body: h("p", {}, message),
      actions: [
        h("button", { class: "btn", value: "cancel", autofocus: true }, "Cancel"),
        h("button", { class: `btn primary${danger ? " danger" : ""}`, value: "ok" }, confirm),
      ],
      onClose: (value) => resolve(value === "ok"),
    });
  });
}

// Resolves to the entered text, or null when cancelled.
export function promptDialog({ title, label, value = "", confirm = "Save" }) {
  return new Promise((resolve) => {
    const input = h("input", { id: "prompt-input", value, autofocus: true, required: true });
    input.value = value;
    openDialog({
      title,
      body: h("div", { class: "field" }, h("label", { for: "prompt-input" }, label), input),
      actions: [
        h("button", { class: "btn", value: "cancel", formnovalidate: true }, "Cancel"),
        h("button", { class: "btn primary", value: "ok" }, confirm),
      ],
      onClose: (v) => resolve(v === "ok" ? input.value : null),
    });
    input.select();
  });
}

export function showShortcuts(shortcuts) {
  openDialog({
    title: "Keyboard shortcuts",
    body: h("table", { class: "shortcuts" },
      h("tbody", {}, shortcuts.map(([keys, what]) =>
        h("tr", {}, h("td", {}, keys.map((k, i) => [i ? " " : "", h("kbd", {}, k)])), h("td", {}, what))))),
    actions: [h("button", { class: "btn primary", value: "ok", autofocus: true }, "Close")],
  });
}

export function toast(message, { action, onAction, error = false, timeout = 5000 } = {}) {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast${error ? " error" : ""}` }, h("span", {}, message));
  let done = false;
  const close = () => { if (!done) { done = true; el.remove(); } };
  if (action) {
    el.append(h("button", { type: "button", onclick: () => { close(); onAction?.(); } }, action));
  }
  box.append(el);
  setTimeout(close, timeout);
  return close;
}

export function errorToast(e) {
  const text = e.hint ? `${e.message} — ${e.hint}` : e.message;
  toast(text, { error: true, timeout: 8000 });
}

// Toasts and the confirmation dialog: the page's two ways of talking back.
//
// Confirmation uses a <dialog> of the page, not window.confirm, so it is
// styled, keyboard-usable, and says exactly what will happen.

import { byId, h } from "./dom.js";

const TOAST_MS = 6000;

// Say something briefly; errors go to an assertive live region.
export function toast(text, kind = "ok") {
  const region = byId(kind === "error" ? "alerts" : "toasts");
  const close = h("button", { type: "button", class: "toast-close",
    "aria-label": "Dismiss" }, "×");
  const note = h("div", { class: `toast toast-${kind}` },
    h("span", {}, text), close);
  close.addEventListener("click", () => note.remove());
  region.append(note);
  window.setTimeout(() => note.remove(), kind === "error" ? 2 * TOAST_MS
    : TOAST_MS);
  return note;
}

// Ask before an action; resolves true only when the reader confirms.
// A destructive action's button is drawn as a warning.
export function confirmAction(title, text, verb, destructive = true) {
  const dialog = byId("confirm-dialog");
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  const ok = byId("confirm-ok");
  ok.textContent = verb;
  ok.className = destructive ? "danger" : "primary";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
    }, { once: true });
    dialog.showModal();
    byId("confirm-keep").focus();
  });
}

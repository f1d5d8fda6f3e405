// Dialogs: the frame of each form dialog, opening and closing, and the confirmation that
// removes something.
//
// A form dialog is declared in index.html by what is its own: <dialog id="dialog-NAME"
// data-title="…">, its fields and its error line, and its submit button. frameDialogs()
// puts that content into the form #NAME-form, under the heading #dialog-NAME-title that
// names the dialog, and the submit button after a Cancel button in the dialog's actions.
// In a confirmation (data-confirm) Cancel takes the focus, so Enter never removes anything
// by accident.

import { clearError, showError, text, whileBusy } from "./dom.js";

function frame(dialog) {
  const name = dialog.id.replace(/^dialog-/, "");
  const heading = text("h2", dialog.dataset.title);
  heading.id = `${dialog.id}-title`;
  const form = text("form", "", "stack");
  form.id = `${name}-form`;
  form.method = "dialog";
  form.noValidate = true;
  const cancel = text("button", "Cancel", "button");
  cancel.type = "button";
  cancel.dataset.close = "";
  cancel.autofocus = "confirm" in dialog.dataset;
  const actions = text("div", "", "actions actions-end");
  actions.append(cancel, dialog.querySelector("button[type=submit]"));
  form.append(heading, ...dialog.childNodes, actions);
  dialog.append(form);
  dialog.classList.add("dialog");
  dialog.setAttribute("aria-labelledby", heading.id);
}

export function frameDialogs() {
  for (const dialog of document.querySelectorAll("dialog[data-title]")) frame(dialog);
}

// The submit of a confirmation dialog that removes something: `remove()` runs with the
// submit button busy. True when it is gone: a 404 counts (removed meanwhile, which is what
// the user asked for); any other failure is shown in `error`.
async function removeConfirmed(event, form, error, remove) {
  event.preventDefault();
  clearError(error);
  try {
    await whileBusy(form.querySelector("button[type=submit]"), remove);
  } catch (failure) {
    if (failure.status !== 404) {
      showError(error, failure);
      return false;
    }
  }
  return true;
}

// Open a modal dialog; when it closes (button, Escape or code), run `onClose` and give the
// focus back to whatever opened it, or to `returnFocus()` when that element is gone.
export function openDialog(dialog, { onClose, returnFocus } = {}) {
  const opener = document.activeElement;
  dialog.addEventListener(
    "close",
    () => {
      if (onClose) onClose();
      const target =
        opener && opener.isConnected && opener !== document.body
          ? opener
          : returnFocus && returnFocus();
      if (target && target.isConnected) target.focus();
    },
    { once: true },
  );
  dialog.showModal();
}

// A confirmation dialog that removes something. The function returned opens it about
// `subject` (`returnFocus` as for openDialog); its submit runs `remove(subject)`, then
// `removed(subject)` once it is gone, and closes the dialog.
export function removalDialog(dialog, error, { remove, removed }) {
  const form = dialog.querySelector("form");
  let pending = null;
  form.addEventListener("submit", async (event) => {
    if (!pending) return event.preventDefault();
    const subject = pending;
    if (!(await removeConfirmed(event, form, error, () => remove(subject)))) return;
    removed(subject);
    dialog.close();
  });
  return (subject, returnFocus) => {
    pending = subject;
    clearError(error);
    openDialog(dialog, {
      returnFocus,
      onClose: () => {
        pending = null;
      },
    });
  };
}

// Open the dialog of a form afresh: its fields as the page declares them, no error shown.
export function openForm(dialog, error, options) {
  dialog.querySelector("form").reset();
  clearError(error);
  openDialog(dialog, options);
}

// Every [data-close] button closes its dialog.
export function wireCloseButtons() {
  for (const button of document.querySelectorAll("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
}

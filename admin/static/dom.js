// Small DOM helpers shared by the views: lookups, error messages, busy buttons, dialogs.

export const $ = (id) => document.getElementById(id);

// A table cell with its column's name: narrow screens show it as "label: value".
export function cell(label, ...content) {
  const td = document.createElement("td");
  td.setAttribute("role", "cell");
  td.dataset.label = label;
  td.append(...content);
  return td;
}

// Show an API error next to the control that caused it (an element with role="alert").
export function showError(element, error) {
  element.textContent = typeof error === "string" ? error : error.message;
  element.hidden = false;
}

export function clearError(element) {
  element.textContent = "";
  element.hidden = true;
  const input = element.dataset.field && $(element.dataset.field);
  if (input) input.removeAttribute("aria-invalid");
  delete element.dataset.field;
}

// Show `message` as the error of one `input`: marked invalid and focused until it changes.
export function showFieldError(element, input, message) {
  clearError(element);
  showError(element, message);
  element.dataset.field = input.id;
  input.setAttribute("aria-invalid", "true");
  input.focus();
}

// A field's error in `element` goes away as soon as that field of `form` changes.
export function clearFieldErrorsOnChange(form, element) {
  const clear = (event) => {
    if (element.dataset.field && event.target.id === element.dataset.field) clearError(element);
  };
  form.addEventListener("input", clear);
  form.addEventListener("change", clear);
}

// Run `action` with `button` disabled, so a double click cannot send the request twice.
export async function whileBusy(button, action) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// The submit of a confirmation dialog that removes something: `remove()` runs with the
// submit button busy. True when it is gone: a 404 counts (removed meanwhile, which is what
// the user asked for); any other failure is shown in `error`.
export async function removeConfirmed(event, form, error, remove) {
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

// Every [data-close] button closes its dialog.
export function wireCloseButtons() {
  for (const button of document.querySelectorAll("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
}

// The one visible view; the others are hidden. Returns the view's element.
const VIEWS = ["view-signin", "view-projects", "view-project", "view-keys", "view-activity"];
export function showView(id) {
  for (const name of VIEWS) $(name).hidden = name !== id;
  return $(id);
}

// Navigations bump this counter so a late answer for a page the user left is dropped.
let generation = 0;
export function nextGeneration() {
  generation += 1;
  return generation;
}
export function isCurrent(value) {
  return value === generation;
}

// Move focus to a page's heading after a navigation, so screen readers announce the new page.
export function focusHeading(heading) {
  heading.setAttribute("tabindex", "-1");
  heading.focus({ preventScroll: true });
}

// Copy the text of `element` to the clipboard: whether it worked. The async Clipboard API
// needs a secure context (https or localhost); elsewhere fall back to selecting the text and
// the legacy copy command, and leave it selected for Ctrl+C when that fails too.
export async function copyText(element) {
  try {
    await navigator.clipboard.writeText(element.textContent);
    return true;
  } catch {
    return copyBySelection(element);
  }
}

function copyBySelection(element) {
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  try {
    return document.execCommand("copy");
  } catch {
    return false;
  }
}

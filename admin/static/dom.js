// Small DOM helpers shared by the views: lookups, tables and lists, error messages, busy
// buttons, pages.

export const $ = (id) => document.getElementById(id);

// A table cell with its column's name: narrow screens show it as "label: value".
export function cell(label, ...content) {
  const td = document.createElement("td");
  td.setAttribute("role", "cell");
  td.dataset.label = label;
  td.append(...content);
  return td;
}

// An element with its text (none: "") and class.
export function text(tag, content, className) {
  const element = document.createElement(tag);
  element.textContent = content;
  if (className) element.className = className;
  return element;
}

function columnHeader(...content) {
  const header = document.createElement("th");
  header.scope = "col";
  header.setAttribute("role", "columnheader");
  header.append(...content);
  return header;
}

// A table's head: a column header per name; `actions`: a last column for each row's
// buttons, its header read by screen readers only.
export function tableHead(names, { actions = false } = {}) {
  const row = document.createElement("tr");
  row.setAttribute("role", "row");
  row.append(...names.map((name) => columnHeader(name)));
  if (actions) row.append(columnHeader(text("span", "Actions", "visually-hidden")));
  const head = document.createElement("thead");
  head.setAttribute("role", "rowgroup");
  head.append(row);
  return head;
}

// A list on the page (a table's body or a <ul>) with its "nothing yet" message, its table
// when it has one (hidden while the list is empty) and the status line that announces a change.
export function entryList(body, empty, status, table = null) {
  const refresh = () => {
    const none = body.children.length === 0;
    if (table) table.hidden = none;
    empty.hidden = !none;
  };
  const changed = (message) => {
    refresh();
    status.textContent = message;
  };
  return {
    refresh,
    add(entry, message) {
      body.prepend(entry);
      changed(message);
    },
    drop(entry, message) {
      entry.remove();
      changed(message);
    },
  };
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

// `request()`'s answer; undefined when it failed (the failure shown in `error`) or when
// `stillCurrent()` says the user has moved on meanwhile (the answer is dropped).
export async function loaded(request, error, stillCurrent) {
  let answer;
  try {
    answer = await request();
  } catch (failure) {
    if (stillCurrent()) showError(error, failure);
    return undefined;
  }
  return stillCurrent() ? answer : undefined;
}

// The one visible view; the others are hidden. Returns the view's element.
const VIEWS = ["view-signin", "view-projects", "view-project", "view-keys", "view-activity"];
export function showView(id) {
  for (const name of VIEWS) $(name).hidden = name !== id;
  return $(id);
}

// Show the page `view`, titled `title`; after a navigation (`focus`) its `heading` takes the
// focus. Returns the navigation's generation (see isCurrent).
export function showPage(view, title, heading, focus) {
  const generation = nextGeneration();
  showView(view);
  document.title = `${title} · Tollgate admin`;
  if (focus) focusHeading(heading);
  return generation;
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

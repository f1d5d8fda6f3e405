// The Access Tokens section: the table (newest first, "Load more" with the API cursor), the
// "Create token" dialog, the one-time reveal dialog and the revoke confirmation.
//
// The raw token exists only in the create answer and, while the reveal dialog is open, as the
// text of #reveal-token. It is never copied into a variable that outlives the create handler,
// an input value, storage or the URL, and closing the dialog empties that element.

import { api } from "./api.js";
import { timeElement } from "./format.js";
import { $, clearError, openDialog, showError, whileBusy } from "./dom.js";

const PAGE_SIZE = 20;
const SVG = "http://www.w3.org/2000/svg";

let projectOf = () => null; // the project on screen
let nextCursor = null;
let stillCurrent = () => true;

// ------------------------------------------------------------------ rows

function binIcon() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute(
    "d",
    "M4 7h16M10 11v6M14 11v6M5 7l1 13h12l1-13M9 7V4h6v3",
  );
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "2");
  path.setAttribute("stroke-linecap", "round");
  path.setAttribute("stroke-linejoin", "round");
  svg.append(path);
  return svg;
}

function cell(label, ...content) {
  const td = document.createElement("td");
  td.setAttribute("role", "cell");
  td.dataset.label = label;
  td.append(...content);
  return td;
}

function descriptionOf(token) {
  return token.description || "No description";
}

function statusBadge(status) {
  const badge = document.createElement("span");
  const expired = status === "expired";
  badge.className = expired ? "badge badge-expired" : "badge badge-active";
  badge.textContent = expired ? "Expired" : "Active";
  return badge;
}

function tokenRow(token) {
  const row = document.createElement("tr");
  row.setAttribute("role", "row");
  row.dataset.tokenId = token.id;

  const description = document.createElement("span");
  description.textContent = descriptionOf(token);
  if (!token.description) description.className = "muted";

  const masked = document.createElement("code");
  masked.className = "masked";
  masked.id = `masked-${token.id}`;
  masked.textContent = token.masked;

  const revoke = document.createElement("button");
  revoke.type = "button";
  revoke.className = "button button-icon button-danger-quiet revoke";
  revoke.setAttribute("aria-label", "Revoke");
  revoke.setAttribute("aria-describedby", masked.id);
  revoke.title = "Revoke token";
  revoke.append(binIcon());
  revoke.addEventListener("click", () => confirmRevoke(token, row));

  row.append(
    cell("Description", description),
    cell("Token", masked),
    cell("Created", timeElement(token.created_at)),
    cell("Expires", timeElement(token.expires_at)),
    cell("Last used", timeElement(token.last_used_at)),
    cell("Status", statusBadge(token.status)),
    cell("Actions", revoke),
  );
  return row;
}

function refreshEmptyState() {
  const empty = $("tokens-body").children.length === 0;
  $("tokens-table").hidden = empty;
  $("tokens-empty").hidden = !empty;
}

function setCursor(cursor) {
  nextCursor = cursor;
  $("load-more").hidden = !cursor;
}

// ------------------------------------------------------------------ loading

export async function load(projectId, isCurrent) {
  stillCurrent = isCurrent;
  const body = $("tokens-body");
  body.replaceChildren();
  setCursor(null);
  $("tokens-table").hidden = true;
  $("tokens-empty").hidden = true;
  clearError($("tokens-error"));
  clearError($("load-more-error"));
  let page;
  try {
    page = await api.listTokens(projectId, null, PAGE_SIZE);
  } catch (failure) {
    if (isCurrent()) showError($("tokens-error"), failure);
    return;
  }
  if (!isCurrent()) return;
  body.append(...page.tokens.map(tokenRow));
  setCursor(page.next_cursor);
  refreshEmptyState();
}

async function loadMore() {
  const project = projectOf();
  const error = $("load-more-error");
  clearError(error);
  if (!project || !nextCursor) return;
  const isCurrent = stillCurrent;
  let page;
  try {
    page = await whileBusy($("load-more"), () => api.listTokens(project.id, nextCursor, PAGE_SIZE));
  } catch (failure) {
    if (isCurrent()) showError(error, failure);
    return;
  }
  if (!isCurrent()) return;
  const shown = new Set([...$("tokens-body").children].map((row) => row.dataset.tokenId));
  const rows = page.tokens.filter((token) => !shown.has(token.id)).map(tokenRow);
  $("tokens-body").append(...rows);
  setCursor(page.next_cursor);
  refreshEmptyState();
  // The button vanishes after the last page: keep keyboard users where the new rows start.
  if (!nextCursor) {
    if (rows.length) rows[0].querySelector("button").focus();
    else $("create-token").focus();
  }
}

// ------------------------------------------------------------------ create and reveal

function openCreate() {
  const form = $("token-form");
  form.reset();
  clearError($("token-form-error"));
  openDialog($("dialog-token"));
}

async function submitCreate(event) {
  event.preventDefault();
  const project = projectOf();
  const error = $("token-form-error");
  clearError(error);
  if (!project) return;
  const fields = {
    description: $("token-description").value.trim(),
    expires_in: $("token-expiration").value,
  };
  let created;
  try {
    created = await whileBusy($("token-form").querySelector("button[type=submit]"), () =>
      api.createToken(project.id, fields),
    );
  } catch (failure) {
    showError(error, failure);
    return;
  }
  $("token-form").reset();
  const dialog = $("dialog-token");
  if (dialog.open) dialog.close();
  reveal(created, project.id);
}

// Show the raw token once. Only the DOM holds it from here on; `created` loses it at once.
function reveal(created, projectId) {
  const secret = $("reveal-token");
  secret.textContent = created.token;
  delete created.token;
  $("reveal-status").textContent = "";
  openDialog($("dialog-reveal"), {
    returnFocus: () => $("create-token"),
    onClose: () => {
      secret.textContent = "";
      $("reveal-status").textContent = "";
      window.getSelection()?.removeAllRanges();
      const project = projectOf();
      if (project && project.id === projectId) {
        $("tokens-body").prepend(tokenRow(created));
        refreshEmptyState();
        $("tokens-status").textContent = "Token created.";
      }
    },
  });
  $("reveal-copy").focus();
}

// The async Clipboard API needs a secure context (https or localhost); elsewhere fall back
// to selecting the text and the legacy copy command, and as a last resort ask for Ctrl+C.
async function copyToken() {
  const secret = $("reveal-token");
  const status = $("reveal-status");
  if (!secret.textContent) return;
  try {
    await navigator.clipboard.writeText(secret.textContent);
    status.textContent = "Copied to the clipboard.";
    return;
  } catch {
    // Fall through to the selection-based copy.
  }
  const range = document.createRange();
  range.selectNodeContents(secret);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  status.textContent = copied
    ? "Copied to the clipboard."
    : "Copying is blocked here: the token is selected, press Ctrl+C (⌘C on a Mac).";
}

// ------------------------------------------------------------------ revoke

let pendingRevoke = null; // { token, row }

function neighbourButton(row) {
  const next = row.nextElementSibling || row.previousElementSibling;
  return next ? next.querySelector("button.revoke") : null;
}

function confirmRevoke(token, row) {
  pendingRevoke = { token, row };
  $("revoke-name").textContent = descriptionOf(token);
  $("revoke-masked").textContent = token.masked;
  clearError($("revoke-error"));
  const focusAfter = neighbourButton(row);
  openDialog($("dialog-revoke"), {
    returnFocus: () => (focusAfter && focusAfter.isConnected ? focusAfter : $("create-token")),
    onClose: () => {
      pendingRevoke = null;
    },
  });
}

async function submitRevoke(event) {
  event.preventDefault();
  if (!pendingRevoke) return;
  const { token, row } = pendingRevoke;
  const error = $("revoke-error");
  clearError(error);
  try {
    await whileBusy($("revoke-form").querySelector("button[type=submit]"), () =>
      api.revokeToken(token.project_id, token.id),
    );
  } catch (failure) {
    // 404: someone revoked it already; either way the row must go.
    if (failure.status !== 404) {
      showError(error, failure);
      return;
    }
  }
  row.remove();
  refreshEmptyState();
  $("tokens-status").textContent = "Token revoked.";
  $("dialog-revoke").close();
}

// ------------------------------------------------------------------ wiring

export function init(currentProject) {
  projectOf = currentProject;
  $("create-token").addEventListener("click", openCreate);
  $("token-form").addEventListener("submit", submitCreate);
  $("reveal-copy").addEventListener("click", copyToken);
  $("reveal-done").addEventListener("click", () => $("dialog-reveal").close());
  $("revoke-form").addEventListener("submit", submitRevoke);
  $("load-more").addEventListener("click", loadMore);
}

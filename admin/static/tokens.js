// The Access Tokens section: the table (newest first, "Load more" with the API cursor), the
// "Create token" dialog, the one-time reveal dialog and the revoke confirmation.
//
// The raw token exists only in the create answer and, while the reveal dialog is open, as the
// text of #reveal-token. It is never copied into a variable that outlives the create handler,
// an input value, storage or the URL, and closing the dialog empties that element. Escape
// before the token was copied asks first (a second Escape, or "Close without copying", closes).

import { api } from "./api.js";
import {
  $,
  cell,
  clearError,
  clearFieldErrorsOnChange,
  copyText,
  openDialog,
  removeConfirmed,
  showError,
  whileBusy,
} from "./dom.js";
import { sendChecked } from "./fields.js";
import { timeElement } from "./format.js";
import { field, limitInput } from "./schema.js";
import * as usage from "./usage.js";

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
    cell("Last 30 days", usage.tokenCell(token)),
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
    page = await api.listTokens(projectId, null);
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
    page = await whileBusy($("load-more"), () => api.listTokens(project.id, nextCursor));
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

// "30d" reads "30 days"; a preset the console does not know yet reads as the API names it.
const PRESET_LABELS = { "180d": "6 months", "365d": "1 year", never: "Never" };

function presetLabel(preset) {
  const days = /^(\d+)d$/.exec(preset);
  return PRESET_LABELS[preset] ?? (days ? `${days[1]} days` : preset);
}

// The expiration choices are the API's presets, its default selected. Without the API's
// description there is one choice, the server's default (the field is then not sent).
function fillExpirations() {
  const schema = field("TokenCreate", "expires_in");
  const presets = schema.enum ?? [""];
  const select = $("token-expiration");
  select.replaceChildren(
    ...presets.map((preset) => {
      const chosen = preset === (schema.default ?? "");
      return new Option(preset ? presetLabel(preset) : "Server default", preset, chosen, chosen);
    }),
  );
}

function describeDescription() {
  const schema = field("TokenCreate", "description");
  limitInput($("token-description"), schema);
  $("token-description-max").textContent =
    schema.maxLength === undefined ? "" : `, up to ${schema.maxLength} characters`;
}

function openCreate() {
  const form = $("token-form");
  form.reset();
  clearError($("token-form-error"));
  openDialog($("dialog-token"));
}

async function submitCreate(event) {
  event.preventDefault();
  const project = projectOf();
  const form = $("token-form");
  if (!project) return;
  const fields = { description: $("token-description").value.trim() };
  if ($("token-expiration").value) fields.expires_in = $("token-expiration").value;
  const send = () => api.createToken(project.id, fields);
  const created = await sendChecked(form, $("token-form-error"), "TokenCreate", ["description"], send);
  if (!created) return;
  form.reset();
  const dialog = $("dialog-token");
  if (dialog.open) dialog.close();
  reveal(created, project.id);
}

let copied = false; // the token on show went to the clipboard (button or Ctrl+C)

// Show the raw token once. Only the DOM holds it from here on; `created` loses it at once.
function reveal(created, projectId) {
  const secret = $("reveal-token");
  secret.textContent = created.token;
  delete created.token;
  copied = false;
  asking(false);
  $("reveal-status").textContent = "";
  openDialog($("dialog-reveal"), {
    returnFocus: () => $("create-token"),
    onClose: () => {
      secret.textContent = "";
      $("reveal-status").textContent = "";
      asking(false);
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

// The question "close without copying?" in place of the dialog's buttons, or back.
function asking(ask) {
  $("reveal-ask").hidden = !ask;
  $("reveal-actions").hidden = ask;
  if (ask) $("reveal-back").focus();
}

// Escape (the browser's close request). Once asked, Escape again closes: browsers let a
// page hold a dialog open against one close request, not against the next.
function closeRequested(event) {
  if (copied || !$("reveal-ask").hidden || !$("reveal-token").textContent) return;
  event.preventDefault();
  asking(true);
}

async function copyToken() {
  const secret = $("reveal-token");
  if (!secret.textContent) return;
  copied = await copyText(secret);
  $("reveal-status").textContent = copied
    ? "Copied to the clipboard."
    : "Copying is blocked here: the token is selected, press Ctrl+C (⌘C on a Mac).";
}

// ------------------------------------------------------------------ revoke

let pendingRevoke = null; // { token, row }

function neighbourButton(row) {
  const next = row.nextElementSibling || row.previousElementSibling;
  return next ? next.querySelector("button.revoke") : null;
}

// "Programs using “CI runner” (tg_…)", or "Programs using the token tg_…" without a description.
function revokeWho(token) {
  const masked = document.createElement("code");
  masked.textContent = token.masked;
  if (!token.description) return ["Programs using the token ", masked];
  const name = document.createElement("strong");
  name.textContent = token.description;
  return ["Programs using “", name, "” (", masked, ")"];
}

function confirmRevoke(token, row) {
  pendingRevoke = { token, row };
  $("revoke-who").replaceChildren(...revokeWho(token));
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
  if (!pendingRevoke) return event.preventDefault();
  const { token, row } = pendingRevoke;
  const revoke = () => api.revokeToken(token.project_id, token.id);
  // A 404 (someone revoked it already) counts: either way the row must go.
  if (!(await removeConfirmed(event, $("revoke-form"), $("revoke-error"), revoke))) return;
  row.remove();
  refreshEmptyState();
  $("tokens-status").textContent = "Token revoked.";
  $("dialog-revoke").close();
}

// ------------------------------------------------------------------ wiring

export function init(currentProject) {
  projectOf = currentProject;
  fillExpirations();
  describeDescription();
  clearFieldErrorsOnChange($("token-form"), $("token-form-error"));
  $("create-token").addEventListener("click", openCreate);
  $("token-form").addEventListener("submit", submitCreate);
  const reveal = $("dialog-reveal");
  $("reveal-copy").addEventListener("click", copyToken);
  $("reveal-done").addEventListener("click", () => reveal.close());
  reveal.addEventListener("cancel", closeRequested);
  // Ctrl+C on the selected token counts as a copy too.
  reveal.addEventListener("copy", () => {
    copied = true;
  });
  $("reveal-back").addEventListener("click", () => {
    asking(false);
    $("reveal-copy").focus();
  });
  $("reveal-discard").addEventListener("click", () => reveal.close());
  $("revoke-form").addEventListener("submit", submitRevoke);
  $("load-more").addEventListener("click", loadMore);
}

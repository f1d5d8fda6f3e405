// The "Admin keys" page (admin role): the keys, newest first, the "Create admin key" dialog,
// the same one-time reveal dialog as tokens, and the revoke confirmation.

import { api } from "./api.js";
import { openForm, removalDialog } from "./dialogs.js";
import {
  $,
  cell,
  clearError,
  clearFieldErrorsOnChange,
  entryList,
  isCurrent,
  loaded,
  showFieldError,
  showPage,
  tableHead,
} from "./dom.js";
import { sendChecked } from "./fields.js";
import { timeElement } from "./format.js";
import { field, limitInput } from "./schema.js";
import { revealOnce } from "./tokens.js";

const ROLE_LABELS = { admin: "Admin", manager: "Manager", viewer: "Viewer" };
// The table's columns (its last one, the row's buttons, is added by tableHead).
const COLUMNS = ["Name", "Role", "Key", "Created", "Expires", "Last used", "Status"];
const keyRows = entryList($("keys-body"), $("keys-empty"), $("keys-status"), $("keys-table"));
let projectNames = new Map(); // id -> name, for the Role column and the dialog

function keyRow(key) {
  const row = document.createElement("tr");
  row.setAttribute("role", "row");
  row.dataset.keyId = key.id;
  const masked = document.createElement("code");
  masked.className = "masked";
  masked.id = `masked-${key.id}`;
  masked.textContent = key.masked;
  const role = document.createElement("span");
  const project = key.project_id ? projectNames.get(key.project_id) ?? key.project_id : null;
  role.textContent = ROLE_LABELS[key.role] + (project ? ` of ${project}` : "");
  const status = document.createElement("span");
  status.className = key.status === "expired" ? "badge badge-expired" : "badge badge-active";
  status.textContent = key.status === "expired" ? "Expired" : "Active";
  const revoke = document.createElement("button");
  revoke.type = "button";
  revoke.className = "button button-danger-quiet";
  revoke.textContent = "Revoke";
  revoke.setAttribute("aria-describedby", masked.id);
  revoke.addEventListener("click", () => confirmRevoke(key, row));
  const name = document.createElement("span");
  name.textContent = key.name;
  row.append(
    cell("Name", name),
    cell("Role", role),
    cell("Key", masked),
    cell("Created", timeElement(key.created_at)),
    cell("Expires", timeElement(key.expires_at)),
    cell("Last used", timeElement(key.last_used_at)),
    cell("Status", status),
    cell("Actions", revoke),
  );
  return row;
}

// Every key, page after page; the project names first, for the Role column.
async function allKeys() {
  const projects = await api.listProjects();
  projectNames = new Map(projects.projects.map((p) => [p.id, p.name]));
  const keys = [];
  let cursor = null;
  do {
    const page = await api.listAdminKeys(cursor);
    keys.push(...page.admin_keys);
    cursor = page.next_cursor;
  } while (cursor);
  return keys;
}

export async function show({ focus = false } = {}) {
  const generation = showPage("view-keys", "Admin keys", $("keys-title"), focus);
  clearError($("keys-error"));
  const keys = await loaded(allKeys, $("keys-error"), () => isCurrent(generation));
  if (!keys) return;
  $("keys-body").replaceChildren(...keys.map(keyRow));
  keyRows.refresh();
}

// ------------------------------------------------------------------ create

function fillChoices() {
  const presets = field("AdminKeyCreate", "expires_in");
  $("key-expiration").replaceChildren(
    ...(presets.enum ?? [""]).map((preset) => {
      const chosen = preset === (presets.default ?? "");
      const label = preset === "never" ? "Never" : preset || "Server default";
      return new Option(label.replace(/^(\d+)d$/, "$1 days"), preset, chosen, chosen);
    }),
  );
  limitInput($("key-name"), field("AdminKeyCreate", "name"));
}

function projectChoice() {
  const scoped = $("key-role").value !== "admin";
  $("key-project-field").hidden = !scoped;
}

function openCreate() {
  const names = [...projectNames].sort((a, b) => a[1].localeCompare(b[1]));
  $("key-project").replaceChildren(...names.map(([id, name]) => new Option(name, id)));
  openForm($("dialog-key"), $("key-form-error")); // the role back to its default, manager
  projectChoice();
}

async function submitCreate(event) {
  event.preventDefault();
  const form = $("key-form");
  const error = $("key-form-error");
  const name = $("key-name").value.trim();
  if (!name) {
    showFieldError(error, $("key-name"), "Give the key a name.");
    return;
  }
  const fields = { name, role: $("key-role").value };
  if ($("key-expiration").value) fields.expires_in = $("key-expiration").value;
  if (fields.role !== "admin") {
    if (!$("key-project").value) {
      showFieldError(error, $("key-project"), "Create a project first: this role needs one.");
      return;
    }
    fields.project_id = $("key-project").value;
  }
  const send = () => api.createAdminKey(fields);
  const created = await sendChecked(form, error, "AdminKeyCreate", ["name"], send);
  if (!created) return;
  const key = created.key;
  delete created.key;
  form.reset();
  $("dialog-key").close();
  revealOnce(key, {
    kind: "admin key",
    returnFocus: () => $("create-key"),
    onClose: () => {
      keyRows.add(keyRow(created), "Admin key created.");
    },
  });
}

// ------------------------------------------------------------------ revoke

let askRevoke = () => {}; // (subject, returnFocus): see init

function confirmRevoke(key, row) {
  $("key-revoke-name").textContent = key.name;
  askRevoke({ key, row }, () => $("create-key"));
}

const revoking = {
  remove: ({ key }) => api.revokeAdminKey(key.id),
  removed: ({ row }) => keyRows.drop(row, "Admin key revoked."),
};

export function init() {
  $("keys-table").prepend(tableHead(COLUMNS, { actions: true }));
  fillChoices();
  clearFieldErrorsOnChange($("key-form"), $("key-form-error"));
  $("create-key").addEventListener("click", openCreate);
  $("key-role").addEventListener("change", projectChoice);
  $("key-form").addEventListener("submit", submitCreate);
  askRevoke = removalDialog($("dialog-key-revoke"), $("key-revoke-error"), revoking);
}

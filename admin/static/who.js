// Who is signed in, as GET /v1/me says: the console adapts to it. A viewer sees no buttons
// that change anything; a project role (a manager or viewer key, a portal session) sees its
// one project and no project list; a portal session sees the Access Tokens page alone; only
// the admin role sees the admin pages. The API refuses all of it anyway: this only spares
// people buttons that would fail. Kept in memory only (the credential is in sessionStorage).

import { api } from "./api.js";

let me = null;

export async function load() {
  me = await api.me();
  apply();
  return me;
}

export function set(value) {
  me = value;
  apply();
}

export function clear() {
  me = null;
  apply();
}

export function get() {
  return me;
}

const RANK = { viewer: 0, manager: 1, admin: 2 };

// Whether the signed-in role includes `role`.
export function may(role) {
  return me !== null && RANK[me.role] >= RANK[role];
}

export function isPortal() {
  return me !== null && me.type === "portal";
}

// The one project of a project role; null for the admin role.
export function scopedProject() {
  return me === null ? null : me.project_id;
}

// The page's CSS hides what this role cannot use (app.css, "Roles").
function apply() {
  const body = document.body.dataset;
  if (me === null) {
    delete body.role;
    delete body.scoped;
    delete body.portal;
    return;
  }
  body.role = me.role;
  if (me.project_id) body.scoped = "";
  else delete body.scoped;
  if (me.type === "portal") body.portal = "";
  else delete body.portal;
}

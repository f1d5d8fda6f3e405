// Entry point: session, hash routing and the header.
//
// Routes: #/ (the projects), #/projects/<id>, #/admin-keys and #/activity (admin role), and
// #/portal/<code>, where a customer lands from the seller's site: the code is exchanged once
// for a session on one project, and the console shows that project's Access Tokens page.

import { api, session, setUnauthorizedHandler } from "./api.js";
import * as activity from "./activity.js";
import { frameDialogs, wireCloseButtons } from "./dialogs.js";
import { $, showError } from "./dom.js";
import * as keys from "./keys.js";
import * as project from "./project.js";
import * as projects from "./projects.js";
import * as schema from "./schema.js";
import * as signin from "./signin.js";
import * as who from "./who.js";

const PROJECT_ROUTE = /^#\/projects\/([^/?#]+)$/;
const PORTAL_ROUTE = /^#\/portal\/([^/?#]+)$/;

let firstRender = true;

function header(signedIn) {
  $("sign-out").hidden = !signedIn;
  $("topnav").hidden = !signedIn;
  const me = who.get();
  const identity = $("identity");
  identity.hidden = !signedIn || !me;
  if (me) identity.textContent = me.type === "portal" ? "" : `${me.name ?? me.type} · ${me.role}`;
}

async function route() {
  const portal = PORTAL_ROUTE.exec(location.hash);
  if (portal) {
    await landFromPortal(decodeURIComponent(portal[1]));
    return;
  }
  const signedIn = Boolean(session.get());
  if (signedIn && !who.get()) {
    try {
      await who.load();
    } catch (failure) {
      if (failure.status !== 401) signin.show(failure.message);
      return; // a 401 signed out already
    }
  }
  header(signedIn);
  if (!signedIn) {
    signin.show();
    return;
  }
  // After a navigation (not the first paint) move focus to the new page's heading.
  const focus = !firstRender;
  firstRender = false;
  const match = PROJECT_ROUTE.exec(location.hash);
  const own = who.scopedProject();
  if (own && !(match && decodeURIComponent(match[1]) === own)) {
    // A project role has one project and no list: everything else leads there.
    location.replace(projects.projectHref(own));
    return;
  }
  if (match) project.show(decodeURIComponent(match[1]), { focus });
  else if (location.hash === "#/admin-keys") keys.show({ focus });
  else if (location.hash === "#/activity") activity.show({ focus });
  else projects.show({ focus });
}

// Exchange the link's code for a session, then forget the code (it is in the address bar).
async function landFromPortal(code) {
  history.replaceState(null, "", "#/");
  clearPage();
  session.clear();
  let answer;
  try {
    answer = await api.exchangePortal(code);
  } catch (failure) {
    header(false);
    signin.show(
      failure.status === 401
        ? "This link has been used already or has expired. Go back and open your tokens page again."
        : failure.message,
    );
    return;
  }
  session.set(answer.session);
  firstRender = true;
  await route();
}

function closeDialogs() {
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
}

function clearPage() {
  // Nothing of the previous session stays on the page.
  $("projects-list").replaceChildren();
  $("tokens-body").replaceChildren();
  $("webhooks-list").replaceChildren();
  $("keys-body").replaceChildren();
  $("activity-list").replaceChildren();
  $("project-activity").replaceChildren();
}

function signOut(message) {
  closeDialogs();
  session.clear();
  who.clear();
  clearPage();
  firstRender = true;
  header(false);
  signin.show(message);
}

function start() {
  frameDialogs();
  wireCloseButtons();
  signin.init(() => {
    firstRender = true;
    route();
  });
  projects.init();
  project.init();
  keys.init();
  $("sign-out").addEventListener("click", () => signOut());
  setUnauthorizedHandler(() =>
    signOut("The admin API no longer accepts this credential (it may have been revoked or expired). Sign in again."),
  );
  window.addEventListener("hashchange", () => {
    closeDialogs();
    route();
  });
  route().catch((failure) => showError($("signin-error"), failure));
}

// The API's own description first: the views take their limits from it.
await schema.load();
start();

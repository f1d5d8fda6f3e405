// Entry point: session, hash routing (#/ and #/projects/<id>) and the header.

import { session, setUnauthorizedHandler } from "./api.js";
import { $, wireCloseButtons } from "./dom.js";
import * as project from "./project.js";
import * as projects from "./projects.js";
import * as schema from "./schema.js";
import * as signin from "./signin.js";

const PROJECT_ROUTE = /^#\/projects\/([^/?#]+)$/;

let firstRender = true;

function route() {
  const signedIn = Boolean(session.get());
  $("sign-out").hidden = !signedIn;
  if (!signedIn) {
    signin.show();
    return;
  }
  // After a navigation (not the first paint) move focus to the new page's heading.
  const focus = !firstRender;
  firstRender = false;
  const match = PROJECT_ROUTE.exec(location.hash);
  if (match) {
    project.show(decodeURIComponent(match[1]), { focus });
  } else {
    projects.show({ focus });
  }
}

function closeDialogs() {
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
}

function signOut(message) {
  closeDialogs();
  session.clear();
  // Nothing of the previous session stays on the page.
  $("projects-list").replaceChildren();
  $("tokens-body").replaceChildren();
  $("webhooks-list").replaceChildren();
  firstRender = true;
  $("sign-out").hidden = true;
  signin.show(message);
}

function start() {
  wireCloseButtons();
  signin.init(() => {
    firstRender = true;
    route();
  });
  projects.init();
  project.init();
  $("sign-out").addEventListener("click", () => signOut());
  setUnauthorizedHandler(() =>
    signOut("The admin API no longer accepts this token (it may have changed). Sign in again."),
  );
  window.addEventListener("hashchange", () => {
    closeDialogs();
    route();
  });
  route();
}

// The API's own description first: the views take their limits from it.
await schema.load();
start();

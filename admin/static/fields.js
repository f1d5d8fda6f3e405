// The console's words for the fields of the API's request bodies. The rules themselves come
// from the API's OpenAPI document (schema.js); what a person reads is written here, so a
// message never shows the API's field names, JSON's null or a bare "N/unit".

import { clearError, showError, showFieldError, whileBusy } from "./dom.js";
import { field, problem } from "./schema.js";

const LABELS = {
  name: "Name",
  rate_limit: "Rate limit",
  quota: "Quota",
  description: "Description",
  expires_in: "Expiration",
  scopes: "Scopes",
  allowed_ips: "Allowed addresses",
  url: "URL",
  events: "Events",
};

// For fields whose value must follow a pattern: what a good one looks like.
const HINTS = {
  rate_limit: (schema) => {
    const examples = schema.examples ? `, for example ${schema.examples.join(" or ")}` : "";
    return (
      `Write the rate limit as a number of requests per second, minute or hour${examples}. ` +
      "Leave it empty for the server default."
    );
  },
  quota: (schema) => {
    const examples = schema.examples ? `, for example ${schema.examples.join(" or ")}` : "";
    return `Write the quota as a number of requests per day or month${examples}. Leave it empty for none.`;
  },
};

function labelOf(name) {
  return LABELS[name] ?? name;
}

function hintOf(name, schema) {
  const hint = HINTS[name];
  return hint ? hint(schema) : `${labelOf(name)} is not valid.`;
}

// The first of `names` (fields of the form and of body `component`) whose value, trimmed,
// the API would refuse: [input, message], or null when all are fine. Empty values are
// left to the caller (empty may mean "default").
export function firstProblem(form, component, names) {
  for (const name of names) {
    const input = form.elements.namedItem(name);
    const value = input.value.trim();
    const schema = field(component, name);
    const message = problem(schema, value, { label: labelOf(name), hint: hintOf(name, schema) });
    if (message) return [input, message];
  }
  return null;
}

// An API error about one field of `form` (its message starts with the field's "name"), in
// the console's words: [input, message], or null when it is about no field of the form.
export function fromApi(form, component, failure) {
  const named = /^"(\w+)" (.*)$/s.exec(failure.message ?? "");
  const input = named && form.elements.namedItem(named[1]);
  if (!input || !input.id) return null;
  const [, name, rest] = named;
  if (HINTS[name]) return [input, hintOf(name, field(component, name))];
  const sentence = `${labelOf(name)} ${rest}`;
  return [input, /[.!?]$/.test(sentence) ? sentence : `${sentence}.`];
}

// Submit a form of body `component`: its `names` checked first, then `send()` with the submit
// button busy; a refusal shows next to its field (or in `error`). The answer, or null.
export async function sendChecked(form, error, component, names, send) {
  clearError(error);
  const wrong = firstProblem(form, component, names);
  if (wrong) {
    showFieldError(error, ...wrong);
    return null;
  }
  try {
    return await whileBusy(form.querySelector("button[type=submit]"), send);
  } catch (failure) {
    const about = fromApi(form, component, failure);
    if (about) showFieldError(error, ...about);
    else showError(error, failure);
    return null;
  }
}

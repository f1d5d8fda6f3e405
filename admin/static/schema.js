// What the admin API accepts, read from its own OpenAPI document (GET /v1/openapi.json, which
// needs no token): lengths, patterns, presets and examples are the server's, never copied here.
// Without the document (an older server, a network error) the console still works: the API
// checks everything itself and its answer is shown.

let document_ = { components: { schemas: {} } };

export async function load() {
  try {
    const response = await fetch("/v1/openapi.json", { cache: "no-store", credentials: "omit" });
    if (response.ok) document_ = await response.json();
  } catch {
    // Keep the empty description: no limits known in advance.
  }
}

// The JSON Schema of one field of a request body, e.g. field("ProjectCreate", "name").
export function field(component, name) {
  const schema = document_.components?.schemas?.[component];
  return schema?.properties?.[name] ?? {};
}

// What is wrong with `value` for a field of this schema, in words for people, or "" when
// nothing is. `label` names the field ("Rate limit"), `hint` says what a valid value looks
// like when a pattern rules this one out.
export function problem(schema, value, { label, hint }) {
  if (schema.maxLength !== undefined && [...value].length > schema.maxLength) {
    return `${label} can be at most ${schema.maxLength} characters long.`;
  }
  if (schema.pattern !== undefined && value !== "" && !new RegExp(schema.pattern, "u").test(value)) {
    return hint;
  }
  if (schema.enum !== undefined && !schema.enum.includes(value)) {
    return `Choose one of the ${label.toLowerCase()} options.`;
  }
  return "";
}

// Apply a field's length limit to its input, so the browser stops the typing there.
export function limitInput(input, schema) {
  if (schema.maxLength !== undefined) input.maxLength = schema.maxLength;
  else input.removeAttribute("maxlength");
}

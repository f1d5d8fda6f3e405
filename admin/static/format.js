// Dates: the reader's local time on screen, the exact UTC instant in the tooltip.

const local = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

export function utcText(date) {
  return (
    `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} UTC`
  );
}

// A <time> element for an RFC 3339 string, or a plain "Never" when there is none.
export function timeElement(iso, never = "Never") {
  if (iso === null || iso === undefined) {
    const span = document.createElement("span");
    span.className = "never";
    span.textContent = never;
    return span;
  }
  const date = new Date(iso);
  const time = document.createElement("time");
  time.dateTime = iso;
  if (Number.isNaN(date.getTime())) {
    time.textContent = iso;
    return time;
  }
  time.textContent = local.format(date);
  time.title = utcText(date);
  return time;
}

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
  time.append(...localParts(date));
  time.title = utcText(date);
  return time;
}

// "Nov 23, 2026, 4:27 AM" as two unbreakable pieces, date and time, so a narrow column
// wraps between them and never inside "4:27 AM".
function localParts(date) {
  const parts = local.formatToParts(date);
  const hour = parts.findIndex((part) => part.type === "hour");
  const text = (slice) => slice.map((part) => part.value).join("");
  if (hour <= 0) return [text(parts)];
  const day = document.createElement("span");
  day.className = "nowrap";
  day.textContent = text(parts.slice(0, hour)).trimEnd();
  const clock = document.createElement("span");
  clock.className = "nowrap";
  clock.textContent = text(parts.slice(hour));
  return [day, " ", clock];
}

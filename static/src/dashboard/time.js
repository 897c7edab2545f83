// Buckets are kept in "wall time" of the site's timezone: the epoch of the same clock reading in UTC.
// Axes then format with d3's utc* helpers and never depend on the viewer's own timezone.
const formatters = new Map();

function formatter(tz) {
  if (!formatters.has(tz)) {
    formatters.set(
      tz,
      new Intl.DateTimeFormat("en-US", {
        timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit",
      }),
    );
  }
  return formatters.get(tz);
}

export function wallTime(epochMs, tz) {
  const parts = {};
  for (const p of formatter(tz).formatToParts(new Date(epochMs))) parts[p.type] = p.value;
  return Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour % 24, +parts.minute, +parts.second);
}

const NAIVE = /^(\d{4})-(\d{2})(?:-(\d{2}))?(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?$/;

// A bucket label from the query engine: a date, a naive date-time (site time) or one with an offset.
export function parseBucket(label, tz) {
  const naive = NAIVE.exec(label);
  if (naive) {
    const [, y, mo, d, h, mi, s] = naive;
    return Date.UTC(+y, +mo - 1, +(d || 1), +(h || 0), +(mi || 0), +(s || 0));
  }
  const epoch = Date.parse(label);
  return Number.isNaN(epoch) ? null : wallTime(epoch, tz);
}

export const MINUTE = 60000;
export function floorMinute(ms) {
  return Math.floor(ms / MINUTE) * MINUTE;
}

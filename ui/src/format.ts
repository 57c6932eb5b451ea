// Pure formatting and parsing helpers: byte sizes in binary units, size input (the same
// units as the server's parser), relative and absolute times, tag lists. No DOM, no state.

const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** Bytes in binary units: `0 B`, `512 MiB`, `1.5 GiB`, `10.2 TiB`. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—';
  if (bytes < 0) return '-' + formatBytes(-bytes);
  let unit = 0;
  let value = bytes;
  while (value >= 1024 && unit < BINARY_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  const digits = value < 10 ? 2 : value < 100 ? 1 : 0;
  // Trailing zeros say nothing: 1.00 GiB reads as 1 GiB.
  const text = value.toFixed(digits).replace(/\.?0+$/, '');
  return `${text} ${BINARY_UNITS[unit]}`;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  Ki: 2 ** 10,
  KiB: 2 ** 10,
  Mi: 2 ** 20,
  MiB: 2 ** 20,
  Gi: 2 ** 30,
  GiB: 2 ** 30,
  Ti: 2 ** 40,
  TiB: 2 ** 40,
  Pi: 2 ** 50,
  PiB: 2 ** 50,
  K: 1e3,
  k: 1e3,
  KB: 1e3,
  M: 1e6,
  MB: 1e6,
  G: 1e9,
  GB: 1e9,
  T: 1e12,
  TB: 1e12,
};

/**
 * A size typed by a person (`1Gi`, `512 MiB`, `10 GiB`, `1.5Ti`, `4096`) in bytes; throws an
 * Error saying what is wrong. Binary units (Ki, Mi, Gi, Ti, with or without B) are powers of
 * 1024; K, M, G, T (KB...) are powers of 1000, as the server reads them.
 */
export function parseSize(text: string): number {
  const t = text.trim();
  const m = /^(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]*)$/.exec(t);
  if (!m) throw new Error(`"${text}" is not a size: write a number with a unit, such as 10Gi`);
  const multiplier = SIZE_UNITS[m[2]];
  if (multiplier === undefined) {
    throw new Error(`unknown size unit "${m[2]}" in "${text}" (use Ki, Mi, Gi, Ti)`);
  }
  const bytes = Math.round(parseFloat(m[1]) * multiplier);
  if (!Number.isSafeInteger(bytes)) throw new Error(`"${text}" is too large`);
  return bytes;
}

/** A Date from an API time string, or null when empty or unreadable. */
export function parseTime(value: string | number | null | undefined): Date | null {
  if (value === null || value === undefined || value === '') return null;
  const d = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** `2025-01-31 14:03:07` in the browser's time zone (for titles and tables). */
export function formatAbsolute(value: string | number | Date | null | undefined): string {
  const d = value instanceof Date ? value : parseTime(value);
  if (!d) return '—';
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` + `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** `just now`, `3 min ago`, `2 h ago`, `5 days ago`, or `in 4 min` for the future. */
export function formatRelative(value: string | number | Date | null | undefined, now: number = Date.now()): string {
  const d = value instanceof Date ? value : parseTime(value);
  if (!d) return '—';
  const seconds = Math.round((d.getTime() - now) / 1000);
  const future = seconds > 0;
  const s = Math.abs(seconds);
  let text: string;
  if (s < 10) return 'just now';
  if (s < 60) text = `${s} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h`;
  else if (s < 86400 * 60) {
    const days = Math.floor(s / 86400);
    text = `${days} ${days === 1 ? 'day' : 'days'}`;
  } else if (s < 86400 * 730) text = `${Math.floor(s / (86400 * 30))} months`;
  else text = `${Math.floor(s / (86400 * 365))} years`;
  return future ? `in ${text}` : `${text} ago`;
}

/** Comma- or space-separated tags (`ssd, fast`) as a clean list without duplicates. */
export function parseTags(text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(/[,\s]+/)) {
    const t = part.trim();
    if (t && !out.includes(t)) out.push(t);
  }
  return out;
}

/** A list of tags as one editable line. */
export function joinTags(tags: readonly string[] | null | undefined): string {
  return (tags ?? []).join(', ');
}

/** A percentage clamped to 0..100 (for progress bars), or 0 when the total is zero. */
export function percent(part: number, total: number): number {
  if (!total || !Number.isFinite(part) || !Number.isFinite(total)) return 0;
  return Math.max(0, Math.min(100, (part / total) * 100));
}

/** `key=value` pairs, one a line or comma-separated, as a label map. Throws on a bad pair. */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(/[\n,]+/)) {
    const t = part.trim();
    if (!t) continue;
    const eq = t.indexOf('=');
    if (eq <= 0) throw new Error(`"${t}" is not a label: write key=value`);
    out[t.slice(0, eq).trim()] = t.slice(eq + 1).trim();
  }
  return out;
}

/** Bytes as an exact size input: the largest binary unit that divides it (`10Gi`, `1536Ki`). */
export function exactSize(bytes: number): string {
  if (!bytes) return '0';
  const units: [string, number][] = [
    ['Ti', 2 ** 40],
    ['Gi', 2 ** 30],
    ['Mi', 2 ** 20],
    ['Ki', 2 ** 10],
  ];
  for (const [u, n] of units) if (bytes % n === 0) return `${bytes / n}${u}`;
  return String(bytes);
}

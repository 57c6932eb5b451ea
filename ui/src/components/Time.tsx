// A time as "3 min ago" (or "in 4 min") with the absolute time in its title.
import { formatAbsolute, formatRelative, parseTime } from '../format';

export function Time(props: { value: string | number | null | undefined; now?: number }) {
  const d = parseTime(props.value);
  if (!d) return <span class="muted">—</span>;
  return (
    <time dateTime={d.toISOString()} title={formatAbsolute(d)}>
      {formatRelative(d, props.now)}
    </time>
  );
}

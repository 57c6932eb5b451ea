// A progress bar: a value of 0..100 (or indeterminate when unknown), with a label beside it.
// The width is set through the element's style property, which the page's CSP allows.

export function ProgressBar(props: {
  value?: number | null;
  label?: string;
  tone?: 'ok' | 'warn' | 'bad' | 'info';
  title?: string;
  testid?: string;
}) {
  const known = typeof props.value === 'number' && Number.isFinite(props.value);
  const v = known ? Math.max(0, Math.min(100, props.value as number)) : 0;
  return (
    <div class="progress" title={props.title} data-testid={props.testid}>
      <div
        class={`progress-track${known ? '' : ' progress-indeterminate'}`}
        role="progressbar"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={known ? Math.round(v) : undefined}
      >
        <div class={`progress-fill progress-${props.tone ?? 'info'}`} style={known ? { width: `${v}%` } : undefined} />
      </div>
      {props.label !== undefined ? (
        <span class="progress-label">{props.label}</span>
      ) : known ? (
        <span class="progress-label">{Math.round(v)}%</span>
      ) : null}
    </div>
  );
}

/** A stacked capacity bar: used and scheduled shares of a maximum. */
export function CapacityBar(props: { used: number; scheduled: number; reserved: number; max: number }) {
  const pct = (n: number) => (props.max > 0 ? Math.max(0, Math.min(100, (n / props.max) * 100)) : 0);
  return (
    <div class="capacity" role="img" aria-label="capacity">
      <div class="capacity-row" title="Used (maximum − available)">
        <div class="capacity-fill capacity-used" style={{ width: `${pct(props.used)}%` }} />
      </div>
      <div class="capacity-row" title="Scheduled (replicas' sizes)">
        <div class="capacity-fill capacity-scheduled" style={{ width: `${pct(props.scheduled)}%` }} />
      </div>
      <div class="capacity-row" title="Reserved">
        <div class="capacity-fill capacity-reserved" style={{ width: `${pct(props.reserved)}%` }} />
      </div>
    </div>
  );
}

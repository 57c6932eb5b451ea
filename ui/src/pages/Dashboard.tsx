// The dashboard: cluster capacity from the nodes' disks, volumes by state and robustness,
// node readiness, the newest condition changes, and recurring jobs that failed.
import { useMemo } from 'preact/hooks';
import { api, type Node, type RecurringJob, type Volume } from '../api';
import { Badge } from '../components/Badge';
import { ErrorBanner } from '../components/ErrorBanner';
import { EmptyRow, TableHead } from '../components/Table';
import { Time } from '../components/Time';
import { robustnessValues, volumeStateValues } from '../generated/api';
import { formatBytes, percent } from '../format';
import { useNow, useResource } from '../hooks';
import { capacityOf, conditionOk, jobFailure, recentConditions } from '../model';

function Meter(props: { label: string; value: number; max: number; tone: string; testid: string }) {
  const p = percent(props.value, props.max);
  const raw = props.max > 0 ? (props.value / props.max) * 100 : 0;
  return (
    <div class="meter" data-testid={props.testid}>
      <div class="meter-head">
        <span>{props.label}</span>
        <span class="meter-value">
          {formatBytes(props.value)} <span class="muted">({raw.toFixed(raw < 10 ? 1 : 0)}%)</span>
        </span>
      </div>
      <div class="bar">
        <div class={`bar-fill bar-${props.tone}`} style={{ width: `${p}%` }} />
      </div>
    </div>
  );
}

function Count(props: { label: string; value: number; state?: string; href?: string; testid?: string }) {
  const body = (
    <>
      <span class="count-value">{props.value}</span>
      <span class="count-label">{props.state ? <Badge state={props.state}>{props.label}</Badge> : props.label}</span>
    </>
  );
  return props.href ? (
    <a class="count" href={props.href} data-testid={props.testid}>
      {body}
    </a>
  ) : (
    <div class="count" data-testid={props.testid}>
      {body}
    </div>
  );
}

export function DashboardPage() {
  const volumes = useResource(api.volumes, []);
  const nodes = useResource(api.nodes, []);
  const jobs = useResource(api.recurringJobs, []);
  const now = useNow();

  const vs: Volume[] = volumes.data ?? [];
  const ns: Node[] = nodes.data ?? [];
  const js: RecurringJob[] = jobs.data ?? [];

  const capacity = useMemo(() => capacityOf(ns), [ns]);
  const byState = useMemo(() => {
    const m = new Map<string, number>();
    for (const v of vs) m.set(v.status?.state ?? 'unknown', (m.get(v.status?.state ?? 'unknown') ?? 0) + 1);
    return m;
  }, [vs]);
  const byRobustness = useMemo(() => {
    const m = new Map<string, number>();
    for (const v of vs) m.set(v.status?.robustness ?? 'unknown', (m.get(v.status?.robustness ?? 'unknown') ?? 0) + 1);
    return m;
  }, [vs]);
  const events = useMemo(() => recentConditions(vs, ns, 20), [vs, ns]);
  const failed = useMemo(() => js.filter((j) => jobFailure(j)), [js]);
  const ready = ns.filter((n) => n.status?.ready).length;
  const schedulable = ns.filter((n) => n.status?.ready && n.spec.allowScheduling).length;
  const anyTimes = events.some((e) => e.at !== null);

  return (
    <section class="page" data-testid="dashboard-page">
      <div class="page-head">
        <h1>Dashboard</h1>
      </div>
      <ErrorBanner error={volumes.error ?? nodes.error ?? jobs.error} />

      <div class="dash-grid">
        <div class="card" data-testid="capacity">
          <h2>Capacity</h2>
          <div class="capacity-summary">
            <div>
              <span class="big">{formatBytes(capacity.maximum)}</span>
              <span class="muted"> storage maximum</span>
            </div>
            <div>
              <span class="big">{formatBytes(capacity.available)}</span>
              <span class="muted"> available</span>
            </div>
            <div class="muted">
              {capacity.disks} {capacity.disks === 1 ? 'disk' : 'disks'} on {ns.length} {ns.length === 1 ? 'node' : 'nodes'}
            </div>
          </div>
          <Meter label="Used" value={capacity.used} max={capacity.maximum} tone="used" testid="capacity-used" />
          <Meter label="Scheduled" value={capacity.scheduled} max={capacity.maximum} tone="scheduled" testid="capacity-scheduled" />
          <Meter label="Reserved" value={capacity.reserved} max={capacity.maximum} tone="reserved" testid="capacity-reserved" />
        </div>

        <div class="card" data-testid="node-counts">
          <h2>Nodes</h2>
          <div class="counts">
            <Count label="nodes" value={ns.length} href="#/nodes" testid="count-nodes" />
            <Count label="ready" state="ready" value={ready} href="#/nodes" testid="count-nodes-ready" />
            <Count label="schedulable" value={schedulable} href="#/nodes" testid="count-nodes-schedulable" />
            {ns.length - ready > 0 ? <Count label="not ready" state="faulted" value={ns.length - ready} href="#/nodes" /> : null}
          </div>
        </div>
        <div class="card" data-testid="volume-counts">
          <h2>
            Volumes <span class="muted">{vs.length}</span>
          </h2>
          <div class="split">
            <div>
              <h3>By state</h3>
              <div class="counts">
                {volumeStateValues.map((s) => (
                  <Count label={s} state={s} value={byState.get(s) ?? 0} href={`#/volumes?state=${s}`} testid={`count-state-${s}`} />
                ))}
              </div>
            </div>
            <div>
              <h3>By robustness</h3>
              <div class="counts">
                {robustnessValues.map((r) => (
                  <Count
                    label={r}
                    state={r}
                    value={byRobustness.get(r) ?? 0}
                    href={`#/volumes?robustness=${r}`}
                    testid={`count-robustness-${r}`}
                  />
                ))}
              </div>
            </div>
          </div>
        </div>
        <div class="card" data-testid="failed-jobs">
          <h2>Failed jobs</h2>
          {failed.length === 0 ? (
            <p class="muted">No recurring job is failing.</p>
          ) : (
            <ul class="plain-list">
              {failed.map((j) => {
                const c = jobFailure(j)!;
                return (
                  <li data-job={j.name}>
                    <a href="#/recurringjobs">
                      <strong>{j.name}</strong>
                    </a>{' '}
                    <Badge state="failed">{c.reason || 'failed'}</Badge>
                    <div class="small wrap">{c.message}</div>
                  </li>
                );
              })}
            </ul>
          )}
        </div>
      </div>

      <div class="card" data-testid="recent-events">
        <h2>Recent events</h2>
        {!anyTimes && events.length > 0 ? (
          <p class="muted small">The server does not report when conditions changed; notable ones are listed first.</p>
        ) : null}
        <div class="table-wrap">
          <table class="table">
            <TableHead columns={['When', 'Resource', 'Condition', 'Status', 'Reason', 'Message']} />
            <tbody>
              {events.length === 0 ? (
                <EmptyRow span={6}>No conditions reported.</EmptyRow>
              ) : (
                events.map((e) => (
                  <tr data-event={`${e.kind}/${e.name}/${e.condition.type}`}>
                    <td>
                      <Time value={e.condition.lastTransitionTime} now={now} />
                    </td>
                    <td>
                      <span class="muted">{e.kind} </span>
                      <a href={e.href}>{e.name}</a>
                    </td>
                    <td>{e.condition.type}</td>
                    <td>
                      <Badge tone={conditionOk(e.condition) ? 'ok' : 'warn'}>{e.condition.status}</Badge>
                    </td>
                    <td>{e.condition.reason || <span class="muted">—</span>}</td>
                    <td class="wrap">{e.condition.message}</td>
                  </tr>
                ))
              )}
            </tbody>
          </table>
        </div>
      </div>
    </section>
  );
}

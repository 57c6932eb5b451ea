// Recurring jobs: each job's task, schedule, retention, groups, next runs, last slot, failure
// condition and the volumes it applies to; create, edit, delete, run now, and its run history.
import { useMemo, useState } from 'preact/hooks';
import { api, type RecurringJob, type RecurringJobSpec, type RecurringRun } from '../api';
import { ActionButton } from '../components/Action';
import { Badge } from '../components/Badge';
import { ErrorBanner } from '../components/ErrorBanner';
import { Modal } from '../components/Modal';
import { Time } from '../components/Time';
import { recurringTaskValues } from '../generated/api';
import { formatAbsolute, joinTags, parseLabels, parseTags } from '../format';
import { useAction, useNow, useResource } from '../hooks';
import { jobFailure } from '../model';
import { useCan } from '../session';

export function RecurringJobsPage() {
  const jobs = useResource(api.recurringJobs, []);
  // Each volume's status holds the last run of every job on it: the newest is the job's last run.
  const volumes = useResource(api.volumes, []);
  const lastRuns = useMemo(() => {
    const m = new Map<string, RecurringRun>();
    for (const v of volumes.data ?? []) {
      for (const [job, run] of Object.entries(v.status?.recurringJobs ?? {})) {
        const prev = m.get(job);
        if (!prev || (run.started ?? '') > (prev.started ?? '')) m.set(job, run);
      }
    }
    return m;
  }, [volumes.data]);
  const canOperate = useCan('operator');
  const now = useNow(15000);
  const [editing, setEditing] = useState<RecurringJob | 'new' | null>(null);
  const [history, setHistory] = useState<string | null>(null);
  const list = useMemo(() => (jobs.data ?? []).slice().sort((a, b) => a.name.localeCompare(b.name)), [jobs.data]);

  return (
    <section class="page" data-testid="recurringjobs-page">
      <div class="page-head">
        <h1>
          Recurring jobs <span class="muted">{jobs.data ? list.length : ''}</span>
        </h1>
        {canOperate ? (
          <button
            type="button"
            class="button button-primary"
            data-testid="recurringjob-create"
            data-mutates=""
            onClick={() => setEditing('new')}
          >
            Create job
          </button>
        ) : null}
      </div>
      <ErrorBanner error={jobs.error} />
      <div class="table-wrap">
        <table class="table" data-testid="recurringjobs-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Task</th>
              <th>Schedule</th>
              <th class="num">Retain</th>
              <th class="num" title="How many volumes run it at once">
                Conc.
              </th>
              <th>Groups</th>
              <th>Volumes</th>
              <th>Next run</th>
              <th>Last run</th>
              <th>Status</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list.length === 0 ? (
              <tr class="empty-row">
                <td colSpan={11}>{jobs.loading ? 'Loading…' : 'No recurring jobs.'}</td>
              </tr>
            ) : (
              list.map((j) => {
                const failure = jobFailure(j);
                const next = j.status?.nextRuns ?? [];
                const volumes = j.status?.volumes ?? [];
                return (
                  <tr data-job={j.name}>
                    <td>
                      <strong>{j.name}</strong>
                      {Object.entries(j.labels ?? {}).map(([k, v]) => (
                        <span class="tag" title={`${k}=${v}`}>
                          {k}={v}
                        </span>
                      ))}
                    </td>
                    <td>{j.task}</td>
                    <td>
                      <code>{j.cron}</code>
                    </td>
                    <td class="num">{j.retain ?? '—'}</td>
                    <td class="num">{j.concurrency ?? '—'}</td>
                    <td>{j.groups?.length ? j.groups.map((g) => <span class="tag">{g}</span>) : <span class="muted">—</span>}</td>
                    <td title={volumes.join(', ')}>{volumes.length}</td>
                    <td title={next.map((t) => formatAbsolute(t)).join('\n')}>
                      {next.length ? <Time value={next[0]} now={now} /> : <span class="muted">—</span>}
                    </td>
                    <td
                      title={j.status?.lastScheduled ? `Last schedule slot handled: ${formatAbsolute(j.status.lastScheduled)}` : undefined}
                    >
                      {lastRuns.get(j.name) ? (
                        <span title={`${lastRuns.get(j.name)!.volume}: ${lastRuns.get(j.name)!.message ?? ''}`}>
                          <Badge state={lastRuns.get(j.name)!.result} /> <Time value={lastRuns.get(j.name)!.started} now={now} />
                        </span>
                      ) : (
                        <span class="muted">never</span>
                      )}
                    </td>
                    <td>
                      {j.status?.active ? <Badge state="running">running{j.status.running ? ` (${j.status.running})` : ''}</Badge> : null}
                      {failure ? (
                        <div>
                          <Badge state="failed">{failure.reason || 'failed'}</Badge>
                          <div class="small wrap text-bad">{failure.message}</div>
                        </div>
                      ) : !j.status?.active ? (
                        <Badge tone="ok">ok</Badge>
                      ) : null}
                    </td>
                    <td class="row-actions">
                      <button type="button" class="button button-small" data-testid="recurringjob-runs" onClick={() => setHistory(j.name)}>
                        Runs
                      </button>
                      {canOperate ? (
                        <>
                          <ActionButton
                            small
                            label="Run now"
                            what="run recurring jobs"
                            testid="recurringjob-run"
                            run={() => api.runRecurringJob(j.name)}
                          />
                          <button
                            type="button"
                            class="button button-small"
                            data-testid="recurringjob-edit"
                            data-mutates=""
                            onClick={() => setEditing(j)}
                          >
                            Edit
                          </button>
                          <ActionButton
                            small
                            kind="danger"
                            label="Delete"
                            what="delete recurring jobs"
                            testid="recurringjob-delete"
                            confirm={
                              <>
                                Delete recurring job <strong>{j.name}</strong>? Snapshots and backups it made are kept.
                              </>
                            }
                            confirmLabel="Delete job"
                            run={() => api.deleteRecurringJob(j.name)}
                          />
                        </>
                      ) : null}
                    </td>
                  </tr>
                );
              })
            )}
          </tbody>
        </table>
      </div>
      {editing ? <JobDialog job={editing === 'new' ? null : editing} onClose={() => setEditing(null)} /> : null}
      {history ? <RunsDialog job={history} onClose={() => setHistory(null)} /> : null}
    </section>
  );
}

function JobDialog({ job, onClose }: { job: RecurringJob | null; onClose: () => void }) {
  const [name, setName] = useState(job?.name ?? '');
  const [task, setTask] = useState<string>(job?.task ?? 'snapshot');
  const [cron, setCron] = useState(job?.cron ?? '0 * * * *');
  const [retain, setRetain] = useState(String(job?.retain ?? 1));
  const [concurrency, setConcurrency] = useState(String(job?.concurrency ?? 1));
  const [groups, setGroups] = useState(joinTags(job?.groups));
  const [labels, setLabels] = useState(
    Object.entries(job?.labels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join('\n'),
  );
  const [invalid, setInvalid] = useState<string | null>(null);
  const action = useAction(job ? 'change recurring jobs' : 'create recurring jobs');

  const submit = async (e: Event) => {
    e.preventDefault();
    setInvalid(null);
    let l: Record<string, string>;
    try {
      l = parseLabels(labels);
    } catch (err) {
      setInvalid(err instanceof Error ? err.message : String(err));
      return;
    }
    const body: RecurringJobSpec = {
      name: name.trim(),
      task: task as RecurringJobSpec['task'],
      cron: cron.trim(),
      retain: Number(retain) || 0,
      concurrency: Number(concurrency) || 0,
      groups: parseTags(groups),
      labels: l,
    };
    const ok = await action.run(() => (job ? api.putRecurringJob(job.name, body) : api.createRecurringJob(body)));
    if (ok) onClose();
  };

  return (
    <Modal title={job ? `Edit ${job.name}` : 'Create recurring job'} onClose={onClose} testid="recurringjob-dialog">
      <form class="form" onSubmit={submit} data-mutates="">
        <div class="form-grid">
          <label class="field">
            <span>Name</span>
            <input
              name="name"
              required
              readOnly={!!job}
              pattern="[a-z0-9]([a-z0-9.\-]{0,61}[a-z0-9])?"
              value={name}
              onInput={(e) => setName((e.target as HTMLInputElement).value)}
            />
          </label>
          <label class="field">
            <span>Task</span>
            <select name="task" value={task} onChange={(e) => setTask((e.target as HTMLSelectElement).value)}>
              {recurringTaskValues.map((t) => (
                <option value={t}>{t}</option>
              ))}
            </select>
          </label>
          <label class="field">
            <span>Schedule (cron)</span>
            <input
              name="cron"
              required
              placeholder="0 2 * * * or @daily"
              value={cron}
              onInput={(e) => setCron((e.target as HTMLInputElement).value)}
            />
            <small class="hint">minute hour day-of-month month day-of-week</small>
          </label>
          <label class="field">
            <span>Retain</span>
            <input name="retain" type="number" min={0} value={retain} onInput={(e) => setRetain((e.target as HTMLInputElement).value)} />
          </label>
          <label class="field">
            <span>Concurrency</span>
            <input
              name="concurrency"
              type="number"
              min={0}
              value={concurrency}
              onInput={(e) => setConcurrency((e.target as HTMLInputElement).value)}
            />
          </label>
          <label class="field">
            <span>Groups</span>
            <input
              name="groups"
              placeholder="default, nightly"
              value={groups}
              onInput={(e) => setGroups((e.target as HTMLInputElement).value)}
            />
          </label>
        </div>
        <label class="field field-wide">
          <span>Labels of what it makes</span>
          <textarea
            name="labels"
            rows={2}
            placeholder="key=value, one a line"
            value={labels}
            onInput={(e) => setLabels((e.target as HTMLTextAreaElement).value)}
          />
        </label>
        <ErrorBanner error={invalid ?? action.error} />
        <div class="form-actions">
          <button type="button" class="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="button button-primary" data-testid="submit" data-mutates="" disabled={action.busy}>
            {action.busy ? <span class="spinner" aria-hidden="true" /> : null}
            {job ? 'Save' : 'Create job'}
          </button>
        </div>
      </form>
    </Modal>
  );
}

function RunsDialog({ job, onClose }: { job: string; onClose: () => void }) {
  const runs = useResource(() => api.recurringJobRuns(job), [job]);
  const now = useNow(15000);
  const list = (runs.data ?? []).slice().sort((a, b) => b.started.localeCompare(a.started));
  return (
    <Modal title={`Runs of ${job}`} onClose={onClose} wide testid="recurringjob-runs-dialog">
      <ErrorBanner error={runs.error} />
      {list.length === 0 ? (
        <p class="muted">{runs.loading ? 'Loading…' : 'No runs recorded.'}</p>
      ) : (
        <div class="table-wrap table-scroll">
          <table class="table">
            <thead>
              <tr>
                <th>Volume</th>
                <th>Result</th>
                <th>Slot</th>
                <th>Started</th>
                <th>Finished</th>
                <th>Made</th>
                <th>Message</th>
              </tr>
            </thead>
            <tbody>
              {list.map((r) => (
                <tr>
                  <td>
                    <a href={`#/volumes/${encodeURIComponent(r.volume)}`} onClick={onClose}>
                      {r.volume}
                    </a>
                  </td>
                  <td>
                    <Badge state={r.result} />
                  </td>
                  <td>{r.scheduled ? <Time value={r.scheduled} now={now} /> : <span class="muted">run now</span>}</td>
                  <td>
                    <Time value={r.started} now={now} />
                  </td>
                  <td>
                    <Time value={r.finished} now={now} />
                  </td>
                  <td>{r.created || <span class="muted">—</span>}</td>
                  <td class="wrap">{r.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Modal>
  );
}

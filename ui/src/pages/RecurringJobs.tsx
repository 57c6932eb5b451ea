// Recurring jobs: each job's task, schedule, retention, groups, next runs, last slot, failure
// condition and the volumes it applies to; create, edit, delete, run now, and its run history.
import { useMemo, useState } from 'preact/hooks';
import { api, type RecurringJob, type RecurringJobSpec, type RecurringRun } from '../api';
import { ActionButton, DialogButton } from '../components/Action';
import { Badge } from '../components/Badge';
import { ErrorBanner } from '../components/ErrorBanner';
import { Field, FormDialog, LabelsField, NAME_PATTERN, TextField, tryParse } from '../components/Form';
import { Modal } from '../components/Modal';
import { EmptyRow, TableHead } from '../components/Table';
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
          <DialogButton kind="primary" testid="recurringjob-create" onClick={() => setEditing('new')}>
            Create job
          </DialogButton>
        ) : null}
      </div>
      <ErrorBanner error={jobs.error} />
      <div class="table-wrap">
        <table class="table" data-testid="recurringjobs-table">
          <TableHead
            columns={[
              'Name',
              'Task',
              'Schedule',
              { label: 'Retain', class: 'num' },
              { label: 'Conc.', class: 'num', title: 'How many volumes run it at once' },
              'Groups',
              'Volumes',
              'Next run',
              'Last run',
              'Status',
              '',
            ]}
          />
          <tbody>
            {list.length === 0 ? (
              <EmptyRow span={11}>{jobs.loading ? 'Loading…' : 'No recurring jobs.'}</EmptyRow>
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
                          <DialogButton small testid="recurringjob-edit" onClick={() => setEditing(j)}>
                            Edit
                          </DialogButton>
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
    const l = tryParse(() => parseLabels(labels), setInvalid);
    if (!l) return;
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
    <FormDialog
      title={job ? `Edit ${job.name}` : 'Create recurring job'}
      testid="recurringjob-dialog"
      onClose={onClose}
      onSubmit={submit}
      error={invalid ?? action.error}
      busy={action.busy}
      submitLabel={job ? 'Save' : 'Create job'}
    >
      <div class="form-grid">
        <TextField label="Name" name="name" required readOnly={!!job} pattern={NAME_PATTERN} value={name} onValue={setName} />
        <Field label="Task">
          <select name="task" value={task} onChange={(e) => setTask((e.target as HTMLSelectElement).value)}>
            {recurringTaskValues.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
        </Field>
        <TextField
          label="Schedule (cron)"
          hint="minute hour day-of-month month day-of-week"
          name="cron"
          required
          placeholder="0 2 * * * or @daily"
          value={cron}
          onValue={setCron}
        />
        <TextField label="Retain" name="retain" type="number" min={0} value={retain} onValue={setRetain} />
        <TextField label="Concurrency" name="concurrency" type="number" min={0} value={concurrency} onValue={setConcurrency} />
        <TextField label="Groups" name="groups" placeholder="default, nightly" value={groups} onValue={setGroups} />
      </div>
      <LabelsField label="Labels of what it makes" wide value={labels} onValue={setLabels} />
    </FormDialog>
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
            <TableHead columns={['Volume', 'Result', 'Slot', 'Started', 'Finished', 'Made', 'Message']} />
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

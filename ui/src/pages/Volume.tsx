// One volume: its spec and status, actions (attach, detach, expand, delete, activate, trim,
// salvage), replicas with rebuild state, restore and backup progress, the snapshot tree with
// its actions, backups of the volume, the recurring jobs that apply to it and their recent runs.
import type { ComponentChildren } from 'preact';
import { useMemo, useState } from 'preact/hooks';
import { ApiError, GROUP_LABEL_PREFIX, JOB_LABEL_PREFIX, api, type Backup, type Schemas, type Condition, type Volume } from '../api';
import { ActionButton, DialogButton } from '../components/Action';
import { Badge } from '../components/Badge';
import { ErrorBanner } from '../components/ErrorBanner';
import { CheckField, Field, FormDialog, LabelsField, NAME_PATTERN, TextField, tryParse } from '../components/Form';
import { ProgressBar } from '../components/ProgressBar';
import { SnapshotTree } from '../components/SnapshotTree';
import { EmptyRow, TableHead } from '../components/Table';
import { Time } from '../components/Time';
import { RestoreDialog } from '../components/VolumeForm';
import { frontendValues } from '../generated/api';
import { formatBytes, parseLabels, parseSize } from '../format';
import { useAction, useNow, useResource, type Resource } from '../hooks';
import { conditionOk, isRebuilding, jobGroups, readyNodes, rebuildProgress, replicaCounts, volumeCreated, volumeJobs } from '../model';
import { navigate } from '../router';
import { useCan } from '../session';

export function VolumePage(props: { name: string }) {
  const { name } = props;
  const volume = useResource(() => api.volume(name), [name]);
  const backups = useResource(() => api.backups(name), [name]);
  const canOperate = useCan('operator');
  const now = useNow(15000);
  const v = volume.data;

  if (!v) {
    return (
      <section class="page" data-testid="volume-page">
        <div class="page-head">
          <h1>
            <a href="#/volumes" class="crumb">
              Volumes
            </a>{' '}
            / {name}
          </h1>
        </div>
        {volume.loading ? <p class="muted">Loading…</p> : <ErrorBanner error={volume.error} />}
      </section>
    );
  }

  const state = v.status?.state ?? 'unknown';
  return (
    <section class="page" data-testid="volume-page" data-volume-page={v.name}>
      <div class="page-head">
        <h1>
          <a href="#/volumes" class="crumb">
            Volumes
          </a>{' '}
          / {v.name}
        </h1>
        <div class="head-badges">
          <Badge state={state} testid="volume-state" />
          <Badge state={v.status?.robustness} testid="volume-robustness" />
          <span class="size-pill" data-testid="volume-size" title={`${v.spec.size} bytes`}>
            {formatBytes(v.spec.size)}
          </span>
        </div>
      </div>
      {volume.error ? <ErrorBanner error={volume.error} /> : null}
      {canOperate ? <VolumeActions v={v} /> : null}
      <Progress v={v} backups={backups.data ?? []} />
      <div class="cards">
        <Details v={v} now={now} />
        <Conditions conditions={v.status?.conditions ?? []} now={now} />
      </div>
      <Replicas v={v} />
      <Snapshots v={v} now={now} />
      <Backups v={v} now={now} backups={backups} />
      <Jobs v={v} now={now} />
    </section>
  );
}

function VolumeActions({ v }: { v: Volume }) {
  const [dialog, setDialog] = useState<null | 'attach' | 'expand'>(null);
  const [trimmed, setTrimmed] = useState<Schemas['TrimResult'] | null>(null);
  const state = v.status?.state;
  const attached = state === 'attached';
  const mounted = (v.status?.blockdev?.mountPoints ?? []).length > 0;
  return (
    <div class="actions-bar" data-testid="volume-actions">
      {state !== 'attached' && state !== 'attaching' && !v.spec.standby ? (
        <DialogButton kind="primary" testid="attach" onClick={() => setDialog('attach')}>
          Attach
        </DialogButton>
      ) : null}
      {state !== 'detached' ? (
        <ActionButton label="Detach" what="detach this volume" testid="detach" run={() => api.detach(v.name, {})} />
      ) : null}
      {mounted ? (
        <ActionButton
          label="Force detach"
          what="detach this volume"
          testid="detach-force"
          kind="danger"
          confirm={
            <>
              The block device is mounted at {v.status?.blockdev?.mountPoints.join(', ')}. Force detach flushes and unmounts it (lazily if
              busy) before detaching.
            </>
          }
          run={() => api.detach(v.name, { force: true })}
        />
      ) : null}
      <DialogButton testid="expand" onClick={() => setDialog('expand')}>
        Expand
      </DialogButton>
      {attached ? (
        <ActionButton
          label="Trim"
          what="trim this volume"
          testid="trim"
          title="Discard the filesystem's free space (fstrim)"
          run={() => api.trim(v.name)}
          onDone={(r) => setTrimmed(r as Schemas['TrimResult'])}
        />
      ) : null}
      {v.status?.robustness === 'faulted' ? (
        <ActionButton
          label="Salvage"
          what="salvage this volume"
          testid="salvage"
          kind="danger"
          confirm={
            <>
              No replica of <strong>{v.name}</strong> is healthy. Salvage lets its failed replicas serve again: the engine starts from the
              one holding the newest writes, and the others are rebuilt from it. Writes only the other replicas held are lost.
            </>
          }
          confirmLabel="Salvage"
          run={() => api.salvage(v.name, {})}
        />
      ) : null}
      {v.spec.standby ? (
        <ActionButton
          label="Activate"
          what="activate this volume"
          testid="activate"
          confirm="Activating ends the standby: the volume stops following its backup volume and can be attached."
          run={() => api.activate(v.name)}
        />
      ) : null}
      <span class="spacer" />
      <ActionButton
        label="Delete"
        what="delete this volume"
        testid="delete"
        kind="danger"
        confirm={
          <>
            Delete volume <strong>{v.name}</strong> and all its replicas and snapshots? This cannot be undone (backups are kept).
          </>
        }
        confirmLabel="Delete volume"
        run={() => api.deleteVolume(v.name)}
        onDone={() => navigate('#/volumes')}
      />
      {trimmed ? (
        <div class="notice" role="status">
          Trimmed {formatBytes(trimmed.trimmedBytes)} of {trimmed.mountPoint || 'the filesystem'}; {formatBytes(trimmed.discardedBytes)}{' '}
          discarded in every replica.{' '}
          <button type="button" class="link-button" onClick={() => setTrimmed(null)}>
            Dismiss
          </button>
        </div>
      ) : null}
      {dialog === 'attach' ? <AttachDialog v={v} onClose={() => setDialog(null)} /> : null}
      {dialog === 'expand' ? <ExpandDialog v={v} onClose={() => setDialog(null)} /> : null}
    </div>
  );
}

function AttachDialog({ v, onClose }: { v: Volume; onClose: () => void }) {
  const nodes = useResource(api.nodes, []);
  const ready = useMemo(() => readyNodes(nodes.data ?? []), [nodes.data]);
  const [node, setNode] = useState('');
  const [frontend, setFrontend] = useState('');
  const [maintenance, setMaintenance] = useState(false);
  const action = useAction('attach this volume');
  const chosen = node || ready[0]?.name || '';

  const submit = async (e: Event) => {
    e.preventDefault();
    const body: Schemas['AttachRequest'] = {};
    if (chosen) body.node = chosen;
    if (maintenance) body.maintenance = true;
    else if (frontend) body.frontend = frontend as Schemas['Frontend'];
    const ok = await action.run(() => api.attach(v.name, body));
    if (ok) onClose();
  };

  return (
    <FormDialog
      title={`Attach ${v.name}`}
      testid="attach-dialog"
      onClose={onClose}
      onSubmit={submit}
      error={action.error}
      busy={action.busy}
      submitLabel="Attach"
    >
      <Field label="Node">
        <select name="node" value={chosen} onChange={(e) => setNode((e.target as HTMLSelectElement).value)}>
          {ready.length === 0 ? <option value="">the server's own node</option> : null}
          {ready.map((n) => (
            <option value={n.name}>
              {n.name}
              {n.spec.allowScheduling ? '' : ' (scheduling disabled)'}
            </option>
          ))}
        </select>
        {nodes.error ? <ErrorBanner error={nodes.error} compact /> : null}
      </Field>
      <Field label="Frontend">
        <select
          name="frontend"
          value={frontend}
          disabled={maintenance}
          onChange={(e) => setFrontend((e.target as HTMLSelectElement).value)}
        >
          <option value="">the volume's ({v.spec.frontend ?? 'default'})</option>
          {frontendValues.map((f) => (
            <option value={f}>{f}</option>
          ))}
        </select>
      </Field>
      <CheckField name="maintenance" checked={maintenance} onChecked={setMaintenance}>
        Maintenance mode (no frontend: for snapshot revert)
      </CheckField>
    </FormDialog>
  );
}

function ExpandDialog({ v, onClose }: { v: Volume; onClose: () => void }) {
  const [size, setSize] = useState('');
  const [invalid, setInvalid] = useState<string | null>(null);
  const action = useAction('expand this volume');
  const submit = async (e: Event) => {
    e.preventDefault();
    setInvalid(null);
    const bytes = tryParse(() => parseSize(size), setInvalid);
    if (bytes === undefined) return;
    const ok = await action.run(() => api.expand(v.name, { size: bytes }));
    if (ok) onClose();
  };
  return (
    <FormDialog
      title={`Expand ${v.name}`}
      testid="expand-dialog"
      onClose={onClose}
      onSubmit={submit}
      error={invalid ?? action.error}
      busy={action.busy}
      submitLabel="Expand"
    >
      <p class="muted">Now {formatBytes(v.spec.size)}. A volume only grows.</p>
      <TextField label="New size" name="size" required placeholder="e.g. 20Gi" value={size} onValue={setSize} />
    </FormDialog>
  );
}

/** Long operations under way: restore, rebuilds (replicas in WO mode). */
function Progress({ v, backups }: { v: Volume; backups: Backup[] }) {
  const restore = v.status?.restore;
  const rebuilding = (v.status?.replicas ?? []).filter(isRebuilding);
  const items = [];
  if (restore && (restore.state !== 'Completed' || v.status?.restoreRequired)) {
    items.push(
      <div class="progress-item" data-testid="restore-progress">
        <span class="progress-what">
          Restore of <code>{restore.backup}</code> <Badge state={restore.state} />
        </span>
        <ProgressBar value={restore.progress} tone={restore.state === 'Error' ? 'bad' : 'info'} />
        {restore.error ? <ErrorBanner error={restore.error} compact /> : null}
      </div>,
    );
  } else if (v.status?.restoreRequired) {
    items.push(
      <div class="progress-item" data-testid="restore-progress">
        <span class="progress-what">Waiting for its data ({v.spec.fromBackup || v.spec.dataSource})</span>
        <ProgressBar value={null} label="pending" />
      </div>,
    );
  }
  for (const r of rebuilding) {
    items.push(
      <div class="progress-item" data-testid="rebuild-progress" data-replica={r.name}>
        <span class="progress-what">
          Rebuilding replica <code>{r.name}</code> on {r.node}
        </span>
        <ProgressBar value={rebuildProgress(r) ?? null} label={rebuildProgress(r) === undefined ? 'rebuilding' : undefined} tone="warn" />
      </div>,
    );
  }
  for (const b of backups) {
    if (b.state !== 'InProgress' && b.state !== 'Pending') continue;
    items.push(
      <div class="progress-item" data-testid="backup-in-progress" data-backup={b.name}>
        <span class="progress-what">
          Backup <code>{b.name}</code> of {b.snapshotName} <Badge state={b.state} />
        </span>
        <ProgressBar value={b.progress} />
      </div>,
    );
  }
  if (items.length === 0) return null;
  return (
    <div class="card progress-card" data-testid="volume-progress">
      <h2>In progress</h2>
      {items}
    </div>
  );
}

function Row(props: { label: string; children: ComponentChildren; testid?: string }) {
  return (
    <>
      <dt>{props.label}</dt>
      <dd data-testid={props.testid}>{props.children}</dd>
    </>
  );
}

const none = <span class="muted">—</span>;

function Details({ v, now }: { v: Volume; now: number }) {
  const c = replicaCounts(v);
  const s = v.status;
  const labels = Object.entries(v.spec.labels ?? {});
  return (
    <div class="card" data-testid="volume-details">
      <h2>Spec and status</h2>
      <dl class="details">
        <Row label="Size">
          {formatBytes(v.spec.size)} <span class="muted">({v.spec.size.toLocaleString()} bytes)</span>
        </Row>
        <Row label="Actual size">{formatBytes(s?.actualSize ?? 0)}</Row>
        <Row label="Replicas" testid="volume-replicas">
          {c.healthy} healthy of {c.desired} wanted
        </Row>
        <Row label="Frontend">{v.spec.frontend ?? none}</Row>
        <Row label="Attached to" testid="volume-node">
          {s?.currentNodeId || none}
          {v.spec.nodeId && v.spec.nodeId !== s?.currentNodeId ? <span class="muted"> (wanted on {v.spec.nodeId})</span> : null}
          {v.spec.maintenance ? <span class="tag">maintenance</span> : null}
        </Row>
        <Row label="Endpoint">{s?.endpoint ? <code>{s.endpoint}</code> : none}</Row>
        {s?.blockdev ? (
          <Row label="Block device">
            <code>{s.blockdev.device}</code> → <code>{s.blockdev.kernelDevice}</code> <span class="muted">({s.blockdev.backend})</span>
            {s.blockdev.mountPoints.length ? <div>mounted at {s.blockdev.mountPoints.join(', ')}</div> : null}
          </Row>
        ) : null}
        <Row label="Data locality">{v.spec.dataLocality ?? none}</Row>
        <Row label="Node selector">{v.spec.nodeSelector?.length ? v.spec.nodeSelector.map((t) => <span class="tag">{t}</span>) : none}</Row>
        <Row label="Disk selector">{v.spec.diskSelector?.length ? v.spec.diskSelector.map((t) => <span class="tag">{t}</span>) : none}</Row>
        <Row label="Stale replica timeout">{v.spec.staleReplicaTimeout} min</Row>
        {v.spec.fromBackup ? (
          <Row label={v.spec.standby ? 'Follows' : 'From backup'}>
            <code class="break">{v.spec.fromBackup}</code>
          </Row>
        ) : null}
        {v.spec.dataSource ? (
          <Row label="Cloned from">
            <code>{v.spec.dataSource}</code>
          </Row>
        ) : null}
        {v.spec.standby ? <Row label="Standby">yes (disaster recovery; activate to use)</Row> : null}
        {s?.restoreRequired ? <Row label="Restore required">yes: it cannot attach before its data is in</Row> : null}
        {s?.lastRestoredBackup ? <Row label="Last restored">{s.lastRestoredBackup}</Row> : null}
        <Row label="Last backup">
          {s?.lastBackup ? (
            <>
              {s.lastBackup} <Time value={s.lastBackupAt} now={now} />
            </>
          ) : (
            none
          )}
        </Row>
        {volumeCreated(v) ? (
          <Row label="Created">
            <Time value={volumeCreated(v)} now={now} />
          </Row>
        ) : null}
        <Row label="Labels">
          {labels.length
            ? labels.map(([k, val]) => (
                <span class="tag" title={`${k}=${val}`}>
                  {k}={val}
                </span>
              ))
            : none}
        </Row>
      </dl>
    </div>
  );
}

function Conditions({ conditions, now }: { conditions: Condition[]; now: number }) {
  const timed = conditions.some((c) => c.lastTransitionTime);
  return (
    <div class="card" data-testid="volume-conditions">
      <h2>Conditions</h2>
      {conditions.length === 0 ? (
        <p class="muted">None reported.</p>
      ) : (
        <table class="table">
          <TableHead columns={['Type', 'Status', 'Reason', 'Message', timed ? 'Changed' : null]} />
          <tbody>
            {conditions.map((c) => (
              <tr data-condition={c.type}>
                <td>{c.type}</td>
                <td>
                  <Badge tone={conditionOk(c) ? 'ok' : 'warn'}>{c.status}</Badge>
                </td>
                <td>{c.reason || none}</td>
                <td class="wrap">{c.message}</td>
                {timed ? (
                  <td>
                    <Time value={c.lastTransitionTime} now={now} />
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Replicas({ v }: { v: Volume }) {
  const replicas = v.status?.replicas ?? [];
  return (
    <div class="card" data-testid="replicas">
      <h2>
        Replicas <span class="muted">{replicas.length}</span>
      </h2>
      <table class="table">
        <TableHead columns={['Name', 'Node', 'Disk', 'Mode', 'Health', 'Rebuild']} />
        <tbody>
          {replicas.length === 0 ? (
            <EmptyRow span={6}>No replicas scheduled yet.</EmptyRow>
          ) : (
            replicas.map((r) => {
              const p = rebuildProgress(r);
              return (
                <tr data-replica={r.name}>
                  <td>
                    <code>{r.name}</code>
                  </td>
                  <td>{r.node}</td>
                  <td>{r.disk}</td>
                  <td>{r.mode ? <Badge state={r.mode}>{r.mode}</Badge> : <span class="muted">— (detached)</span>}</td>
                  <td>
                    <Badge tone={r.healthy ? 'ok' : 'bad'}>{r.healthy ? 'healthy' : 'failed'}</Badge>
                  </td>
                  <td class="progress-cell">
                    {isRebuilding(r) ? (
                      <ProgressBar value={p ?? null} label={p === undefined ? 'rebuilding' : undefined} tone="warn" />
                    ) : (
                      none
                    )}
                  </td>
                </tr>
              );
            })
          )}
        </tbody>
      </table>
    </div>
  );
}

function Snapshots({ v, now }: { v: Volume; now: number }) {
  const canOperate = useCan('operator');
  const snaps = useResource(() => api.snapshots(v.name), [v.name, v.status?.state]);
  const [creating, setCreating] = useState(false);
  const [backupOf, setBackupOf] = useState<string | null>(null);
  const unavailable = snaps.error instanceof ApiError && (snaps.error.status === 409 || snaps.error.status === 503);

  return (
    <div class="card" data-testid="snapshots">
      <div class="card-head">
        <h2>Snapshots</h2>
        {canOperate ? (
          <div class="card-actions">
            <DialogButton small testid="snapshot-create" onClick={() => setCreating(true)}>
              Take snapshot
            </DialogButton>
            <DialogButton small testid="backup-create" onClick={() => setBackupOf('')}>
              Back up now
            </DialogButton>
            <ActionButton
              small
              label="Purge"
              what="purge this volume's snapshots"
              testid="snapshot-purge"
              title="Remove the data of deleted snapshots (merge them into their children)"
              run={() => api.purge(v.name)}
            />
          </div>
        ) : null}
      </div>
      {unavailable ? (
        <div class="note" role="alert">
          Snapshots are listed while the volume is attached: {(snaps.error as ApiError).message}
        </div>
      ) : (
        <ErrorBanner error={snaps.error} />
      )}
      {snaps.data ? (
        <SnapshotTree
          snapshots={snaps.data}
          now={now}
          actions={
            canOperate
              ? (l) =>
                  l.head || l.snap.removed ? null : (
                    <>
                      <ActionButton
                        small
                        label="Revert"
                        what="revert this volume"
                        testid="snapshot-revert"
                        confirm={
                          <>
                            Revert <strong>{v.name}</strong> to snapshot <strong>{l.snap.name}</strong>? Writes since then are lost. The
                            volume must be attached in maintenance mode (or as the server requires).
                          </>
                        }
                        confirmLabel="Revert"
                        run={() => api.revertSnapshot(v.name, l.snap.name)}
                      />
                      <DialogButton small testid="snapshot-backup" onClick={() => setBackupOf(l.snap.name)}>
                        Back up
                      </DialogButton>
                      <ActionButton
                        small
                        kind="danger"
                        label="Delete"
                        what="delete snapshots"
                        testid="snapshot-delete"
                        confirm={
                          <>
                            Delete snapshot <strong>{l.snap.name}</strong>? Its data is merged away by a purge.
                          </>
                        }
                        confirmLabel="Delete snapshot"
                        run={() => api.deleteSnapshot(v.name, l.snap.name)}
                      />
                    </>
                  )
              : undefined
          }
        />
      ) : snaps.loading ? (
        <p class="muted">Loading…</p>
      ) : null}
      {creating ? <SnapshotDialog volume={v.name} onClose={() => setCreating(false)} /> : null}
      {backupOf !== null ? <BackupDialog volume={v.name} snapshot={backupOf} onClose={() => setBackupOf(null)} /> : null}
    </div>
  );
}

function SnapshotDialog({ volume, onClose }: { volume: string; onClose: () => void }) {
  const [name, setName] = useState('');
  const [labels, setLabels] = useState('');
  const [invalid, setInvalid] = useState<string | null>(null);
  const action = useAction('take snapshots');
  const submit = async (e: Event) => {
    e.preventDefault();
    setInvalid(null);
    const l = tryParse(() => parseLabels(labels), setInvalid);
    if (!l) return;
    // The API wants a name: make one when none is given.
    const snapName =
      name.trim() ||
      `snap-${new Date()
        .toISOString()
        .replace(/[^0-9]/g, '')
        .slice(0, 14)}`;
    const ok = await action.run(() => api.createSnapshot(volume, { name: snapName, labels: l }));
    if (ok) onClose();
  };
  return (
    <FormDialog
      title="Take snapshot"
      testid="snapshot-dialog"
      onClose={onClose}
      onSubmit={submit}
      error={invalid ?? action.error}
      busy={action.busy}
      submitLabel="Take snapshot"
    >
      <TextField
        label="Name (optional)"
        name="name"
        placeholder="made from the time when empty"
        pattern={NAME_PATTERN}
        value={name}
        onValue={setName}
      />
      <LabelsField label="Labels (optional)" value={labels} onValue={setLabels} />
    </FormDialog>
  );
}

function BackupDialog({ volume, snapshot, onClose }: { volume: string; snapshot: string; onClose: () => void }) {
  const targets = useResource(api.backupTargets, []);
  const [target, setTarget] = useState('');
  const [labels, setLabels] = useState('');
  const [invalid, setInvalid] = useState<string | null>(null);
  const action = useAction('back up volumes');
  const submit = async (e: Event) => {
    e.preventDefault();
    setInvalid(null);
    const body: Schemas['CreateBackup'] = {};
    const l = tryParse(() => parseLabels(labels), setInvalid);
    if (!l) return;
    if (Object.keys(l).length) body.labels = l;
    if (snapshot) body.snapshot = snapshot;
    if (target) body.backupTarget = target;
    const ok = await action.run(() => api.createBackup(volume, body));
    if (ok) onClose();
  };
  return (
    <FormDialog
      title={snapshot ? `Back up snapshot ${snapshot}` : `Back up ${volume} now`}
      testid="backup-dialog"
      onClose={onClose}
      onSubmit={submit}
      error={invalid ?? action.error}
      busy={action.busy}
      submitLabel="Start backup"
    >
      {snapshot ? null : <p class="muted">A new snapshot is taken and backed up.</p>}
      <Field label="Backup target">
        <select name="backupTarget" value={target} onChange={(e) => setTarget((e.target as HTMLSelectElement).value)}>
          <option value="">default</option>
          {(targets.data ?? [])
            .filter((t) => t.name !== 'default')
            .map((t) => (
              <option value={t.name}>{t.name}</option>
            ))}
        </select>
      </Field>
      <LabelsField label="Labels (optional)" value={labels} onValue={setLabels} />
    </FormDialog>
  );
}

function Backups({ v, now, backups }: { v: Volume; now: number; backups: Resource<Backup[]> }) {
  const canOperate = useCan('operator');
  const [restoring, setRestoring] = useState<Backup | null>(null);
  const missing = backups.error instanceof ApiError && backups.error.status === 404;
  const list = useMemo(
    () => (backups.data ?? []).slice().sort((a, b) => (b.snapshotCreated || b.created).localeCompare(a.snapshotCreated || a.created)),
    [backups.data],
  );
  return (
    <div class="card" data-testid="volume-backups">
      <h2>
        Backups <span class="muted">{list.length || ''}</span>
      </h2>
      {missing ? <p class="muted">No backups of this volume in the default backup target.</p> : <ErrorBanner error={backups.error} />}
      {list.length > 0 ? (
        <table class="table">
          <TableHead
            columns={[
              'Name',
              'Snapshot',
              'State',
              'Progress',
              { label: 'Size', class: 'num' },
              'Started',
              'Completed',
              canOperate ? '' : null,
            ]}
          />
          <tbody>
            {list.map((b) => (
              <tr data-backup={b.name}>
                <td>
                  <code>{b.name}</code>
                  {b.isIncremental ? <span class="tag tag-muted">incremental</span> : null}
                </td>
                <td>{b.snapshotName}</td>
                <td>
                  <Badge state={b.state} />
                  {b.error ? <div class="small text-bad wrap">{b.error}</div> : null}
                </td>
                <td class="progress-cell">
                  {b.state === 'Completed' ? (
                    none
                  ) : (
                    <ProgressBar
                      value={b.progress}
                      tone={b.state === 'Error' ? 'bad' : 'info'}
                      title={
                        b.bytesProcessed !== undefined
                          ? `${formatBytes(b.bytesProcessed)} read, ${formatBytes(b.bytesUploaded ?? 0)} sent`
                          : undefined
                      }
                      testid="backup-progress"
                    />
                  )}
                </td>
                <td class="num">{formatBytes(b.size)}</td>
                <td>
                  <Time value={b.snapshotCreated} now={now} />
                </td>
                <td>
                  <Time value={b.created} now={now} />
                </td>
                {canOperate ? (
                  <td class="row-actions">
                    {b.state === 'Completed' ? (
                      <DialogButton small testid="backup-restore" onClick={() => setRestoring(b)}>
                        Restore
                      </DialogButton>
                    ) : null}
                    <ActionButton
                      small
                      kind="danger"
                      label="Delete"
                      what="delete backups"
                      testid="backup-delete"
                      confirm={
                        <>
                          Delete backup <strong>{b.name}</strong> from the backup target?
                        </>
                      }
                      confirmLabel="Delete backup"
                      run={() => api.deleteBackup(v.name, b.name)}
                    />
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      ) : backups.loading ? (
        <p class="muted">Loading…</p>
      ) : !missing && !backups.error ? (
        <p class="muted">No backups yet.</p>
      ) : null}
      {restoring ? <RestoreDialog volume={v.name} backup={restoring} onClose={() => setRestoring(null)} /> : null}
    </div>
  );
}

/** Removes the label that makes the volume run a recurring job or group. */
function RemoveLabel({ volume, label }: { volume: string; label: string }) {
  return (
    <ActionButton
      small
      label="Remove"
      what="change this volume's recurring jobs"
      testid="job-remove"
      run={() => api.labels(volume, { remove: [label] })}
    />
  );
}

function Jobs({ v, now }: { v: Volume; now: number }) {
  const canOperate = useCan('operator');
  const jobs = useResource(api.recurringJobs, []);
  const runs = useResource(() => api.volumeRuns(v.name), [v.name]);
  const [adding, setAdding] = useState('');
  const selected = volumeJobs(v);
  const all = jobs.data ?? [];
  const groups = jobGroups(all);
  const applying = all.filter(
    (j) =>
      selected.jobs.includes(j.name) ||
      (j.groups ?? []).some((g) => selected.groups.includes(g)) ||
      (j.status?.volumes ?? []).includes(v.name),
  );
  const addable = [
    ...all
      .filter((j) => !selected.jobs.includes(j.name))
      .map((j) => ({ key: JOB_LABEL_PREFIX + j.name, label: `job ${j.name} (${j.task})` })),
    ...groups.filter((g) => !selected.groups.includes(g)).map((g) => ({ key: GROUP_LABEL_PREFIX + g, label: `group ${g}` })),
  ];
  const add = useAction("change this volume's recurring jobs");
  const runList = useMemo(
    () =>
      (runs.data ?? [])
        .slice()
        .sort((a, b) => b.started.localeCompare(a.started))
        .slice(0, 20),
    [runs.data],
  );

  return (
    <div class="cards">
      <div class="card" data-testid="volume-jobs">
        <h2>Recurring jobs</h2>
        <ErrorBanner error={jobs.error} />
        <ul class="plain-list">
          {selected.jobs.map((j) => (
            <li data-job-label={j}>
              job <strong>{j}</strong>{' '}
              {all.find((x) => x.name === j) ? (
                <span class="muted">({all.find((x) => x.name === j)!.cron})</span>
              ) : (
                <span class="text-warn">(no such job)</span>
              )}
              {canOperate ? <RemoveLabel volume={v.name} label={JOB_LABEL_PREFIX + j} /> : null}
            </li>
          ))}
          {selected.groups.map((g) => (
            <li data-group-label={g}>
              group <strong>{g}</strong>
              {canOperate ? <RemoveLabel volume={v.name} label={GROUP_LABEL_PREFIX + g} /> : null}
            </li>
          ))}
          {selected.jobs.length + selected.groups.length === 0 ? (
            <li class="muted">No label selects a job or group: the volume runs the jobs of the default group.</li>
          ) : null}
        </ul>
        {applying.length ? <p class="small">Applying now: {applying.map((j) => j.name).join(', ')}</p> : null}
        {canOperate && addable.length ? (
          <form
            class="inline-form"
            data-mutates=""
            onSubmit={async (e) => {
              e.preventDefault();
              if (!adding) return;
              const ok = await add.run(() => api.labels(v.name, { set: { [adding]: 'enabled' } }));
              if (ok) setAdding('');
            }}
          >
            <select name="recurringJob" value={adding} onChange={(e) => setAdding((e.target as HTMLSelectElement).value)}>
              <option value="">Add a job or group…</option>
              {addable.map((a) => (
                <option value={a.key}>{a.label}</option>
              ))}
            </select>
            <button type="submit" class="button button-small" data-testid="job-add" data-mutates="" disabled={!adding || add.busy}>
              Add
            </button>
            <ErrorBanner error={add.error} compact />
          </form>
        ) : null}
      </div>
      <div class="card card-wide" data-testid="volume-runs">
        <h2>Recent job runs</h2>
        <ErrorBanner error={runs.error} />
        {runList.length === 0 ? (
          <p class="muted">No runs recorded.</p>
        ) : (
          <table class="table">
            <TableHead columns={['Job', 'Task', 'Result', 'Started', 'Finished', 'Made', 'Message']} />
            <tbody>
              {runList.map((r) => (
                <tr>
                  <td>{r.job}</td>
                  <td>{r.task}</td>
                  <td>
                    <Badge state={r.result} />
                  </td>
                  <td>
                    <Time value={r.started} now={now} />
                  </td>
                  <td>
                    <Time value={r.finished} now={now} />
                  </td>
                  <td>{r.created || none}</td>
                  <td class="wrap">{r.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
    </div>
  );
}

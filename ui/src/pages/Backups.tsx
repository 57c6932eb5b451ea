// Backups: the backup targets (admins create, edit and remove them), the backup volumes in a
// target, and each one's backups with progress, deletion, restore into a new volume and a
// standby (disaster-recovery) volume that follows it.
import { useMemo, useState } from 'preact/hooks';
import { ApiError, api, type Backup, type BackupTarget, type BackupVolume } from '../api';
import { ActionButton, DialogButton } from '../components/Action';
import { Badge } from '../components/Badge';
import { ErrorBanner } from '../components/ErrorBanner';
import { Field, FormDialog, SearchBox, TextField } from '../components/Form';
import { ProgressBar } from '../components/ProgressBar';
import { EmptyRow, TableHead } from '../components/Table';
import { Time } from '../components/Time';
import { RestoreDialog, VolumeFormDialog } from '../components/VolumeForm';
import { formatBytes } from '../format';
import { useAction, useNow, useResource } from '../hooks';
import { useCan } from '../session';

export function BackupsPage(props: { query: URLSearchParams }) {
  const targets = useResource(api.backupTargets, []);
  const [target, setTarget] = useState(props.query.get('target') ?? '');
  const [open, setOpen] = useState<string | null>(props.query.get('volume'));
  const chosen = target || targets.data?.[0]?.name || 'default';
  const targetSpec = targets.data?.find((t) => t.name === chosen);

  return (
    <section class="page" data-testid="backups-page">
      <div class="page-head">
        <h1>Backups</h1>
      </div>
      <Targets targets={targets.data} error={targets.error} loading={targets.loading} />
      <BackupVolumes
        target={chosen}
        targetSpec={targetSpec}
        targets={targets.data ?? []}
        onTarget={setTarget}
        open={open}
        onOpen={setOpen}
      />
    </section>
  );
}

function Targets(props: { targets?: BackupTarget[]; error: unknown; loading: boolean }) {
  const isAdmin = useCan('admin');
  const now = useNow();
  const [editing, setEditing] = useState<BackupTarget | 'new' | null>(null);
  const list = props.targets ?? [];
  return (
    <div class="card" data-testid="backup-targets">
      <div class="card-head">
        <h2>Backup targets</h2>
        {isAdmin ? (
          <div class="card-actions">
            <DialogButton small testid="backuptarget-create" onClick={() => setEditing('new')}>
              Add target
            </DialogButton>
          </div>
        ) : null}
      </div>
      <ErrorBanner error={props.error} />
      <table class="table">
        <TableHead
          columns={['Name', 'URL', 'Credentials', { label: 'Poll interval', class: 'num' }, 'Status', 'Last synced', isAdmin ? '' : null]}
        />
        <tbody>
          {list.length === 0 ? (
            <EmptyRow span={isAdmin ? 7 : 6}>{props.loading ? 'Loading…' : 'No backup target is set.'}</EmptyRow>
          ) : (
            list.map((t) => (
              <tr data-target={t.name}>
                <td>
                  <strong>{t.name}</strong>
                </td>
                <td>{t.spec.backupTargetURL ? <code class="break">{t.spec.backupTargetURL}</code> : <span class="muted">not set</span>}</td>
                <td>{t.spec.credentialSecret || <span class="muted">—</span>}</td>
                <td class="num">{t.spec.pollInterval ? `${t.spec.pollInterval} s` : '—'}</td>
                <td>
                  <Badge tone={t.status?.available ? 'ok' : 'bad'}>{t.status?.available ? 'available' : 'unavailable'}</Badge>
                  {t.status?.message ? <div class="small wrap">{t.status.message}</div> : null}
                </td>
                <td>
                  <Time value={t.status?.lastSyncedAt} now={now} />
                </td>
                {isAdmin ? (
                  <td class="row-actions">
                    <DialogButton small testid="backuptarget-edit" onClick={() => setEditing(t)}>
                      Edit
                    </DialogButton>
                    <ActionButton
                      small
                      kind="danger"
                      label="Remove"
                      what="remove backup targets"
                      testid="backuptarget-delete"
                      confirm={
                        <>
                          Remove backup target <strong>{t.name}</strong>? The backups in it stay where they are.
                        </>
                      }
                      confirmLabel="Remove target"
                      run={() => api.deleteBackupTarget(t.name)}
                    />
                  </td>
                ) : null}
              </tr>
            ))
          )}
        </tbody>
      </table>
      {editing ? <TargetDialog target={editing === 'new' ? null : editing} onClose={() => setEditing(null)} /> : null}
    </div>
  );
}

function TargetDialog({ target, onClose }: { target: BackupTarget | null; onClose: () => void }) {
  const secrets = useResource(api.secrets, []);
  const [name, setName] = useState(target?.name ?? '');
  const [url, setUrl] = useState(target?.spec.backupTargetURL ?? '');
  const [secret, setSecret] = useState(target?.spec.credentialSecret ?? '');
  const [poll, setPoll] = useState(String(target?.spec.pollInterval ?? 300));
  const action = useAction('change backup targets');
  const submit = async (e: Event) => {
    e.preventDefault();
    const ok = await action.run(() =>
      api.putBackupTarget(name.trim(), {
        backupTargetURL: url.trim(),
        credentialSecret: secret.trim() || undefined,
        pollInterval: Number(poll) || 0,
      }),
    );
    if (ok) onClose();
  };
  return (
    <FormDialog
      title={target ? `Edit backup target ${target.name}` : 'Add backup target'}
      testid="backuptarget-dialog"
      onClose={onClose}
      onSubmit={submit}
      error={action.error}
      busy={action.busy}
      submitLabel="Save"
    >
      <TextField label="Name" name="name" required readOnly={!!target} value={name} onValue={setName} />
      <TextField
        label="URL"
        name="backupTargetURL"
        placeholder="s3://bucket@region/path, nfs://server:/export, file:///path"
        value={url}
        onValue={setUrl}
      />
      <Field
        label="Credential secret"
        hint={
          <>
            A secret (see <a href="#/secrets">Secrets</a>) with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINTS
          </>
        }
      >
        <input
          name="credentialSecret"
          list="secret-names"
          placeholder="none"
          value={secret}
          onInput={(e) => setSecret((e.target as HTMLInputElement).value)}
        />
        <datalist id="secret-names">
          {(secrets.data ?? []).map((s) => (
            <option value={s.name} />
          ))}
        </datalist>
      </Field>
      <TextField label="Poll interval (seconds)" name="pollInterval" type="number" min={0} max={604800} value={poll} onValue={setPoll} />
    </FormDialog>
  );
}

/** `<target>?volume=V`: what a standby volume follows. */
function backupVolumeUrl(targetUrl: string, volume: string): string {
  return `${targetUrl}${targetUrl.includes('?') ? '&' : '?'}volume=${encodeURIComponent(volume)}`;
}

function BackupVolumes(props: {
  target: string;
  targetSpec?: BackupTarget;
  targets: BackupTarget[];
  onTarget: (t: string) => void;
  open: string | null;
  onOpen: (v: string | null) => void;
}) {
  const canOperate = useCan('operator');
  const now = useNow();
  const volumes = useResource(() => api.backupVolumes(props.target), [props.target]);
  const [search, setSearch] = useState('');
  const [standby, setStandby] = useState<BackupVolume | null>(null);
  const list = useMemo(() => {
    const needle = search.trim().toLowerCase();
    return (volumes.data ?? [])
      .filter((v) => !needle || v.name.toLowerCase().includes(needle))
      .sort((a, b) => a.name.localeCompare(b.name));
  }, [volumes.data, search]);
  const unavailable = volumes.error instanceof ApiError && (volumes.error.status === 503 || volumes.error.status === 404);

  return (
    <div class="card" data-testid="backup-volumes">
      <div class="card-head">
        <h2>
          Backup volumes <span class="muted">{volumes.data ? list.length : ''}</span>
        </h2>
        <div class="card-actions">
          {props.targets.length > 1 ? (
            <label class="inline-field">
              Target
              <select name="backupTarget" value={props.target} onChange={(e) => props.onTarget((e.target as HTMLSelectElement).value)}>
                {props.targets.map((t) => (
                  <option value={t.name}>{t.name}</option>
                ))}
              </select>
            </label>
          ) : null}
          <SearchBox placeholder="Search" label="Search backup volumes" value={search} onValue={setSearch} />
        </div>
      </div>
      {unavailable ? (
        <div class="note" role="alert">
          {(volumes.error as ApiError).message}
        </div>
      ) : (
        <ErrorBanner error={volumes.error} />
      )}
      <table class="table">
        <TableHead
          columns={[
            'Volume',
            { label: 'Size', class: 'num' },
            { label: 'Data stored', class: 'num' },
            'Last backup',
            'Last backup at',
            'Compression',
            '',
          ]}
        />
        <tbody>
          {list.length === 0 ? (
            <EmptyRow span={7}>{volumes.loading ? 'Loading…' : 'No backup volumes.'}</EmptyRow>
          ) : (
            list.map((bv) => (
              <>
                <tr data-backup-volume={bv.name} class={props.open === bv.name ? 'row-open' : undefined}>
                  <td>
                    <button
                      type="button"
                      class="link-button"
                      aria-expanded={props.open === bv.name ? 'true' : 'false'}
                      data-testid="backupvolume-toggle"
                      onClick={() => props.onOpen(props.open === bv.name ? null : bv.name)}
                    >
                      {props.open === bv.name ? '▾' : '▸'} {bv.name}
                    </button>
                  </td>
                  <td class="num">{formatBytes(bv.size)}</td>
                  <td class="num">{formatBytes(bv.dataStored)}</td>
                  <td>{bv.lastBackupName || <span class="muted">—</span>}</td>
                  <td>
                    <Time value={bv.lastBackupAt} now={now} />
                  </td>
                  <td>{bv.compressionMethod || '—'}</td>
                  <td class="row-actions">
                    {canOperate && props.targetSpec?.spec.backupTargetURL ? (
                      <DialogButton small testid="backupvolume-standby" onClick={() => setStandby(bv)}>
                        Standby volume
                      </DialogButton>
                    ) : null}
                    {canOperate ? (
                      <ActionButton
                        small
                        kind="danger"
                        label="Delete"
                        what="delete backup volumes"
                        testid="backupvolume-delete"
                        confirm={
                          <>
                            Delete backup volume <strong>{bv.name}</strong> and every backup in it?
                          </>
                        }
                        confirmLabel="Delete all its backups"
                        run={() => api.deleteBackupVolume(bv.name, props.target)}
                      />
                    ) : null}
                  </td>
                </tr>
                {props.open === bv.name ? (
                  <tr class="row-detail">
                    <td colSpan={7}>
                      <BackupList volume={bv.name} target={props.target} />
                    </td>
                  </tr>
                ) : null}
              </>
            ))
          )}
        </tbody>
      </table>
      {standby && props.targetSpec ? (
        <VolumeFormDialog
          title={`Standby volume following ${standby.name}`}
          testid="standby-dialog"
          initial={{
            name: `${standby.name}-dr`.slice(0, 40),
            fromBackup: backupVolumeUrl(props.targetSpec.spec.backupTargetURL, standby.name),
            standby: true,
          }}
          onClose={() => setStandby(null)}
        />
      ) : null}
    </div>
  );
}

function BackupList({ volume, target }: { volume: string; target: string }) {
  const canOperate = useCan('operator');
  const now = useNow();
  const backups = useResource(() => api.backups(volume, target), [volume, target]);
  const [restoring, setRestoring] = useState<Backup | null>(null);
  const list = useMemo(
    () => (backups.data ?? []).slice().sort((a, b) => (b.snapshotCreated || b.created).localeCompare(a.snapshotCreated || a.created)),
    [backups.data],
  );
  return (
    <div class="nested" data-testid="backup-list">
      <ErrorBanner error={backups.error} />
      {list.length === 0 ? (
        <p class="muted">{backups.loading ? 'Loading…' : 'No backups.'}</p>
      ) : (
        <table class="table">
          <TableHead columns={['Backup', 'Snapshot', 'State', { label: 'Size', class: 'num' }, 'Started', 'Completed', 'Labels', '']} />
          <tbody>
            {list.map((b) => (
              <tr data-backup={b.name}>
                <td>
                  <code>{b.name}</code>
                </td>
                <td>{b.snapshotName}</td>
                <td class="progress-cell">
                  <Badge state={b.state} />
                  {b.state === 'InProgress' || b.state === 'Pending' ? <ProgressBar value={b.progress} testid="backup-progress" /> : null}
                  {b.error ? <div class="small text-bad wrap">{b.error}</div> : null}
                </td>
                <td class="num">{formatBytes(b.size)}</td>
                <td>
                  <Time value={b.snapshotCreated} now={now} />
                </td>
                <td>
                  <Time value={b.created} now={now} />
                </td>
                <td>
                  {Object.entries(b.labels ?? {}).map(([k, v]) => (
                    <span class="tag" title={`${k}=${v}`}>
                      {k}={v}
                    </span>
                  ))}
                </td>
                <td class="row-actions">
                  <button
                    type="button"
                    class="button button-small"
                    title={b.url}
                    data-testid="backup-copy-url"
                    onClick={() => void navigator.clipboard?.writeText(b.url)}
                  >
                    Copy URL
                  </button>
                  {canOperate && b.state === 'Completed' ? (
                    <DialogButton small testid="backup-restore" onClick={() => setRestoring(b)}>
                      Restore
                    </DialogButton>
                  ) : null}
                  {canOperate ? (
                    <ActionButton
                      small
                      kind="danger"
                      label="Delete"
                      what="delete backups"
                      testid="backup-delete"
                      confirm={
                        <>
                          Delete backup <strong>{b.name}</strong> of {volume}?
                        </>
                      }
                      confirmLabel="Delete backup"
                      run={() => api.deleteBackup(volume, b.name, target)}
                    />
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {restoring ? <RestoreDialog volume={volume} backup={restoring} onClose={() => setRestoring(null)} /> : null}
    </div>
  );
}

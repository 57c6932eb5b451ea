// The create-volume form (also the restore form, prefilled with a backup URL): name, size in
// human units, replicas, frontend, data locality, node/disk selectors, recurring jobs and
// groups (as the volume's labels), and the data source (backup, standby, snapshot clone);
// the dialogs that hold it and open the new volume's page.
import { useMemo, useState } from 'preact/hooks';
import { GROUP_LABEL_PREFIX, JOB_LABEL_PREFIX, api, type Backup, type Schemas, type Volume } from '../api';
import { dataLocalityValues, frontendValues } from '../generated/api';
import { parseLabels, parseSize, parseTags } from '../format';
import { useAction, useResource } from '../hooks';
import { jobGroups } from '../model';
import { href, navigate } from '../router';
import { ErrorBanner } from './ErrorBanner';
import { CheckField, Field, FormActions, LabelsField, TextField } from './Form';
import { Modal } from './Modal';

type Source = 'none' | 'backup' | 'snapshot';

type VolumeFormInitial = { name?: string; size?: string; fromBackup?: string; standby?: boolean; dataSource?: string };

export function VolumeForm(props: { initial?: VolumeFormInitial; onCreated: (v: Volume) => void; onCancel: () => void }) {
  const init = props.initial ?? {};
  const [name, setName] = useState(init.name ?? '');
  const [size, setSize] = useState(init.size ?? '');
  const [replicas, setReplicas] = useState('');
  const [frontend, setFrontend] = useState('');
  const [locality, setLocality] = useState('');
  const [nodeSelector, setNodeSelector] = useState('');
  const [diskSelector, setDiskSelector] = useState('');
  const [staleTimeout, setStaleTimeout] = useState('');
  const [labels, setLabels] = useState('');
  const [source, setSource] = useState<Source>(init.fromBackup ? 'backup' : init.dataSource ? 'snapshot' : 'none');
  const [fromBackup, setFromBackup] = useState(init.fromBackup ?? '');
  const [standby, setStandby] = useState(init.standby ?? false);
  const [dataSource, setDataSource] = useState(init.dataSource ?? '');
  const [jobs, setJobs] = useState<Set<string>>(new Set());
  const [groups, setGroups] = useState<Set<string>>(new Set());
  const [invalid, setInvalid] = useState<string | null>(null);
  const action = useAction('create volumes');
  const recurring = useResource(api.recurringJobs, []);
  const allGroups = useMemo(() => jobGroups(recurring.data ?? []), [recurring.data]);

  const toggle = (set: Set<string>, value: string, update: (s: Set<string>) => void) => {
    const next = new Set(set);
    if (next.has(value)) next.delete(value);
    else next.add(value);
    update(next);
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setInvalid(null);
    const body: Schemas['CreateVolume'] = { name: name.trim(), size: 0 };
    try {
      if (source !== 'backup' || size.trim()) body.size = parseSize(size);
      if (replicas.trim()) body.numberOfReplicas = Number(replicas);
      if (staleTimeout.trim()) body.staleReplicaTimeout = Number(staleTimeout);
      const l = parseLabels(labels);
      for (const j of jobs) l[JOB_LABEL_PREFIX + j] = 'enabled';
      for (const g of groups) l[GROUP_LABEL_PREFIX + g] = 'enabled';
      if (Object.keys(l).length) body.labels = l;
    } catch (err) {
      setInvalid(err instanceof Error ? err.message : String(err));
      return;
    }
    if (frontend) body.frontend = frontend as Schemas['Frontend'];
    if (locality) body.dataLocality = locality as Schemas['DataLocality'];
    const ns = parseTags(nodeSelector);
    const ds = parseTags(diskSelector);
    if (ns.length) body.nodeSelector = ns;
    if (ds.length) body.diskSelector = ds;
    if (source === 'backup') {
      body.fromBackup = fromBackup.trim();
      if (standby) body.standby = true;
    } else if (source === 'snapshot') {
      body.dataSource = dataSource.trim();
    }
    const created = await action.run(() => api.createVolume(body));
    if (created) props.onCreated(created);
  };

  const jobList = recurring.data ?? [];
  return (
    <form class="form" onSubmit={submit} data-mutates="" data-testid="volume-form">
      <div class="form-grid">
        <TextField
          label="Name"
          name="name"
          required
          pattern="[a-z0-9]([a-z0-9.\-]{0,38}[a-z0-9])?"
          title="Lowercase letters, digits, dots and dashes; at most 40 characters"
          value={name}
          onValue={setName}
        />
        <TextField
          label="Size"
          hint="Binary units: 512Mi, 1Gi, 10 GiB, 1Ti"
          name="size"
          placeholder={source === 'backup' ? "the backup's size" : '10Gi'}
          required={source !== 'backup'}
          value={size}
          onValue={setSize}
        />
        <TextField
          label="Replicas"
          name="numberOfReplicas"
          type="number"
          min={1}
          max={20}
          placeholder="default"
          value={replicas}
          onValue={setReplicas}
        />
        <Field label="Frontend">
          <select name="frontend" value={frontend} onChange={(e) => setFrontend((e.target as HTMLSelectElement).value)}>
            <option value="">default</option>
            {frontendValues.map((f) => (
              <option value={f}>{f}</option>
            ))}
          </select>
        </Field>
        <Field label="Data locality">
          <select name="dataLocality" value={locality} onChange={(e) => setLocality((e.target as HTMLSelectElement).value)}>
            <option value="">default</option>
            {dataLocalityValues.map((d) => (
              <option value={d}>{d}</option>
            ))}
          </select>
        </Field>
        <TextField
          label="Stale replica timeout (min)"
          name="staleReplicaTimeout"
          type="number"
          min={0}
          placeholder="default"
          value={staleTimeout}
          onValue={setStaleTimeout}
        />
        <TextField
          label="Node selector"
          name="nodeSelector"
          placeholder="tags, comma-separated"
          value={nodeSelector}
          onValue={setNodeSelector}
        />
        <TextField
          label="Disk selector"
          name="diskSelector"
          placeholder="tags, comma-separated"
          value={diskSelector}
          onValue={setDiskSelector}
        />
      </div>

      <fieldset class="fieldset">
        <legend>Data source</legend>
        <div class="radio-row">
          <label>
            <input type="radio" name="source" value="none" checked={source === 'none'} onChange={() => setSource('none')} /> Empty
          </label>
          <label>
            <input type="radio" name="source" value="backup" checked={source === 'backup'} onChange={() => setSource('backup')} /> Restore
            from backup
          </label>
          <label>
            <input type="radio" name="source" value="snapshot" checked={source === 'snapshot'} onChange={() => setSource('snapshot')} />{' '}
            Clone a snapshot
          </label>
        </div>
        {source === 'backup' ? (
          <div class="form-grid">
            <TextField
              label="Backup URL"
              wide
              name="fromBackup"
              required
              placeholder="s3://bucket@region/path?backup=B&volume=V"
              value={fromBackup}
              onValue={setFromBackup}
            />
            <CheckField name="standby" checked={standby} onChecked={setStandby}>
              Standby (disaster recovery: follows the backup volume)
            </CheckField>
          </div>
        ) : null}
        {source === 'snapshot' ? (
          <TextField
            label="Snapshot"
            wide
            name="dataSource"
            required
            placeholder="snap://volume/snapshot"
            value={dataSource}
            onValue={setDataSource}
          />
        ) : null}
      </fieldset>

      <fieldset class="fieldset">
        <legend>Recurring jobs</legend>
        {recurring.error ? <ErrorBanner error={recurring.error} compact /> : null}
        {jobList.length === 0 && !recurring.loading ? <p class="muted small">No recurring jobs are defined.</p> : null}
        <div class="check-grid">
          {jobList.map((j) => (
            <label class="check">
              <input
                type="checkbox"
                name="recurringJob"
                value={j.name}
                checked={jobs.has(j.name)}
                onChange={() => toggle(jobs, j.name, setJobs)}
              />{' '}
              {j.name}{' '}
              <span class="muted small">
                ({j.task}, {j.cron})
              </span>
            </label>
          ))}
          {allGroups.map((g) => (
            <label class="check">
              <input
                type="checkbox"
                name="recurringJobGroup"
                value={g}
                checked={groups.has(g)}
                onChange={() => toggle(groups, g, setGroups)}
              />{' '}
              group <strong>{g}</strong>
            </label>
          ))}
        </div>
      </fieldset>

      <LabelsField label="Labels" wide value={labels} onValue={setLabels} />

      <ErrorBanner error={invalid ?? action.error} />
      <FormActions label="Create volume" busy={action.busy} onCancel={props.onCancel} />
    </form>
  );
}

/** The form in a wide dialog; a created volume closes it and opens the volume's page. */
export function VolumeFormDialog(props: { title: string; testid: string; initial?: VolumeFormInitial; onClose: () => void }) {
  return (
    <Modal title={props.title} onClose={props.onClose} wide testid={props.testid}>
      <VolumeForm
        initial={props.initial}
        onCancel={props.onClose}
        onCreated={(v) => {
          props.onClose();
          navigate(href('volumes', v.name));
        }}
      />
    </Modal>
  );
}

/** Restoring `backup` of `volume` into a new volume named after it. */
export function RestoreDialog(props: { volume: string; backup: Backup; onClose: () => void }) {
  return (
    <VolumeFormDialog
      title={`Restore ${props.backup.name}`}
      testid="restore-dialog"
      initial={{ name: `${props.volume}-restore`.slice(0, 40), fromBackup: props.backup.url }}
      onClose={props.onClose}
    />
  );
}

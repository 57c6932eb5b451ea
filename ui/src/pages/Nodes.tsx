// Nodes and their disks: readiness and conditions, scheduling toggle, tags and zone editor,
// node removal; each disk's capacity with edit (scheduling, reserved, tags), removal, and
// adding a disk. Changes are for operators; viewers see the same data without controls.
import { useState } from 'preact/hooks';
import { api, type Node, type Schemas } from '../api';
import { ActionButton, DialogButton } from '../components/Action';
import { Badge } from '../components/Badge';
import { ErrorBanner } from '../components/ErrorBanner';
import { CheckField, FormDialog, NAME_PATTERN, TextField } from '../components/Form';
import { EmptyRow, TableHead } from '../components/Table';
import { exactSize, formatBytes, joinTags, parseSize, parseTags, percent } from '../format';
import { useAction, useResource } from '../hooks';
import { conditionOk } from '../model';
import { useCan } from '../session';

export function NodesPage() {
  const nodes = useResource(api.nodes, []);
  const list = (nodes.data ?? []).slice().sort((a, b) => a.name.localeCompare(b.name));
  return (
    <section class="page" data-testid="nodes-page">
      <div class="page-head">
        <h1>
          Nodes and disks <span class="muted">{nodes.data ? list.length : ''}</span>
        </h1>
      </div>
      <ErrorBanner error={nodes.error} />
      {nodes.loading && !nodes.data ? <p class="muted">Loading…</p> : null}
      {nodes.data && list.length === 0 ? <p class="muted">No node has registered yet.</p> : null}
      {list.map((n) => (
        <NodeCard key={n.name} node={n} />
      ))}
    </section>
  );
}

/**
 * A switch that PATCHes one boolean; a plain badge for those who may not change it (none
 * while off with `quietOff`).
 */
function Toggle(props: {
  on: boolean;
  label: string;
  what: string;
  testid: string;
  title?: string;
  quietOff?: boolean;
  run: (on: boolean) => Promise<unknown>;
  editable: boolean;
}) {
  const action = useAction(props.what);
  if (!props.editable) {
    if (props.quietOff && !props.on) return null;
    return <Badge tone={props.on ? 'ok' : 'idle'}>{props.on ? props.label : `${props.label}: off`}</Badge>;
  }
  return (
    <span class="action">
      <button
        type="button"
        role="switch"
        aria-checked={props.on ? 'true' : 'false'}
        class={`switch${props.on ? ' switch-on' : ''}`}
        data-testid={props.testid}
        data-mutates=""
        title={props.title}
        disabled={action.busy}
        aria-busy={action.busy ? 'true' : undefined}
        onClick={() => void action.run(() => props.run(!props.on))}
      >
        <span class="switch-knob" aria-hidden="true" />
        <span class="switch-label">{props.label}</span>
      </button>
      {action.error ? <ErrorBanner error={action.error} compact onDismiss={action.clear} /> : null}
    </span>
  );
}

function NodeCard({ node }: { node: Node }) {
  const canOperate = useCan('operator');
  const [editing, setEditing] = useState(false);
  const [addingDisk, setAddingDisk] = useState(false);
  const [editDisk, setEditDisk] = useState<string | null>(null);
  const ready = !!node.status?.ready;
  const disks = Object.entries(node.spec.disks ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const notReady = (node.status?.conditions ?? []).filter((c) => !conditionOk(c) || c.reason);

  return (
    <div class="card node-card" data-node={node.name}>
      <div class="card-head">
        <h2>
          {node.name}{' '}
          <Badge tone={ready ? 'ok' : 'bad'} testid="node-ready">
            {ready ? 'ready' : 'not ready'}
          </Badge>
        </h2>
        <div class="card-actions">
          <Toggle
            on={node.spec.allowScheduling}
            label="Schedulable"
            what="change node scheduling"
            testid="node-schedulable"
            editable={canOperate}
            run={(on) => api.patchNode(node.name, { allowScheduling: on })}
          />
          <Toggle
            on={!!node.spec.evictionRequested}
            label="Evict"
            what="change node eviction"
            testid="node-eviction"
            quietOff
            title="Move every replica off this node: each attached volume's replica is rebuilt elsewhere, then removed here"
            editable={canOperate}
            run={(on) => api.patchNode(node.name, { evictionRequested: on })}
          />
          {canOperate ? (
            <>
              <DialogButton small testid="node-edit" onClick={() => setEditing(true)}>
                Edit tags
              </DialogButton>
              <DialogButton small testid="disk-add" onClick={() => setAddingDisk(true)}>
                Add disk
              </DialogButton>
              <ActionButton
                small
                kind="danger"
                label="Remove node"
                what="remove nodes"
                testid="node-delete"
                confirm={
                  <>
                    Remove node <strong>{node.name}</strong> from the cluster? It must hold no replicas; its agent registers it again when
                    it restarts.
                  </>
                }
                confirmLabel="Remove node"
                run={() => api.deleteNode(node.name)}
              />
            </>
          ) : null}
        </div>
      </div>
      <div class="node-meta">
        <span>
          <span class="muted">Address</span> <code>{node.spec.address}</code>
        </span>
        <span>
          <span class="muted">Zone</span> {node.spec.zone || '—'}
        </span>
        <span>
          <span class="muted">Tags</span> {node.spec.tags?.length ? node.spec.tags.map((t) => <span class="tag">{t}</span>) : '—'}
        </span>
      </div>
      {notReady.map((c) => (
        <div class="note small">
          <strong>{c.type}</strong> {c.status}
          {c.reason ? ` (${c.reason})` : ''}: {c.message}
        </div>
      ))}
      <table class="table disk-table">
        <TableHead
          columns={[
            'Disk',
            'Path',
            { label: 'Maximum', class: 'num' },
            { label: 'Available', class: 'num' },
            { label: 'Scheduled', class: 'num' },
            { label: 'Reserved', class: 'num' },
            'Usage',
            'Scheduling',
            'Tags',
            'Conditions',
            canOperate ? '' : null,
          ]}
        />
        <tbody>
          {disks.length === 0 ? (
            <EmptyRow span={canOperate ? 11 : 10}>No disks.</EmptyRow>
          ) : (
            disks.map(([name, spec]) => {
              const st = node.status?.disks?.[name];
              const max = st?.storageMaximum ?? 0;
              const used = max - (st?.storageAvailable ?? 0);
              const bad = (st?.conditions ?? []).filter((c) => !conditionOk(c));
              return (
                <tr data-disk={name}>
                  <td>
                    <strong>{name}</strong>
                  </td>
                  <td>
                    <code>{spec.path}</code>
                  </td>
                  <td class="num">{st ? formatBytes(max) : '—'}</td>
                  <td class="num">{st ? formatBytes(st.storageAvailable) : '—'}</td>
                  <td class="num">{st ? formatBytes(st.storageScheduled) : '—'}</td>
                  <td class="num">{formatBytes(spec.storageReserved)}</td>
                  <td class="usage-cell">
                    <div class="bar bar-thin" title={`${percent(used, max).toFixed(0)}% used`}>
                      <div class="bar-fill bar-used" style={{ width: `${percent(used, max)}%` }} />
                    </div>
                  </td>
                  <td>
                    <div class="toggle-stack">
                      <Toggle
                        on={spec.allowScheduling}
                        label="Schedulable"
                        what="change disk scheduling"
                        testid="disk-schedulable"
                        editable={canOperate}
                        run={(on) => api.patchDisk(node.name, name, { allowScheduling: on })}
                      />
                      <Toggle
                        on={!!spec.evictionRequested}
                        label="Evict"
                        what="change disk eviction"
                        testid="disk-eviction"
                        quietOff
                        title="Move every replica off this disk (attached volumes' replicas are rebuilt elsewhere), so it can be removed"
                        editable={canOperate}
                        run={(on) => api.patchDisk(node.name, name, { evictionRequested: on })}
                      />
                    </div>
                  </td>
                  <td>{spec.tags?.length ? spec.tags.map((t) => <span class="tag">{t}</span>) : <span class="muted">—</span>}</td>
                  <td>
                    {(st?.conditions ?? []).length === 0 ? (
                      <span class="muted">—</span>
                    ) : bad.length === 0 ? (
                      <Badge tone="ok">ok</Badge>
                    ) : (
                      bad.map((c) => (
                        <Badge tone="bad" title={`${c.reason ?? ''} ${c.message ?? ''}`.trim()}>
                          {c.type}
                        </Badge>
                      ))
                    )}
                  </td>
                  {canOperate ? (
                    <td class="row-actions">
                      <DialogButton small testid="disk-edit" onClick={() => setEditDisk(name)}>
                        Edit
                      </DialogButton>
                      <ActionButton
                        small
                        kind="danger"
                        label="Remove"
                        what="remove disks"
                        testid="disk-delete"
                        confirm={
                          <>
                            Remove disk <strong>{name}</strong> ({spec.path}) from {node.name}? It must hold no replicas.
                          </>
                        }
                        confirmLabel="Remove disk"
                        run={() => api.deleteDisk(node.name, name)}
                      />
                    </td>
                  ) : null}
                </tr>
              );
            })
          )}
        </tbody>
      </table>
      {editing ? <NodeEditDialog node={node} onClose={() => setEditing(false)} /> : null}
      {addingDisk ? <DiskDialog node={node} onClose={() => setAddingDisk(false)} /> : null}
      {editDisk !== null ? <DiskDialog node={node} disk={editDisk} onClose={() => setEditDisk(null)} /> : null}
    </div>
  );
}

function NodeEditDialog({ node, onClose }: { node: Node; onClose: () => void }) {
  const [tags, setTags] = useState(joinTags(node.spec.tags));
  const [zone, setZone] = useState(node.spec.zone ?? '');
  const action = useAction('change nodes');
  const submit = async (e: Event) => {
    e.preventDefault();
    const ok = await action.run(() => api.patchNode(node.name, { tags: parseTags(tags), zone: zone.trim() }));
    if (ok) onClose();
  };
  return (
    <FormDialog
      title={`Edit ${node.name}`}
      testid="node-dialog"
      onClose={onClose}
      onSubmit={submit}
      error={action.error}
      busy={action.busy}
      submitLabel="Save"
    >
      <TextField label="Tags" name="tags" placeholder="comma-separated" value={tags} onValue={setTags} />
      <TextField label="Zone" name="zone" placeholder="none" value={zone} onValue={setZone} />
    </FormDialog>
  );
}

/** Adds a disk (no `disk`) or edits one. */
function DiskDialog({ node, disk, onClose }: { node: Node; disk?: string; onClose: () => void }) {
  const spec = disk ? node.spec.disks[disk] : undefined;
  const [name, setName] = useState('');
  const [path, setPath] = useState('');
  const [reserved, setReserved] = useState(spec ? exactSize(spec.storageReserved) : '');
  const [allow, setAllow] = useState(spec ? spec.allowScheduling : true);
  const [tags, setTags] = useState(joinTags(spec?.tags));
  const [invalid, setInvalid] = useState<string | null>(null);
  const action = useAction(disk ? 'change disks' : 'add disks');

  const submit = async (e: Event) => {
    e.preventDefault();
    setInvalid(null);
    let reservedBytes: number | undefined;
    try {
      if (reserved.trim()) reservedBytes = parseSize(reserved);
    } catch (err) {
      setInvalid(err instanceof Error ? err.message : String(err));
      return;
    }
    let ok: unknown;
    if (disk) {
      const body: Schemas['DiskUpdate'] = { allowScheduling: allow, tags: parseTags(tags) };
      if (reservedBytes !== undefined && reservedBytes !== spec?.storageReserved) body.storageReserved = reservedBytes;
      ok = await action.run(() => api.patchDisk(node.name, disk, body));
    } else {
      const body: Schemas['AddDisk'] = { name: name.trim(), path: path.trim(), allowScheduling: allow, tags: parseTags(tags) };
      if (reservedBytes !== undefined) body.storageReserved = reservedBytes;
      ok = await action.run(() => api.addDisk(node.name, body));
    }
    if (ok) onClose();
  };

  return (
    <FormDialog
      title={disk ? `Edit disk ${disk} of ${node.name}` : `Add a disk to ${node.name}`}
      testid="disk-dialog"
      onClose={onClose}
      onSubmit={submit}
      error={invalid ?? action.error}
      busy={action.busy}
      submitLabel={disk ? 'Save' : 'Add disk'}
    >
      {disk ? (
        <p class="muted">
          Path <code>{spec?.path}</code>
        </p>
      ) : (
        <>
          <TextField label="Name" name="name" required pattern={NAME_PATTERN} value={name} onValue={setName} />
          <TextField
            label="Path on the node"
            name="path"
            required
            pattern="/.*"
            placeholder="/var/lib/ironhorn/disk2"
            value={path}
            onValue={setPath}
          />
        </>
      )}
      <TextField
        label="Reserved"
        hint="Space kept free of replicas"
        name="storageReserved"
        placeholder="e.g. 10Gi"
        value={reserved}
        onValue={setReserved}
      />
      <TextField label="Tags" name="tags" placeholder="comma-separated" value={tags} onValue={setTags} />
      <CheckField name="allowScheduling" checked={allow} onChecked={setAllow}>
        Allow scheduling replicas
      </CheckField>
    </FormDialog>
  );
}

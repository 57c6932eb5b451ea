// The volumes list: search by name, filter by state and robustness, sort by name, size or
// creation, paginate (25/50/100/All); rows link to each volume's page; "Create volume" for
// operators. Filtering and sorting are memoized; rows do no work of their own.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, type Volume } from '../api';
import { DialogButton } from '../components/Action';
import { Badge } from '../components/Badge';
import { ErrorBanner } from '../components/ErrorBanner';
import { SearchBox } from '../components/Form';
import { Pager } from '../components/Pager';
import { Table, type Column, type Sort } from '../components/Table';
import { Time } from '../components/Time';
import { VolumeFormDialog } from '../components/VolumeForm';
import { robustnessValues, volumeStateValues } from '../generated/api';
import { formatBytes } from '../format';
import { useNow, useResource } from '../hooks';
import { replicaCounts, volumeCreated } from '../model';
import { href, navigate } from '../router';
import { useCan } from '../session';

function createdAt(v: Volume): number {
  const c = volumeCreated(v);
  return c ? Date.parse(c) || 0 : 0;
}

const SORTERS: Record<string, (a: Volume, b: Volume) => number> = {
  name: (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  size: (a, b) => a.spec.size - b.spec.size || SORTERS.name(a, b),
  actualSize: (a, b) => (a.status?.actualSize ?? 0) - (b.status?.actualSize ?? 0) || SORTERS.name(a, b),
  created: (a, b) => createdAt(a) - createdAt(b) || SORTERS.name(a, b),
};

/** Keeps the list's filters in the address (without a history entry per keystroke). */
function writeQuery(params: Record<string, string>): void {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  const target = '#/volumes' + (s ? '?' + s : '');
  if (location.hash !== target) history.replaceState(null, '', target);
}

export function VolumesPage(props: { query: URLSearchParams }) {
  const volumes = useResource(api.volumes, []);
  const canOperate = useCan('operator');
  const now = useNow();
  const [search, setSearch] = useState(props.query.get('q') ?? '');
  const [state, setState] = useState(props.query.get('state') ?? '');
  const [robustness, setRobustness] = useState(props.query.get('robustness') ?? '');
  const [sort, setSort] = useState<Sort>({
    key: props.query.get('sort') ?? 'name',
    dir: props.query.get('dir') === 'desc' ? 'desc' : 'asc',
  });
  const [pageSize, setPageSize] = useState(() => {
    const n = Number(props.query.get('size') ?? '50');
    return [25, 50, 100, 0].includes(n) ? n : 50;
  });
  const [page, setPage] = useState(0);
  const [creating, setCreating] = useState(false);

  // A dashboard link changes the filters while this page stays mounted.
  const qState = props.query.get('state') ?? '';
  const qRobustness = props.query.get('robustness') ?? '';
  useEffect(() => {
    setState(qState);
    setRobustness(qRobustness);
  }, [qState, qRobustness]);

  useEffect(() => {
    writeQuery({
      q: search,
      state,
      robustness,
      sort: sort.key === 'name' ? '' : sort.key,
      dir: sort.dir === 'desc' ? 'desc' : '',
      size: pageSize === 50 ? '' : String(pageSize),
    });
  }, [search, state, robustness, sort, pageSize]);

  const all = volumes.data;
  const filtered = useMemo(() => {
    const list = all ?? [];
    const needle = search.trim().toLowerCase();
    if (!needle && !state && !robustness) return list;
    return list.filter(
      (v) =>
        (!needle || v.name.toLowerCase().includes(needle)) &&
        (!state || v.status?.state === state) &&
        (!robustness || v.status?.robustness === robustness),
    );
  }, [all, search, state, robustness]);

  const sorted = useMemo(() => {
    const cmp = SORTERS[sort.key] ?? SORTERS.name;
    const out = filtered.slice().sort(cmp);
    if (sort.dir === 'desc') out.reverse();
    return out;
  }, [filtered, sort]);

  const pages = pageSize > 0 ? Math.max(1, Math.ceil(sorted.length / pageSize)) : 1;
  const current = Math.min(page, pages - 1);
  const rows = useMemo(
    () => (pageSize > 0 ? sorted.slice(current * pageSize, (current + 1) * pageSize) : sorted),
    [sorted, current, pageSize],
  );

  // Back to the first page whenever what is listed changes shape.
  useEffect(() => setPage(0), [search, state, robustness, sort, pageSize]);

  const columns: Column<Volume>[] = useMemo(
    () => [
      {
        key: 'name',
        label: 'Name',
        sortable: true,
        render: (v) => <a href={href('volumes', v.name)}>{v.name}</a>,
      },
      { key: 'state', label: 'State', render: (v) => <Badge state={v.status?.state} /> },
      { key: 'robustness', label: 'Robustness', render: (v) => <Badge state={v.status?.robustness} /> },
      { key: 'size', label: 'Size', sortable: true, class: 'num', render: (v) => formatBytes(v.spec.size) },
      {
        key: 'actualSize',
        label: 'Actual size',
        sortable: true,
        class: 'num',
        render: (v) => formatBytes(v.status?.actualSize ?? 0),
      },
      {
        key: 'replicas',
        label: 'Replicas',
        class: 'num',
        title: 'Healthy / wanted',
        render: (v) => {
          const c = replicaCounts(v);
          return (
            <span class={c.healthy < c.desired ? 'text-warn' : undefined}>
              {c.healthy}/{c.desired}
            </span>
          );
        },
      },
      { key: 'node', label: 'Attached to', render: (v) => v.status?.currentNodeId || <span class="muted">—</span> },
      { key: 'frontend', label: 'Frontend', render: (v) => v.spec.frontend ?? '—' },
      { key: 'created', label: 'Created', sortable: true, render: (v) => <Time value={volumeCreated(v)} now={now} /> },
    ],
    [now],
  );

  return (
    <section class="page" data-testid="volumes-page">
      <div class="page-head">
        <h1>
          Volumes <span class="muted">{all ? all.length : ''}</span>
        </h1>
        {canOperate ? (
          <DialogButton kind="primary" testid="volume-create" onClick={() => setCreating(true)}>
            Create volume
          </DialogButton>
        ) : null}
      </div>

      <div class="toolbar">
        <SearchBox
          name="search"
          placeholder="Search by name"
          label="Search volumes by name"
          data-testid="volume-search"
          value={search}
          onValue={setSearch}
        />
        <label class="inline-field">
          State
          <select name="state" data-testid="filter-state" value={state} onChange={(e) => setState((e.target as HTMLSelectElement).value)}>
            <option value="">any</option>
            {volumeStateValues.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label class="inline-field">
          Robustness
          <select
            name="robustness"
            data-testid="filter-robustness"
            value={robustness}
            onChange={(e) => setRobustness((e.target as HTMLSelectElement).value)}
          >
            <option value="">any</option>
            {robustnessValues.map((r) => (
              <option value={r}>{r}</option>
            ))}
          </select>
        </label>
        <span class="spacer" />
        <Pager total={sorted.length} page={current} pageSize={pageSize} onPage={setPage} onPageSize={setPageSize} />
      </div>

      <ErrorBanner error={volumes.error} />
      {volumes.loading && !all ? (
        <p class="muted">Loading volumes…</p>
      ) : (
        <Table
          columns={columns}
          rows={rows}
          rowKey={(v) => v.name}
          rowAttrs={(v) => ({ 'data-volume': v.name })}
          onRowClick={(name) => navigate(href('volumes', name))}
          sort={sort}
          onSort={setSort}
          testid="volumes-table"
          empty={all && all.length > 0 ? 'No volume matches.' : 'No volumes yet.'}
        />
      )}

      {creating ? <VolumeFormDialog title="Create volume" testid="volume-create-dialog" onClose={() => setCreating(false)} /> : null}
    </section>
  );
}

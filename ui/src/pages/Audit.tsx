// The audit log (admins): the newest changes asked of the API and sign-ins, newest first,
// with who, how, from where, what, and the result; `?limit=` (200 by default) and a filter.
import { useMemo, useState } from 'preact/hooks';
import { api } from '../api';
import { Badge } from '../components/Badge';
import { ErrorBanner } from '../components/ErrorBanner';
import { SearchBox } from '../components/Form';
import { EmptyRow, TableHead } from '../components/Table';
import { Time } from '../components/Time';
import { useNow, useResource } from '../hooks';
import { navigate } from '../router';

const LIMITS = [50, 200, 1000, 10000];

export function AuditPage(props: { query: URLSearchParams }) {
  const limit = Math.min(10000, Math.max(1, Number(props.query.get('limit')) || 200));
  const audit = useResource(() => api.audit(limit), [limit]);
  const now = useNow();
  const [filter, setFilter] = useState('');
  const list = useMemo(() => {
    const needle = filter.trim().toLowerCase();
    const rows = (audit.data ?? []).filter(
      (a) => !needle || `${a.user} ${a.via} ${a.from} ${a.method} ${a.path} ${a.status} ${a.result}`.toLowerCase().includes(needle),
    );
    return rows.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
  }, [audit.data, filter]);

  return (
    <section class="page" data-testid="audit-page">
      <div class="page-head">
        <h1>Audit log</h1>
      </div>
      <div class="toolbar">
        <SearchBox placeholder="Filter by user, path, result…" label="Filter the audit log" value={filter} onValue={setFilter} />
        <label class="inline-field">
          Newest
          <select name="limit" value={String(limit)} onChange={(e) => navigate(`#/audit?limit=${(e.target as HTMLSelectElement).value}`)}>
            {(LIMITS.includes(limit) ? LIMITS : [...LIMITS, limit].sort((a, b) => a - b)).map((l) => (
              <option value={String(l)}>{l}</option>
            ))}
          </select>
        </label>
        <span class="muted">{list.length} entries</span>
      </div>
      <ErrorBanner error={audit.error} />
      <div class="table-wrap">
        <table class="table" data-testid="audit-table">
          <TableHead columns={['At', 'User', 'Via', 'From', 'Method', 'Path', { label: 'Status', class: 'num' }, 'Result']} />
          <tbody>
            {list.length === 0 ? (
              <EmptyRow span={8}>{audit.loading ? 'Loading…' : 'No entries.'}</EmptyRow>
            ) : (
              list.map((a) => (
                <tr>
                  <td>
                    <Time value={a.at} now={now} />
                  </td>
                  <td>{a.user}</td>
                  <td>{a.via}</td>
                  <td>{a.from}</td>
                  <td>
                    <code>{a.method}</code>
                  </td>
                  <td>
                    <code class="break">{a.path}</code>
                  </td>
                  <td class="num">{a.status}</td>
                  <td>
                    <Badge state={a.result} />
                  </td>
                </tr>
              ))
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}

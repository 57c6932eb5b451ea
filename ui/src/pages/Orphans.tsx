// Orphans: replica directories on nodes' disks that no volume owns, with deletion.
import { api } from '../api';
import { ActionButton } from '../components/Action';
import { ErrorBanner } from '../components/ErrorBanner';
import { EmptyRow, TableHead } from '../components/Table';
import { useResource } from '../hooks';
import { useCan } from '../session';

export function OrphansPage() {
  const orphans = useResource(api.orphans, []);
  const canOperate = useCan('operator');
  const list = (orphans.data ?? []).slice().sort((a, b) => a.node.localeCompare(b.node) || a.path.localeCompare(b.path));
  return (
    <section class="page" data-testid="orphans-page">
      <div class="page-head">
        <h1>
          Orphaned replica data <span class="muted">{orphans.data ? list.length : ''}</span>
        </h1>
      </div>
      <p class="muted">Replica directories on a ready node's disk that no volume owns. Deleting one removes its directory from the node.</p>
      <ErrorBanner error={orphans.error} />
      <div class="table-wrap">
        <table class="table" data-testid="orphans-table">
          <TableHead columns={['Name', 'Node', 'Disk', 'Directory', 'Path', canOperate ? '' : null]} />
          <tbody>
            {list.length === 0 ? (
              <EmptyRow span={canOperate ? 6 : 5}>{orphans.loading ? 'Loading…' : 'No orphaned replica data.'}</EmptyRow>
            ) : (
              list.map((o) => (
                <tr data-orphan={o.name}>
                  <td>
                    <code>{o.name}</code>
                  </td>
                  <td>{o.node}</td>
                  <td>{o.disk}</td>
                  <td>{o.dataDirectoryName}</td>
                  <td>
                    <code class="break">{o.path}</code>
                  </td>
                  {canOperate ? (
                    <td class="row-actions">
                      <ActionButton
                        small
                        kind="danger"
                        label="Delete"
                        what="delete orphaned data"
                        testid="orphan-delete"
                        confirm={
                          <>
                            Delete <code>{o.path}</code> on {o.node}?
                          </>
                        }
                        confirmLabel="Delete data"
                        run={() => api.deleteOrphan(o.name)}
                      />
                    </td>
                  ) : null}
                </tr>
              ))
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}

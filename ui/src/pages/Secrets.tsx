// Secrets (admins): credential sets by name (backup targets' S3 keys); only their keys are
// shown, never the values; create or replace, delete.
import { useState } from 'preact/hooks';
import { api } from '../api';
import { ActionButton, DialogButton } from '../components/Action';
import { ErrorBanner } from '../components/ErrorBanner';
import { FormDialog, TextField } from '../components/Form';
import { EmptyRow, TableHead } from '../components/Table';
import { useAction, useResource } from '../hooks';

export function SecretsPage() {
  const secrets = useResource(api.secrets, []);
  const [editing, setEditing] = useState<string | 'new' | null>(null);
  const list = (secrets.data ?? []).slice().sort((a, b) => a.name.localeCompare(b.name));
  return (
    <section class="page" data-testid="secrets-page">
      <div class="page-head">
        <h1>Secrets</h1>
        <DialogButton kind="primary" testid="secret-create" onClick={() => setEditing('new')}>
          Create secret
        </DialogButton>
      </div>
      <p class="muted">Credentials for backup targets. Values are write-only: the API never shows them back.</p>
      <ErrorBanner error={secrets.error} />
      <table class="table" data-testid="secrets-table">
        <TableHead columns={['Name', 'Keys', '']} />
        <tbody>
          {list.length === 0 ? (
            <EmptyRow span={3}>{secrets.loading ? 'Loading…' : 'No secrets.'}</EmptyRow>
          ) : (
            list.map((s) => (
              <tr data-secret={s.name}>
                <td>
                  <strong>{s.name}</strong>
                </td>
                <td>
                  {s.keys.map((k) => (
                    <span class="tag">{k}</span>
                  ))}
                </td>
                <td class="row-actions">
                  <DialogButton small testid="secret-edit" onClick={() => setEditing(s.name)}>
                    Replace
                  </DialogButton>
                  <ActionButton
                    small
                    kind="danger"
                    label="Delete"
                    what="delete secrets"
                    testid="secret-delete"
                    confirm={
                      <>
                        Delete secret <strong>{s.name}</strong>? Backup targets that use it lose their credentials.
                      </>
                    }
                    confirmLabel="Delete secret"
                    run={() => api.deleteSecret(s.name)}
                  />
                </td>
              </tr>
            ))
          )}
        </tbody>
      </table>
      {editing ? (
        <SecretDialog
          name={editing === 'new' ? '' : editing}
          keys={list.find((s) => s.name === editing)?.keys ?? ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_ENDPOINTS']}
          onClose={() => setEditing(null)}
        />
      ) : null}
    </section>
  );
}

function SecretDialog(props: { name: string; keys: string[]; onClose: () => void }) {
  const [name, setName] = useState(props.name);
  const [rows, setRows] = useState<[string, string][]>(props.keys.map((k) => [k, '']));
  const action = useAction('change secrets');
  const setRow = (i: number, col: 0 | 1, v: string) => setRows(rows.map((r, j) => (j === i ? (col === 0 ? [v, r[1]] : [r[0], v]) : r)));
  const submit = async (e: Event) => {
    e.preventDefault();
    const data: Record<string, string> = {};
    for (const [k, v] of rows) if (k.trim()) data[k.trim()] = v;
    const ok = await action.run(() => api.putSecret(name.trim(), { data }));
    if (ok) props.onClose();
  };
  return (
    <FormDialog
      title={props.name ? `Replace secret ${props.name}` : 'Create secret'}
      testid="secret-dialog"
      wide
      onClose={props.onClose}
      onSubmit={submit}
      error={action.error}
      busy={action.busy}
      submitLabel="Save"
    >
      <TextField label="Name" name="name" required readOnly={!!props.name} value={name} onValue={setName} />
      {props.name ? <p class="small muted">Every key is replaced: give all the values again.</p> : null}
      <div class="kv">
        {rows.map(([k, v], i) => (
          <div class="kv-row">
            <input
              name={`key-${i}`}
              aria-label="Key"
              placeholder="KEY"
              value={k}
              onInput={(e) => setRow(i, 0, (e.target as HTMLInputElement).value)}
            />
            <input
              name={`value-${i}`}
              aria-label="Value"
              type="password"
              autoComplete="off"
              placeholder="value"
              value={v}
              onInput={(e) => setRow(i, 1, (e.target as HTMLInputElement).value)}
            />
            <button type="button" class="icon-button" aria-label="Remove key" onClick={() => setRows(rows.filter((_, j) => j !== i))}>
              ×
            </button>
          </div>
        ))}
        <button type="button" class="button button-small" onClick={() => setRows([...rows, ['', '']])}>
          Add key
        </button>
      </div>
    </FormDialog>
  );
}

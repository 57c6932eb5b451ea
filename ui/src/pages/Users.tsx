// Users (admins): list with role and whether a password is set; create with a role and an
// optional password; delete.
import { useState } from 'preact/hooks';
import { api, type Role } from '../api';
import { ActionButton, DialogButton } from '../components/Action';
import { Badge } from '../components/Badge';
import { ErrorBanner } from '../components/ErrorBanner';
import { Field, FormDialog, NAME_PATTERN, TextField } from '../components/Form';
import { EmptyRow, TableHead } from '../components/Table';
import { Time } from '../components/Time';
import { roleValues } from '../generated/api';
import { useAction, useNow, useResource } from '../hooks';
import { useMe } from '../session';

export function UsersPage() {
  const users = useResource(api.users, []);
  const me = useMe();
  const now = useNow();
  const [creating, setCreating] = useState(false);
  const list = (users.data ?? []).slice().sort((a, b) => a.name.localeCompare(b.name));
  return (
    <section class="page" data-testid="users-page">
      <div class="page-head">
        <h1>
          Users <span class="muted">{users.data ? list.length : ''}</span>
        </h1>
        <DialogButton kind="primary" testid="user-create" onClick={() => setCreating(true)}>
          Create user
        </DialogButton>
      </div>
      <ErrorBanner error={users.error} />
      <div class="table-wrap">
        <table class="table" data-testid="users-table">
          <TableHead columns={['Name', 'Role', 'Sign-in', 'Created', '']} />
          <tbody>
            {list.length === 0 ? (
              <EmptyRow span={5}>{users.loading ? 'Loading…' : 'No users.'}</EmptyRow>
            ) : (
              list.map((u) => (
                <tr data-user={u.name}>
                  <td>
                    <strong>{u.name}</strong>
                    {u.name === me?.user ? <span class="tag tag-muted">you</span> : null}
                  </td>
                  <td>
                    <span class={`role role-${u.role}`}>{u.role}</span>
                  </td>
                  <td>{u.hasPassword ? <Badge tone="ok">password</Badge> : <Badge tone="idle">tokens only</Badge>}</td>
                  <td>
                    <Time value={u.created} now={now} />
                  </td>
                  <td class="row-actions">
                    <ActionButton
                      small
                      kind="danger"
                      label="Delete"
                      what="delete users"
                      testid="user-delete"
                      confirm={
                        <>
                          Delete user <strong>{u.name}</strong>? Their sessions and tokens stop working.
                        </>
                      }
                      confirmLabel="Delete user"
                      run={() => api.deleteUser(u.name)}
                    />
                  </td>
                </tr>
              ))
            )}
          </tbody>
        </table>
      </div>
      {creating ? <UserDialog onClose={() => setCreating(false)} /> : null}
    </section>
  );
}

function UserDialog({ onClose }: { onClose: () => void }) {
  const [name, setName] = useState('');
  const [role, setRole] = useState<Role>('viewer');
  const [password, setPassword] = useState('');
  const action = useAction('create users');
  const submit = async (e: Event) => {
    e.preventDefault();
    const ok = await action.run(() => api.createUser({ name: name.trim(), role, password: password || null }));
    if (ok) onClose();
  };
  return (
    <FormDialog
      title="Create user"
      testid="user-dialog"
      onClose={onClose}
      onSubmit={submit}
      error={action.error}
      busy={action.busy}
      submitLabel="Create user"
    >
      <TextField label="Name" name="name" required pattern={NAME_PATTERN} autoComplete="off" value={name} onValue={setName} />
      <Field label="Role">
        <select name="role" value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value as Role)}>
          {roleValues.map((r) => (
            <option value={r}>{r}</option>
          ))}
        </select>
      </Field>
      <TextField
        label="Password"
        name="password"
        type="password"
        autoComplete="new-password"
        minLength={10}
        placeholder="at least 10 characters; empty for tokens only"
        value={password}
        onValue={setPassword}
      />
    </FormDialog>
  );
}

// A journey through the UI in Chromium, as an administrator and as a viewer:
// - a wrong password is refused with the API's message; the right one signs in;
// - the main pages render (a screenshot of each);
// - a volume is created, attached, snapshotted, expanded, detached and deleted from the
//   volume page, and its state follows through the live event stream (no reloads);
// - after signing out, the old session cookie is worth nothing;
// - a viewer sees no control that changes anything (the same pages show some to the admin),
//   no admin pages, and the API refuses a change it makes anyway.
// Environment: IRONHORN_URL, ADMIN_USER/ADMIN_PASSWORD, VIEWER_USER/VIEWER_PASSWORD, and a
// volume KEEP_VOLUME (default keep-vol) made beforehand for the viewer's volume page.
import { check, main, page, shot, signIn, step, url } from './lib.mjs';

const admin = { user: process.env.ADMIN_USER, password: process.env.ADMIN_PASSWORD };
const viewer = { user: process.env.VIEWER_USER, password: process.env.VIEWER_PASSWORD };
const keep = process.env.KEEP_VOLUME ?? 'keep-vol';

// Pages every role may see, with a selector that is there once their data has loaded.
const SHARED_PAGES = [
  { path: '#/', name: 'dashboard', loaded: '[data-testid=volume-counts]' },
  { path: '#/volumes', name: 'volumes', loaded: `tr[data-volume="${keep}"]` },
  { path: `#/volumes/${keep}`, name: 'volume', loaded: '[data-testid=volume-state]' },
  { path: '#/nodes', name: 'nodes', loaded: '[data-node]' },
  { path: '#/recurringjobs', name: 'recurringjobs', loaded: '[data-testid=recurringjobs-table]' },
  { path: '#/backups', name: 'backups', loaded: '[data-testid=backup-targets]' },
  { path: '#/orphans', name: 'orphans', loaded: '[data-testid=orphans-table]' },
  { path: '#/settings', name: 'settings', loaded: '[data-setting]' },
];
// Pages whose data an admin may change from them.
const ADMIN_CHANGES = ['volumes', 'volume', 'nodes', 'recurringjobs', 'backups', 'settings'];
const ADMIN_PAGES = [
  { path: '#/users', name: 'users', loaded: '[data-testid=users-table]' },
  { path: '#/tokens', name: 'tokens', loaded: '[data-testid=tokens-table]' },
  { path: '#/audit', name: 'audit', loaded: '[data-testid=audit-table]' },
];

async function visit(p, where) {
  await p.goto(url + '/' + where.path);
  await p.locator(where.loaded).first().waitFor();
  return p.locator('[data-mutates]').count();
}

async function stateIs(p, state) {
  await p.locator(`[data-testid=volume-state]:has-text("${state}")`).waitFor({ timeout: 60000 });
}

await main(async (b) => {
  // Signing in.
  const p = await page(b);
  step('a wrong password is refused, with the reason shown');
  await p.goto(url + '/');
  await p.locator('#login-user').fill(admin.user);
  await p.locator('#login-password').fill('not-the-password');
  await p.locator('#login-submit').click();
  const refusal = p.getByRole('alert');
  await refusal.waitFor();
  check(/password|credential|user/i.test(await refusal.innerText()), `the refusal says why: ${await refusal.innerText()}`);
  await shot(p, 'login');

  step(`${admin.user} signs in`);
  await signIn(p, admin.user, admin.password);
  check((await p.getByTestId('user').textContent()).trim() === admin.user, 'the header names the user');
  check((await p.getByTestId('role').textContent()).trim() === 'admin', 'the header shows the role');
  await p.locator('[data-testid=live-indicator][data-mode=live]').waitFor();

  step('every page renders, and an admin may change things on them');
  for (const where of SHARED_PAGES) {
    const controls = await visit(p, where);
    if (ADMIN_CHANGES.includes(where.name)) {
      check(controls > 0, `the admin sees controls on ${where.name}`);
    }
    await shot(p, where.name);
  }
  for (const where of ADMIN_PAGES) {
    await visit(p, where);
    await shot(p, where.name);
  }

  step('create a volume');
  await p.goto(url + '/#/volumes');
  await p.getByTestId('volume-create').click();
  const create = p.getByTestId('volume-create-dialog');
  await create.locator('[name=name]').fill('ui-vol');
  await create.locator('[name=size]').fill('64Mi');
  await create.locator('[name=numberOfReplicas]').fill('1');
  await create.locator('select[name=frontend]').selectOption('nbd');
  await shot(p, 'volume-create');
  await create.getByTestId('submit').click();
  await p.locator('[data-volume-page="ui-vol"]').waitFor();
  await stateIs(p, 'detached');
  check((await p.getByTestId('volume-size').innerText()).includes('64'), 'the new volume is 64 MiB');

  step('attach it; the page follows the state without a reload');
  await p.getByTestId('attach').click();
  await p.getByTestId('attach-dialog').getByTestId('submit').click();
  await stateIs(p, 'attached');

  step('take a snapshot');
  await p.getByTestId('snapshot-create').click();
  const snapshot = p.getByTestId('snapshot-dialog');
  await snapshot.locator('[name=name]').fill('ui-snap');
  await snapshot.getByTestId('submit').click();
  await p.locator('li[data-snapshot="ui-snap"]').waitFor();

  step('expand it to 128 MiB');
  await p.getByTestId('expand').click();
  const expand = p.getByTestId('expand-dialog');
  await expand.locator('[name=size]').fill('128Mi');
  await expand.getByTestId('submit').click();
  await p.locator('[data-testid=volume-size]:has-text("128")').waitFor({ timeout: 60000 });
  await shot(p, 'volume-attached');

  step('detach it');
  await p.getByTestId('detach').click();
  await stateIs(p, 'detached');

  step('delete it');
  await p.getByTestId('delete').click();
  await p.getByTestId('confirm').click();
  await p.waitForFunction(() => !location.hash.includes('ui-vol'));
  await p.goto(url + '/#/volumes');
  await p.locator(`tr[data-volume="${keep}"]`).waitFor();
  // Deleting finishes in the background; the list drops the row when the server says so.
  await p.locator('tr[data-volume="ui-vol"]').waitFor({ state: 'detached', timeout: 60000 });

  step('sign out; the old session cookie no longer works');
  const cookies = await p.context().cookies();
  check(cookies.length > 0, 'the session is a cookie');
  check(
    cookies.every((c) => c.httpOnly && c.sameSite === 'Strict'),
    'the cookie is HttpOnly and SameSite=Strict',
  );
  await p.getByTestId('logout').click();
  await p.locator('#login-user').waitFor();
  const replay = await b.newContext();
  await replay.addCookies(cookies);
  const me = await replay.request.get(url + '/v1/me');
  check(me.status() === 401, `the old cookie gets 401 after sign-out, not ${me.status()}`);
  await replay.close();
  check(p.errors.length === 0, `no uncaught errors in the page: ${p.errors.join('; ')}`);

  // The viewer.
  const v = await page(b);
  step(`${viewer.user} (viewer) signs in`);
  await signIn(v, viewer.user, viewer.password);
  check((await v.getByTestId('role').textContent()).trim() === 'viewer', 'the header shows the viewer role');
  for (const admins of ['users', 'tokens', 'secrets', 'audit']) {
    check((await v.locator(`[data-nav="${admins}"]`).count()) === 0, `no ${admins} link for a viewer`);
  }
  step('a viewer sees no control that changes anything');
  for (const where of SHARED_PAGES) {
    const controls = await visit(v, where);
    check(controls === 0, `${controls} controls that change things on ${where.name} for a viewer`);
    if (where.name === 'volume' || where.name === 'settings') await shot(v, `viewer-${where.name}`);
  }
  step('and the API refuses a change a viewer makes anyway');
  const refused = await v.evaluate(async () => {
    const who = await (await fetch('/v1/me')).json();
    const r = await fetch('/v1/volumes', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': who.csrfToken },
      body: JSON.stringify({ name: 'viewer-vol', size: 16 * 1024 * 1024 }),
    });
    return { status: r.status, body: await r.json() };
  });
  check(refused.status === 403, `the viewer's change is refused with 403: ${JSON.stringify(refused)}`);
  check(v.errors.length === 0, `no uncaught errors in the viewer's page: ${v.errors.join('; ')}`);
  console.log('journey: ok');
});

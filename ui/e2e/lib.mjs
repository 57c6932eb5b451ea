// What the browser tests share: Chromium (Debian's, through playwright-core), signing in,
// screenshots, and a watch on the page for uncaught errors.
import { chromium } from 'playwright-core';

export const url = process.env.IRONHORN_URL ?? 'http://127.0.0.1:9500';
export const shots = process.env.SCREENSHOTS ?? '/tmp/ironhorn-ui-screenshots';

export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/// A new page of its own context (its own cookies), failing the test on any uncaught error.
export async function page(b) {
  const context = await b.newContext({ viewport: { width: 1400, height: 900 } });
  const p = await context.newPage();
  p.errors = [];
  p.on('pageerror', (e) => p.errors.push(String(e)));
  p.setDefaultTimeout(20000);
  return p;
}

export async function signIn(p, user, password) {
  await p.goto(url + '/');
  await p.locator('#login-user').fill(user);
  await p.locator('#login-password').fill(password);
  await p.locator('#login-submit').click();
  await p.getByTestId('logout').waitFor();
}

export async function shot(p, name) {
  await p.screenshot({ path: `${shots}/${name}.png`, fullPage: false });
  console.log(`screenshot ${shots}/${name}.png`);
}

export function step(what) {
  console.log(`- ${what}`);
}

export function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

export async function main(body) {
  const b = await browser();
  try {
    await body(b);
  } catch (e) {
    console.error(e);
    process.exitCode = 1;
  } finally {
    await b.close();
  }
}

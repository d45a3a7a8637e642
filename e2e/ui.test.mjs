// The Temporal Web UI path a reviewer takes, in a real browser: start a
// Pipeline run from the Start Workflow form, see it wait at its approval
// gate, approve it with a signal from the workflow page, see it complete.
// The Go test in internal/cli starts the dev stack and runs this with
// GAUNTLET_UI_URL, GAUNTLET_RUN_ID and GAUNTLET_PIPELINE set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const ui = process.env.GAUNTLET_UI_URL;
const runId = process.env.GAUNTLET_RUN_ID;
const pipeline = process.env.GAUNTLET_PIPELINE;
const chromiumPath = process.env.GAUNTLET_CHROMIUM || '/usr/bin/chromium';
const shots = process.env.GAUNTLET_SCREENSHOTS;

// Without the background-networking flags Chromium keeps dialling hosts this
// machine cannot reach.
const launchArgs = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

async function shot(page, name) {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

test('start a pipeline from the UI, approve it by signal, see it complete', { timeout: 240_000 }, async () => {
  assert.ok(ui && runId && pipeline, 'GAUNTLET_UI_URL, GAUNTLET_RUN_ID and GAUNTLET_PIPELINE must be set');
  const browser = await chromium.launch({ executablePath: chromiumPath, args: launchArgs });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.setDefaultTimeout(60_000);

    await page.goto(`${ui}/namespaces/default/workflows/start-workflow`, { waitUntil: 'domcontentloaded' });
    await page.locator('#workflowId').fill(runId);
    await page.locator('#taskQueue').fill('gauntlet');
    await page.locator('#workflowType').fill('Pipeline');
    await page.locator('.cm-content[aria-label="Data"]').click();
    await page.keyboard.type(JSON.stringify({ pipeline, params: {} }));
    await page.locator('h1').click();
    await shot(page, '1-start-form');
    await page.locator('[data-testid=start-workflow-button]').click();
    await page.getByText('Workflow started successfully').first().waitFor();

    await page.goto(`${ui}/namespaces/default/workflows/${runId}`, { waitUntil: 'domcontentloaded' });
    await page.getByText('Running', { exact: true }).first().waitFor();
    // The gate is open once the run's GauntletStatus search attribute says
    // so; read it through the UI server's API, as the page itself does.
    await waitFor(async () => {
      const res = await page.request.get(`${ui}/api/v1/namespaces/default/workflows/${runId}`);
      if (!res.ok()) return false;
      const body = await res.json();
      const field = body.workflowExecutionInfo?.searchAttributes?.indexedFields?.GauntletStatus;
      return field && Buffer.from(field.data, 'base64').toString() === '"waiting"';
    }, 'the run to wait at its approval step');
    await shot(page, '2-running');

    await page.getByRole('button', { name: 'More Actions' }).click();
    await page.locator('[data-testid=signal-button]:visible').first().click();
    await page.locator('[data-testid=signal-select-button]:visible').first().click();
    await page.getByRole('option', { name: 'approve' }).locator('visible=true').first().click();
    const dialog = page.locator('.cm-content[aria-label="Data"]:visible').first();
    await dialog.click();
    await page.keyboard.type(JSON.stringify({ reviewer: 'bob', comment: 'approved from the Temporal UI' }));
    await shot(page, '3-signal');
    await page.locator('[data-testid=confirm-modal-button]:visible').first().click();

    await page.getByText('Completed', { exact: true }).first().waitFor({ timeout: 120_000 });
    await shot(page, '4-completed');
  } finally {
    await browser.close();
  }
});

async function waitFor(cond, what, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await cond()) return;
    } catch {
      // The UI server may not be serving queries yet; keep asking.
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

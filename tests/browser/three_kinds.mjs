// A manual check of the page on three kinds of image (a photo, a screenshot, a line drawing), against a
// running stack without API keys (bash scripts/up.sh): plain encode, comparison, a screenshot of each.
//   node tests/browser/three_kinds.mjs http://127.0.0.1:8000 OUTDIR IMAGE...
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, outDir, ...images] = process.argv.slice(2);
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
fs.mkdirSync(outDir, { recursive: true });
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "udic-chromium-"));
const context = await chromium.launchPersistentContext(userDir, {
  executablePath: "/usr/bin/chromium", headless: true, args: FLAGS, viewport: { width: 1280, height: 900 },
});
const page = context.pages()[0] || (await context.newPage());
const report = {};
try {
  for (const image of images) {
    const name = path.basename(image).replace(/\.[^.]*$/, "");
    await page.goto(url + "/");
    await page.locator("#file-input").setInputFiles(image);
    await page.locator("#options").waitFor({ state: "visible" });
    await page.locator("#encode").click();
    await page.locator("#result-section").waitFor({ state: "visible", timeout: 600000 });
    await page.locator("#compare").click();
    await page.locator("#compare-status").filter({ hasText: "Done." }).waitFor({ timeout: 600000 });
    await page.locator("#left-src").selectOption("udic");
    await page.locator("#right-src").selectOption("avif444");
    await page.waitForFunction(() => document.querySelector("#tag-right").textContent.startsWith("AVIF"));
    await page.locator("#result-section").screenshot({ path: path.join(outDir, name + ".png") });
    report[name] = await page.$$eval("#compare-table tbody tr", (rows) => rows.map((r) => [...r.children].map((c) => c.textContent)));
    console.log(name, JSON.stringify(report[name]));
  }
} finally {
  fs.writeFileSync(path.join(outDir, "three_kinds.json"), JSON.stringify(report, null, 2));
  await context.close();
  fs.rmSync(userDir, { recursive: true, force: true });
}

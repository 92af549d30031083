// Drives the udic page in Debian's chromium through playwright-core (no browser download).
// Run by tests/e2e/test_browser.py against a real stack (Redis, API, worker) with API keys on.
//
// env: UDIC_URL, UDIC_KEY (a good key), IMAGE (a photo crop), BAD_IMAGE (not an image) and BAD_DETAIL
//      (the server's problem+json detail for it),
//      OUT (downloads, the pixels the page showed, result.json), SHOTS (screenshots)
// Exit 0 when every step passed; on a failure: a message, a screenshot (SHOTS/failure.png), exit 1.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const env = (k) => {
  if (!process.env[k]) throw new Error(`set ${k}`);
  return process.env[k];
};
const URL_ = env("UDIC_URL"), KEY = env("UDIC_KEY"), IMAGE = env("IMAGE"), BAD = env("BAD_IMAGE");
const OUT = env("OUT"), SHOTS = env("SHOTS"), BAD_DETAIL = env("BAD_DETAIL");
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const result = { steps: [], console_errors: [] };

function step(name) {
  result.steps.push(name);
  console.log("step:", name);
}

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

async function shot(page, name, opts = {}) {
  await page.screenshot({ path: path.join(SHOTS, name), ...opts });
}

async function keyFlow(page) {
  step("the page asks for a key; a wrong key is refused in words");
  await page.goto(URL_ + "/");
  await page.locator("#key-section").waitFor({ state: "visible" });
  await page.locator("#key-input").fill("not-a-real-key");
  await page.keyboard.press("Enter");
  await page.locator("#error").waitFor({ state: "visible" });
  const err = await page.locator("#error").textContent();
  check(/refused the API key/.test(err), "wrong key message: " + err);
  check(await page.locator("#key-section").isVisible(), "the key form stays after a wrong key");
  check((await page.evaluate(() => sessionStorage.getItem("udic.apiKey"))) === null, "a refused key is not kept");
  await shot(page, "01-wrong-key.png");
  step("the right key is kept in sessionStorage only");
  await page.locator("#key-input").fill(KEY);
  await page.keyboard.press("Enter");
  await page.locator("#key-section").waitFor({ state: "hidden" });
  check((await page.evaluate(() => sessionStorage.getItem("udic.apiKey"))) === KEY, "key in sessionStorage");
  check((await page.evaluate(() => localStorage.length)) === 0, "nothing in localStorage");
}

async function badUpload(page) {
  step("a bad upload shows the server's problem+json message");
  await page.locator("#file-input").setInputFiles(BAD);
  await page.locator("#options").waitFor({ state: "visible" });
  await page.locator("#encode").click();
  await page.locator("#error").waitFor({ state: "visible" });
  const err = await page.locator("#error").textContent();
  check(err.includes(BAD_DETAIL), `bad upload message: ${err} (the server says: ${BAD_DETAIL})`);
  result.bad_upload_message = err;
  await shot(page, "02-bad-upload.png");
}

async function encodeFlow(page) {
  step("upload a photo, choose options with the keyboard, encode");
  await page.locator("#file-input").setInputFiles(IMAGE);
  await page.locator("#file-info").filter({ hasText: "×" }).waitFor();
  result.file_info = await page.locator("#file-info").textContent();
  check((await page.locator("#error").isHidden()), "the old error is cleared");
  await page.locator("#preset").selectOption("fast");
  await page.locator("#budget").fill("20"); // the adaptation stops after 20 s: a short test
  await page.locator("#quality").focus();
  await page.keyboard.press("ArrowLeft"); // 3 -> 2.5: keyboard works on the slider
  check((await page.locator("#quality-out").textContent()) === "2.5", "quality slider by keyboard");
  await page.locator("#encode").focus();
  await page.keyboard.press("Enter");
  step("live progress: stage, iteration and a growing chart");
  // keep the text the moment it shows an iteration and the estimate: a fast encode is over soon after
  const live = await page.waitForFunction(() => {
    const text = document.querySelector("#progress-text").textContent;
    return /iteration \d+ of \d+/.test(text) && text.includes("dB") ? text : null;
  }, null, { timeout: 240000, polling: 50 });
  result.progress_text = await live.jsonValue();
  // a chart with a few points, unless the encode is already over
  await page.waitForFunction(() => Number(document.querySelector("#chart").dataset.points || 0) >= 8 ||
    !document.querySelector("#result-section").hidden, null, { timeout: 480000 });
  await shot(page, "03-progress.png");
  await page.locator("#result-section").waitFor({ state: "visible", timeout: 480000 });
  await page.waitForFunction(() => document.querySelector("#img-right").naturalWidth > 0);
}

async function splitView(page) {
  step("the split view: drag the divider, keys move it, zoom 1:1 and 4:1 on the same point");
  await page.locator("#result-section").scrollIntoViewIfNeeded();
  const box = await page.locator("#view").boundingBox();
  const div = await page.locator("#divider").boundingBox();
  await page.mouse.move(div.x + div.width / 2, div.y + div.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  const v1 = Number(await page.locator("#divider").getAttribute("aria-valuenow"));
  check(v1 >= 25 && v1 <= 35, "divider dragged to ~30 %, got " + v1);
  await page.locator("#divider").focus();
  await page.keyboard.press("ArrowRight");
  const v2 = Number(await page.locator("#divider").getAttribute("aria-valuenow"));
  check(v2 === v1 + 2, `arrow key moves the divider (${v1} -> ${v2})`);
  for (let i = 0; i < 10; i++) await page.keyboard.press("ArrowRight");
  await page.locator("#result-section").screenshot({ path: path.join(SHOTS, "04-result.png") });
  await page.locator('.zoom button[data-zoom="4"]').click();
  const same = await page.evaluate(() => {
    const a = document.querySelector("#img-left").style.transform, b = document.querySelector("#img-right").style.transform;
    return a === b && a.includes("scale(4)");
  });
  check(same, "both sides zoomed 4:1 on the same point");
  await page.locator("#view").screenshot({ path: path.join(SHOTS, "05-zoom-4x.png") });
  await page.locator('.zoom button[data-zoom="0"]').click();
}

async function shownPixels(page) {
  step("the pixels the page showed, and the .udic download");
  const dataUrl = await page.evaluate(() => {
    const img = document.querySelector("#img-right");
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    c.getContext("2d").drawImage(img, 0, 0);
    return { src: document.querySelector("#right-src").value, png: c.toDataURL("image/png") };
  });
  check(dataUrl.src === "udic", "right side shows udic");
  fs.writeFileSync(path.join(OUT, "shown.png"), Buffer.from(dataUrl.png.split(",")[1], "base64"));
  const [dl] = await Promise.all([page.waitForEvent("download"), page.locator("#dl-udic").click()]);
  result.download_name = dl.suggestedFilename();
  await dl.saveAs(path.join(OUT, "result.udic"));
  const [dl2] = await Promise.all([page.waitForEvent("download"), page.locator("#dl-png").click()]);
  await dl2.saveAs(path.join(OUT, "result.png"));
  result.figures = await page.locator("#figures").innerText();
}

async function compareFlow(page) {
  step("the same-size comparison with JPEG, WebP and AVIF");
  await page.locator("#compare").click();
  await page.locator("#compare-status").filter({ hasText: "Done." }).waitFor({ timeout: 300000 });
  result.compare_rows = await page.$$eval("#compare-table tbody tr", (rows) =>
    rows.map((r) => [...r.children].map((c) => c.textContent)));
  check(result.compare_rows.length === 4, "udic + 3 codecs in the table");
  await page.locator("#left-src").selectOption("udic");
  await page.locator("#right-src").selectOption("avif444");
  await page.waitForFunction(() => document.querySelector("#tag-right").textContent.startsWith("AVIF"));
  await page.locator("#result-section").screenshot({ path: path.join(SHOTS, "06-compare-avif.png") });
}

async function phone(page) {
  step("phone width");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, "no sideways scroll at 390 px (overflow " + overflow + " px)");
  await shot(page, "07-phone.png", { fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
}

async function decodeDropped(page) {
  step("decode a .udic someone sent");
  await page.locator("#again").click();
  await page.locator("#file-input").setInputFiles(path.join(OUT, "result.udic"));
  await page.locator("#file-info").filter({ hasText: "decoded" }).waitFor({ timeout: 60000 });
  await page.waitForFunction(() => document.querySelector("#img-right").naturalWidth > 0);
  result.decoded_info = await page.locator("#file-info").textContent();
  await page.locator("#result-section").screenshot({ path: path.join(SHOTS, "08-decoded-udic.png") });
}

async function cancelFlow(page) {
  step("cancel a running encode");
  await page.locator("#again").click();
  await page.locator("#file-input").setInputFiles(IMAGE);
  await page.locator("#options").waitFor({ state: "visible" });
  await page.locator("#preset").selectOption("paper");
  await page.locator("#encode").click();
  await page.locator("#progress-text").filter({ hasText: /iteration/ }).waitFor({ timeout: 240000 });
  await page.locator("#cancel").click();
  await page.locator("#progress-text").filter({ hasText: "Cancelled." }).waitFor({ timeout: 60000 });
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  fs.mkdirSync(SHOTS, { recursive: true });
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "udic-chromium-"));
  // a fresh profile folder each run (playwright passes it to chromium as --user-data-dir)
  const context = await chromium.launchPersistentContext(userDir, {
    executablePath: "/usr/bin/chromium", headless: true, args: FLAGS,
    viewport: { width: 1280, height: 900 }, acceptDownloads: true,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") result.console_errors.push(m.text()); });
  page.on("pageerror", (e) => result.console_errors.push("page error: " + e.message));
  let ok = false;
  try {
    await keyFlow(page);
    await badUpload(page);
    await encodeFlow(page);
    await splitView(page);
    await shownPixels(page);
    await compareFlow(page);
    await phone(page);
    await decodeDropped(page);
    await cancelFlow(page);
    const csp = result.console_errors.filter((t) => /Content Security Policy|Refused to/.test(t));
    check(csp.length === 0, "no CSP violations: " + csp.join(" | "));
    ok = true;
  } catch (e) {
    result.failure = String(e && e.stack || e);
    console.error(result.failure);
    await shot(page, "failure.png", { fullPage: true }).catch(() => {});
  } finally {
    fs.writeFileSync(path.join(OUT, "result.json"), JSON.stringify(result, null, 2));
    await context.close();
    fs.rmSync(userDir, { recursive: true, force: true });
  }
  process.exit(ok ? 0 : 1);
}

main();

/**
 * Electron main process: owns the sidecar (stdio, through taskmill-bridge/node)
 * and relays between it and the renderer over IPC. The renderer never sees
 * the sidecar directly: it gets events pushed on "taskmill:event" and may call
 * the few methods handled below (preload.cjs exposes them as window.taskmill).
 *
 * Needs Electron >= 28 (an ES module main).
 */

import { app, BrowserWindow, ipcMain } from "electron";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startSidecar } from "./sidecar.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
let sidecar = null;

function broadcast(channel, payload) {
  for (const win of BrowserWindow.getAllWindows()) win.webContents.send(channel, payload);
}

async function main() {
  await app.whenReady();
  sidecar = await startSidecar({
    packaged: app.isPackaged,
    resourcesPath: process.resourcesPath,
    dbPath: path.join(app.getPath("userData"), "tasks.db"),
  });
  const { client } = sidecar;

  // One subscription for the whole app, fanned out to every window.
  client.subscribe({ kinds: ["submitted", "progress", "completed", "failed", "cancelled"] }, (event) =>
    broadcast("taskmill:event", event),
  );
  client.onConnection((e) => {
    if (e.type === "resync") broadcast("taskmill:resync", null); // the sidecar restarted: refetch
  });

  // Requests the renderer may make: an allowlist, not a generic proxy.
  ipcMain.handle("taskmill:submit", (_e, params) => client.submit(params));
  ipcMain.handle("taskmill:cancel", (_e, id) => client.cancel(id));
  ipcMain.handle("taskmill:snapshot", () => client.snapshot());
  ipcMain.handle("taskmill:ready", () => sidecar?.ready);

  const win = new BrowserWindow({
    width: 820,
    height: 560,
    webPreferences: {
      preload: path.join(here, "preload.cjs"),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
    },
  });
  await win.loadFile(path.join(here, "renderer.html"));
}

app.on("window-all-closed", () => app.quit());

// Stop the sidecar before quitting: closing its stdin makes it drain and exit.
app.on("will-quit", (event) => {
  if (sidecar === null) return;
  event.preventDefault();
  const stopping = sidecar;
  sidecar = null;
  stopping.stop({ timeoutMs: 5000 }).finally(() => app.quit());
});

main().catch((error) => {
  console.error("taskmill example:", error);
  app.exit(1);
});

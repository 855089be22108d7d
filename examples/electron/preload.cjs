// Preload (sandboxed, CommonJS): exposes a narrow window.taskmill API to the
// renderer; everything goes through the main process over IPC.
const { contextBridge, ipcRenderer } = require("electron");

contextBridge.exposeInMainWorld("taskmill", {
  ready: () => ipcRenderer.invoke("taskmill:ready"),
  submit: (params) => ipcRenderer.invoke("taskmill:submit", params),
  cancel: (id) => ipcRenderer.invoke("taskmill:cancel", id),
  snapshot: () => ipcRenderer.invoke("taskmill:snapshot"),
  onEvent: (callback) => {
    const listener = (_event, payload) => callback(payload);
    ipcRenderer.on("taskmill:event", listener);
    return () => ipcRenderer.removeListener("taskmill:event", listener);
  },
  onResync: (callback) => {
    const listener = () => callback();
    ipcRenderer.on("taskmill:resync", listener);
    return () => ipcRenderer.removeListener("taskmill:resync", listener);
  },
});

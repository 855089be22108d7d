/**
 * Checked by `tsc -p test/tsconfig.dom.json` with the DOM library and no Node
 * types: the core entry compiles for a webview, and the browser's WebSocket
 * fits the constructor type.
 */

import { TaskmillClient, connectWebSocket, webSocketConnector, type WebSocketConstructor } from "../src/index.js";

const ctor: WebSocketConstructor = WebSocket;
const client = new TaskmillClient({ connector: webSocketConnector({ endpoint: { url: "ws://127.0.0.1:1", token: "t" }, WebSocket: ctor }) });
void client;
void connectWebSocket({ endpoint: () => ({ url: "ws://127.0.0.1:1", token: "t" }) });

// The same live progress list WITH the store (plain DOM).
import { connectWebSocket, createTaskStore } from "../../src/index.js";

declare const list: HTMLUListElement;
const client = await connectWebSocket({ endpoint: { url: "ws://127.0.0.1:1", token: "t" } });
createTaskStore(client).subscribe(({ running }) => {
  list.replaceChildren(
    ...running.map((t) => {
      const li = document.createElement("li");
      li.textContent = `${t.label} ${Math.round(t.progress.percent * 100)}%`;
      return li;
    }),
  );
});

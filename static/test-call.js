// The console's test call: a WebSocket to the server, which places the call through the real call
// path. Typed lines are the caller's speech; the agent's words stream in; the call record (with
// its tool calls) is shown beside the conversation and refreshed after every reply.

const root = document.querySelector("[data-test-call]");
const conversation = document.getElementById("test-conversation");
const status = document.getElementById("test-status");
const form = document.getElementById("test-say");
const words = document.getElementById("test-words");
const hangUp = document.getElementById("test-hangup");
const recordLink = document.getElementById("test-record-link");
const record = document.getElementById("test-record");
const scheme = location.protocol === "https:" ? "wss" : "ws";
const socket = new WebSocket(`${scheme}://${location.host}${root.dataset.testCall}`);
let callId = null;
let speaking = null;

function bubble(role, text) {
  const turn = document.createElement("div");
  turn.className = `turn ${role}`;
  const who = document.createElement("div");
  who.className = "meta";
  who.textContent = role === "agent" ? "Agent" : role === "caller" ? "You" : "Call";
  const said = document.createElement("p");
  said.textContent = text;
  turn.append(who, said);
  conversation.append(turn);
  return said;
}

function setOpen(open) {
  for (const control of [words, hangUp, form.querySelector("button[type=submit]")]) control.disabled = !open;
  if (open) words.focus();
}

async function refreshRecord() {
  if (!callId) return;
  const response = await fetch(`/calls/${callId}`, { headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("conversation");
  if (fresh) record.replaceChildren(...fresh.childNodes);
}

socket.addEventListener("message", (message) => {
  const event = JSON.parse(message.data);
  switch (event.type) {
    case "connected":
      callId = event.call_id;
      status.textContent = "Connected. Say something.";
      recordLink.innerHTML = "";
      recordLink.append(Object.assign(document.createElement("a"), { href: `/calls/${callId}`, textContent: "Open the call record" }));
      setOpen(true);
      break;
    case "greeting":
      bubble("agent", event.text);
      break;
    case "token":
      speaking ??= bubble("agent", "");
      speaking.textContent += event.text;
      break;
    case "utterance_end":
      speaking = null;
      refreshRecord();
      break;
    case "interrupted":
      speaking = null;
      bubble("system", `You interrupted; the agent was heard up to: “${event.heard}”`);
      break;
    case "language":
      bubble("system", `Language switched to ${event.locale}`);
      break;
    case "refused":
      bubble("system", event.text);
      break;
    case "ended":
    case "failed":
      status.textContent = event.type === "ended" ? `Call over: ${event.summary}.` : `The call failed: ${event.error}`;
      setOpen(false);
      setTimeout(refreshRecord, 500);
      break;
  }
});
socket.addEventListener("close", () => setOpen(false));

form.addEventListener("submit", (submit) => {
  submit.preventDefault();
  const text = words.value.trim();
  if (!text) return;
  if (speaking) socket.send(JSON.stringify({ type: "interrupt" }));
  speaking = null;
  bubble("caller", text);
  socket.send(JSON.stringify({ type: "say", text }));
  words.value = "";
});
hangUp.addEventListener("click", () => socket.send(JSON.stringify({ type: "hang_up" })));

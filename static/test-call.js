// The console's test call: a WebSocket to the server, which places the call through the real call
// path. Typed lines are the caller's speech; the agent's words stream in; the call record (with
// its tool calls) is shown beside the conversation and refreshed after every reply. On
// media-stream numbers the microphone can be the caller's voice instead: captured by an
// AudioWorklet, sent as 16-bit samples, while the agent's audio (8 kHz) plays as it arrives and
// the record, with what the server heard, refreshes as the call goes.

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
socket.binaryType = "arraybuffer";
const microphoneButton = document.getElementById("test-microphone");
let callId = null;
let speaking = null;
let audio = null; // the audio context, once the microphone is on
let playAt = 0;
let refreshing = null;

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
  if (microphoneButton) microphoneButton.disabled = !open || audio !== null;
  if (open) words.focus();
  if (!open && refreshing) clearInterval(refreshing);
}

// The agent's audio: 16-bit samples at 8 kHz, played back to back as they come.
function play(bytes) {
  const samples = new Int16Array(bytes);
  if (!audio || samples.length === 0) return;
  const buffer = audio.createBuffer(1, samples.length, 8000);
  const channel = buffer.getChannelData(0);
  for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 32768;
  const source = audio.createBufferSource();
  source.buffer = buffer;
  source.connect(audio.destination);
  playAt = Math.max(playAt, audio.currentTime + 0.05);
  source.start(playAt);
  playAt += buffer.duration;
}

// The microphone as the caller's voice: blocks of 20 ms, as 16-bit samples at the context's rate.
async function startMicrophone() {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  audio = new AudioContext();
  await audio.audioWorklet.addModule(root.dataset.microphone);
  const capture = new AudioWorkletNode(audio, "microphone");
  // Processed only while connected to the output: through a silent gain, so it is not heard.
  const silent = audio.createGain();
  silent.gain.value = 0;
  audio.createMediaStreamSource(stream).connect(capture).connect(silent).connect(audio.destination);
  socket.send(JSON.stringify({ type: "microphone", rate: audio.sampleRate }));
  const block = Math.round(audio.sampleRate / 50);
  let pending = [];
  let count = 0;
  capture.port.onmessage = ({ data }) => {
    pending.push(data);
    count += data.length;
    if (count < block) return;
    const samples = new Int16Array(count);
    let at = 0;
    for (const piece of pending) {
      for (const value of piece) samples[at++] = Math.max(-32768, Math.min(32767, Math.round(value * 32768)));
    }
    pending = [];
    count = 0;
    if (socket.readyState === WebSocket.OPEN) socket.send(samples.buffer);
  };
  microphoneButton.disabled = true;
  status.textContent = "Listening. Talk to the agent.";
  refreshing = setInterval(refreshRecord, 1500);
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
  if (message.data instanceof ArrayBuffer) {
    play(message.data);
    return;
  }
  const event = JSON.parse(message.data);
  switch (event.type) {
    case "connected":
      callId = event.call_id;
      status.textContent = "Connected. Say something.";
      recordLink.innerHTML = "";
      recordLink.append(Object.assign(document.createElement("a"), { href: `/calls/${callId}`, textContent: "Open the call record" }));
      setOpen(true);
      if (event.greeting) bubble("agent", event.greeting);
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
microphoneButton?.addEventListener("click", () => {
  startMicrophone().catch((error) => {
    audio = null;
    bubble("system", `The microphone could not be used: ${error.message}`);
  });
});

// The test call's microphone, as an AudioWorklet: hands each block the browser captures (mono,
// at the audio context's rate) to the page, which sends it to the server.
class Microphone extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0]?.[0];
    if (channel) this.port.postMessage(channel.slice());
    return true;
  }
}
registerProcessor("microphone", Microphone);

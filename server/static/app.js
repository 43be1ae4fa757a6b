// gru-asr browser client: microphone -> AudioWorklet -> int16 PCM -> websocket (Vosk protocol).
//
// The page sends the AudioContext's own sample rate in the config (the server accepts
// 8000-48000 Hz and resamples to 16 kHz); only above 48 kHz does it downsample here.
// Each binary message (0.1 s of audio) gets one JSON reply: {"partial"} while speaking,
// {"text"} at an endpoint. Stop sends {"eof" : 1}; the server answers with the final
// result and closes. A ?token=... in the page URL is passed on to the websocket URL.
"use strict";

const MESSAGE_SECONDS = 0.1; // audio per websocket message
const WORKLET_SECONDS = 0.02; // audio per message from the worklet to this page
const MAX_RATE = 48000; // Hz the server accepts at most
const FALLBACK_RATE = 16000; // Hz sent when the context runs faster than MAX_RATE

const $ = (id) => document.getElementById(id);
let session = null;

function socketUrl() {
  const url = new URL("/", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const token = new URLSearchParams(location.search).get("token");
  if (token) url.searchParams.set("token", token);
  return url.href;
}

function setStatus(text) {
  $("status").textContent = text;
}

function showReply(reply) {
  if ("partial" in reply) {
    $("partial").textContent = reply.partial;
    return;
  }
  if ("error" in reply) {
    setStatus("error: " + reply.error);
    return;
  }
  const text = reply.alternatives ? (reply.alternatives[0] || {}).text || "" : reply.text || "";
  $("partial").textContent = "";
  if (text) {
    const line = document.createElement("p");
    line.textContent = text;
    $("final").appendChild(line);
  }
}

function toInt16(chunks, frames) {
  const out = new Int16Array(frames);
  let i = 0;
  for (const chunk of chunks) {
    for (const s of chunk) {
      out[i++] = Math.max(-1, Math.min(1, s)) * 32767;
    }
  }
  return out;
}

// Averages the input over each output sample's span: a rough low-pass and resampler, used only
// for contexts running above the server's highest rate (96 kHz sound cards).
class Decimator {
  constructor(fromRate, toRate) {
    this.step = fromRate / toRate;
    this.next = this.step;
    this.pos = 0;
    this.sum = 0;
    this.count = 0;
  }

  process(input) {
    const out = [];
    for (const x of input) {
      this.sum += x;
      this.count++;
      if (++this.pos >= this.next) {
        out.push(this.sum / this.count);
        this.sum = 0;
        this.count = 0;
        this.next += this.step;
      }
    }
    return Float32Array.from(out);
  }
}

function openSocket(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("cannot connect to " + url.split("?")[0] + " (server down or wrong token?)"));
  });
}

class Session {
  async start() {
    this.ws = await openSocket(socketUrl());
    this.ws.onmessage = (event) => showReply(JSON.parse(event.data));
    this.ws.onclose = (event) => this.closed(event);
    this.media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule("capture-worklet.js");
    await this.context.resume();
    const rate = this.context.sampleRate;
    this.decimator = rate > MAX_RATE ? new Decimator(rate, FALLBACK_RATE) : null;
    const sendRate = this.decimator ? FALLBACK_RATE : rate;
    this.ws.send(JSON.stringify({ config: { sample_rate: sendRate, words: true } }));
    this.perMessage = Math.round(sendRate * MESSAGE_SECONDS);
    this.pending = [];
    this.pendingFrames = 0;
    this.source = this.context.createMediaStreamSource(this.media);
    this.node = new AudioWorkletNode(this.context, "capture", {
      processorOptions: { blockFrames: Math.round(rate * WORKLET_SECONDS) },
    });
    this.node.port.onmessage = (event) => this.audio(event.data);
    this.source.connect(this.node);
    this.node.connect(this.context.destination); // keeps the graph pulling; the node outputs silence
    setStatus(`listening (${rate} Hz)`);
  }

  audio(samples) {
    if (this.stopping) return;
    const chunk = this.decimator ? this.decimator.process(samples) : samples;
    this.pending.push(chunk);
    this.pendingFrames += chunk.length;
    if (this.pendingFrames >= this.perMessage) this.flush();
  }

  flush() {
    if (this.pendingFrames && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(toInt16(this.pending, this.pendingFrames).buffer);
    }
    this.pending = [];
    this.pendingFrames = 0;
  }

  stop() {
    this.stopping = true;
    if (this.pending) this.flush();
    this.release();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send('{"eof" : 1}'); // the server replies with the final result, then closes
      setStatus("finishing");
    }
  }

  release() {
    if (this.media) this.media.getTracks().forEach((track) => track.stop());
    if (this.source) this.source.disconnect();
    if (this.node) this.node.disconnect();
    if (this.context) this.context.close();
    this.media = this.source = this.node = this.context = null;
  }

  closed(event) {
    this.release();
    const normal = event.code === 1000 && this.stopping;
    if (!$("status").textContent.startsWith("error")) {
      setStatus(normal ? "stopped" : `connection closed (${event.code}${event.reason ? ": " + event.reason : ""})`);
    }
    if (session === this) idle();
  }
}

function idle() {
  session = null;
  const button = $("toggle");
  button.textContent = "Start";
  button.classList.remove("on");
  button.disabled = false;
}

async function toggle() {
  const button = $("toggle");
  if (session) {
    button.disabled = true;
    session.stop();
    return;
  }
  $("final").textContent = "";
  $("partial").textContent = "";
  setStatus("starting");
  button.disabled = true;
  session = new Session();
  try {
    await session.start();
    button.textContent = "Stop";
    button.classList.add("on");
    button.disabled = false;
  } catch (err) {
    const failed = session;
    session = null;
    failed.stopping = true;
    failed.release();
    if (failed.ws) failed.ws.close();
    setStatus("error: " + err.message);
    idle();
  }
}

$("toggle").addEventListener("click", toggle);

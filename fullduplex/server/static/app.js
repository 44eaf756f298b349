// The web client: microphone -> WebCodecs Opus -> Ogg pages -> /api/chat (Moshi's protocol), and
// back: Ogg pages -> Opus packets -> WebCodecs -> Web Audio. Transcripts and the timeline come from
// the server's 0x02 text and 0x04 metadata. No framework, no build step.
import { OggDemuxer, OggOpusMuxer } from "./ogg.js";

const KIND = { handshake: 0, audio: 1, text: 2, control: 3, metadata: 4, error: 5, ping: 6 };
const RATE = 48000;               // the AudioContext and both codecs run at 48 kHz; Opus resamples
const FRAME = RATE / 50;          // 20 ms
const MAX_AHEAD_S = 0.6;          // agent audio scheduled further ahead than this is dropped (bounded latency)
const WINDOW_S = 20;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// What the page knows; exposed as window.fd for people debugging and for the browser test.
const fd = {
  state: "idle", agent: "", session: "", agentText: "", userText: "", errors: [], sentPackets: 0,
  receivedPackets: 0, answered: 0, playedS: 0, audibleS: 0, events: 0, latencies: [], echoCancellation: null, stats: null,
};
window.fd = fd;

let ws = null, ctx = null, mic = null, capture = null, encoder = null, decoder = null;
let muxer = null, demuxer = null, headerSent = false, encTs = 0, decTs = 0, nextPlay = 0, t0 = 0;
let opusHeadSeen = 0;
const tl = { user: [], agent: [], marks: [] };  // timeline segments {t0, t1} and marks {t, kind, label}
const lines = [];                                 // transcript: {who, turn, text, partial, el}

function setStatus(text) { fd.state = text; $("status").textContent = text; }
function showError(text) { fd.errors.push(text); const el = $("error"); el.textContent = text; el.hidden = false; }
function now() { return t0 ? (performance.now() - t0) / 1000 : 0; }

function wsUrl() {
  if (params.get("server")) return params.get("server");
  const url = new URL("/api/chat", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (params.get("token")) url.searchParams.set("token", params.get("token"));
  return url.toString();
}

function send(kind, payload) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const msg = new Uint8Array(1 + (payload ? payload.length : 0));
  msg[0] = kind;
  if (payload) msg.set(payload, 1);
  ws.send(msg);
}

// ---------------------------------------------------------------------------------------------
async function start() {
  $("error").hidden = true;
  setStatus("starting microphone…");
  if (!("AudioEncoder" in window) || !("AudioDecoder" in window)) {
    showError("this browser has no WebCodecs audio (AudioEncoder/AudioDecoder): use a recent Chromium, Chrome or Edge");
    setStatus("unsupported browser");
    return;
  }
  ctx = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
  await ctx.resume();
  await ctx.audioWorklet.addModule("/capture-worklet.js");
  try {
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
  } catch (e) {
    showError(`no microphone: ${e.name} ${e.message}`);
    setStatus("no microphone");
    return;
  }
  const settings = mic.getAudioTracks()[0].getSettings();
  fd.echoCancellation = settings.echoCancellation ?? null;
  $("aec").textContent = settings.echoCancellation ? "on" : (settings.echoCancellation === false ? "off" : "unknown");

  decoder = new AudioDecoder({ output: onDecoded, error: (e) => showError(`audio decoder: ${e.message}`) });
  decoder.configure({ codec: "opus", sampleRate: RATE, numberOfChannels: 1 });
  demuxer = new OggDemuxer();
  opusHeadSeen = 0;

  setStatus("connecting…");
  ws = new WebSocket(wsUrl());
  ws.binaryType = "arraybuffer";
  ws.onmessage = (ev) => onMessage(new Uint8Array(ev.data));
  ws.onclose = (ev) => { stop(false); setStatus(`closed (${ev.code}${ev.reason ? " " + ev.reason : ""})`); };
  ws.onerror = () => setStatus("connection error");
  $("talk").textContent = "Stop";
  $("talk").classList.add("on");
}

function startCapture() {
  muxer = new OggOpusMuxer({ channels: 1, inputRate: RATE });
  headerSent = false;
  encTs = 0;
  encoder = new AudioEncoder({ output: onEncoded, error: (e) => showError(`audio encoder: ${e.message}`) });
  encoder.configure({ codec: "opus", sampleRate: RATE, numberOfChannels: 1, bitrate: 32000,
                      opus: { frameDuration: 20000, complexity: 5 } });
  const source = ctx.createMediaStreamSource(mic);
  capture = new AudioWorkletNode(ctx, "fd-capture", { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1 });
  const mute = ctx.createGain();
  mute.gain.value = 0;
  source.connect(capture).connect(mute).connect(ctx.destination);   // pulled by the graph, never heard
  capture.port.onmessage = (ev) => {
    if (!encoder || encoder.state !== "configured") return;
    const block = ev.data;
    const data = new AudioData({ format: "f32-planar", sampleRate: RATE, numberOfFrames: block.length,
                                 numberOfChannels: 1, timestamp: encTs, data: block });
    encTs += Math.round(1e6 * block.length / RATE);
    encoder.encode(data);
    data.close();
  };
}

function onEncoded(chunk, meta) {
  if (!headerSent) {
    const desc = meta && meta.decoderConfig && meta.decoderConfig.description;
    const head = desc ? new Uint8Array(desc instanceof ArrayBuffer ? desc : desc.buffer) : null;
    if (head && head.length >= 19 && String.fromCharCode(...head.subarray(0, 8)) === "OpusHead") muxer.head = head;
    send(KIND.audio, muxer.headers());
    headerSent = true;
  }
  const packet = new Uint8Array(chunk.byteLength);
  chunk.copyTo(packet);
  const samples = Math.round((chunk.duration || 20000) * 48000 / 1e6);
  send(KIND.audio, muxer.packet(packet, samples));
  fd.sentPackets++;
}

function onDecoded(audio) {
  const n = audio.numberOfFrames, rate = audio.sampleRate;
  const pcm = new Float32Array(n);
  audio.copyTo(pcm, { planeIndex: 0, format: "f32-planar" });
  audio.close();
  if (!ctx) return;
  const t = ctx.currentTime;
  if (nextPlay < t + 0.02) nextPlay = t + 0.06;            // (re)start with a small playout buffer
  if (nextPlay - t > MAX_AHEAD_S) return;                  // too far behind: drop rather than lag
  const buf = ctx.createBuffer(1, n, rate);
  buf.copyToChannel(pcm, 0);
  const src = ctx.createBufferSource();
  src.buffer = buf;
  src.connect(ctx.destination);
  src.start(nextPlay);
  nextPlay += n / rate;
  fd.playedS += n / rate;
  let energy = 0;
  for (let i = 0; i < n; i++) energy += pcm[i] * pcm[i];
  if (Math.sqrt(energy / n) > 0.003) fd.audibleS += n / rate;
}

function stop(close = true) {
  if (capture) { capture.port.onmessage = null; capture.disconnect(); capture = null; }
  if (mic) { mic.getTracks().forEach((t) => t.stop()); mic = null; }
  if (encoder && encoder.state !== "closed") encoder.close();
  if (decoder && decoder.state !== "closed") decoder.close();
  encoder = decoder = null;
  if (close && ws) ws.close(1000);
  ws = null;
  if (ctx) { ctx.close(); ctx = null; }
  $("talk").textContent = "Talk";
  $("talk").classList.remove("on");
  if (close) setStatus("stopped");
}

// ---------------------------------------------------------------------------------------------
function onMessage(msg) {
  const kind = msg[0], payload = msg.subarray(1);
  if (kind === KIND.handshake) {
    t0 = performance.now();
    setStatus("connected: talk");
    startCapture();
  } else if (kind === KIND.audio) {
    for (const packet of demuxer.push(payload)) {
      if (opusHeadSeen < 2) { opusHeadSeen++; continue; }  // OpusHead, OpusTags
      fd.receivedPackets++;
      decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: decTs, data: packet }));
      decTs += 20000;
    }
  } else if (kind === KIND.text) {
    const text = new TextDecoder().decode(payload);
    fd.agentText += text;
    addText("agent", currentAgentTurn, text, false);
  } else if (kind === KIND.metadata) {
    onMetadata(JSON.parse(new TextDecoder().decode(payload)));
  } else if (kind === KIND.error) {
    showError(`server: ${new TextDecoder().decode(payload)}`);
  }
}

let currentAgentTurn = 0;
const turnEnds = {};

function onMetadata(m) {
  if (m.type === "session") {
    fd.agent = m.agent; fd.session = m.session;
    $("agent").textContent = m.agent; $("session").textContent = m.session;
  } else if (m.type === "stats") {
    fd.stats = m;
    $("health").textContent = [
      `frames ${m.frames}, late ${m.late_frames}, skipped ${m.skipped_frames}`,
      `underruns ${m.underrun_frames}, dropped in ${m.dropped_input_frames} / out ${m.dropped_output_frames}`,
      `input buffer ${m.input_buffer_s.toFixed(3)} s (max ${m.max_input_s})`,
      `agent step p50 ${m.step_p50_ms} ms, p99 ${m.step_p99_ms} ms`,
    ].join("\n");
  } else if (m.type === "latency") {
    fd.latencies.push(m);
    const row = document.createElement("tr");
    const eot = m.stages && m.stages.end_of_turn != null ? `+${m.stages.end_of_turn.toFixed(2)} s` : "–";
    for (const cell of [m.turn, m.response_s != null ? `${m.response_s.toFixed(2)} s` : "–", eot]) {
      const td = document.createElement("td"); td.textContent = cell; row.appendChild(td);
    }
    $("latency").tBodies[0].appendChild(row);
    const mark = tl.marks.find((k) => k.kind === "eot" && k.turn === m.turn);
    if (mark && m.response_s != null) mark.label = `${m.response_s.toFixed(2)} s`;
  } else if (m.type === "event") {
    fd.events++;
    onEvent(m);
  }
}

function onEvent(e) {
  const k = e.kind;
  if (k === "vad.speech_start") tl.user.push({ t0: e.t, t1: null });
  else if (k === "vad.speech_end") { const s = tl.user[tl.user.length - 1]; if (s && s.t1 === null) s.t1 = e.t; }
  else if (k === "playback.start") { currentAgentTurn = e.turn; tl.agent.push({ t0: e.t, t1: null }); }
  else if (k === "playback.end" || k === "playback.stop") {
    const s = tl.agent[tl.agent.length - 1]; if (s && s.t1 === null) s.t1 = e.t;
    fd.answered++;
  } else if (k.includes("backchannel")) tl.marks.push({ t: e.t, kind: "bc", label: e.text || "" });
  else if (k.includes("barge") || k.includes("interrupt")) tl.marks.push({ t: e.t, kind: "barge", label: "barge-in" });
  else if (k === "turn.end") { turnEnds[e.turn] = e.speech_end; tl.marks.push({ t: e.t, kind: "eot", turn: e.turn, label: "" }); }
  else if (k.startsWith("turn.") && k !== "turn.empty") tl.marks.push({ t: e.t, kind: "turn", label: k.slice(5) });
  if (k === "stt.partial" && e.text) addText("user", e.turn, e.text, true);
  if (k === "stt.final" && e.text) { fd.userText += (fd.userText ? " " : "") + e.text; addText("user", e.turn, e.text, false); }
}

function addText(who, turn, text, partial) {
  let line = lines.find((l) => l.who === who && l.turn === turn);
  if (!line) {
    const el = document.createElement("div");
    line = { who, turn, text: "", el };
    lines.push(line);
    const box = $("transcript");
    box.appendChild(el);
  }
  line.text = who === "agent" ? line.text + text : text;
  line.el.className = `line ${who}${partial ? " partial" : ""}`;
  line.el.textContent = line.text.trim();
  $("transcript").scrollTop = $("transcript").scrollHeight;
}

// ---------------------------------------------------------------------------------------------
function draw() {
  $("played").textContent = fd.playedS.toFixed(1);
  const c = $("timeline"), g = c.getContext("2d");
  const W = c.width, H = c.height, left = 60, right = W - 10;
  const tNow = now(), tStart = Math.max(0, tNow - WINDOW_S);
  const x = (t) => left + (right - left) * (t - tStart) / WINDOW_S;
  g.clearRect(0, 0, W, H);
  g.font = "12px system-ui"; g.fillStyle = "#444";
  g.fillText("you", 8, 45); g.fillText("agent", 8, 105);
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();
  const bars = (segs, y, col) => {
    g.fillStyle = col;
    for (const s of segs) {
      const a = Math.max(x(s.t0), left), b = x(s.t1 === null ? tNow : s.t1);
      if (b > left) g.fillRect(a, y, Math.max(2, b - a), 24);
    }
  };
  bars(tl.user, 30, color("--user"));
  bars(tl.agent, 90, color("--agent"));
  for (const m of tl.marks) {
    if (m.t < tStart) continue;
    const px = x(m.t);
    if (m.kind === "eot" || m.kind === "turn") {
      g.strokeStyle = color("--eot"); g.setLineDash([4, 3]);
      g.beginPath(); g.moveTo(px, 20); g.lineTo(px, 130); g.stroke(); g.setLineDash([]);
      g.fillStyle = color("--eot");
      g.fillText(m.kind === "eot" ? `end of turn ${m.label}` : m.label, px + 3, 145);
    } else {
      g.fillStyle = color(m.kind === "bc" ? "--bc" : "--barge");
      const y = m.kind === "bc" ? 82 : 60;
      g.beginPath(); g.arc(px, y, 5, 0, 2 * Math.PI); g.fill();
      if (m.label) g.fillText(m.label, px + 7, y + 4);
    }
  }
  g.strokeStyle = "#ccc"; g.beginPath(); g.moveTo(left, 160); g.lineTo(right, 160); g.stroke();
  g.fillStyle = "#888";
  for (let t = Math.ceil(tStart); t <= tNow; t += 2) g.fillText(`${t}s`, x(t) - 6, 168);
}

setInterval(draw, 100);
$("talk").addEventListener("click", () => (ws ? stop() : start().catch((e) => showError(String(e)))));
if (params.get("autostart") === "1") start().catch((e) => showError(String(e)));

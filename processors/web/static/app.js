// voxpipe browser page: one websocket session with the server's pipeline.
//
// Wire format (docs/web.md): binary messages are 16-bit little-endian mono PCM (our
// microphone up, the assistant's speech down); text messages are JSON events. Assistant
// audio follows an {"type":"audio", item_id, turn, rate} event; {"type":"flush"} drops
// everything queued for playback at once. We report what the speaker actually played
// with {"type":"played", item_id, ms, done}: the server truncates an interrupted answer
// to exactly that.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  ready: null, // the server's `ready` event
  ctx: null, // AudioContext, created on the first click (browsers require a gesture)
  player: null,
  capture: null,
  stream: null,
  talking: false,
  header: null, // the last `audio` event: what the binary messages that follow are
  flushedTurn: 0,
  stoppedAt: null, // when the server said the user stopped speaking (performance.now())
  turns: new Map(), // turn -> latency row (of this session)
  answers: 0, // latency rows so far
  said: null, // {text, used}: the user's last words, the label of the next latency row
  toolSince: null, // a tool's name whose result came back since the last row
  unlabelled: null, // a row created before its words were recognised
  bubbles: new Map(), // role:item_id -> bubble element
  tools: new Map(), // call_id -> tool card
  itemTurns: new Map(), // assistant item_id -> turn
  items: new Map(), // assistant item_id -> {receivedMs, playedMs, done, interrupted}
  closing: false,
};

let playerReady = null; // resolves to the player node; audio and commands go through it, in order

// Figures for people and for tests (window.voxpipe).
const stats = { connected: false, sentFrames: 0, receivedChunks: 0, playedMs: 0, queuedMs: 0, underruns: 0,
  flushes: 0, reports: 0, errors: [] };
window.voxpipe = { state, stats };

// --- connection ---------------------------------------------------------------------------

function wsUrl() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/ws` + (token ? `?token=${encodeURIComponent(token)}` : "");
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.dataset.kind = kind;
}

function showError(message) {
  stats.errors.push(message);
  const li = document.createElement("li");
  li.textContent = message;
  $("errors").prepend(li);
  $("errors-box").hidden = false;
}

function connect() {
  state.closing = false;
  state.header = null; // a new session numbers its turns from the start again
  state.flushedTurn = 0;
  state.turns = new Map();
  setStatus("connecting…", "pending");
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (err) {
    setStatus("cannot connect", "error");
    showError(`Cannot open the connection: ${err.message}`);
    return;
  }
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onmessage = (e) => (typeof e.data === "string" ? onEvent(JSON.parse(e.data)) : onAudio(e.data));
  ws.onerror = () => {
    if (!stats.connected) showError(`Cannot reach the voxpipe server at ${location.host} (is \`voxpipe serve\` running, and is the token right?).`);
  };
  ws.onclose = (e) => {
    stats.connected = false;
    state.ready = null;
    stopTalking();
    flushPlayback();
    const why = closeReason(e.code, e.reason);
    setStatus("disconnected", "error");
    if (!state.closing && e.code !== 1000) showError(why);
    $("talk").textContent = "Reconnect";
  };
}

// What a websocket close code means to the person at the page, in words.
function closeReason(code, reason) {
  const words = {
    1001: "The voxpipe server went away (it was stopped or restarted).",
    1006: "The connection to the voxpipe server was lost (the server stopped or the network dropped).",
    1008: "The server refused this page's messages",
    1009: "The server refused a message that was too large.",
    1011: "The voice agent hit an error on the server and ended the conversation; its log says what went wrong.",
    1012: "The voxpipe server is restarting.",
    1013: "The voxpipe server is busy; try again in a moment.",
  }[code] || `The connection to the voxpipe server closed unexpectedly (code ${code}).`;
  const detail = reason && code !== 1011 ? ` (${reason})` : "";
  const text = words.endsWith(".") ? words.slice(0, -1) + detail + "." : words + detail + ".";
  return `${text} Press Reconnect to start again.`;
}

function send(obj) {
  if (window.vpRTC && vpRTC.active()) return vpRTC.send(obj); // WebRTC: the data channel (webrtc.js)
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
}

// --- events from the server ---------------------------------------------------------------

function onEvent(ev) {
  switch (ev.type) {
    case "ready":
      state.ready = ev;
      stats.connected = true;
      setStatus(`connected · session ${ev.session}`, "ok");
      $("talk").textContent = state.talking ? "Stop" : "Talk";
      $("talk").disabled = ev.input_rate == null;
      break;
    case "audio":
      state.header = ev;
      if (ev.item_id) state.itemTurns.set(ev.item_id, ev.turn);
      break;
    case "flush":
      state.flushedTurn = Math.max(state.flushedTurn, ev.turn);
      stats.flushes++;
      flushPlayback();
      markInterrupted();
      break;
    case "speech.started":
      $("speaking").hidden = false;
      state.stoppedAt = null;
      break;
    case "speech.stopped":
      $("speaking").hidden = true;
      state.stoppedAt = performance.now();
      break;
    case "transcript.delta":
      bubble(ev.role, ev.item_id).text.textContent += ev.text;
      if (ev.role === "assistant" && ev.item_id) { noteSegment(ev.item_id, ev.text); showHeard(ev.item_id); }
      break;
    case "transcript.done": {
      const b = bubble(ev.role, ev.item_id);
      b.text.textContent = ev.text;
      b.el.classList.remove("partial");
      if (ev.role === "user") userSaid(ev.text);
      if (ev.role === "assistant" && ev.item_id) showHeard(ev.item_id);
      break;
    }
    case "response.end":
      if (playerReady) playerReady.then((player) => player.port.postMessage({ type: "end" })); // after the audio
      for (const [key, b] of state.bubbles) if (key.startsWith("assistant:")) b.el.classList.remove("partial");
      if (ev.status !== "completed" && state.turns.has(ev.turn)) state.turns.get(ev.turn).status.textContent = ev.status;
      if (state.turns.has(ev.turn)) settleRow(state.turns.get(ev.turn));
      break;
    case "tool.call":
      toolCall(ev);
      break;
    case "tool.result":
      toolResult(ev);
      state.toolSince = ev.name || "tool";
      break;
    case "latency":
      latencyRow(ev.turn).server.textContent = `${Math.round(ev.first_audio_ms)} ms`;
      break;
    case "metrics":
      // the model's own figure: response created -> its first audio (turns that spoke only)
      if (ev.name === "realtime.turn" && ev.values && ev.values.turn && ev.values.first_audio_ms != null) {
        const row = latencyRow(ev.values.turn);
        row.model.textContent = `${Math.round(ev.values.first_audio_ms)} ms`;
        settleRow(row); // the model's figure comes at the response's end: what is still "…" never will be
      }
      break;
    case "error":
      showError(ev.processor ? `${ev.processor}: ${ev.message}` : ev.message);
      if (ev.fatal) state.closing = true;
      break;
    default:
      break; // newer servers may send more; ignore what we do not know
  }
}

function onAudio(buf) {
  const h = state.header;
  if (!h || h.turn < state.flushedTurn) return; // audio of an interrupted turn
  stats.receivedChunks++;
  if (h.item_id) item(h.item_id).receivedMs += (1000 * buf.byteLength) / 2 / h.rate;
  ensurePlayer().then((player) => {
    if (h.turn < state.flushedTurn) return;
    player.port.postMessage({ type: "audio", pcm: buf, item: h.item_id, rate: h.rate }, [buf]);
  });
}

// --- transcript, tools, latency -----------------------------------------------------------

function bubble(role, itemId) {
  const key = `${role}:${itemId || "typed-" + Math.random()}`;
  let b = state.bubbles.get(key);
  if (!b) {
    const el = document.createElement("div");
    el.className = `bubble ${role} partial`;
    el.dataset.item = itemId || "";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Assistant";
    const text = document.createElement("span");
    text.className = "text";
    el.append(who, text);
    $("transcript").append(el);
    b = { el, text };
    state.bubbles.set(key, b);
  }
  $("transcript").scrollTop = $("transcript").scrollHeight;
  return b;
}

function markInterrupted() {
  // every answer still streaming or not yet fully played was cut short
  for (const [id, it] of state.items) {
    if (it.done) continue;
    it.interrupted = true;
    const b = state.bubbles.get(`assistant:${id}`);
    if (b) b.el.classList.add("interrupted");
  }
  for (const [key, b] of state.bubbles) {
    if (key.startsWith("assistant:") && b.el.classList.contains("partial")) {
      b.el.classList.remove("partial");
      b.el.classList.add("interrupted");
    }
  }
}

// --- what was heard of an interrupted answer (as debug.console prints it) ------------------
// Each text delta is placed on its answer's audio timeline by the audio received before it;
// once playback of an interrupted answer is done, the bubble keeps what was played and shows
// the rest struck through, with the count of words not heard.

function noteSegment(id, text) {
  const it = item(id);
  (it.segments = it.segments || []).push([it.receivedMs, text]);
}

function heardSplit(segments, audioMs, playedMs) {
  // processors/debug/console.py heard_text: a segment under way is cut in proportion, at a word
  const heard = [], rest = [];
  segments.forEach(([start, text], i) => {
    const end = i + 1 < segments.length ? segments[i + 1][0] : audioMs;
    if (end <= playedMs || (start >= end && start <= playedMs)) heard.push(text);
    else if (start >= playedMs) rest.push(text);
    else {
      const words = text.split(/\s+/).filter(Boolean);
      const n = Math.round(((playedMs - start) / Math.max(end - start, 1e-9)) * words.length);
      heard.push(words.slice(0, n).join(" "));
      rest.push(words.slice(n).join(" "));
    }
  });
  const join = (parts) => parts.map((t) => t.trim()).filter(Boolean).join(" ");
  return [join(heard), join(rest)];
}

function showHeard(id) {
  const it = state.items.get(id);
  const b = state.bubbles.get(`assistant:${id}`);
  if (!it || !b || !it.interrupted || !it.done) return;
  if (!it.fullText) it.fullText = b.text.textContent;
  const segments = it.segments && it.segments.length ? it.segments : [[0, it.fullText]];
  const [heard, rest] = heardSplit(segments, it.receivedMs, it.playedMs);
  const words = rest ? rest.split(/\s+/).length : 0;
  b.text.textContent = heard;
  b.text.dataset.heard = ` after ${(it.playedMs / 1000).toFixed(1)} s; ${words} word${words === 1 ? "" : "s"} not heard`;
  let cut = b.el.querySelector(".not-heard");
  if (!cut) {
    cut = document.createElement("span");
    cut.className = "not-heard";
    cut.title = "not heard: playback stopped before this";
    b.el.append(cut);
  }
  cut.textContent = rest ? ` ${rest}` : "";
}

function item(id) {
  let it = state.items.get(id);
  if (!it) {
    it = { receivedMs: 0, playedMs: 0, done: false, interrupted: false };
    state.items.set(id, it);
  }
  return it;
}

function toolCall(ev) {
  const card = document.createElement("div");
  card.className = "tool running";
  card.dataset.call = ev.call_id;
  const head = document.createElement("div");
  head.className = "tool-head";
  head.textContent = `${ev.name}(${JSON.stringify(ev.arguments)})`;
  const result = document.createElement("pre");
  result.className = "tool-result";
  result.textContent = "running…";
  card.append(head, result);
  $("tools").append(card);
  state.tools.set(ev.call_id, { card, result });
}

function toolResult(ev) {
  let t = state.tools.get(ev.call_id);
  if (!t) {
    toolCall({ call_id: ev.call_id, name: ev.name, arguments: {} });
    t = state.tools.get(ev.call_id);
  }
  let text = ev.output;
  try {
    text = JSON.stringify(JSON.parse(ev.output), null, 1);
  } catch (_) {
    /* not JSON: show as is */
  }
  t.result.textContent = text;
  t.card.classList.remove("running");
  t.card.classList.add(ev.is_error ? "failed" : "ok");
}

function latencyRow(turn) {
  let row = state.turns.get(turn);
  if (!row) {
    const tr = document.createElement("tr");
    state.answers++;
    const cells = ["", "…", "…", "…", ""].map((text) => {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
      return td;
    });
    $("latency").append(tr);
    row = { tr, label: cells[0], server: cells[1], heard: cells[2], model: cells[3], status: cells[4] };
    if (state.said && !state.said.used) {
      labelRow(row, state.said.text);
      state.said.used = true;
    } else if (state.toolSince) {
      row.label.textContent = `(${state.toolSince} result)`;
    } else {
      row.label.textContent = "…";
      state.unlabelled = row; // the words are still being recognised
    }
    state.toolSince = null;
    state.turns.set(turn, row);
  }
  return row;
}

function labelRow(row, text) {
  row.label.textContent = text.length > 40 ? `“${text.slice(0, 38)}…”` : `“${text}”`;
  row.label.title = text;
}

function userSaid(text) {
  if (state.unlabelled) {
    labelRow(state.unlabelled, text);
    state.unlabelled = null;
    state.said = { text, used: true };
  } else {
    state.said = { text, used: false };
  }
}

// A finished turn keeps no "…": what was not measured says so.
function settleRow(row) {
  const why = "not measured: no end of speech for this turn (a typed message, or a tool's result)";
  for (const cell of [row.server, row.model]) { // "heard" is set when playback starts, after this
    if (cell.textContent === "…") {
      cell.textContent = "–";
      cell.title = why;
    }
  }
  if (row.label.textContent === "…") row.label.textContent = "(no words)";
}

// --- audio --------------------------------------------------------------------------------

async function ensureContext() {
  if (!state.ctx) {
    state.ctx = new AudioContext({ latencyHint: "interactive" });
    await state.ctx.audioWorklet.addModule("worklet.js");
  }
  if (state.ctx.state === "suspended") await state.ctx.resume();
  return state.ctx;
}

function ensurePlayer() {
  if (!playerReady) {
    playerReady = ensureContext().then((ctx) => {
      const node = new AudioWorkletNode(ctx, "vp-player", { numberOfInputs: 0, outputChannelCount: [1],
        processorOptions: { prebufferMs: 80 } });
      node.port.onmessage = (e) => onPlayer(e.data);
      node.connect(ctx.destination);
      state.player = node;
      return node;
    });
  }
  return playerReady;
}

function onPlayer(m) {
  if (m.type === "started") {
    const turn = state.itemTurns.get(m.item) || 0;
    if (state.stoppedAt !== null && turn > 0) {
      const cell = latencyRow(turn).heard;
      cell.textContent = `${Math.round(performance.now() - state.stoppedAt)} ms`;
      cell.title = "";
      state.stoppedAt = null;
    }
    return;
  }
  if (m.type !== "progress") return;
  for (const it of m.items) {
    send({ type: "played", item_id: it.item, ms: it.ms, done: it.done, underruns: m.underruns });
    stats.reports++;
    const known = item(it.item);
    known.playedMs = it.ms;
    known.done = known.done || it.done;
    if (it.done && known.interrupted) {
      // the server truncates the answer to exactly this: say how much was heard
      const b = state.bubbles.get(`assistant:${it.item}`);
      if (b) b.text.dataset.heard = ` after ${(it.ms / 1000).toFixed(1)} s of ${(known.receivedMs / 1000).toFixed(1)} s`;
      showHeard(it.item);
    }
  }
  stats.queuedMs = Math.round(m.queuedMs);
  stats.underruns = m.underruns;
  stats.playedMs = Math.round((1000 * m.playedFrames) / state.ctx.sampleRate);
  $("played").textContent = `${(stats.playedMs / 1000).toFixed(1)} s played · ${stats.queuedMs} ms queued · ${stats.underruns} underruns`;
}

function flushPlayback() {
  if (playerReady) playerReady.then((player) => player.port.postMessage({ type: "flush" }));
}

async function startTalking() {
  if (!state.ready || state.ready.input_rate == null) return;
  const ctx = await ensureContext();
  await ensurePlayer();
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    const why = err.name === "NotAllowedError" ? "microphone permission was denied; allow it in the address bar"
      : err.name === "NotFoundError" ? "no microphone was found" : `${err.name}: ${err.message}`;
    showError(`Cannot use the microphone: ${why}.`);
    return;
  }
  const source = ctx.createMediaStreamSource(state.stream);
  const capture = new AudioWorkletNode(ctx, "vp-capture", {
    numberOfOutputs: 0,
    processorOptions: { targetRate: state.ready.input_rate, frameMs: state.ready.frame_ms },
  });
  capture.port.onmessage = (e) => {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(e.data.pcm);
      stats.sentFrames++;
    }
    $("level").style.width = `${Math.min(100, Math.round(100 * Math.sqrt(e.data.peak)))}%`;
  };
  source.connect(capture);
  state.capture = { source, node: capture };
  state.talking = true;
  $("talk").textContent = "Stop";
  $("talk").classList.add("live");
}

function stopTalking() {
  if (state.capture) {
    state.capture.node.port.postMessage("stop");
    state.capture.source.disconnect();
    state.capture = null;
  }
  if (state.stream) {
    for (const track of state.stream.getTracks()) track.stop();
    state.stream = null;
  }
  state.talking = false;
  $("talk").textContent = "Talk";
  $("talk").classList.remove("live");
  $("level").style.width = "0%";
}

// --- controls -----------------------------------------------------------------------------

$("talk").addEventListener("click", async () => {
  if (window.vpRTC && vpRTC.active()) return vpRTC.toggle(); // WebRTC: connect, then mute / unmute
  if (!state.ws || state.ws.readyState === WebSocket.CLOSED) {
    connect();
    return;
  }
  if (state.talking) stopTalking();
  else await startTalking();
});

$("say").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("typed").value.trim();
  if (!text) return;
  if (!state.ready) {
    showError("Not connected to the server: press Reconnect, then send again.");
    return;
  }
  await ensurePlayer(); // a click is a gesture: audio may start
  send({ type: "text", text });
  state.stoppedAt = performance.now(); // "heard" counts from the send for a typed turn
  userSaid(text);
  const b = bubble("user", null);
  b.text.textContent = text;
  b.el.classList.remove("partial");
  $("typed").value = "";
});

window.addEventListener("beforeunload", () => {
  state.closing = true;
  if (state.ws) state.ws.close(1000, "page closed");
  if (window.vpRTC) vpRTC.close(); // WebRTC: "bye" on the data channel, then close the peer connection
});

if (!window.AudioWorkletNode || !navigator.mediaDevices) {
  showError("This browser cannot capture audio here: AudioWorklet and getUserMedia need a recent browser and a secure origin (https, or http://localhost).");
}
if (window.vpRTC) vpRTC.choose(connect); // ?transport=webrtc, or a pipeline that takes only WebRTC
else connect();

// voxpipe browser page over WebRTC: the same page as app.js, with a peer connection instead of
// the websocket. Chosen by ?transport=webrtc, or by itself when the pipeline takes no
// websocket (GET webrtc/ice says so); ?transport=websocket forces the websocket.
//
// Signalling is one HTTP POST (WHIP shape, docs/webrtc.md): our SDP offer (microphone track
// with the browser's echo canceller, noise suppressor and gain control on; an "events" data
// channel) goes to webrtc/offer, the answer comes back. Audio is Opus both ways and the
// browser plays the server's track itself (its echo canceller sees that audio). The data
// channel carries the websocket page's JSON events, which app.js's onEvent() shows as before.
//
// What was played: every assistant item is announced with the RTP timestamp of its first
// sample ({"type":"audio", item_id, rtp}); the receiver's getSynchronizationSources() gives
// the RTP timestamp of the audio it last played out. The difference is how much of the item
// the person heard; we report it with {"type":"played"} as the websocket page does, so a
// barge-in truncates the answer to exactly that.
"use strict";

window.vpRTC = (() => {
  const FRAME = 960; // samples per 20 ms Opus frame at the RTP clock (48 kHz)
  const SETTLE_MS = 300; // after a flush: audio already in the browser's jitter buffer still plays
  let pc = null;
  let channel = null;
  let mic = null;
  let audioEl = null;
  let receiver = null;
  let timer = null;
  let active = false;
  let lastStats = 0;
  let playedTotal = 0; // samples of assistant audio played (all items)
  const items = new Map(); // item_id -> {rtp, samples|null, produced|null, started, flushedAt, done, ms}

  const query = () => {
    const token = new URLSearchParams(location.search).get("token");
    return token ? `?token=${encodeURIComponent(token)}` : "";
  };

  // Decide the transport, then connect: the websocket through app.js's connect(), or wait for Talk.
  async function choose(connectWebsocket) {
    const wanted = new URLSearchParams(location.search).get("transport");
    if (wanted === "websocket") return connectWebsocket();
    if (wanted !== "webrtc") {
      let info = null;
      try {
        const r = await fetch(`webrtc/ice${query()}`);
        info = r.ok ? await r.json() : null;
      } catch (_) { /* no WebRTC on this server */ }
      if (!info || info.websocket !== false) return connectWebsocket();
    }
    active = true;
    window.voxpipe.transport = "webrtc";
    setStatus("WebRTC · press Talk to connect", "pending");
    $("talk").textContent = "Talk";
  }

  async function start() {
    state.closing = false;
    state.flushedTurn = 0;
    state.turns = new Map();
    items.clear();
    setStatus("connecting (WebRTC)…", "pending");
    await ensureContext(); // a click: audio may start; app.js's figures use its sample rate
    try {
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      const why = err.name === "NotAllowedError" ? "microphone permission was denied; allow it in the address bar"
        : err.name === "NotFoundError" ? "no microphone was found" : `${err.name}: ${err.message}`;
      showError(`Cannot use the microphone: ${why}.`);
      setStatus("no microphone", "error");
      return;
    }
    let iceServers = [];
    try {
      const r = await fetch(`webrtc/ice${query()}`);
      if (r.ok) iceServers = (await r.json()).iceServers || [];
    } catch (_) { /* keep none: host candidates work on a LAN */ }
    pc = new RTCPeerConnection({ iceServers });
    const track = mic.getAudioTracks()[0];
    const transceiver = pc.addTransceiver(track, { direction: "sendrecv", streams: [mic] });
    if (RTCRtpReceiver.getCapabilities && transceiver.setCodecPreferences) {
      const opus = RTCRtpReceiver.getCapabilities("audio").codecs.filter((c) => c.mimeType.toLowerCase() === "audio/opus");
      if (opus.length) transceiver.setCodecPreferences(opus);
    }
    receiver = transceiver.receiver;
    channel = pc.createDataChannel("events");
    channel.onmessage = (e) => onMessage(e.data);
    channel.onclose = () => ended("The data channel to the voxpipe server closed.");
    pc.ontrack = (e) => {
      audioEl = audioEl || new Audio();
      audioEl.autoplay = true;
      audioEl.srcObject = e.streams[0] || new MediaStream([e.track]);
      audioEl.play().catch((err) => showError(`Cannot play the answer: ${err.message}.`));
    };
    pc.onconnectionstatechange = () => {
      if (pc && pc.connectionState === "failed") {
        ended("The WebRTC connection failed (no network path to the server; behind NAT the server needs a TURN server, see docs/webrtc.md).");
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, 3000);
    let answer;
    try {
      const r = await fetch(`webrtc/offer${query()}`, { method: "POST", headers: { "Content-Type": "application/sdp" },
        body: pc.localDescription.sdp });
      answer = await r.text();
      if (r.status !== 201) throw new Error(`${r.status}: ${answer.trim()}`);
    } catch (err) {
      ended(`The server refused the WebRTC offer (${err.message}).`);
      return;
    }
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    state.talking = true;
    $("talk").classList.add("live");
    timer = setInterval(poll, 20);
  }

  function iceGathered(conn, ms) {
    // vanilla ICE: the offer carries every host candidate (one POST is the whole signalling)
    if (conn.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      conn.addEventListener("icegatheringstatechange", () => {
        if (conn.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
      });
    });
  }

  function onMessage(data) {
    let ev;
    try { ev = JSON.parse(data); } catch (_) { return; }
    switch (ev.type) {
      case "audio":
        if (ev.item_id && ev.rtp != null) {
          items.set(ev.item_id, { rtp: ev.rtp, samples: null, produced: null, started: false, flushedAt: null,
            done: false, ms: 0 });
        }
        break;
      case "audio.done": {
        const it = items.get(ev.item_id);
        if (it) {
          it.samples = ev.samples;
          it.produced = ev.produced_ms != null ? ev.produced_ms : ev.ms;
          item(ev.item_id).receivedMs = it.produced; // app.js's record: what the answer holds
        }
        break;
      }
      case "flush":
        for (const it of items.values()) if (!it.done && it.flushedAt === null) it.flushedAt = performance.now();
        break;
      case "session.end":
        if (ev.reason !== "page_closed") ended(`The session ended: ${ev.message} (${ev.reason}).`);
        break;
      default:
        break;
    }
    onEvent(ev); // the page's own handling: transcripts, tools, latency, interruptions, errors
    if (ev.type === "ready") setStatus(`connected · session ${ev.session} · WebRTC`, "ok");
  }

  // Every 20 ms: how far the browser has played each item; report changes every 100 ms.
  let sinceReport = 0;
  function poll() {
    if (!receiver) return;
    const src = receiver.getSynchronizationSources()[0];
    sinceReport += 20;
    if (src && src.rtpTimestamp != null) {
      const now = performance.now();
      const out = [];
      for (const [id, it] of items) {
        if (it.done) continue;
        const d = (src.rtpTimestamp - it.rtp) | 0; // signed 32-bit: the RTP clock wraps
        const heard = d < 0 ? 0 : d + FRAME; // the last frame played out is heard whole
        if (d >= 0 && !it.started) {
          it.started = true;
          onPlayer({ type: "started", item: id });
        }
        const cap = it.samples != null ? it.samples : Infinity;
        const samples = Math.min(heard, cap);
        const settled = it.flushedAt !== null && it.samples != null && now - it.flushedAt >= SETTLE_MS;
        const done = (it.samples != null && heard >= it.samples) || settled;
        const ms = Math.floor(samples / 48);
        if (ms !== it.ms || done || sinceReport >= 100) {
          if (ms > it.ms) playedTotal += (ms - it.ms) * 48;
          it.ms = ms;
          if (done) it.done = true;
          if (ms > 0 || done) out.push({ item: id, ms, done });
        }
      }
      if (out.length && (sinceReport >= 100 || out.some((x) => x.done))) {
        onPlayer({ type: "progress", items: out, queuedMs: 0, underruns: 0,
          playedFrames: (playedTotal * state.ctx.sampleRate) / 48000 });
        sinceReport = 0;
      }
    }
    if (performance.now() - lastStats > 1000 && pc) {
      lastStats = performance.now();
      pc.getStats().then((report) => report.forEach((s) => {
        if (s.type === "outbound-rtp" && s.kind === "audio") stats.sentFrames = s.packetsSent;
        if (s.type === "inbound-rtp" && s.kind === "audio") {
          stats.receivedChunks = s.packetsReceived;
          stats.concealedSamples = s.concealedSamples;
        }
      }));
    }
  }

  function send(obj) {
    if (channel && channel.readyState === "open") channel.send(JSON.stringify(obj));
  }

  // Talk: connect on the first press (a gesture: microphone and playback may start), then mute / unmute.
  async function toggle() {
    if (!pc) return start();
    const track = mic && mic.getAudioTracks()[0];
    if (!track) return;
    track.enabled = !track.enabled; // a disabled track still sends (silent) packets: the session stays up
    state.talking = track.enabled;
    $("talk").textContent = state.talking ? "Stop" : "Talk";
    $("talk").classList.toggle("live", state.talking);
  }

  function ended(why) {
    if (!pc) return;
    const quiet = state.closing;
    close();
    stats.connected = false;
    state.ready = null;
    state.talking = false;
    setStatus("disconnected", "error");
    if (!quiet) showError(`${why} Press Reconnect to start again.`);
    $("talk").textContent = "Reconnect";
    $("talk").classList.remove("live");
  }

  function close() {
    if (timer) clearInterval(timer);
    timer = null;
    if (channel && channel.readyState === "open") channel.send(JSON.stringify({ type: "bye" }));
    if (pc) pc.close();
    pc = null;
    channel = null;
    if (mic) for (const t of mic.getTracks()) t.stop();
    mic = null;
  }

  return { choose, toggle, send, close, active: () => active, items };
})();

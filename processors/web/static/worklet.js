// voxpipe audio worklets: microphone capture and assistant playback, off the main thread.
//
// "vp-capture": the microphone at the context's rate in, 20 ms frames of 16-bit PCM at the
//   server's rate out (posted as transferable Int16Array buffers). Downsampling is a
//   windowed-sinc low-pass (no aliasing into the speech band) followed by linear
//   interpolation at the fractional positions of the output samples.
// "vp-player": a jitter buffer of assistant audio chunks, each tagged with its item. It
//   starts playing once `prebufferMs` are queued (or the response has ended), upsamples by
//   linear interpolation, re-buffers on an underrun, and drops everything at once on
//   "flush". It reports how much of each item was played: the server truncates an
//   interrupted answer to exactly that.

function lowpass(cutoff, taps) {
  // cutoff in cycles per input sample (0 .. 0.5); Blackman-windowed sinc, unity DC gain
  const h = new Float32Array(taps);
  const m = (taps - 1) / 2;
  let sum = 0;
  for (let k = 0; k < taps; k++) {
    const x = k - m;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * k) / (taps - 1)) + 0.08 * Math.cos((4 * Math.PI * k) / (taps - 1));
    h[k] = sinc * w;
    sum += h[k];
  }
  for (let k = 0; k < taps; k++) h[k] /= sum;
  return h;
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, frameMs } = options.processorOptions;
    this.step = sampleRate / targetRate; // input samples per output sample
    this.h = this.step > 1 ? lowpass((0.5 / this.step) * 0.8, 63) : new Float32Array([1]);
    this.hist = new Float32Array(this.h.length - 1 + 128);
    this.y = new Float32Array(128);
    this.prev = 0; // last filtered sample of the previous block
    this.t = 0; // position of the next output sample, in input samples from the block start
    this.frameSize = Math.round((targetRate * frameMs) / 1000);
    this.frame = new Int16Array(this.frameSize);
    this.fill = 0;
    this.peak = 0;
    this.running = true;
    this.port.onmessage = (e) => {
      if (e.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    const input = inputs[0];
    if (!this.running) return false;
    if (!input || input.length === 0) return true;
    const n = input[0].length;
    const taps = this.h.length;
    const hist = this.hist;
    const base = taps - 1;
    // mono: the first channel, or the mean of two
    if (input.length > 1) {
      const a = input[0], b = input[1];
      for (let i = 0; i < n; i++) hist[base + i] = 0.5 * (a[i] + b[i]);
    } else {
      hist.set(input[0], base);
    }
    const y = this.y, h = this.h;
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let k = 0; k < taps; k++) acc += h[k] * hist[base + j - k];
      y[j] = acc;
    }
    hist.copyWithin(0, n, n + base);
    let t = this.t;
    while (t < n - 1) {
      const i = Math.floor(t);
      const f = t - i;
      const a = i < 0 ? this.prev : y[i];
      const s = a + (y[i + 1] - a) * f;
      const c = s > 1 ? 1 : s < -1 ? -1 : s;
      const abs = c < 0 ? -c : c;
      if (abs > this.peak) this.peak = abs;
      this.frame[this.fill++] = Math.round(c * 32767);
      if (this.fill === this.frameSize) {
        this.port.postMessage({ pcm: this.frame.buffer, peak: this.peak }, [this.frame.buffer]);
        this.frame = new Int16Array(this.frameSize);
        this.fill = 0;
        this.peak = 0;
      }
      t += this.step;
    }
    this.t = t - n;
    this.prev = y[n - 1];
    return true;
  }
}

class PlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.prebufferMs = (options.processorOptions && options.processorOptions.prebufferMs) || 80;
    this.chunks = []; // {x: Float32Array, item, rate, counted: samples already added to the item's played}
    this.t = 0; // fractional read position in chunks[0]
    this.queuedMs = 0;
    this.playing = false;
    this.ended = false; // the response ended: play out what is queued without waiting
    this.items = new Map(); // id -> {rate, queued, played, complete, reportedMs, done, started}
    this.last = null; // id of the item queued last
    this.sinceReport = 0;
    this.underruns = 0;
    this.playedFrames = 0; // output frames that carried assistant audio
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(m) {
    if (m.type === "audio") {
      const pcm = new Int16Array(m.pcm);
      const x = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) x[i] = pcm[i] / 32768;
      const id = m.item || "";
      if (this.last !== null && this.last !== id) this.complete(this.last);
      let it = this.items.get(id);
      if (!it) {
        it = { rate: m.rate, queued: 0, played: 0, complete: false, reportedMs: -1, done: false, started: false };
        this.items.set(id, it);
      }
      it.queued += x.length;
      this.last = id;
      this.chunks.push({ x, item: id, rate: m.rate, counted: 0 });
      this.queuedMs += (1000 * x.length) / m.rate;
      this.ended = false;
    } else if (m.type === "end") {
      // the response is over: its items get no more audio, and the tail plays without prebuffering
      for (const id of this.items.keys()) this.complete(id);
      this.last = null;
      this.ended = true;
    } else if (m.type === "flush") {
      this.chunks = [];
      this.t = 0;
      this.queuedMs = 0;
      this.playing = false;
      for (const [id, it] of this.items) {
        it.complete = true;
        it.queued = it.played; // what was not played never will be
      }
      this.last = null;
      this.report(true);
    }
  }

  complete(id) {
    const it = this.items.get(id);
    if (it) it.complete = true;
  }

  report(force) {
    // every 100 ms: the items whose played time changed, and the buffer figures
    const out = [];
    for (const [id, it] of this.items) {
      const ms = Math.floor((1000 * it.played) / it.rate);
      const done = it.complete && it.played >= it.queued;
      if (done || ms !== it.reportedMs || force) {
        if (id !== "") out.push({ item: id, ms, done });
        it.reportedMs = ms;
      }
      if (done) this.items.delete(id);
    }
    this.port.postMessage({ type: "progress", items: out, queuedMs: this.queuedMs, underruns: this.underruns,
      playedFrames: this.playedFrames });
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    const n = out.length;
    if (!this.playing && this.chunks.length && (this.queuedMs >= this.prebufferMs || this.ended)) this.playing = true;
    let k = 0;
    if (this.playing) {
      while (k < n && this.chunks.length) {
        const c = this.chunks[0];
        const it = this.items.get(c.item);
        if (it && !it.started) {
          it.started = true;
          this.port.postMessage({ type: "started", item: c.item });
        }
        const step = c.rate / sampleRate;
        const len = c.x.length;
        while (k < n && this.t < len) {
          const i = Math.floor(this.t);
          const f = this.t - i;
          const a = c.x[i];
          const b = i + 1 < len ? c.x[i + 1] : this.chunks.length > 1 ? this.chunks[1].x[0] : a;
          out[k++] = a + (b - a) * f;
          this.t += step;
        }
        const upTo = Math.min(Math.floor(this.t), len); // samples of this chunk played so far
        if (it) it.played += upTo - c.counted;
        c.counted = upTo;
        if (this.t >= len) {
          this.t -= len;
          this.chunks.shift();
          this.queuedMs -= (1000 * len) / c.rate;
        }
      }
      this.playedFrames += k;
      if (!this.chunks.length) {
        this.playing = false;
        this.queuedMs = 0;
        if (!this.ended) this.underruns++;
      }
    }
    for (; k < n; k++) out[k] = 0;
    for (let ch = 1; ch < outputs[0].length; ch++) outputs[0][ch].set(out);
    this.sinceReport += n;
    if (this.sinceReport >= sampleRate / 10) {
      this.sinceReport = 0;
      this.report(false);
    }
    return true;
  }
}

registerProcessor("vp-capture", CaptureProcessor);
registerProcessor("vp-player", PlayerProcessor);

// Runs on the audio thread: hands the microphone to the page in 20 ms blocks.
class FdCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = Math.round(sampleRate / 50);
    this.buf = new Float32Array(this.block);
    this.fill = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    let pos = 0;
    while (pos < input.length) {
      const take = Math.min(input.length - pos, this.block - this.fill);
      this.buf.set(input.subarray(pos, pos + take), this.fill);
      this.fill += take;
      pos += take;
      if (this.fill === this.block) {
        this.port.postMessage(this.buf, [this.buf.buffer]);
        this.buf = new Float32Array(this.block);
        this.fill = 0;
      }
    }
    return true;
  }
}

registerProcessor("fd-capture", FdCapture);

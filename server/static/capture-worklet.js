// AudioWorklet processor: hands the microphone's samples (first channel, Float32) to the page.
// The audio thread calls process() with 128 frames at a time; posting every call would be
// hundreds of messages a second, so frames are gathered into blocks of `blockFrames`.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.block = new Float32Array(options.processorOptions.blockFrames);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      let offset = 0;
      while (offset < channel.length) {
        const n = Math.min(channel.length - offset, this.block.length - this.filled);
        this.block.set(channel.subarray(offset, offset + n), this.filled);
        this.filled += n;
        offset += n;
        if (this.filled === this.block.length) {
          this.port.postMessage(this.block);
          this.block = new Float32Array(this.block.length);
          this.filled = 0;
        }
      }
    }
    return true; // keep running until the node is disconnected
  }
}

registerProcessor("capture", CaptureProcessor);

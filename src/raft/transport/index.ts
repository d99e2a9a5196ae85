// The Raft part's network: authenticated TCP transport between peers.

export { Transport, parseAddress, type TransportHandler, type TransportOptions } from './transport.js';
export { encodeFrame, type Frame } from './frame.js';

// The Raft part's network: authenticated TCP transport between peers.

export { Transport, parseAddress, type RpcHandler, type TransportHandler, type TransportOptions } from './transport.js';
export { encodeFrame, type Frame, type RpcReply } from './frame.js';

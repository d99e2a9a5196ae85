import { describe, expect, it } from 'vitest';
import { parseHostPort, parsePeers, resolveStartConfig } from '../../src/node/index.js';

describe('sealkv start options', () => {
  it('--dev is a single loopback node with data under ./sealkv-dev', () => {
    const config = resolveStartConfig({ dev: true }, '/tmp/x');
    expect(config).toMatchObject({
      dev: true,
      raftId: 'dev',
      dataDir: '/tmp/x/sealkv-dev/data',
      kekFile: '/tmp/x/sealkv-dev/kek.bin',
      listen: { host: '127.0.0.1', port: 6380 },
      raftListen: { host: '127.0.0.1', port: 7380 },
      adminListen: { host: '127.0.0.1', port: 8380 },
      peers: [{ id: 'dev', host: '127.0.0.1', port: 7380 }],
    });
  });

  it('parses peers, ports and refuses what does not fit', () => {
    expect(parsePeers('n1=127.0.0.1:7001, n2=:7002')).toEqual([
      { id: 'n1', host: '127.0.0.1', port: 7001 },
      { id: 'n2', host: '127.0.0.1', port: 7002 },
    ]);
    expect(parseHostPort('6400', 'x')).toEqual({ host: '127.0.0.1', port: 6400 });
    expect(parseHostPort('[::1]:6400', 'x')).toEqual({ host: '::1', port: 6400 });
    expect(() => parseHostPort('host:99999', 'x')).toThrow(RangeError);
    expect(() => parsePeers('n1=:1,n1=:2')).toThrow(/twice/);
    expect(() => resolveStartConfig({})).toThrow(/raft-id/);
    expect(() => resolveStartConfig({ raftId: 'n3', peers: 'n1=:1,n2=:2' })).toThrow(/must include/);
    expect(() => resolveStartConfig({ raftId: 'n1', compression: 'maybe' })).toThrow(/compression/);
    expect(() => resolveStartConfig({ raftId: 'n4', join: '127.0.0.1:7001' })).toThrow(/--join needs --peers/);
    expect(resolveStartConfig({ raftId: 'n4', join: '127.0.0.1:7001', peers: 'n1=:7001' }).join).toBe('127.0.0.1:7001');
    expect(resolveStartConfig({ raftId: 'n1', dataDir: 'd' }, '/w').dataDir).toBe('/w/d');
  });
});

// Every command of SPEC §12 through a real client (ioredis) against the RESP
// server over a MemoryEngine with a controllable clock.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { MemoryEngine } from '../../src/server/index.js';
import { startServer, type Harness } from './helpers.js';

let now = 1_700_000_000_000;
let h: Harness;
let c: Redis;

beforeAll(async () => {
  h = await startServer({ engine: new MemoryEngine({ now: () => now }) });
  c = await h.client();
});
afterAll(async () => h.stop());
beforeEach(async () => {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, page] = await c.scan(cursor, 'COUNT', 1000);
    keys.push(...page);
    cursor = next;
  } while (cursor !== '0');
  if (keys.length > 0) await c.del(...keys);
});

describe('RESP commands over ioredis', () => {
  it('listens on loopback by default', () => {
    expect(h.server.address().host).toBe('127.0.0.1');
  });

  it('PING, ECHO, SELECT 0', async () => {
    expect(await c.ping()).toBe('PONG');
    expect(await c.ping('hi')).toBe('hi');
    expect(await c.echo('x y')).toBe('x y');
    expect(await c.select(0)).toBe('OK');
    await expect(c.select(1)).rejects.toThrow(/DB index is out of range/);
  });

  it('GET and SET with binary-safe values', async () => {
    const value = Buffer.from([0, 1, 0x0d, 0x0a, 0xff, 0x24]);
    expect(await c.set('bin', value)).toBe('OK');
    expect(await c.getBuffer('bin')).toEqual(value);
    expect(await c.get('missing')).toBeNull();
  });

  it('SET NX / XX / GET / KEEPTTL / EX / PX / EXAT / PXAT', async () => {
    expect(await c.set('k', 'a', 'NX')).toBe('OK');
    expect(await c.set('k', 'b', 'NX')).toBeNull();
    expect(await c.set('nx-missing', 'b', 'XX')).toBeNull();
    expect(await c.set('k', 'c', 'XX')).toBe('OK');
    expect(await c.set('k', 'd', 'GET')).toBe('c');
    expect(await c.set('fresh', 'v', 'GET')).toBeNull();
    expect(await c.set('k', 'e', 'EX', 10)).toBe('OK');
    expect(await c.pttl('k')).toBe(10_000);
    expect(await c.set('k', 'f', 'KEEPTTL')).toBe('OK');
    expect(await c.ttl('k')).toBe(10);
    expect(await c.set('k', 'g')).toBe('OK');
    expect(await c.ttl('k')).toBe(-1);
    expect(await c.set('k', 'h', 'PX', 1500)).toBe('OK');
    expect(await c.pttl('k')).toBe(1500);
    expect(await c.ttl('k')).toBe(2);
    expect(await c.set('k', 'i', 'PXAT', now + 777)).toBe('OK');
    expect(await c.pttl('k')).toBe(777);
    expect(await c.set('k', 'j', 'EXAT', Math.floor(now / 1000) + 5)).toBe('OK');
    expect(await c.ttl('k')).toBeGreaterThan(3);
    await expect(c.set('k', 'x', 'EX', 0)).rejects.toThrow(/invalid expire time in 'set' command/);
    await expect(c.set('k', 'x', 'EX', 'ten')).rejects.toThrow(/not an integer/);
    await expect(c.call('set', 'k', 'x', 'NX', 'XX')).rejects.toThrow(/syntax error/);
    await expect(c.call('set', 'k', 'x', 'EX', 1, 'PX', 1)).rejects.toThrow(/syntax error/);
    await expect(c.call('set', 'k', 'x', 'BOGUS')).rejects.toThrow(/syntax error/);
  });

  it('expiry follows the engine clock', async () => {
    await c.set('t', 'v', 'PX', 100);
    now += 99;
    expect(await c.get('t')).toBe('v');
    now += 1;
    expect(await c.get('t')).toBeNull();
    expect(await c.exists('t')).toBe(0);
    expect(await c.ttl('t')).toBe(-2);
  });

  it('SETEX, PSETEX, GETSET, UNLINK', async () => {
    expect(await c.setex('sx', 10, 'v')).toBe('OK');
    expect(await c.pttl('sx')).toBe(10_000);
    expect(await c.psetex('px', 1500, 'v')).toBe('OK');
    expect(await c.pttl('px')).toBe(1500);
    await expect(c.setex('sx', 0, 'v')).rejects.toThrow(/invalid expire time in 'setex' command/);
    expect(await c.getset('sx', 'w')).toBe('v');
    expect(await c.ttl('sx')).toBe(-1);
    expect(await c.getset('new', 'x')).toBeNull();
    expect(await c.unlink('sx', 'px', 'none')).toBe(2);
  });

  it('GETDEL, DEL, EXISTS', async () => {
    await c.mset('a', '1', 'b', '2', 'c', '3');
    expect(await c.getdel('a')).toBe('1');
    expect(await c.getdel('a')).toBeNull();
    expect(await c.exists('b', 'b', 'c', 'zz')).toBe(3);
    expect(await c.del('b', 'b', 'zz')).toBe(1);
    expect(await c.del('c')).toBe(1);
    expect(await c.exists('b', 'c')).toBe(0);
  });

  it('MGET and MSET', async () => {
    expect(await c.mset('x', '1', 'y', '2')).toBe('OK');
    expect(await c.mget('x', 'nope', 'y')).toEqual(['1', null, '2']);
    await expect(c.call('mset', 'x', '1', 'y')).rejects.toThrow(/wrong number of arguments for 'mset'/);
  });

  it('INCR, INCRBY, DECR, DECRBY with int64 bounds', async () => {
    expect(await c.incr('n')).toBe(1);
    expect(await c.incrby('n', 41)).toBe(42);
    expect(await c.decr('n')).toBe(41);
    expect(await c.decrby('n', 50)).toBe(-9);
    await c.set('big', '9223372036854775806');
    expect(await c.call('incr', 'big')).toBe(9223372036854775807);
    await expect(c.incr('big')).rejects.toThrow(/increment or decrement would overflow/);
    expect(await c.get('big')).toBe('9223372036854775807');
    await c.set('s', 'abc');
    await expect(c.incr('s')).rejects.toThrow(/value is not an integer or out of range/);
    await c.set('lead0', '01');
    await expect(c.incr('lead0')).rejects.toThrow(/not an integer/);
    await expect(c.incrby('n', '1.5')).rejects.toThrow(/not an integer/);
    await expect(c.call('decrby', 'n', '-9223372036854775808')).rejects.toThrow(/decrement would overflow/);
    await c.set('ttl-kept', '5', 'EX', 100);
    await c.incr('ttl-kept');
    expect(await c.ttl('ttl-kept')).toBe(100);
  });

  it('TYPE', async () => {
    await c.set('s', 'v');
    expect(await c.type('s')).toBe('string');
    expect(await c.type('missing')).toBe('none');
  });

  it('APPEND and STRLEN', async () => {
    expect(await c.append('s', 'ab')).toBe(2);
    expect(await c.append('s', 'cde')).toBe(5);
    expect(await c.get('s')).toBe('abcde');
    expect(await c.strlen('s')).toBe(5);
    expect(await c.strlen('none')).toBe(0);
  });

  it('EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL, PERSIST', async () => {
    await c.set('e', 'v');
    expect(await c.expire('e', 10)).toBe(1);
    expect(await c.ttl('e')).toBe(10);
    expect(await c.pexpire('e', 2500)).toBe(1);
    expect(await c.pttl('e')).toBe(2500);
    expect(await c.pexpireat('e', now + 1234)).toBe(1);
    expect(await c.pttl('e')).toBe(1234);
    expect(await c.expireat('e', Math.floor(now / 1000) + 100)).toBe(1);
    expect(await c.ttl('e')).toBeGreaterThanOrEqual(99);
    expect(await c.persist('e')).toBe(1);
    expect(await c.persist('e')).toBe(0);
    expect(await c.ttl('e')).toBe(-1);
    expect(await c.expire('missing', 10)).toBe(0);
    expect(await c.expire('e', 0)).toBe(1);
    expect(await c.exists('e')).toBe(0);
    await expect(c.expire('e', 'soon')).rejects.toThrow(/not an integer/);
  });

  it('SCAN with cursor, MATCH and COUNT visits every key once', async () => {
    const keys = Array.from({ length: 57 }, (_, i) => `user:${String(i).padStart(3, '0')}`);
    await c.mset(...keys.flatMap((k) => [k, 'v']), 'other:1', 'v');
    const seen: string[] = [];
    let cursor = '0';
    let pages = 0;
    do {
      const [next, page] = await c.scan(cursor, 'MATCH', 'user:*', 'COUNT', 10);
      seen.push(...page);
      cursor = next;
      pages++;
    } while (cursor !== '0' && pages < 100);
    expect(seen.sort()).toEqual(keys);
    expect(pages).toBeGreaterThan(5);
    const streamed: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = c.scanStream({ match: 'user:0[0-1]?', count: 7 });
      stream.on('data', (page: string[]) => streamed.push(...page));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    expect(streamed.sort()).toEqual(keys.slice(0, 20));
    await expect(c.scan('abc')).rejects.toThrow(/invalid cursor/);
    await expect(c.scan('0', 'COUNT', 0)).rejects.toThrow(/syntax error/);
  });

  it('DBSIZE counts live keys', async () => {
    await c.mset('a', '1', 'b', '2');
    await c.set('c', '3', 'PX', 10);
    expect(await c.dbsize()).toBe(3);
    now += 10;
    expect(await c.dbsize()).toBe(2);
  });

  it('reserved keys are refused', async () => {
    await expect(c.set('!encryption|writers|1|2', 'x')).rejects.toThrow(/ErrReservedKey/);
    await expect(c.get('!encryption|x')).rejects.toThrow(/ErrReservedKey/);
  });

  it('INFO, COMMAND, CLIENT, HELLO', async () => {
    const info = await c.info();
    expect(info).toMatch(/redis_version:/);
    expect(info).toMatch(/loading:0/);
    expect(info).toMatch(/engine:memory/);
    expect(await c.info('stats')).toMatch(/total_commands_processed:\d+/);
    const count = (await c.call('command', 'count')) as number;
    const all = (await c.call('command')) as unknown[][];
    expect(all.length).toBe(count);
    const [getInfo] = (await c.call('command', 'info', 'get')) as unknown[][];
    expect(getInfo!.slice(0, 2)).toEqual(['get', 2]);
    expect(await c.client('SETNAME', 'me')).toBe('OK');
    expect(await c.client('GETNAME')).toBe('me');
    expect(typeof (await c.client('ID'))).toBe('number');
    await expect(c.call('hello', '3')).rejects.toThrow(/NOPROTO/);
    expect(await c.config('GET', 'save')).toEqual(['save', '']);
    expect(await c.config('GET', 'append*')).toEqual(['appendonly', 'no']);
    expect(await c.config('GET', 'requirepass')).toEqual([]);
    await expect(c.call('config', 'set', 'save', '')).rejects.toThrow(/only CONFIG GET/);
    const hello = (await c.call('hello', '2')) as unknown[];
    expect(hello.slice(0, 2)).toEqual(['server', 'sealkv']);
  });

  it('unknown commands and wrong arity keep the connection usable', async () => {
    await expect(c.call('flushall')).rejects.toThrow(/unknown command 'flushall'/);
    await expect(c.call('get')).rejects.toThrow(/wrong number of arguments for 'get' command/);
    await expect(c.call('get', 'a', 'b')).rejects.toThrow(/wrong number of arguments/);
    expect(await c.ping()).toBe('PONG');
  });
});

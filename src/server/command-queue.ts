// The per-connection queue of parsed, unanswered commands: FIFO with O(1)
// take (a head index instead of Array#shift), and a running count of the
// argument bytes it holds so that reading can pause on bytes as well as on
// count.

import type { RespCommand } from './resp/index.js';

function argBytes(command: RespCommand): number {
  let n = 0;
  for (const arg of command) n += arg.length;
  return n;
}

export class CommandQueue {
  #items: RespCommand[] = [];
  #head = 0;
  #bytes = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Argument bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  push(commands: readonly RespCommand[]): void {
    for (const command of commands) {
      this.#items.push(command);
      this.#bytes += argBytes(command);
    }
  }

  peek(): RespCommand | undefined {
    return this.#items[this.#head];
  }

  take(): RespCommand | undefined {
    const command = this.#items[this.#head];
    if (command === undefined) return undefined;
    this.#items[this.#head++] = undefined as unknown as RespCommand;
    this.#bytes -= argBytes(command);
    if (this.#head === this.#items.length) this.clear();
    else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return command;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.#bytes = 0;
  }
}

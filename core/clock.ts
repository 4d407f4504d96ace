/** Cancels a scheduled callback. */
export type Cancel = () => void;

/** Time behind an interface: heartbeats, leases, retries and backoff take a Clock; tests use ManualClock. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): Cancel;
  setInterval(fn: () => void, ms: number): Cancel;
  sleep(ms: number): Promise<void>;
}

/** The real clock. Timers are unref'd so they never keep a process alive on their own. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return () => clearTimeout(t);
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    t.unref?.();
    return () => clearInterval(t);
  },
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

interface Timer {
  at: number;
  fn: () => void;
  every?: number;
  id: number;
}

/** A clock that moves only when told to: `advance(ms)` runs due timers in order. */
export class ManualClock implements Clock {
  private current: number;
  private timers: Timer[] = [];
  private nextId = 1;

  constructor(start = 1_700_000_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): Cancel {
    return this.add({ at: this.current + Math.max(0, ms), fn, id: this.nextId++ });
  }

  setInterval(fn: () => void, ms: number): Cancel {
    const every = Math.max(1, ms);
    return this.add({ at: this.current + every, fn, every, id: this.nextId++ });
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }

  /** Moves time forward, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.current + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.current = next.at;
      if (next.every) next.at += next.every;
      else this.timers.shift();
      next.fn();
    }
    this.current = end;
  }

  /** Number of pending timers (for tests). */
  pending(): number {
    return this.timers.length;
  }

  private add(timer: Timer): Cancel {
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t.id !== timer.id);
    };
  }
}

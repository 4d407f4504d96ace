// Reads one task's answer out of a task agent's stdout and stderr (the markers agent-script.ts describes):
// each stream is cut at its markers while the bytes before them are kept up to a cap (the rest is only
// scanned), the exit code line is checked, and the outputs' records are parsed against what was asked.
import { P2prcError } from "../../core/index.ts";

const EMPTY = Buffer.alloc(0);

/** The bytes up to a marker: the first `cap` of them kept, all scanned (a marker split over chunks too). */
export class Until {
  private carry: Buffer = EMPTY;
  private readonly kept: Buffer[] = [];
  private keptBytes = 0;
  /** Bytes before the marker, kept or not. */
  seen = 0;
  truncated = false;

  constructor(
    private readonly marker: Buffer,
    private readonly cap: number,
  ) {}

  /** Feeds bytes: what follows the marker once it is found (maybe empty), else undefined. */
  push(chunk: Uint8Array): Buffer | undefined {
    const data = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : Buffer.from(chunk);
    const at = data.indexOf(this.marker);
    if (at >= 0) {
      this.keep(data.subarray(0, at));
      this.carry = EMPTY;
      return data.subarray(at + this.marker.length);
    }
    const hold = Math.min(data.length, this.marker.length - 1);
    this.keep(data.subarray(0, data.length - hold));
    this.carry = Buffer.from(data.subarray(data.length - hold));
    return undefined;
  }

  /** What was kept, with what is held back while the marker may still come. */
  bytes(): Buffer {
    const held = this.carry.subarray(0, Math.max(0, this.cap - this.keptBytes));
    return Buffer.concat([...this.kept, held]);
  }

  private keep(b: Buffer): void {
    this.seen += b.length;
    const room = this.cap - this.keptBytes;
    if (b.length > room) this.truncated = true;
    if (room <= 0 || b.length === 0) return;
    const piece = b.length > room ? b.subarray(0, room) : b;
    this.kept.push(Buffer.from(piece));
    this.keptBytes += piece.length;
  }
}

/** One declared output as the agent reported it: a file's bytes (its first L), missing, or read it yourself. */
export type OutputRecord = { kind: "F"; data: Buffer } | { kind: "M" | "D" };

/** A task's answer as the agent printed it. */
export interface AgentAnswer {
  exitCode: number;
  stdout: string;
  stderr: string;
  truncated: boolean;
  /** The task's directory was gone (`cd` failed before the command ran). */
  chdirFailed: boolean;
  /** The outputs in the order asked; undefined when the records did not add up (the node reads them all). */
  records: OutputRecord[] | undefined;
}

/**
 * Parses `count` output records that must fill `buf` exactly (`trailer`: what follows a file's bytes up
 * to head's exit status); undefined when they do not. A file head could not read is a `D`.
 */
export function parseRecords(buf: Buffer, count: number, trailer: Buffer): OutputRecord[] | undefined {
  const out: OutputRecord[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const nl = buf.indexOf(10, at);
    if (nl < 0) return undefined;
    const line = buf.subarray(at, nl).toString("latin1");
    at = nl + 1;
    if (line === "M" || line === "D") {
      out.push({ kind: line });
      continue;
    }
    if (line !== "F") return undefined;
    const end = buf.indexOf(trailer, at);
    const eol = end < 0 ? -1 : buf.indexOf(10, end + trailer.length);
    if (eol < 0) return undefined;
    const status = buf.subarray(end + trailer.length, eol).toString("latin1");
    if (!/^\d{1,3}$/.test(status)) return undefined;
    out.push(status === "0" ? { kind: "F", data: Buffer.from(buf.subarray(at, end)) } : { kind: "D" });
    at = eol + 1;
  }
  return at === buf.length ? out : undefined;
}

/** The stages of one stream: each Until's marker ends it and starts the next. */
class Side {
  stage = 0;
  /** Bytes after the last marker (the task's leftovers or another writer's: the agent is not reused). */
  after = 0;
  constructor(readonly stages: Until[]) {}

  push(data: Uint8Array, onStage: (stage: number) => void): void {
    let rest: Uint8Array = data;
    while (this.stage < this.stages.length) {
      const next = (this.stages[this.stage] as Until).push(rest);
      if (next === undefined) return;
      onStage(this.stage);
      this.stage++;
      rest = next;
    }
    this.after += rest.length;
  }

  done(): boolean {
    return this.stage >= this.stages.length;
  }
}

/** Reads one task's answer (sequence number `seq`) from an agent whose marker is `marker`. */
export class TaskReader {
  private readonly out: Side;
  private readonly err: Side;
  private readonly chdirLine: Buffer;
  private readonly trailer: Buffer;

  constructor(
    marker: string,
    seq: number,
    maxOutputBytes: number,
    private readonly outputs: number,
    recordsCap: number,
  ) {
    const m = (s: string) => Buffer.from(s, "latin1");
    this.chdirLine = m(`${marker} ${seq} C\n`);
    this.trailer = m(`\n${marker} ${seq} O `);
    this.out = new Side([
      new Until(m(`${marker} ${seq} S\n`), 0),
      new Until(m(`\n${marker} ${seq} R `), maxOutputBytes),
      new Until(m("\n"), 4),
      new Until(m(`\nE ${marker} ${seq}\n`), recordsCap),
    ]);
    this.err = new Side([
      new Until(m(`${marker} ${seq} S\n`), 0),
      new Until(m(`\n${marker} ${seq}\n`), maxOutputBytes),
    ]);
  }

  /** Feeds a piece of the agent's output (stream 1 stdout, 2 stderr); E_ENGINE on an exit line it cannot read. */
  push(stream: number, data: Uint8Array): void {
    (stream === 2 ? this.err : this.out).push(data, (stage) => {
      if (stream === 2 || stage !== 2) return;
      const rc = (this.out.stages[2] as Until).bytes().toString("latin1");
      if (!/^\d{1,3}$/.test(rc) || Number(rc) > 255)
        throw new P2prcError(
          "E_ENGINE",
          `task agent: an exit status p2prc cannot read (${JSON.stringify(rc)})`,
        );
    });
  }

  /** Whether the agent reached the task (its start marker came on stdout). */
  started(): boolean {
    return this.out.stage > 0;
  }

  /** Whether both streams reached their last marker. */
  done(): boolean {
    return this.out.done() && this.err.done();
  }

  /** Whether anything came outside the task's markers (the agent is then not reused). */
  stray(): boolean {
    const [o, e] = [this.out.stages[0] as Until, this.err.stages[0] as Until];
    return o.seen > 0 || e.seen > 0 || this.out.after > 0 || this.err.after > 0;
  }

  /** What the task printed so far (a task that timed out or ended its agent answers this). */
  partial(): { stdout: string; stderr: string; truncated: boolean } {
    const [o, e] = [this.out.stages[1] as Until, this.err.stages[1] as Until];
    return {
      stdout: o.bytes().toString("utf8"),
      stderr: e.bytes().toString("utf8"),
      truncated: o.truncated || e.truncated,
    };
  }

  /** The answer once done(). */
  answer(): AgentAnswer {
    const body = (this.out.stages[1] as Until).bytes();
    const recs = this.out.stages[3] as Until;
    return {
      ...this.partial(),
      exitCode: Number((this.out.stages[2] as Until).bytes().toString("latin1")),
      chdirFailed: body.equals(this.chdirLine),
      records: recs.truncated ? undefined : parseRecords(recs.bytes(), this.outputs, this.trailer),
    };
  }
}

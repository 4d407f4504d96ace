// A task agent: one long-lived exec of the container's own `/bin/sh -s`, fed tasks on its stdin, so a task
// costs the engine nothing once the agent is up (the exec's setup is paid once per agent, not per task).
// The node writes only text it composed (agent-script.ts) and reads each task's answer between markers
// (agent-stream.ts). An agent runs one task at a time; a pool of them per container is in agent-pool.ts.
import { randomBytes } from "node:crypto";
import { type Cancel, type Clock, FrameDemuxer, P2prcError } from "../../core/index.ts";
import type { ContainerEngine, ExecSession } from "../engine/index.ts";
import { agentStart, type TaskScript, taskFragment } from "./agent-script.ts";
import { type AgentAnswer, TaskReader, Until } from "./agent-stream.ts";

/** The agent's command: the container's shell reading commands from its stdin. */
export const AGENT_COMMAND = ["/bin/sh", "-s"];
/** How long a new agent may take to read its prelude and say so. */
const READY_MS = 10_000;

/** How one task went through an agent. */
export type AgentOutcome =
  /** The agent never reached the task (it ended or failed before): nothing ran, a plain exec may. */
  | { kind: "notRun" }
  | { kind: "done"; answer: AgentAnswer }
  /** Past its timeout: what it printed so far (the agent is closed; its processes keep running). */
  | { kind: "timedOut"; stdout: string; stderr: string; truncated: boolean }
  /** The agent ended while the task ran (the task killed its shell): the exec's exit code. */
  | { kind: "ended"; exitCode: number; stdout: string; stderr: string; truncated: boolean };

interface Pending {
  reader: TaskReader;
  settle: (o: AgentOutcome | Error) => void;
}

/** One agent: a shell in a container, one task at a time. */
export class TaskAgent {
  /** 128 random bits: the markers' prefix (a task cannot guess another agent's). */
  private readonly marker = randomBytes(16).toString("hex");
  private seq = 0;
  private pending: Pending | undefined;
  /** Ended, closed, or not to be reused (something came outside a task's markers). */
  private closed = false;
  /** Tasks it answered. */
  served = 0;
  /** The pool's idle timer while it waits for a task. */
  idleCancel: Cancel | undefined;
  /** Told once when the agent can take no more tasks (ended, closed or spoiled). */
  onGone: (() => void) | undefined;

  /** Until the ready line came (told once: true, or false when the agent ended or took too long). */
  private onReady: ((ok: boolean) => void) | undefined;
  private readonly readyLine: Until;

  private constructor(private readonly session: ExecSession) {
    this.readyLine = new Until(Buffer.from(`${this.marker} ready\n`), 0);
  }

  /**
   * Opens an agent in the container, writes its prelude and waits for its ready line: an image whose
   * /bin/sh is missing or does not run the prelude fails here (E_ENGINE), before any task is written.
   */
  static async open(
    engine: Pick<ContainerEngine, "openExec">,
    containerId: string,
    o: { clock: Clock; readyMs?: number | undefined },
  ): Promise<TaskAgent> {
    const session = await engine.openExec(containerId, AGENT_COMMAND, { tty: false });
    const agent = new TaskAgent(session);
    const ready = new Promise<boolean>((resolve) => {
      agent.onReady = resolve;
    });
    void agent.pump();
    const cancel = o.clock.setTimeout(() => agent.onReady?.(false), o.readyMs ?? READY_MS);
    await session.write(Buffer.from(agentStart(agent.marker)));
    const ok = await ready;
    cancel();
    if (!ok) {
      agent.close();
      throw new P2prcError("E_ENGINE", `task agent: /bin/sh in container ${containerId} did not start`);
    }
    return agent;
  }

  /** Whether it can take a task now. */
  usable(): boolean {
    return !this.closed && !this.pending;
  }

  /**
   * Runs one task; undefined when the shell would not run it as a plain exec does (the caller execs it).
   * Rejects (E_ENGINE) when the agent's answer cannot be read.
   */
  async run(
    script: Omit<TaskScript, "seq">,
    o: { maxOutputBytes: number; recordsCap: number; timeoutMs: number; clock: Clock },
  ): Promise<AgentOutcome | undefined> {
    if (!this.usable()) return { kind: "notRun" };
    const seq = ++this.seq;
    const fragment = taskFragment({ ...script, seq });
    if (fragment === undefined) return undefined;
    const reader = new TaskReader(
      this.marker,
      seq,
      o.maxOutputBytes,
      script.outputs?.length ?? 0,
      o.recordsCap,
    );
    const settled = new Promise<AgentOutcome | Error>((resolve) => {
      this.pending = { reader, settle: resolve };
    });
    const cancel = o.clock.setTimeout(() => {
      this.settle({ kind: "timedOut", ...reader.partial() });
      this.close();
    }, o.timeoutMs);
    void this.session.write(Buffer.from(fragment)).catch(() => undefined); // a closed stdin: the end answers
    const outcome = await settled;
    cancel();
    this.served++;
    if (reader.stray()) this.close();
    if (outcome instanceof Error) {
      this.close();
      throw outcome;
    }
    return outcome;
  }

  /** Ends the agent: its stdin closed and the engine connection dropped (a running task's process stays). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.idleCancel?.();
    this.session.endInput();
    this.session.close();
    this.onGone?.();
  }

  private settle(o: AgentOutcome | Error): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    p.settle(o);
  }

  /** Reads the agent's frames until its stream ends, handing them to the task running. */
  private async pump(): Promise<void> {
    const demux = new FrameDemuxer();
    let broken: unknown;
    try {
      for await (const chunk of this.session.output) {
        for (const piece of demux.push(chunk)) {
          if (this.onReady) {
            // what the shell says before its ready line (on stderr, before the prelude moves it) is dropped
            if (piece.stream === 2 || this.readyLine.push(piece.data) === undefined) continue;
            this.onReady(true);
            this.onReady = undefined;
            continue; // the prelude prints nothing after it
          }
          const p = this.pending;
          if (!p) {
            this.close(); // output between tasks: a task left something writing; not reused
            continue;
          }
          p.reader.push(piece.stream, piece.data);
          if (p.reader.done()) this.settle({ kind: "done", answer: p.reader.answer() });
        }
      }
    } catch (err) {
      broken = err;
    }
    const p = this.pending;
    this.onReady?.(false);
    this.close();
    if (!p) return;
    // an answer p2prc cannot read (an exit status that is not one)
    if (broken instanceof P2prcError && broken.code === "E_ENGINE") return this.settle(broken);
    if (!p.reader.started()) return this.settle({ kind: "notRun" });
    // the task ended its agent (its exit code), or the engine went away (its error, as a plain exec's)
    let code: number | undefined;
    try {
      code = await this.session.exitCode();
    } catch (err) {
      return this.settle(err instanceof Error ? err : new Error(String(err)));
    }
    if (code === undefined)
      return this.settle(
        new P2prcError("E_ENGINE_UNAVAILABLE", "task agent: the engine's stream ended while the task ran", {
          retryable: true,
          cause: broken,
        }),
      );
    this.settle({ kind: "ended", exitCode: code, ...p.reader.partial() });
  }
}

// The agent's text both ways without an engine: the fragment the node writes (quoting, what falls back to a
// plain exec) and the reading of an answer cut anywhere between chunks, capped, malformed or with strays.
import { describe, expect, test } from "bun:test";
import { quote, taskFragment } from "./agent-script.ts";
import { parseRecords, TaskReader, Until } from "./agent-stream.ts";

const B = "0123456789abcdef0123456789abcdef";
const enc = (s: string) => Buffer.from(s, "latin1");

describe("the fragment", () => {
  test("quotes every value as one literal word; falls back where the shell would differ", () => {
    expect(quote("it's")).toBe("'it'\\''s'");
    expect(quote("")).toBe("''");
    const f = taskFragment({
      seq: 3,
      workingDir: "/p2prc-task/x-1",
      command: ["printf", "%s", "$(id)"],
      env: { A_1: "`x`" },
      outputs: ["/w/o'1", null],
      cap: 100,
    });
    expect(f).toContain("exec 'printf' '%s' '$(id)' )");
    expect(f).toContain("export 'A_1'='`x`'; ");
    expect(f).toContain("O '/w/o'\\''1' 3; echo D; ");
    expect(f?.endsWith("\n")).toBe(true);
    expect(f?.split("\n").length).toBe(2); // one line: no value holds a newline here
    const base = { seq: 1, workingDir: "/", cap: 0 };
    expect(taskFragment({ ...base, command: ["true"], env: { "A-B": "x" } })).toBeUndefined();
    expect(taskFragment({ ...base, command: ["-x"] })).toBeUndefined();
  });
});

/** What an agent prints for task `seq`: stdout and stderr. */
function transcript(seq: number, out: string, err: string, rc: number, records = "") {
  return {
    out: `${B} ${seq} S\n${out}\n${B} ${seq} R ${rc}\n${records}\nE ${B} ${seq}\n`,
    err: `${B} ${seq} S\n${err}\n${B} ${seq}\n`,
  };
}

describe("reading an answer", () => {
  test("a marker split between any two chunks is found; what comes before it is kept up to the cap", () => {
    const text = enc("hello\nworld\n--MARK--after");
    for (let cut = 0; cut <= text.length; cut++) {
      const u = new Until(enc("\n--MARK--"), 8);
      const first = u.push(text.subarray(0, cut));
      const rest = first ? Buffer.concat([first, text.subarray(cut)]) : u.push(text.subarray(cut));
      expect(rest?.toString()).toBe("after");
      expect(u.bytes().toString()).toBe("hello\nwo");
      expect(u.truncated).toBe(true);
      expect(u.seen).toBe(11);
    }
  });

  test("an answer fed a byte at a time: exact output, exit code, files; nothing stray", () => {
    const t = transcript(7, "out\x00\xff", "", 42, `F\nabc\n${B} 7 O 0\nM\nD\n`);
    const r = new TaskReader(B, 7, 1 << 20, 3, 1 << 20);
    for (const b of enc(t.err)) r.push(2, Uint8Array.of(b));
    expect(r.done()).toBe(false);
    for (const b of enc(t.out)) r.push(1, Uint8Array.of(b));
    expect(r.done()).toBe(true);
    expect(r.stray()).toBe(false);
    const a = r.answer();
    expect(a).toMatchObject({ exitCode: 42, stderr: "", truncated: false, chdirFailed: false });
    expect(Buffer.from(a.stdout, "utf8")).toEqual(Buffer.from("out\x00\ufffd", "utf8"));
    expect(a.records?.map((x) => x.kind)).toEqual(["F", "M", "D"]);
    expect(a.records?.[0]).toEqual({ kind: "F", data: enc("abc") });
  });

  test("another task's markers, bytes before the start, an unreadable exit code", () => {
    const other = transcript(8, "x", "y", 0);
    const r = new TaskReader(B, 7, 100, 0, 100);
    r.push(1, enc(other.out));
    expect(r.started()).toBe(false);
    expect(r.stray()).toBe(true);
    const bad = new TaskReader(B, 7, 100, 0, 100);
    expect(() => bad.push(1, enc(`${B} 7 S\nout\n${B} 7 R 1x\n`))).toThrow(/exit status/);
    const gone = new TaskReader(B, 7, 100, 0, 100);
    gone.push(1, enc(transcript(7, `${B} 7 C\n`, "", 1).out));
    gone.push(2, enc(transcript(7, "", "", 1).err));
    expect(gone.answer().chdirFailed).toBe(true);
  });

  test("records that do not add up (a file that changed while read) are refused", () => {
    const T = enc(`\n${B} 7 O `);
    const parse = (s: string, n: number) => parseRecords(enc(s), n, T);
    expect(parse(`F\nabc\n${B} 7 O 0\n`, 1)).toEqual([{ kind: "F", data: enc("abc") }]);
    expect(parse(`F\n\n${B} 7 O 0\nM\n`, 2)).toEqual([{ kind: "F", data: enc("") }, { kind: "M" }]);
    expect(parse(`F\nab\n${B} 7 O 1\n`, 1)).toEqual([{ kind: "D" }]); // head failed: the engine reads it
    expect(parse(`F\nabc\n${B} 8 O 0\n`, 1)).toBeUndefined();
    expect(parse(`F\nabc\n${B} 7 O x\n`, 1)).toBeUndefined();
    expect(parse(`F\nabc\n${B} 7 O 0\nD\n`, 1)).toBeUndefined();
    expect(parse("M\nL\n", 2)).toBeUndefined();
    expect(parse("Q\n", 1)).toBeUndefined();
  });
});

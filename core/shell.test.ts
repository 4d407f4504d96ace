import { expect, test } from "bun:test";
import { shellQuote } from "./shell.ts";

test("shellQuote leaves plain words and quotes the rest so a shell reads them back as one word", () => {
  expect(shellQuote("/tmp/job.json")).toBe("/tmp/job.json");
  expect(shellQuote("--out")).toBe("--out");
  const odd = ["my job.json", "it's", "$HOME", "a;b", ""];
  const quoted = odd.map(shellQuote);
  expect(quoted.slice(0, 2)).toEqual(["'my job.json'", `'it'\\''s'`]);
  const echoed = Bun.spawnSync(["sh", "-c", `printf '%s\\n' ${quoted.join(" ")}`]).stdout.toString();
  expect(echoed).toBe(`${odd.join("\n")}\n`);
});

import { expect, test } from "bun:test";
import { splitArgs } from "./run.ts";

test("p2prc run: our flags come before the script; what follows it (or --) is the script's", () => {
  expect(splitArgs(["auto", "s.ts", "a", "--json"])).toEqual({
    own: ["auto", "s.ts"],
    scriptArgs: ["a", "--json"],
  });
  expect(splitArgs(["--cpus", "2", "--json", "n1", "s.ts"])).toEqual({
    own: ["--cpus", "2", "--json", "n1", "s.ts"],
    scriptArgs: [],
  });
  expect(splitArgs(["n1", "--timeout", "5", "s.ts", "x"])).toEqual({
    own: ["n1", "--timeout", "5", "s.ts"],
    scriptArgs: ["x"],
  });
  expect(splitArgs(["n1", "s.ts", "--", "--cpus"])).toEqual({
    own: ["n1", "s.ts"],
    scriptArgs: ["--cpus"],
  });
  expect(splitArgs(["n1", "--", "-x"])).toEqual({ own: ["n1"], scriptArgs: ["-x"] });
});

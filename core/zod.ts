// zod/mini, the functional zod API, set up once for every schema in p2prc. Schemas get it from `zod()`
// (config/types.ts), which loads this module on first call, so the setup below runs before any parse.
import { config } from "zod/mini";
import en from "zod/v4/locales/en.js";

// zod/mini ships no error messages; English is the locale classic zod installs for itself, so issues read
// the same ("Too small: expected number to be >=1"). It parses without JIT: zod compiles an object parser
// with `new Function` on first use, worth it in a hot loop but not for a CLI call that parses once (and
// this way nothing is eval'd).
config({ ...en(), jitless: true });

// Only what the schemas use, by name: `zod()` loads this module with require(), which keeps every export it
// has, so re-exporting the whole zod/mini namespace would keep all of zod (every locale included) in the
// binary. A schema that needs another zod function adds it here.
export type { core, infer, ZodMiniType } from "zod/mini";
export {
  _default,
  array,
  boolean,
  enum,
  int,
  maximum,
  maxLength,
  minimum,
  minLength,
  number,
  optional,
  record,
  refine,
  regex,
  startsWith,
  strictObject,
  string,
  tuple,
  union,
  unknown,
} from "zod/mini";

/** The p2prc version (one source: abstractions). */
export { VERSION } from "../abstractions/version.ts";

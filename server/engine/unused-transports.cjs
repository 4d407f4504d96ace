// Stand-in for modules dockerode and docker-modem load at start but p2prc never uses: gRPC (BuildKit
// sessions), tar-fs and @balena/dockerignore (build contexts for image builds) and ssh2 (ssh:// engine
// addresses). Leaving them out of the binary saves about 9 MB of an idle server's resident memory (Docs/
// Installation.md has the side-by-side figures). Any use fails loudly instead of half-working.
"use strict";
function unavailable() {
  throw new Error(
    "p2prc does not include this part of dockerode (image builds, BuildKit sessions, ssh:// engines)",
  );
}
const stub = new Proxy(unavailable, { get: (_t, key) => (key === "__esModule" ? false : unavailable) });
module.exports = stub;

import { join } from "node:path";

/** Inputs that decide the home directory; passed in so the loader stays pure. */
export interface HomeInputs {
  /** `--config-dir` flag. */
  configDir?: string | undefined;
  env: Record<string, string | undefined>;
  /** The user's home directory (os.homedir()). */
  userHome: string;
}

/** Home directory: --config-dir > $P2PRC > $XDG_CONFIG_HOME/p2prc > ~/.config/p2prc. */
export function resolveHome({ configDir, env, userHome }: HomeInputs): string {
  if (configDir) return configDir;
  if (env.P2PRC) return env.P2PRC;
  if (env.XDG_CONFIG_HOME) return join(env.XDG_CONFIG_HOME, "p2prc");
  return join(userHome, ".config", "p2prc");
}

/** The files of one node home. */
export interface NodePaths {
  home: string;
  configFile: string;
  identityDir: string;
  privateKey: string;
  publicKey: string;
  stateDb: string;
  /** Installed plugins, one folder each (`p2prc --vp`). */
  plugins: string;
}

/** File locations of a home; `dataDir` (config) moves only the database. */
export function nodePaths(home: string, dataDir = ""): NodePaths {
  const identityDir = join(home, "identity");
  return {
    home,
    configFile: join(home, "config.json"),
    identityDir,
    privateKey: join(identityDir, "node.key"),
    publicKey: join(identityDir, "node.pub"),
    stateDb: join(dataDir || home, "state.db"),
    plugins: join(home, "plugins"),
  };
}

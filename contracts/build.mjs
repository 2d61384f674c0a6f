// Compile the test contracts in contracts/ into walletd/devnet/artifacts/<Contract>.json:
// TestUSDC (EIP-3009 USDC stand-in), TestUSD18 (18-decimal stablecoin without EIP-3009),
// TestPermit2 (Permit2's SignatureTransfer) and the x402 exact/upto Permit2 proxies.
//
//   node contracts/build.mjs           write the artifacts
//   node contracts/build.mjs --check   rebuild to a temp dir; exit 1 if any differs from the
//                                      committed artifact (CI runs this)
//
// Why this script and not the `solcjs` CLI: the CLI cannot set evmVersion and always targets
// solc's default (osaka in 0.8.37). We pin "cancun": OZ 5.7 needs mcopy (Cancun), and Cancun is
// what every local node we test against runs. The standard-JSON API takes the setting.
//
// The artifact is committed so the Python tests need Node only for the anvil binary. It is written
// with sorted keys, 2-space indent and a trailing newline, so the same inputs give the same bytes.

import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const NODE_MODULES = join(ROOT, "node_modules");
const EVM_VERSION = "cancun";
// Each source is compiled on its own (so adding one never changes another's metadata hash).
const TARGETS = [
  { source: "TestUSDC", contracts: ["TestUSDC"] },
  { source: "TestUSD18", contracts: ["TestUSD18"] },
  { source: "TestPermit2", contracts: ["TestPermit2"] },
  {
    source: "TestX402Permit2Proxies",
    contracts: ["TestX402ExactPermit2Proxy", "TestX402UptoPermit2Proxy"],
  },
];
const ARTIFACTS = join(ROOT, "walletd", "devnet", "artifacts");
// The source key is relative so the metadata hash embedded in the bytecode does not depend on
// where the repository is checked out.
const sourceKey = (source) => `contracts/${source}.sol`;
const artifactPath = (contract) => join(ARTIFACTS, `${contract}.json`);

function findImport(path) {
  const full = resolve(NODE_MODULES, path);
  if (!full.startsWith(NODE_MODULES + sep)) {
    return { error: `Import outside node_modules refused: ${path}` };
  }
  try {
    return { contents: readFileSync(full, "utf8") };
  } catch {
    return { error: `File not found: ${path} (run npm ci)` };
  }
}

function compilerInput(key) {
  return {
    language: "Solidity",
    sources: { [key]: { content: readFileSync(join(ROOT, key), "utf8") } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: EVM_VERSION,
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
      },
    },
  };
}

function compile(source, contracts) {
  const key = sourceKey(source);
  const output = JSON.parse(solc.compile(JSON.stringify(compilerInput(key)), { import: findImport }));
  const problems = output.errors ?? [];
  for (const problem of problems) {
    console.error(problem.formattedMessage);
  }
  if (problems.some((p) => p.severity === "error")) {
    throw new Error("solc reported errors");
  }
  return contracts.map((name) => {
    const contract = output.contracts?.[key]?.[name];
    if (!contract) {
      throw new Error(`solc produced no output for ${key}:${name}`);
    }
    return [name, contract];
  });
}

function sortKeys(value) {
  if (Array.isArray(value)) {
    return value.map(sortKeys);
  }
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sortKeys(value[key])]),
    );
  }
  return value;
}

function artifactText(contract) {
  const artifact = {
    compiler: `solc ${solc.version()}`,
    evmVersion: EVM_VERSION,
    abi: contract.abi,
    bytecode: `0x${contract.evm.bytecode.object}`,
    deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
  };
  return `${JSON.stringify(sortKeys(artifact), null, 2)}\n`;
}

function write(path, text) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

function check(name, text) {
  const artifact = artifactPath(name);
  const dir = mkdtempSync(join(tmpdir(), "walletd-contracts-"));
  try {
    const fresh = join(dir, `${name}.json`);
    write(fresh, text);
    let committed;
    try {
      committed = readFileSync(artifact);
    } catch {
      console.error(`${relative(ROOT, artifact)} is missing; run npm run build:contracts`);
      return 1;
    }
    if (!committed.equals(readFileSync(fresh))) {
      console.error(
        `${relative(ROOT, artifact)} is stale: it differs from a fresh build of its source; ` +
          "run npm run build:contracts and commit the result",
      );
      return 1;
    }
    console.log(`${relative(ROOT, artifact)} is up to date`);
    return 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function main(args) {
  const unknown = args.filter((a) => a !== "--check");
  if (unknown.length > 0) {
    console.error(`usage: node contracts/build.mjs [--check]  (unknown: ${unknown.join(" ")})`);
    return 2;
  }
  let failed = 0;
  for (const { source, contracts } of TARGETS) {
    for (const [name, contract] of compile(source, contracts)) {
      const text = artifactText(contract);
      if (args.includes("--check")) {
        failed |= check(name, text);
        continue;
      }
      write(artifactPath(name), text);
      console.log(`wrote ${relative(ROOT, artifactPath(name))} (solc ${solc.version()}, ${EVM_VERSION})`);
    }
  }
  return failed;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  console.error(`build failed: ${err.message}`);
  process.exitCode = 1;
}

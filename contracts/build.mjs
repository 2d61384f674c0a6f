// Compile contracts/TestUSDC.sol into walletd/devnet/artifacts/TestUSDC.json.
//
//   node contracts/build.mjs           write the artifact
//   node contracts/build.mjs --check   rebuild to a temp file; exit 1 if it differs from the
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
const CONTRACT = "TestUSDC";
// The source key is relative so the metadata hash embedded in the bytecode does not depend on
// where the repository is checked out.
const SOURCE_KEY = `contracts/${CONTRACT}.sol`;
const ARTIFACT = join(ROOT, "walletd", "devnet", "artifacts", `${CONTRACT}.json`);

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

function compilerInput() {
  return {
    language: "Solidity",
    sources: { [SOURCE_KEY]: { content: readFileSync(join(ROOT, SOURCE_KEY), "utf8") } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: EVM_VERSION,
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
      },
    },
  };
}

function compile() {
  const output = JSON.parse(solc.compile(JSON.stringify(compilerInput()), { import: findImport }));
  const problems = output.errors ?? [];
  for (const problem of problems) {
    console.error(problem.formattedMessage);
  }
  if (problems.some((p) => p.severity === "error")) {
    throw new Error("solc reported errors");
  }
  const contract = output.contracts?.[SOURCE_KEY]?.[CONTRACT];
  if (!contract) {
    throw new Error(`solc produced no output for ${SOURCE_KEY}:${CONTRACT}`);
  }
  return contract;
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

function check(text) {
  const dir = mkdtempSync(join(tmpdir(), "walletd-contracts-"));
  try {
    const fresh = join(dir, `${CONTRACT}.json`);
    write(fresh, text);
    let committed;
    try {
      committed = readFileSync(ARTIFACT);
    } catch {
      console.error(`${relative(ROOT, ARTIFACT)} is missing; run npm run build:contracts`);
      return 1;
    }
    if (!committed.equals(readFileSync(fresh))) {
      console.error(
        `${relative(ROOT, ARTIFACT)} is stale: it differs from a fresh build of ${SOURCE_KEY}; ` +
          "run npm run build:contracts and commit the result",
      );
      return 1;
    }
    console.log(`${relative(ROOT, ARTIFACT)} is up to date`);
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
  const text = artifactText(compile());
  if (args.includes("--check")) {
    return check(text);
  }
  write(ARTIFACT, text);
  console.log(`wrote ${relative(ROOT, ARTIFACT)} (solc ${solc.version()}, ${EVM_VERSION})`);
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  console.error(`build failed: ${err.message}`);
  process.exitCode = 1;
}

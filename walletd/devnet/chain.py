"""A real local EVM chain for tests and the devnet: anvil, plus a stand-in USDC at Base's address.

walletd pins USDC's address and EIP-712 domain per network (``walletd.domain.networks``) and
never takes them from a 402 demand. To exercise that code unchanged, the test bed runs anvil
with Base's chain id (8453) and puts a self-compiled EIP-3009 token (``contracts/TestUSDC.sol``)
at Base's real USDC address with ``anvil_setCode``. Signatures made for Base mainnet then settle
on the local chain, byte for byte.

anvil comes from npm (``@foundry-rs/anvil``, pinned in ``package.json``) and is called by the
path of its platform binary: the npm ``.bin`` wrapper is a Node script that adds ~100 ms per
start and breaks when optional dependencies are omitted. The token's compiled artifact is
committed, so Python needs Node only to install the binary (``npm ci``).

Typical use::

    with Anvil() as node:
        w3 = connect(node.rpc_url)
        usdc = install_usdc(w3)
        mint(w3, dev_account(1).address, 10_000_000)
"""

from __future__ import annotations

import atexit
import collections
import functools
import http.client
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import RPCEndpoint, TxParams, TxReceipt

from walletd.domain.networks import BASE, MEGAETH
from walletd.domain.permit2 import EXACT_PROXY_ADDRESS, PERMIT2_ADDRESS, UPTO_PROXY_ADDRESS

__all__ = [
    "ANVIL_ENV",
    "ARTIFACT_PATH",
    "DEV_ACCOUNT_COUNT",
    "DEV_MNEMONIC",
    "USDC_ADDRESS",
    "Anvil",
    "AnvilNotInstalledError",
    "AnvilStartError",
    "DevnetError",
    "anvil_binary",
    "connect",
    "dev_account",
    "eth_balance",
    "increase_time",
    "install_permit2",
    "install_usd18",
    "install_usdc",
    "load_artifact",
    "mint",
    "revert",
    "set_eth_balance",
    "snapshot",
    "transact",
    "usdc_balance",
    "usdc_contract",
]

USDC_ADDRESS: Final[ChecksumAddress] = Web3.to_checksum_address(BASE.usdc)
"""Base mainnet's USDC address; the test token is installed here so pinned config just works."""

USD18_ADDRESS: Final[ChecksumAddress] = Web3.to_checksum_address(MEGAETH.usdc)
"""MegaETH's MegaUSD address (18 decimals, no EIP-3009): TestUSD18 goes here on an anvil run
with MegaETH's chain id (4326), so walletd's pinned table pays it through Permit2 unchanged."""

PERMIT2_CONTRACTS: Final = (
    ("TestPermit2", PERMIT2_ADDRESS),
    ("TestX402ExactPermit2Proxy", EXACT_PROXY_ADDRESS),
    ("TestX402UptoPermit2Proxy", UPTO_PROXY_ADDRESS),
)
"""Our Permit2 and x402 proxies (contracts/), and the canonical addresses they are installed at."""

ANVIL_ENV: Final = "WALLETD_ANVIL"
"""Environment variable naming an anvil binary to use instead of the one in node_modules."""

DEV_MNEMONIC: Final = "test test test test test test test test test test test junk"
"""anvil's public default mnemonic. Its keys are known to everyone: local chains only."""

DEV_ACCOUNT_COUNT: Final = 10
"""anvil funds the first ten accounts of the mnemonic with 10,000 ETH each."""

ARTIFACT_PATH: Final = Path(__file__).resolve().parent / "artifacts" / "TestUSDC.json"
"""Compiled TestUSDC, written by ``contracts/build.mjs`` and committed."""

_LISTENING = re.compile(r"Listening on (\d{1,3}(?:\.\d{1,3}){3}):(\d+)")
_PLATFORMS: Final = {"linux": "linux", "darwin": "darwin", "win32": "win32"}
_ARCHES: Final = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_RECEIPT_TIMEOUT_S: Final = 30.0


class DevnetError(RuntimeError):
    """Something in the local test chain failed. Dev tooling only: not a walletd API error."""


class AnvilNotInstalledError(DevnetError):
    """The anvil binary is not where npm puts it (``npm ci`` has not run)."""


class AnvilStartError(DevnetError):
    """anvil was spawned but did not come up listening and answering."""


# ---------------------------------------------------------------------------- binary


def anvil_binary() -> Path:
    """The anvil executable: ``$WALLETD_ANVIL`` if set, else the npm platform package's binary.

    The binary lives in the optional dependency ``@foundry-rs/anvil-<os>-<arch>``, which npm
    picks for the current machine; we pick the same one rather than hard-coding linux-amd64.
    """
    override = os.environ.get(ANVIL_ENV)
    if override:
        path = Path(override)
        if not _is_executable(path):
            raise AnvilNotInstalledError(f"{ANVIL_ENV}={override} is not an executable file")
        return path
    root = _repo_root()
    path = root / "node_modules" / "@foundry-rs" / _platform_package() / "bin" / _exe("anvil")
    if not _is_executable(path):
        raise AnvilNotInstalledError(
            f"anvil not found at {path}: run `npm ci --no-audit --no-fund` in {root} "
            f"(without --omit=optional), or set {ANVIL_ENV} to an anvil binary"
        )
    return path


def _repo_root() -> Path:
    """The nearest ancestor of this file holding ``package.json``: where npm installs anvil."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "package.json").is_file():
            return parent
    raise AnvilNotInstalledError(
        f"no package.json above {Path(__file__).resolve()}: walletd is not running from a "
        f"checkout, so run `npm ci` in one or set {ANVIL_ENV} to an anvil binary"
    )


def _platform_package() -> str:
    system = _PLATFORMS.get(sys.platform)
    arch = _ARCHES.get(platform.machine().lower())
    if system is None or arch is None:
        raise AnvilNotInstalledError(
            f"@foundry-rs/anvil ships no binary for {sys.platform}/{platform.machine()}; "
            f"set {ANVIL_ENV} to an anvil binary"
        )
    return f"anvil-{system}-{arch}"


def _exe(name: str) -> str:
    return f"{name}.exe" if sys.platform == "win32" else name


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


# ----------------------------------------------------------------------------- node


class Anvil:
    """A running anvil on a free loopback port; started by the constructor, stopped by ``stop``.

    ``--port 0`` lets the OS choose the port, so parallel test runs never race for one; the
    chosen port is read from anvil's "Listening on 127.0.0.1:PORT" line. anvil logs every RPC
    call to stdout, so a daemon thread keeps draining it (a full pipe would block anvil) and
    keeps the last lines for error messages.

    Every instance is stopped at interpreter exit if nobody stopped it, so a failed test run
    does not leave nodes behind.

    **Parameters:**

    * **chain_id** - defaults to Base mainnet's, 8453, to match the pinned USDC domain.
    * **block_time** - seconds per block; ``None`` mines each transaction at once (automine).
    * **binary** - an anvil executable; defaults to :func:`anvil_binary`.
    * **startup_timeout** - seconds to wait for anvil to listen and answer ``eth_chainId``.
    """

    def __init__(
        self,
        chain_id: int = BASE.chain_id,
        *,
        block_time: float | None = None,
        binary: Path | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.chain_id = chain_id
        self._output: collections.deque[str] = collections.deque(maxlen=200)
        self._listening = threading.Event()
        self._port: int | None = None
        self._proc = subprocess.Popen(
            _anvil_args(binary or anvil_binary(), chain_id, block_time),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        _register(self)
        self._reader = threading.Thread(
            target=self._drain, args=(self._proc.stdout,), name=f"anvil-{self.pid}", daemon=True
        )
        self._reader.start()
        try:
            self._await_ready(time.monotonic() + startup_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        """The anvil process id; :meth:`stop` signals exactly this process."""
        return self._proc.pid

    @property
    def port(self) -> int:
        """The TCP port anvil listens on, on 127.0.0.1."""
        if self._port is None:
            raise DevnetError("anvil has not reported its port")
        return self._port

    @property
    def rpc_url(self) -> str:
        """The HTTP JSON-RPC endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def is_running(self) -> bool:
        """Whether the process is still alive."""
        return self._proc.poll() is None

    def output(self) -> str:
        """The last lines anvil printed, for diagnosing failures."""
        return "".join(self._output)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate anvil by pid and wait for it to exit (SIGKILL if SIGTERM is ignored)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._reader.join(timeout)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        _unregister(self)

    def __enter__(self) -> Anvil:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<Anvil pid={self.pid} port={self._port} chain_id={self.chain_id} {state}>"

    def _drain(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        try:
            for line in stream:
                self._output.append(line)
                if self._port is None and (match := _LISTENING.search(line)):
                    self._port = int(match.group(2))
                    self._listening.set()
        except ValueError:  # the stream was closed under us by stop()
            pass
        finally:
            self._listening.set()  # wake the waiter at EOF too, so a crash is seen at once

    def _await_ready(self, deadline: float) -> None:
        self._listening.wait(max(0.0, deadline - time.monotonic()))
        if self._port is None:
            raise AnvilStartError(f"anvil did not report a port; output:\n{self.output()}")
        while time.monotonic() < deadline:
            if not self.is_running():
                break
            answered = _rpc_chain_id(self.port)
            if answered == self.chain_id:
                return
            if answered is not None:
                raise AnvilStartError(f"anvil answers chain id {answered}, not {self.chain_id}")
            time.sleep(0.01)
        raise AnvilStartError(f"anvil did not answer eth_chainId; output:\n{self.output()}")


def _anvil_args(binary: Path, chain_id: int, block_time: float | None) -> list[str]:
    args = [str(binary), "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id)]
    if block_time is not None:
        args += ["--block-time", f"{block_time:g}"]
    return args


def _rpc_chain_id(port: int) -> int | None:
    """``eth_chainId`` over plain HTTP, or None while anvil does not answer yet.

    Plain http.client rather than web3: this runs in a 10 ms polling loop before anyone
    needs a provider, and a refused connection is the normal answer at first.
    """
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
        return int(reply["result"], 16)
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        return None
    finally:
        conn.close()


_LIVE: set[Anvil] = set()
_LIVE_LOCK = threading.Lock()


def _register(node: Anvil) -> None:
    with _LIVE_LOCK:
        _LIVE.add(node)


def _unregister(node: Anvil) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(node)


@atexit.register
def _stop_all() -> None:
    """Last-resort guard: stop every node that is still running when the interpreter exits."""
    with _LIVE_LOCK:
        nodes = list(_LIVE)
    for node in nodes:
        node.stop()


def connect(rpc_url: str) -> Web3:
    """A web3 client for a local node; fails fast if it does not answer."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    if not w3.is_connected():
        raise DevnetError(f"no JSON-RPC node answers at {rpc_url}")
    return w3


# ------------------------------------------------------------------------- accounts


def dev_account(index: int) -> LocalAccount:
    """anvil's funded dev account ``index`` (0-9), derived from its public mnemonic.

    Derived at run time (BIP-44 path m/44'/60'/0'/0/index) so no private key literal sits in
    the source tree for secret scanners to flag or for anyone to copy into real config.
    """
    if not 0 <= index < DEV_ACCOUNT_COUNT:
        raise ValueError(f"anvil funds dev accounts 0-{DEV_ACCOUNT_COUNT - 1}, not {index}")
    return _derive_dev_account(index)


@functools.cache
def _derive_dev_account(index: int) -> LocalAccount:
    """Cached because BIP-39 seed stretching (PBKDF2, 2048 rounds) costs milliseconds a call."""
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return cast(LocalAccount, account)


# ---------------------------------------------------------------------------- token


@functools.cache
def load_artifact() -> dict[str, Any]:
    """The committed TestUSDC artifact: ``abi``, ``bytecode``, ``deployedBytecode`` and more."""
    try:
        return cast(dict[str, Any], json.loads(ARTIFACT_PATH.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise DevnetError(f"{ARTIFACT_PATH} is missing: run `npm run build:contracts`") from exc


def usdc_contract(w3: Web3) -> Contract:
    """The token at :data:`USDC_ADDRESS` with TestUSDC's ABI (installed or not)."""
    return w3.eth.contract(address=USDC_ADDRESS, abi=load_artifact()["abi"])


def install_usdc(w3: Web3) -> Contract:
    """Put TestUSDC at Base's USDC address and return it; a no-op if it is already there.

    The token is deployed normally from dev account 0 (which becomes the immutable minter),
    then its runtime code is copied to the USDC address. No storage is copied: the contract is
    written to need none (see contracts/TestUSDC.sol).
    """
    if _usdc_installed(w3):
        return usdc_contract(w3)
    deployed = _deploy_test_usdc(w3)
    runtime = w3.eth.get_code(deployed)
    _rpc(w3, "anvil_setCode", [USDC_ADDRESS, "0x" + bytes(runtime).hex()])
    return usdc_contract(w3)


def _deploy_test_usdc(w3: Web3) -> ChecksumAddress:
    artifact = load_artifact()
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=HexStr(artifact["bytecode"]))
    deployer = dev_account(0)
    tx = factory.constructor().build_transaction(_tx_base(w3, deployer))
    receipt = _send(w3, deployer, tx)
    address = receipt["contractAddress"]
    if address is None:
        raise DevnetError("TestUSDC deployment produced no contract address")
    return address


def _usdc_installed(w3: Web3) -> bool:
    """Whether the USDC address holds TestUSDC minted by dev account 0.

    The code there cannot equal the artifact byte for byte: solc leaves immutables (minter,
    cached domain separator, ...) as zero placeholders that the constructor fills in. So compare
    every byte the artifact does not leave as zero, then ask for the minter.
    """
    code = bytes(w3.eth.get_code(USDC_ADDRESS))
    expected = bytes.fromhex(load_artifact()["deployedBytecode"].removeprefix("0x"))
    if len(code) != len(expected):
        return False
    if any(want not in (0, got) for want, got in zip(expected, code, strict=True)):
        return False
    return bool(usdc_contract(w3).functions.minter().call() == dev_account(0).address)


# ----------------------------------------------------------- Permit2 and the 18-decimal coin


@functools.cache
def load_named_artifact(name: str) -> dict[str, Any]:
    """A committed artifact of ``contracts/`` by contract name (e.g. ``TestPermit2``)."""
    path = ARTIFACT_PATH.parent / f"{name}.json"
    try:
        return cast(dict[str, Any], json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise DevnetError(f"{path} is missing: run `npm run build:contracts`") from exc


def _install_at(w3: Web3, name: str, address: str) -> None:
    """Deploy artifact ``name`` from dev account 0, then copy its runtime code to ``address``."""
    artifact = load_named_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=HexStr(artifact["bytecode"]))
    deployer = dev_account(0)
    receipt = _send(w3, deployer, factory.constructor().build_transaction(_tx_base(w3, deployer)))
    deployed = receipt["contractAddress"]
    if deployed is None:
        raise DevnetError(f"{name} deployment produced no contract address")
    runtime = w3.eth.get_code(deployed)
    _rpc(w3, "anvil_setCode", [Web3.to_checksum_address(address), "0x" + bytes(runtime).hex()])


def install_permit2(w3: Web3) -> None:
    """Put our Permit2 and the x402 exact/upto proxies at their canonical addresses (idempotent)."""
    for name, address in PERMIT2_CONTRACTS:
        if not bytes(w3.eth.get_code(Web3.to_checksum_address(address))):
            _install_at(w3, name, address)


def usd18_contract(w3: Web3) -> Contract:
    """The token at :data:`USD18_ADDRESS` with TestUSD18's ABI."""
    return w3.eth.contract(address=USD18_ADDRESS, abi=load_named_artifact("TestUSD18")["abi"])


def install_usd18(w3: Web3) -> Contract:
    """Put TestUSD18 at MegaUSD's address (anvil must run with chain id 4326); idempotent."""
    if w3.eth.chain_id != MEGAETH.chain_id:
        raise DevnetError("TestUSD18 stands in for MegaUSD: run anvil with chain id 4326")
    if not bytes(w3.eth.get_code(USD18_ADDRESS)):
        _install_at(w3, "TestUSD18", USD18_ADDRESS)
    return usd18_contract(w3)


def mint_usd18(w3: Web3, to: str, amount: int) -> TxReceipt:
    """Mint ``amount`` base units (18 decimals) of TestUSD18 to ``to``, as the minter."""
    fn = usd18_contract(w3).functions.mint(Web3.to_checksum_address(to), amount)
    return transact(w3, dev_account(0), fn)


# -------------------------------------------------------------------------- helpers


def transact(
    w3: Web3, account: LocalAccount, fn: ContractFunction, *, gas: int | None = None
) -> TxReceipt:
    """Sign ``fn`` locally with ``account``, send it raw, and return the mined receipt.

    Pass ``gas`` to skip estimation, e.g. to mine a transaction that reverts (status 0);
    without it, a reverting call raises from estimation and nothing is sent.
    """
    params = _tx_base(w3, account)
    if gas is not None:
        params["gas"] = gas
    return _send(w3, account, fn.build_transaction(params))


def mint(w3: Web3, to: str, amount: int) -> TxReceipt:
    """Mint ``amount`` base units (6 decimals) of test USDC to ``to``, as the minter."""
    fn = usdc_contract(w3).functions.mint(Web3.to_checksum_address(to), amount)
    return transact(w3, dev_account(0), fn)


def usdc_balance(w3: Web3, addr: str) -> int:
    """``addr``'s test-USDC balance in base units."""
    balance = usdc_contract(w3).functions.balanceOf(Web3.to_checksum_address(addr)).call()
    return int(balance)


def eth_balance(w3: Web3, addr: str) -> int:
    """``addr``'s ETH balance in wei."""
    return int(w3.eth.get_balance(Web3.to_checksum_address(addr)))


def set_eth_balance(w3: Web3, addr: str, wei: int) -> None:
    """Set ``addr``'s ETH balance outright (``anvil_setBalance``)."""
    _rpc(w3, "anvil_setBalance", [Web3.to_checksum_address(addr), hex(wei)])


def snapshot(w3: Web3) -> str:
    """Snapshot the whole chain state; pass the id to :func:`revert` to go back to it."""
    return str(_rpc(w3, "evm_snapshot", []))


def revert(w3: Web3, snap_id: str) -> None:
    """Restore a snapshot. anvil forgets it (and later ones) afterwards: take a new one."""
    if not _rpc(w3, "evm_revert", [snap_id]):
        raise DevnetError(f"evm_revert refused snapshot {snap_id}")


def increase_time(w3: Web3, seconds: int) -> int:
    """Move chain time forward and mine a block so it takes effect; returns that block's time.

    Needed for validBefore/validAfter tests: contracts see ``block.timestamp``, which only
    advances when a block is mined.
    """
    _rpc(w3, "evm_increaseTime", [seconds])
    _rpc(w3, "evm_mine", [])
    return int(w3.eth.get_block("latest")["timestamp"])


def _tx_base(w3: Web3, account: LocalAccount) -> TxParams:
    return {
        "from": account.address,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": w3.eth.chain_id,
    }


def _send(w3: Web3, account: LocalAccount, tx: TxParams) -> TxReceipt:
    signed = account.sign_transaction(cast(dict[str, Any], tx))
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=_RECEIPT_TIMEOUT_S)


def _rpc(w3: Web3, method: str, params: Sequence[Any]) -> Any:
    """Call a non-standard (anvil/evm_*) RPC method; web3 raises if the node returns an error."""
    return w3.manager.request_blocking(RPCEndpoint(method), params)

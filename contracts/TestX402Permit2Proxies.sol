// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @dev The Permit2 SignatureTransfer interface the proxies call (the canonical ABI).
interface ISignatureTransfer {
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external;
}

/// @dev Permit2's canonical address (the same on every EVM chain, by CREATE2).
address constant PERMIT2 = 0x000000000022D473030F116dDEE9F6B43aC78BA3;

/// @title TestX402ExactPermit2Proxy: x402's `exact` Permit2 spender, for walletd's local chain.
/// @notice Implements the `settle` ABI the x402 reference facilitator calls
/// (x402/mechanisms/evm/constants.py, X402_EXACT_PERMIT2_PROXY_ABI): the payer signs a Permit2
/// transfer with this contract as spender and the witness (to, validAfter), so the funds can go
/// only to `witness.to`, and only the permitted amount. Written for walletd's tests; installed
/// with `anvil_setCode` at the x402 proxy's canonical address. The EIP-2612 `settleWithPermit`
/// path is not implemented.
contract TestX402ExactPermit2Proxy {
    struct Witness {
        address to;
        uint256 validAfter;
    }

    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)";
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,uint256 validAfter)");

    event Settled();

    error InvalidOwner();
    error InvalidDestination();
    error PaymentTooEarly();

    function settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external {
        if (owner == address(0)) revert InvalidOwner();
        if (witness.to == address(0)) revert InvalidDestination();
        if (block.timestamp < witness.validAfter) revert PaymentTooEarly();
        ISignatureTransfer(PERMIT2).permitWitnessTransferFrom(
            permit,
            ISignatureTransfer.SignatureTransferDetails(witness.to, permit.permitted.amount),
            owner,
            keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.validAfter)),
            WITNESS_TYPE_STRING,
            signature
        );
        emit Settled();
    }
}

/// @title TestX402UptoPermit2Proxy: x402's `upto` Permit2 spender, for walletd's local chain.
/// @notice Implements the `settle` ABI of X402_UPTO_PERMIT2_PROXY_ABI: the payer authorizes up to
/// `permit.permitted.amount`; the facilitator named in the witness (and only it) settles
/// `amount`, at most that, to `witness.to`. Installed at the x402 upto proxy's canonical address.
contract TestX402UptoPermit2Proxy {
    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";
    bytes32 public constant WITNESS_TYPEHASH =
        keccak256("Witness(address to,address facilitator,uint256 validAfter)");

    event Settled(uint256 amount);

    error InvalidOwner();
    error InvalidDestination();
    error PaymentTooEarly();
    error UnauthorizedFacilitator();
    error AmountExceedsPermitted();

    function settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external {
        if (owner == address(0)) revert InvalidOwner();
        if (witness.to == address(0)) revert InvalidDestination();
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
        if (block.timestamp < witness.validAfter) revert PaymentTooEarly();
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
        ISignatureTransfer(PERMIT2).permitWitnessTransferFrom(
            permit,
            ISignatureTransfer.SignatureTransferDetails(witness.to, amount),
            owner,
            keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter)),
            WITNESS_TYPE_STRING,
            signature
        );
        emit Settled(amount);
    }
}

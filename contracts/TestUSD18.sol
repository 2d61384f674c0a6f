// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title TestUSD18: a USD stablecoin without EIP-3009 and with 18 decimals, for walletd's tests.
/// @notice Stands in for MegaETH's MegaUSD (x402 default assets: name "MegaUSD", version "1",
/// 18 decimals, Permit2 transfer method, EIP-2612 permit). It has no transferWithAuthorization,
/// so it can be paid only through Permit2.
/// @dev Installed with `anvil_setCode` at MegaUSD's address on an anvil run with MegaETH's chain
/// id. As in TestUSDC, nothing it needs lives in constructor-written storage: name and symbol are
/// constants, the minter immutable, and OZ's EIP712 keeps name/version as immutables.
contract TestUSD18 is ERC20, ERC20Permit {
    string private constant NAME = "MegaUSD";
    string private constant SYMBOL = "MegaUSD";

    /// @notice The only account allowed to mint; the deployer.
    address public immutable minter;

    constructor() ERC20("", "") ERC20Permit(NAME) {
        minter = msg.sender;
    }

    function name() public pure override returns (string memory) {
        return NAME;
    }

    function symbol() public pure override returns (string memory) {
        return SYMBOL;
    }

    function decimals() public pure override returns (uint8) {
        return 18;
    }

    function mint(address to, uint256 amount) external {
        require(msg.sender == minter, "TestUSD18: caller is not the minter");
        _mint(to, amount);
    }
}

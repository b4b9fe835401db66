// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Fixture} from "./utils/Fixture.sol";
import {CreditToken} from "../src/CreditToken.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";

contract CreditTokenTest is Fixture {
    address internal alice;
    uint256 internal aliceKey;
    address internal bob = makeAddr("bob");

    function setUp() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
        (alice, aliceKey) = makeKey("alice");
    }

    function test_metadata() public view {
        assertEq(token.decimals(), 18, "decimals");
        assertEq(keccak256(bytes(token.symbol())), keccak256("PEC"), "symbol");
        assertTrue(token.hasRole(token.MINTER_ROLE(), operator), "minter");
    }

    function test_constructor_revertsWithoutAdmins() public {
        vm.expectRevert(CreditToken.NoAdmins.selector);
        new CreditToken("x", "x", new address[](0));
    }

    function test_constructor_revertsOnZeroAdmin() public {
        vm.expectRevert(CreditToken.ZeroAddress.selector);
        new CreditToken("x", "x", new address[](1));
    }

    function test_mint() public {
        vm.expectEmit(address(token));
        emit CreditToken.CreditsMinted(operator, alice, 5e18);
        vm.prank(operator);
        token.mint(alice, 5e18);
        assertEq(token.balanceOf(alice), 5e18, "balance");
        assertEq(token.totalSupply(), 5e18, "supply");
    }

    function test_mint_revertsForNonMinter() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, bob, token.MINTER_ROLE())
        );
        vm.prank(bob);
        token.mint(bob, 1);
    }

    function test_burn() public {
        vm.prank(operator);
        token.mint(alice, 5e18);
        vm.expectEmit(address(token));
        emit CreditToken.CreditsBurned(alice, 2e18);
        vm.prank(alice);
        token.burn(2e18);
        assertEq(token.balanceOf(alice), 3e18, "balance");
        assertEq(token.totalSupply(), 3e18, "supply");
    }

    function test_permit() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                alice,
                bob,
                7e18,
                token.nonces(alice),
                deadline
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(aliceKey, digest);
        token.permit(alice, bob, 7e18, deadline, v, r, s);
        assertEq(token.allowance(alice, bob), 7e18, "allowance");
        assertEq(token.nonces(alice), 1, "nonce");
    }

    function testFuzz_transferConservesSupply(uint256 minted, uint256 sent) public {
        minted = bound(minted, 0, 1e30);
        sent = bound(sent, 0, minted);
        vm.prank(operator);
        token.mint(alice, minted);
        vm.prank(alice);
        token.transfer(bob, sent);
        assertEq(token.balanceOf(alice) + token.balanceOf(bob), token.totalSupply(), "conserved");
        assertEq(token.balanceOf(bob), sent, "received");
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Escrow: a unidirectional TIP-20 payment channel (MPP "session", protocol v1)
/// @notice The payer escrows a TIP-20 deposit; the payee is paid with EIP-712 vouchers that carry a
///         *cumulative* amount, settled on chain whenever the payee likes.  Written for mpp_claude
///         from draft-tempo-session-00 ("Channel Escrow Contract") and shared/docs/mpp-protocol.md §4.
///
/// Interface: the ABI of the deployed v1 `TempoStreamChannel` (function selectors, events, errors,
/// `getChannel` tuple layout, EIP-712 domain "Tempo Stream Channel"/"1"), so clients and servers can
/// talk to this contract and to the canonical deployments with the same calldata.  `topUp` takes a
/// uint256 like the deployed contract (the draft shows uint128; the selector follows the deployment).
///
/// Storage: TIP-1000 (Tempo T1+) charges 250k gas for every storage slot that goes from zero to
/// non-zero, so a channel is packed into 3 slots (4 with a delegated signer) instead of 5: amounts
/// are stored as uint96, and anything above 2^96 - 1 base units (7.9e16 USD at 6 decimals) is
/// refused with `DepositOverflow`.
///
/// Rules (draft-tempo-session-00, "Access Control" and "Signature Verification"):
///   open: anyone, the caller is the payer; pulls the deposit with `transferFrom` (approve first,
///         e.g. `approve` + `open` as two calls of one Tempo 0x76 transaction).
///   settle, close: payee only; the voucher must be signed by `authorizedSigner`, or by the payer
///         when no signer was delegated; low-s only; `verifyingContract` is this contract.
///   topUp, requestClose, withdraw: payer only; topUp cancels a pending close request.
///   withdraw: only after `CLOSE_GRACE_PERIOD` (15 min) since `requestClose`.
/// A finalized channel keeps its record (so its id can never be reopened) and accepts nothing.
contract Escrow {
    // ---------------------------------------------------------------------------------------------
    // Types, constants, storage
    // ---------------------------------------------------------------------------------------------

    /// @notice The channel view returned by `getChannel` (same field order as the deployed v1 ABI).
    struct Channel {
        bool finalized;
        uint64 closeRequestedAt;
        address payer;
        address payee;
        address token;
        address authorizedSigner;
        uint128 deposit;
        uint128 settled;
    }

    /// Packed storage: slot 0 payer|closeRequestedAt|finalized, slot 1 payee|deposit,
    /// slot 2 token|settled, slot 3 authorizedSigner (stays zero when the payer signs).
    struct Record {
        address payer;
        uint64 closeRequestedAt;
        bool finalized;
        address payee;
        uint96 deposit;
        address token;
        uint96 settled;
        address authorizedSigner;
    }

    uint64 public constant CLOSE_GRACE_PERIOD = 15 minutes;

    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)");

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("Tempo Stream Channel");
    bytes32 private constant VERSION_HASH = keccak256("1");

    /// secp256k1 n / 2: signatures with a larger s are the malleable twin and are refused.
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    mapping(bytes32 => Record) private _channels;

    // ---------------------------------------------------------------------------------------------
    // Events and errors (the deployed v1 ABI)
    // ---------------------------------------------------------------------------------------------

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address token,
        address authorizedSigner,
        bytes32 salt,
        uint256 deposit
    );
    event Settled(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 cumulativeAmount,
        uint256 deltaPaid,
        uint256 newSettled
    );
    event TopUp(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 additionalDeposit,
        uint256 newDeposit
    );
    event CloseRequested(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 closeGraceEnd);
    event CloseRequestCancelled(bytes32 indexed channelId, address indexed payer, address indexed payee);
    /// `settledToPayee` is the channel's final cumulative settled amount, `refundedToPayer` the rest.
    event ChannelClosed(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 settledToPayee,
        uint256 refundedToPayer
    );

    error ChannelAlreadyExists();
    error ChannelNotFound();
    error ChannelFinalized();
    error InvalidSignature();
    error AmountExceedsDeposit();
    error AmountNotIncreasing();
    error NotPayer();
    error NotPayee();
    error TransferFailed();
    error CloseNotReady();
    error InvalidPayee();
    error InvalidToken();
    error ZeroDeposit();
    error DepositOverflow();

    // ---------------------------------------------------------------------------------------------
    // Payer functions
    // ---------------------------------------------------------------------------------------------

    /// @notice Open a channel from the caller (the payer) to `payee`, escrowing `deposit` of `token`.
    /// @param authorizedSigner key allowed to sign vouchers; zero means the payer signs them.
    /// @return channelId `computeChannelId(msg.sender, payee, token, salt, authorizedSigner)`.
    function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner)
        external
        returns (bytes32 channelId)
    {
        if (payee == address(0)) revert InvalidPayee();
        if (token == address(0)) revert InvalidToken();
        if (deposit == 0) revert ZeroDeposit();
        if (deposit > type(uint96).max) revert DepositOverflow();
        channelId = computeChannelId(msg.sender, payee, token, salt, authorizedSigner);
        Record storage ch = _channels[channelId];
        if (ch.payer != address(0)) revert ChannelAlreadyExists();

        ch.payer = msg.sender;
        ch.payee = payee;
        ch.deposit = uint96(deposit);
        ch.token = token;
        if (authorizedSigner != address(0)) ch.authorizedSigner = authorizedSigner;

        _pullFrom(token, msg.sender, deposit);
        emit ChannelOpened(channelId, msg.sender, payee, token, authorizedSigner, salt, deposit);
    }

    /// @notice Add `additionalDeposit` to the caller's channel; cancels a pending close request.
    function topUp(bytes32 channelId, uint256 additionalDeposit) external {
        Record storage ch = _live(channelId);
        if (msg.sender != ch.payer) revert NotPayer();
        if (additionalDeposit == 0) revert ZeroDeposit();
        if (additionalDeposit > type(uint96).max) revert DepositOverflow();
        uint256 newDeposit = uint256(ch.deposit) + additionalDeposit; // both < 2^96: no overflow
        if (newDeposit > type(uint96).max) revert DepositOverflow();

        ch.deposit = uint96(newDeposit);
        bool cancelled = ch.closeRequestedAt != 0;
        if (cancelled) ch.closeRequestedAt = 0;

        _pullFrom(ch.token, msg.sender, additionalDeposit);
        if (cancelled) emit CloseRequestCancelled(channelId, ch.payer, ch.payee);
        emit TopUp(channelId, ch.payer, ch.payee, additionalDeposit, newDeposit);
    }

    /// @notice Start the forced-close grace period (a repeated call keeps the first timestamp).
    function requestClose(bytes32 channelId) external {
        Record storage ch = _live(channelId);
        if (msg.sender != ch.payer) revert NotPayer();
        if (ch.closeRequestedAt == 0) {
            ch.closeRequestedAt = uint64(block.timestamp);
            emit CloseRequested(channelId, ch.payer, ch.payee, block.timestamp + CLOSE_GRACE_PERIOD);
        }
    }

    /// @notice After the grace period, refund everything not yet settled to the payer and finalize.
    function withdraw(bytes32 channelId) external {
        Record storage ch = _live(channelId);
        if (msg.sender != ch.payer) revert NotPayer();
        uint64 requestedAt = ch.closeRequestedAt;
        if (requestedAt == 0 || block.timestamp < uint256(requestedAt) + CLOSE_GRACE_PERIOD) revert CloseNotReady();

        uint256 refund = uint256(ch.deposit) - ch.settled;
        ch.finalized = true;
        if (refund > 0) _pay(ch.token, ch.payer, refund);
        emit ChannelClosed(channelId, ch.payer, ch.payee, ch.settled, refund);
    }

    // ---------------------------------------------------------------------------------------------
    // Payee functions
    // ---------------------------------------------------------------------------------------------

    /// @notice Pay the payee `cumulativeAmount - settled` under a voucher; the channel stays open.
    function settle(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external {
        Record storage ch = _live(channelId);
        if (msg.sender != ch.payee) revert NotPayee();
        uint96 settled = ch.settled;
        if (cumulativeAmount <= settled) revert AmountNotIncreasing();
        if (cumulativeAmount > ch.deposit) revert AmountExceedsDeposit();
        _checkVoucher(ch, channelId, cumulativeAmount, signature);

        uint256 delta = uint256(cumulativeAmount) - settled;
        ch.settled = uint96(cumulativeAmount); // <= deposit <= 2^96 - 1
        _pay(ch.token, ch.payee, delta);
        emit Settled(channelId, ch.payer, ch.payee, cumulativeAmount, delta, cumulativeAmount);
    }

    /// @notice Final settlement and refund.  Pays `cumulativeAmount - settled` under the voucher when
    ///         it is above what was already settled (no signature is needed otherwise: the payee
    ///         then only gives up), refunds `deposit - settled` to the payer and finalizes.
    function close(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external {
        Record storage ch = _live(channelId);
        if (msg.sender != ch.payee) revert NotPayee();
        if (cumulativeAmount > ch.deposit) revert AmountExceedsDeposit();
        uint256 settled = ch.settled;
        uint256 delta;
        if (cumulativeAmount > settled) {
            _checkVoucher(ch, channelId, cumulativeAmount, signature);
            delta = uint256(cumulativeAmount) - settled;
            settled = cumulativeAmount;
            ch.settled = uint96(settled);
        }
        uint256 refund = uint256(ch.deposit) - settled;
        ch.finalized = true;

        if (delta > 0) _pay(ch.token, ch.payee, delta);
        if (refund > 0) _pay(ch.token, ch.payer, refund);
        if (delta > 0) emit Settled(channelId, ch.payer, ch.payee, cumulativeAmount, delta, settled);
        emit ChannelClosed(channelId, ch.payer, ch.payee, settled, refund);
    }

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /// @notice The channel id for these parameters on this contract and chain.
    function computeChannelId(address payer, address payee, address token, bytes32 salt, address authorizedSigner)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(payer, payee, token, salt, authorizedSigner, address(this), block.chainid));
    }

    /// @notice A channel's state; all-zero when it does not exist.
    function getChannel(bytes32 channelId) public view returns (Channel memory) {
        Record storage ch = _channels[channelId];
        return Channel({
            finalized: ch.finalized,
            closeRequestedAt: ch.closeRequestedAt,
            payer: ch.payer,
            payee: ch.payee,
            token: ch.token,
            authorizedSigner: ch.authorizedSigner,
            deposit: ch.deposit,
            settled: ch.settled
        });
    }

    /// @notice The same fields as `getChannel`, flat (the deployed contract's public-mapping getter).
    function channels(bytes32 channelId)
        external
        view
        returns (
            bool finalized,
            uint64 closeRequestedAt,
            address payer,
            address payee,
            address token,
            address authorizedSigner,
            uint128 deposit,
            uint128 settled
        )
    {
        Record storage ch = _channels[channelId];
        return (ch.finalized, ch.closeRequestedAt, ch.payer, ch.payee, ch.token, ch.authorizedSigner, ch.deposit,
            ch.settled);
    }

    /// @notice `getChannel` for many ids in one call.
    function getChannelsBatch(bytes32[] calldata channelIds) external view returns (Channel[] memory channelStates) {
        channelStates = new Channel[](channelIds.length);
        for (uint256 i = 0; i < channelIds.length; ++i) {
            channelStates[i] = getChannel(channelIds[i]);
        }
    }

    /// @notice The EIP-712 digest a voucher for (`channelId`, `cumulativeAmount`) signs.
    function getVoucherDigest(bytes32 channelId, uint128 cumulativeAmount) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount));
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
    }

    /// @notice EIP-712 domain separator: "Tempo Stream Channel", "1", chain id, this contract.
    /// @dev Computed per call (one keccak) rather than cached in immutables, so the runtime code
    ///      is exactly `deployedBytecode` of the build artifact and any deployment can be checked
    ///      byte for byte with eth_getCode.
    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @notice EIP-5267 description of the EIP-712 domain.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "Tempo Stream Channel", "1", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    // ---------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------

    function _live(bytes32 channelId) private view returns (Record storage ch) {
        ch = _channels[channelId];
        if (ch.payer == address(0)) revert ChannelNotFound();
        if (ch.finalized) revert ChannelFinalized();
    }

    /// Recover the voucher signer (65-byte r|s|v with v 27/28, or 64-byte EIP-2098 r|vs) and require
    /// the channel's authorized signer, or the payer when none was delegated.
    function _checkVoucher(Record storage ch, bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature)
        private
        view
    {
        bytes32 r;
        bytes32 s;
        uint8 v;
        if (signature.length == 65) {
            r = bytes32(signature[0:32]);
            s = bytes32(signature[32:64]);
            v = uint8(signature[64]);
        } else if (signature.length == 64) {
            r = bytes32(signature[0:32]);
            bytes32 vs = bytes32(signature[32:64]);
            s = vs & bytes32(0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff);
            v = uint8(uint256(vs) >> 255) + 27;
        } else {
            revert InvalidSignature();
        }
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) revert InvalidSignature();
        address signer = ecrecover(getVoucherDigest(channelId, cumulativeAmount), v, r, s);
        address expected = ch.authorizedSigner == address(0) ? ch.payer : ch.authorizedSigner;
        if (signer == address(0) || signer != expected) revert InvalidSignature();
    }

    /// `transferFrom(from, this, amount)`.
    function _pullFrom(address token, address from, uint256 amount) private {
        _callToken(token, abi.encodeWithSelector(0x23b872dd, from, address(this), amount));
    }

    /// `transfer(to, amount)`.
    function _pay(address token, address to, uint256 amount) private {
        _callToken(token, abi.encodeWithSelector(0xa9059cbb, to, amount));
    }

    /// TIP-20 `transfer`/`transferFrom` return a bool: require exactly `true`.  An empty answer is
    /// refused too, so a token address without code (an EOA) can never fake a deposit.
    function _callToken(address token, bytes memory data) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || ret.length != 32 || abi.decode(ret, (uint256)) != 1) {
            revert TransferFailed();
        }
    }
}

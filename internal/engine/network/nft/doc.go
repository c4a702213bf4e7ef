// Package nft owns berth's packet rules: one nftables table (family ip) per
// daemon, holding masquerade, isolation between networks and published-port
// DNAT. The whole table is replaced in one atomic netlink batch from a
// desired Ruleset every time something changes (level-triggered, safe to
// repeat), so there is never a half-applied state and nothing to diff.
//
// It is Linux-only; elsewhere the package is empty.
package nft

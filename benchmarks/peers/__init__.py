"""Peer systems for `make bench-peers` (see __main__)."""

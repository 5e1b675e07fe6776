"""Networks and objectives for invariant-equivariant self-supervised learning. No file I/O."""

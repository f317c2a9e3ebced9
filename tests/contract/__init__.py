"""The Storage contract suite: every backend runs these tests unchanged."""

"""Weight conversion from other frameworks' files into skinjax's Flax variables."""

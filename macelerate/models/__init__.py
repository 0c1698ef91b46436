"""Loading, describing, converting and running mace-torch models."""

"""The embedded demo: a small MACE trained by this project and a graphene-oxide structure."""

"""Neighbour graphs in mace-torch's input layout, built with vesin."""

from macelerate.graph.batch import GRAPH_KEYS, build_graph
from macelerate.graph.caps import cap_neighbors
from macelerate.graph.neighbors import radius_graph

__all__ = ["GRAPH_KEYS", "build_graph", "cap_neighbors", "radius_graph"]

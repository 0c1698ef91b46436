"""The padded receiver-major layout and its per-graph cache."""

from __future__ import annotations

import copy
import pickle

import torch

from macelerate.runtime.neighbour_layout import LayoutCache, NeighbourLayout


def test_layout_lists_every_edge_once_by_receiver():
    edge_index = torch.tensor([[0, 1, 2, 3, 0], [1, 0, 1, 1, 3]])
    layout = NeighbourLayout.build(edge_index, 5)
    assert layout.k == 3  # atom 1 receives three edges
    slots = layout.edge_of_slot.view(5, 3)
    valid = layout.valid.view(5, 3)
    assert sorted(slots[valid].tolist()) == [0, 1, 2, 3, 4]
    assert slots[1][valid[1]].tolist() == [0, 2, 3]  # in edge order
    assert valid.sum(1).tolist() == [1, 3, 0, 1, 0]
    senders = layout.sender_of_slot.view(5, 3)
    assert senders[1][valid[1]].tolist() == [0, 2, 3]
    gathered = layout.gather(torch.arange(5.0).unsqueeze(1) + 1, zero_padding=True)
    assert gathered[2].abs().sum() == 0 and gathered[1, :, 0].tolist() == [1.0, 3.0, 4.0]


def test_cache_is_keyed_on_the_tensor_object_not_its_memory():
    cache = LayoutCache()
    edges = torch.tensor([[0, 1], [1, 0]])
    first = cache.get(edges, 2)
    assert cache.get(edges, 2) is first
    same_values = edges.clone()
    assert cache.get(same_values, 2) is not first  # another tensor: rebuilt, never assumed
    edges2 = torch.tensor([[0, 1], [1, 0]])
    rebuilt = cache.get(edges2, 2)
    edges2[0, 0] = 1  # modified in place: version counter changes
    assert cache.get(edges2, 2) is not rebuilt


def test_cache_copies_and_pickles_empty():
    cache = LayoutCache()
    cache.get(torch.tensor([[0], [1]]), 2)
    assert copy.deepcopy(cache)._entry is None
    assert pickle.loads(pickle.dumps(cache))._entry is None

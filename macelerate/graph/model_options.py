"""The graph a model asks for: cutoff, elements and its own neighbour caps.

Models with caps (students) describe them with ``graph_options()`` (``build_graph`` keywords such as
``max_neighbors``, or a larger ``cutoff`` for a smooth cap) and ``edge_selection()`` (keywords of
:func:`~macelerate.graph.smooth_cap.select_smooth_cap_edges`). Inference
(:meth:`macelerate.Potential.build_graph`) and training (:mod:`macelerate.train.data`) both read
them here, so both build identical graphs.
"""

from __future__ import annotations

from typing import Any

import torch


def model_graph_options(model: torch.nn.Module) -> dict[str, Any]:
    """``cutoff``, ``z_table`` and the model's ``graph_options()`` (``build_graph`` keywords)."""
    mace: Any = model  # r_max, atomic_numbers: buffers (macelerate.mace.contract)
    options: dict[str, Any] = {
        "cutoff": float(mace.r_max),
        "z_table": [int(z) for z in mace.atomic_numbers],
    }
    extra = getattr(model, "graph_options", None)
    if callable(extra):
        options.update(extra())
    return options


def model_edge_selection(model: torch.nn.Module) -> dict[str, Any] | None:
    """The model's ``edge_selection()`` (smooth-cap edge pruning keywords), or ``None``."""
    selection = getattr(model, "edge_selection", None)
    return selection() if callable(selection) else None


def select_model_edges(
    graph: dict[str, torch.Tensor], selection: dict[str, Any] | None
) -> dict[str, torch.Tensor]:
    """``graph`` keeping only edges a smooth cap can weight (as is when ``selection`` is None)."""
    if selection is None:
        return graph
    from macelerate.graph.smooth_cap import select_smooth_cap_edges

    return select_smooth_cap_edges(graph, **selection)

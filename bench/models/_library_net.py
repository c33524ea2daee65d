"""Networks from torchvision and timm split into penultimate features and a final Linear, as
:class:`~bench.models._classifier.Classifier` expects (``net.features(x)``, ``net.fc``)."""

from __future__ import annotations

from torch import Tensor, nn


class HeadSplit(nn.Module):
    """``body`` is the library's network with its final Linear replaced by ``nn.Identity``, so
    its output is the input of that layer (the penultimate features); ``fc`` is that Linear.
    ``body(x)`` then ``fc`` computes exactly the library model's forward pass."""

    def __init__(self, body: nn.Module, fc: nn.Linear):
        super().__init__()
        self.body = body
        self.fc = fc

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


class TimmBody(nn.Module):
    """A timm model's features through its own API: ``forward_head(forward_features(x),
    pre_logits=True)``; ``get_classifier()`` maps them to logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)


def last_linear_name(net: nn.Module) -> str:
    """The last ``nn.Linear`` registered in ``net``: its classification head (torchvision's
    ``fc``, ``classifier.6``, ``heads.head``, ``head``)."""
    name = next((n for n, m in reversed(list(net.named_modules())) if isinstance(m, nn.Linear)),
                None)
    if name is None:
        from bench.errors import BenchError

        raise BenchError(f"{type(net).__name__} has no Linear classification head; penultimate "
                         f"features are not defined")
    return name


def split_last_linear(net: nn.Module) -> HeadSplit:
    """Cut ``net`` before its last Linear layer (see :func:`last_linear_name`)."""
    name = last_linear_name(net)
    head = net.get_submodule(name)
    parent_name, _, attr = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, attr, nn.Identity())
    return HeadSplit(net, head)


__all__ = ["HeadSplit", "TimmBody", "last_linear_name", "split_last_linear"]

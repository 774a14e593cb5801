"""Shared fixtures: small models built in code whose counts are known by hand."""

from __future__ import annotations

import pytest
from torch import nn


class TiedLM(nn.Module):
    """Embedding(100, 16) and a bias-free head tied to it: 1,600 parameters, not 3,200."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.norm = nn.LayerNorm(16)  # 32
        self.head = nn.Linear(16, 100, bias=False)
        self.head.weight = self.embed.weight


class FrozenBackbone(nn.Module):
    """Linear(10, 20) frozen (220) and Linear(20, 3) trainable (63): 283 in all."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(10, 20)
        self.head = nn.Linear(20, 3)
        for p in self.backbone.parameters():
            p.requires_grad_(False)


@pytest.fixture
def article_model():
    from paramscope.examples import MyModel

    return MyModel()


@pytest.fixture
def tied_lm():
    return TiedLM()


@pytest.fixture
def frozen_backbone():
    return FrozenBackbone()

"""The built-in example: the model of the article paramscope grew from (``../shared/seed``).

Two 3x3 convolutions and a linear head on 32x16x16 features; ``named_parameters()`` gives six tensors
and 87,018 parameters, all trainable. ``paramscope`` with no source inspects it.
"""

from __future__ import annotations

import torch
from torch import nn


class MyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=1, padding=1)
        self.fc = nn.Linear(32 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.conv2(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)

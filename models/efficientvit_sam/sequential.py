"""Containers of the image encoder: a plain op sequence and a residual wrapper."""

from collections.abc import Sequence

from torch import Tensor, nn


class OpSequential(nn.Module):
    """Apply `op_list` in order (state-dict keys `op_list.<i>.*`, as in the official layout).

    Args:
        ops: Modules applied one after the other; shapes must chain.
    """

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x: Tensor) -> Tensor:
        """Run every op on a (B, C, H, W) tensor."""
        for op in self.op_list:
            x = op(x)
        return x


class ResidualBlock(nn.Module):
    """`main(x) + x` when `identity_shortcut`, else just `main(x)` (a downsampling block).

    Args:
        main: The residual branch (state-dict keys `main.*`).
        identity_shortcut: Whether the input is added back (requires equal in/out shapes).
    """

    def __init__(self, main: nn.Module, *, identity_shortcut: bool) -> None:
        super().__init__()
        self.main = main
        self.identity_shortcut = identity_shortcut

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C, H, W) to the shape `main` produces."""
        out: Tensor = self.main(x)
        return out + x if self.identity_shortcut else out

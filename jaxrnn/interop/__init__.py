"""Weight conversion between jaxrnn and PyTorch's ``nn.RNN/LSTM/GRU`` or flax linen's cells.

PyTorch and flax are imported only when a converter that needs them is called;
jaxrnn itself depends on neither.
"""

from jaxrnn.interop.flax_linen import carry_from_flax, carry_to_flax, from_flax, to_flax
from jaxrnn.interop.pytorch import (
    from_torch,
    params_from_torch_state,
    params_to_torch_state,
    to_torch,
)

__all__ = [
    "carry_from_flax",
    "carry_to_flax",
    "from_flax",
    "from_torch",
    "params_from_torch_state",
    "params_to_torch_state",
    "to_flax",
    "to_torch",
]

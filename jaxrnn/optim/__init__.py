"""Optimizers written from the equations, interchangeable with optax's.

Every optimizer is a `GradientTransformation(init, update)`:

    tx = optim.adam(learning_rate=1e-3)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    params = optim.apply_updates(params, updates)

The optimizers are `chain`s of small building blocks (`trace`,
`scale_by_rss`, `scale_by_rms`, `scale_by_adadelta`, `scale_by_adam`, …)
that read like the update rules in docs/optimizers.md. Their names and
hyper-parameter names follow optax; their trajectories equal optax's (and
PyTorch's, where the algorithm is the same), which the tests check step by
step. Learning rates are positive and may be schedules.
"""

from jaxrnn.optim.adam import ScaleByAdamState, scale_by_adam, scale_by_adamax
from jaxrnn.optim.base import (
    EmptyState,
    GradientTransformation,
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    Updates,
    apply_updates,
    chain,
    identity,
    safe_increment,
)
from jaxrnn.optim.clipping import clip, clip_by_global_norm, global_norm
from jaxrnn.optim.guard import SkipNotFiniteState, all_finite, skip_not_finite
from jaxrnn.optim.optimizers import adadelta, adagrad, adam, adamax, adamw, nadam, rmsprop, sgd
from jaxrnn.optim.scaling import (
    AddDecayedWeightsState,
    ScaleByScheduleState,
    add_decayed_weights,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)
from jaxrnn.optim.schedules import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    join_schedules,
    linear_schedule,
    warmup_cosine_decay_schedule,
)
from jaxrnn.optim.transforms import (
    ScaleByAdadeltaState,
    ScaleByRmsState,
    ScaleByRssState,
    TraceState,
    scale_by_adadelta,
    scale_by_rms,
    scale_by_rss,
    trace,
)

__all__ = [
    "AddDecayedWeightsState",
    "EmptyState",
    "GradientTransformation",
    "OptState",
    "Params",
    "ScalarOrSchedule",
    "ScaleByAdadeltaState",
    "ScaleByAdamState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "ScaleByScheduleState",
    "Schedule",
    "SkipNotFiniteState",
    "TraceState",
    "Updates",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "add_decayed_weights",
    "all_finite",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_global_norm",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "global_norm",
    "identity",
    "join_schedules",
    "linear_schedule",
    "nadam",
    "rmsprop",
    "safe_increment",
    "scale",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_schedule",
    "sgd",
    "skip_not_finite",
    "trace",
    "warmup_cosine_decay_schedule",
]

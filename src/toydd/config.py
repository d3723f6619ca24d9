"""The configuration of one training run: a plain, frozen dataclass.

Defaults are the paper's: n = 10,000 features at sparsity S = 0.999, 50,000
full-batch AdamW steps at lr 1e-3 with weight decay 1e-2, a linear warm-up over
the first 5% of steps and a half-cosine decay to zero.

``T`` is the number of training points, or ``math.inf`` for infinite data (a
fresh batch of ``online_batch`` points every step). In JSON it is written as
the string ``"inf"``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from .errors import ToyddError

INF = math.inf

# Flush-to-zero of AdamW's moments, before they reach float32's subnormal range (below 1.2e-38). A parameter
# whose gradient stops (a feature no point activates: most of them in the memorization regime) has its
# moments decay geometrically, m by beta1 and v by beta2 per step; v then spends ~16,000 steps among the
# subnormals, where x86 CPUs compute ~10x slower (microcode assists; measured: one AdamW call on 120,000
# parameters 0.35 ms with normal moments, 16-22 ms with subnormal ones; a T = 3 paper-scale job ran at
# 15 ms a step late in training, for ~1 ms early). Zeroing them earlier changes nothing a float32 update
# can show: |m| < 1e-30 moves a parameter by < lr * 1e-30 / eps, and v < 1e-36 adds < 3e-17 to a
# denominator of at least Adam's eps (1e-8, times n under the mean loss): both below one float32 ulp of
# what they change, unless eps is set below ~1e-12 or a parameter sits below ~1e-18. Both backends
# (training._adamw, training_torch) flush alike.
ADAM_M_TINY = 1e-30
ADAM_V_TINY = 1e-36
ADAM_G_TINY = 4e-18  # (1 - beta2) g^2 below float32's normal range: left out of v (it is flushed anyway)

# How often a training saves its state to resume from after a kill (training.train_batch's checkpoint).
CHECKPOINT_SECONDS = 300.0


def env_setting(name: str, default, parse, valid, must: str):
    """A setting from the environment variable ``name`` (``default`` when unset): ``parse(text)``, which must
    satisfy ``valid``; else ToyddError "``name`` must be ``must``, got ..."."""
    import os

    v = os.environ.get(name)
    if v is None:
        return default
    try:
        x = parse(v)
    except ValueError:
        x = None
    if x is None or not valid(x):
        raise ToyddError(f"{name} must be {must}, got {v!r}")
    return x


def checkpoint_seconds() -> float:
    """Seconds between two saves of a training's state: the environment variable TOYDD_CHECKPOINT_SECONDS
    (e.g. 60 on machines that are often preempted), else CHECKPOINT_SECONDS."""
    return env_setting("TOYDD_CHECKPOINT_SECONDS", CHECKPOINT_SECONDS, float, lambda x: x >= 0,
                       "a number of seconds >= 0")


@dataclass(frozen=True)
class TrainConfig:
    # --- data -------------------------------------------------------------
    n: int = 10_000  # number of sparse features
    m: int = 2  # hidden dimensions
    T: float = 1_000  # training points (an int), or math.inf for infinite data
    sparsity: float = 0.999  # probability that a feature of a point is 0
    data_seed: int = 0  # which training set
    data_path: str | None = None  # user-supplied .npz instead of synthetic data
    test_size: int = 10_000  # fresh test points, shared by every model of one (n, S)
    test_seed: int = 1_000_003  # seed of that shared test set
    online_batch: int = 8_192  # batch size per step when T is infinite
    importance_decay: float = 1.0  # feature importance I_i = decay**i (1.0: uniform, as in the paper)
    repeated_points: int = 0  # k distinct points that each appear `repeats` times inside the T (Jermyn's extension)
    repeats: int = 1  # R: copies of each repeated point
    nested_data: bool = False  # training sets of one data seed are prefixes of one sequence (T < T' => subset)
    # --- model ------------------------------------------------------------
    tied: bool = True  # x' = ReLU(W^T W x + b); False unties W_up (paper footnote 1)
    init_seeds: int = 1  # best-of-k: train k init seeds, keep the lowest final training loss
    init_seed_base: int = 0  # init seeds are base, base+1, ..., base+k-1
    init_path: str | None = None  # warm start from .safetensors / .npz with W, b[, W_up]
    init_from_run: str | None = None  # warm start from the final parameters of run <key> of the same results store
    # --- optimisation -----------------------------------------------------
    steps: int = 50_000
    warmup: int | None = None  # None: 5% of steps
    lr: float = 1e-3
    weight_decay: float = 1e-2  # decoupled (AdamW), on W, b (and W_up)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    # --- recipe variants (docs/REPLICATION.md: which recipe gives the paper's figure) -----
    # "mean" (the default) averages the squared error over all T*n elements, as
    # torch's MSELoss does: it gives the paper's published figures. "sum" is the
    # formula the paper's text writes (summed over features, averaged over
    # points): it gives Jermyn's replication (middle-regime test losses of ~50-450
    # at n = 10,000). AdamW is invariant to a constant loss scale except through
    # eps, so "mean" trains exactly like "sum" with eps * n: that is how it is
    # implemented (see adam_eps). Reported losses always use the "sum"
    # convention, so 1.0 is the all-zeros model whatever the recipe.
    loss_norm: str = "mean"  # mean | sum
    init_scale: float = 1.0  # multiplies the Xavier-normal std
    bias_init: float = 0.0  # every b_i starts here
    warmup_from_zero: bool = False  # warm-up lr*s/W (first step does nothing, torch LambdaLR style) instead of lr*(s+1)/W
    init_method: str = "xavier"  # xavier | construction (start from the explicit T-gon memorizing solution)
    # --- records ----------------------------------------------------------
    history_every: int | None = None  # training loss every k steps (None: steps // 1000, at least 1)
    snapshots: int = 32  # log-spaced parameter snapshots kept for movies
    device: str = "auto"  # cpu | cuda | auto

    # ---------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    @property
    def infinite(self) -> bool:
        return math.isinf(self.T)

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else int(round(0.05 * self.steps))

    @property
    def adam_eps(self) -> float:
        """The eps AdamW uses on the summed loss: eps * n for a mean-normalized loss (same updates)."""
        return self.eps * self.n if self.loss_norm == "mean" else self.eps

    @property
    def history_stride(self) -> int:
        return self.history_every if self.history_every is not None else max(1, self.steps // 1000)

    @property
    def init_seed_list(self) -> list[int]:
        return [self.init_seed_base + k for k in range(self.init_seeds)]

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ToyddError(msg)

        F32_MAX = 3.4028234663852886e38  # numpy.finfo(float32).max: parameters and losses are float32 in the kernels
        F32_TINY = 1.1754943508222875e-38  # numpy.finfo(float32).tiny: the smallest normal float32

        # Types first, from the annotations: a YAML string, a bool where an int
        # belongs, a None where a value is needed is named, never compared. Every
        # check below can rely on them.
        for f in dataclasses.fields(self):
            _check_type(f.name, f.type, getattr(self, f.name))
        for name in ("n", "m", "steps", "test_size", "online_batch", "init_seeds"):
            v = getattr(self, name)
            need(v > 0, f"{name} must be positive, got {v}")
        if not math.isinf(self.T):
            need(self.T == int(self.T) and self.T > 0, f"T must be a positive integer or inf, got {self.T}")
            need(self.T <= MAX_T, f"T must be at most {MAX_T:.0e} points (or inf for infinite data), got {self.T:.3g}")
        else:
            need(self.T > 0, "T must be a positive integer or inf, got -inf")
        need(0.0 <= self.sparsity < 1.0,
             f"sparsity S must be in [0, 1), got {self.sparsity}")
        need(self.warmup is None or 0 <= self.warmup <= self.steps,
             f"warmup must be between 0 and steps ({self.steps}), got {self.warmup}")
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be positive, got {self.lr}")
        need(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"weight decay must be >= 0, got {self.weight_decay}")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "betas must be in [0, 1)")
        # As for eps below: an lr under the smallest normal float32 rounds to 0 in AdamW and trains nothing.
        # (A huge lr or weight decay is a training that diverges, exit 3: docs/RELIABILITY.md row 11.)
        need(self.lr >= F32_TINY, f"lr {self.lr!r} is too small: AdamW runs in float32, where it is subnormal "
                                  f"or 0 (use lr >= {F32_TINY:.3g})")
        need(math.isfinite(self.eps) and self.eps > 0, f"eps must be positive and finite, got {self.eps}")
        # AdamW runs in float32 (training._adamw, training_torch): an eps below float32's smallest normal
        # number is subnormal there or rounds to 0 (a division by sqrt(v) = 0), and one above its max is inf.
        need(self.adam_eps >= F32_TINY,
             f"eps {self.eps!r} is too small: Adam runs in float32, where it is subnormal or 0 "
             f"(use eps >= {F32_TINY / (self.n if self.loss_norm == 'mean' else 1):.3g})")
        need(self.adam_eps <= F32_MAX,
             f"eps {self.eps!r} is too large: Adam's eps{' x n' if self.loss_norm == 'mean' else ''} "
             f"overflows float32 (max {F32_MAX:.3g})")
        need(math.isfinite(self.importance_decay) and self.importance_decay > 0,
             f"importance decay must be positive and finite, got {self.importance_decay}")
        # I_i = decay**i must stay a float32 number: beyond ~3.4e38 every loss is inf.
        need(self.importance_decay <= 1 or (self.n - 1) * math.log10(self.importance_decay) <= 38,
             f"importance decay {self.importance_decay} makes I_(n-1) = decay**{self.n - 1} overflow float32 (max 3.4e38)")
        # recipe variants (types are checked above, from the annotations)
        need(self.loss_norm in ("sum", "mean"), f"loss_norm must be sum or mean, got {self.loss_norm!r}")
        need(math.isfinite(self.init_scale) and self.init_scale >= 0,
             f"init_scale must be a finite number >= 0, got {self.init_scale!r}")
        need(math.isfinite(self.bias_init), f"bias_init must be a finite number, got {self.bias_init!r}")
        need(self.init_method in ("xavier", "construction"),
             f"init_method must be xavier or construction, got {self.init_method!r}")
        if self.init_from_run is not None:
            need(len(self.init_from_run) == 16 and all(ch in "0123456789abcdef" for ch in self.init_from_run),
                 f"init_from_run must be a run key (16 hex digits), got {self.init_from_run!r}")
            need(self.init_path is None and self.init_method == "xavier",
                 "init_from_run cannot be combined with init_path or init_method construction")
        if self.nested_data:
            need(self.data_path is None and not self.repeated_points,
                 "nested_data needs synthetic data without repeated points")
        if self.init_method == "construction":
            need(not math.isinf(self.T) and self.tied and self.m >= 2 and self.init_path is None,
                 "init_method construction needs a finite T, tied weights, m >= 2 and no init_path")
        # init_scale and bias_init shape the Xavier draw only: with a construction or an init file they would
        # change the run's key but not one bit of its training, so they are refused rather than ignored.
        start = ("init_method construction" if self.init_method == "construction"
                 else f"init_path {self.init_path}" if self.init_path is not None else None)
        if start is not None:
            for name, default in (("init_scale", 1.0), ("bias_init", 0.0)):
                need(getattr(self, name) == default,
                     f"{name} does not apply to {start} (it only shapes the Xavier initialization); "
                     f"leave it at {default:g}")
        if self.init_method == "construction":
            need(self.init_seeds == 1, f"init_seeds must be 1 with init_method construction (every init seed "
                                       f"starts from the same construction), got {self.init_seeds}")
        elif self.init_path is None:  # an init file's values are checked when it is read (check_params)
            # The kernels compute the loss in float32. At the Xavier draw a point's loss is about
            # sum_i I_i (m s^4 + max(b, 0)^2), s = init_scale * sqrt(2 / (n + m)) the std of W's entries (for a
            # unit-norm point h = W x has m entries of size s, W^T h one of size sqrt(m) s^2 per feature; the
            # ReLU cuts a negative bias off). Measured at n = 200, m = 2 the loss is within a factor 3 of this;
            # a factor 10 of headroom keeps every point of a training set finite. Refused here, before any
            # training, rather than as "the loss is not finite" at step 0.
            d = self.importance_decay
            weight = self.n if d == 1 else (d ** self.n - 1) / (d - 1)  # sum_i I_i (finite: checked above)
            budget = F32_MAX / 10 / weight  # what one feature's initial squared error may reach
            xavier = math.sqrt(2.0 / (self.n + self.m))
            need(self.init_scale * xavier <= (budget / self.m) ** 0.25,  # (never raise 1e300 to the 4th power)
                 f"init_scale {self.init_scale:g} is too large: the initial loss would overflow float32 "
                 f"(max {F32_MAX:.3g}); at n = {self.n}, m = {self.m} use init_scale <= "
                 f"{(budget / self.m) ** 0.25 / xavier:.2g}")
            need(self.bias_init >= -F32_MAX, f"bias_init {self.bias_init:g} is too large in magnitude: "
                                             f"it overflows float32 (max {F32_MAX:.3g})")
            need(self.bias_init <= math.sqrt(budget),
                 f"bias_init {self.bias_init:g} is too large: the initial loss (about n x bias_init^2) would "
                 f"overflow float32 (max {F32_MAX:.3g}); at n = {self.n} use bias_init <= {math.sqrt(budget):.2g}")
        need(self.history_every is None or self.history_every > 0,
             f"history_every must be a positive integer, got {self.history_every}")
        need(self.snapshots >= 0, f"snapshots must be >= 0, got {self.snapshots}")
        need(self.device in ("cpu", "cuda", "auto"), f"device must be cpu, cuda or auto, got {self.device!r}")
        need(self.repeats >= 1, f"repeats must be a positive integer, got {self.repeats!r}")
        need(self.repeated_points >= 0,
             f"repeated_points must be a non-negative integer, got {self.repeated_points!r}")
        if self.repeated_points:
            need(not math.isinf(self.T) and self.repeated_points * self.repeats <= self.T,
                 f"repeated_points x repeats ({self.repeated_points} x {self.repeats}) must fit in a finite T ({self.T})")
            need(self.data_path is None, "repeated points need synthetic data (no data_path)")
        for name in ("data_seed", "test_seed", "init_seed_base"):
            v = getattr(self, name)
            need(v >= 0, f"{name} must be a non-negative integer, got {v!r}")

    # --- (de)serialisation --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if math.isinf(self.T):
            d["T"] = "inf"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """A config from user-written fields (experiment files, the API): unset fields take today's defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ToyddError(f"unknown config field(s): {', '.join(unknown)}")
        d = dict(d)
        if "T" in d:
            d["T"] = parse_T(d["T"])
        return cls(**d)

    @classmethod
    def from_stored(cls, d: dict[str, Any]) -> "TrainConfig":
        """A config read back from a results store (a run's config.json, a manifest).

        A field the writing release did not know yet was, for that run, at the
        value it had before the field existed (``KEY_OPTIONAL_DEFAULTS``), not at
        today's default: a run trained with the summed loss before ``loss_norm``
        existed must never be read back as a mean-loss run.
        """
        return cls.from_dict({**KEY_OPTIONAL_DEFAULTS, **d})

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def key(self) -> str:
        """A short stable hash of the full config: the run's name in a results store."""
        d = self.to_dict()
        d.pop("device", None)  # the same run on another device is the same run
        for name, default in KEY_OPTIONAL_DEFAULTS.items():
            if d.get(name) == default:
                d.pop(name)  # fields added later: at their default, a run keeps the key it always had
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def shape_key(self) -> tuple:
        """Configs with equal shape keys can train together as instances of one batch."""
        d = self.to_dict()
        for k in ("data_seed", "init_seed_base", "weight_decay", "init_path", "init_from_run"):
            d.pop(k)
        return tuple(sorted((k, str(v)) for k, v in d.items()))


# Fields added after the first results stores were written, at the value every
# run had before the field existed. At these values a field is left out of key(),
# so directories trained before it existed keep their keys. These are pinned
# history, NOT the dataclass defaults: loss_norm's default became "mean" later,
# and a mean run still hashes with loss_norm in its key, as it always did.
KEY_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "loss_norm": "sum", "init_scale": 1.0, "bias_init": 0.0, "warmup_from_zero": False, "init_method": "xavier",
    "nested_data": False, "init_from_run": None,
}


MAX_T = 10**15  # beyond any machine's memory, and exact in a float


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
_TYPE_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


def _check_type(name: str, hint: Any, value: Any) -> None:
    """ToyddError naming the field if ``value`` does not fit its annotation (int, float, bool, str, X | None).

    Annotations this does not know are not checked. Integers must fit in 64 bits.
    """
    parts = [p.strip() for p in (hint if isinstance(hint, str) else getattr(hint, "__name__", str(hint))).split("|")]
    kinds = [p for p in parts if p != "None"]
    if not kinds or any(k not in _TYPE_CHECKS for k in kinds):
        return
    if value is None and "None" in parts:
        return
    if not any(_TYPE_CHECKS[k](value) for k in kinds):
        expected = " or ".join(_TYPE_WORDS[k] for k in kinds) + (" (or unset)" if "None" in parts else "")
        raise ToyddError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if isinstance(value, int) and not isinstance(value, bool):
        limit = sys.float_info.max if "float" in kinds else 2**63 - 1
        if abs(value) > limit:
            digits = str(abs(value))
            raise ToyddError(f"{name} is too large: {'-' if value < 0 else ''}{digits[0]}.{digits[1:3]}e+{len(digits) - 1} "
                             f"(at most {limit:.3g})")


def parse_T(value: Any) -> float:
    """Accept 1000, "1000", "1e3", "inf" (any case) or math.inf."""
    if isinstance(value, str):
        s = value.strip().lower()
        if s.lstrip("+") in ("inf", "infinity", "infinite"):
            return INF
        try:
            value = float(s)
        except ValueError:
            raise ToyddError(f"T must be a positive integer or 'inf', got {value!r}") from None
        if math.isinf(value):  # "1e400": a number too large for a float, not a request for infinite data
            raise ToyddError(f"T must be a positive integer or 'inf', got {s!r} (too large; write 'inf' for infinite data)")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToyddError(f"T must be a positive integer or 'inf', got {value!r}")
    if math.isinf(value) and value > 0:
        return INF
    if not math.isfinite(value) or value != int(value) or value <= 0:
        raise ToyddError(f"T must be a positive integer or 'inf', got {value!r}")
    return int(value)

"""Self-calibration of token estimates against the provider's own counts.

Our counter (tiktoken or the heuristic) is not the provider's tokenizer. Each response
reports how many input tokens the provider counted (Anthropic: ``usage.input_tokens`` +
``cache_creation_input_tokens`` + ``cache_read_input_tokens``; OpenAI:
``usage.prompt_tokens``); ``count_tokens`` gives the same number on demand. Comparing it with
our estimate of the same request calibrates, per model, a line

    provider tokens ~= slope x our estimate + offset

fitted by weighted least squares over the observations (older ones decay), because the
difference between two tokenizers is partly per token (the slope) and partly per request
(framing of the system prompt, tool schemas and messages: the offset). With one
observation, or estimates all alike, it is a plain ratio (offset 0).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

from compactor._errors import ConfigError


@dataclass(frozen=True)
class CalibrationState:
    """The calibration of one model.

    Attributes:
        model: the model name.
        slope / offset: ``provider ~= slope x estimate + offset`` (tokens); 1.0 / 0.0
            before any observation.
        factor: provider tokens per estimated token at the last estimate seen
            (``(slope x e + offset) / e``; 1.0 before any observation).
        error: relative error of the last prediction, ``|predicted - provider| / provider``,
            measured *before* that observation updated the fit (None before any).
        observations: how many (estimate, provider count) pairs were seen.
        errors: the relative error of every prediction, in order (the last 100).
    """

    model: str
    slope: float = 1.0
    offset: float = 0.0
    factor: float = 1.0
    error: float | None = None
    observations: int = 0
    errors: tuple[float, ...] = field(default=())
    sums: tuple[float, float, float, float, float] = field(default=(0.0,) * 5, repr=False)

    def predict(self, estimate: float) -> float:
        """The provider's count predicted for a request we estimate at ``estimate``."""
        return self.slope * estimate + self.offset


class Calibrator:
    """Per-model calibration of our estimates to the provider's counts; thread-safe.

    Args:
        decay: weight kept by older observations at each new one, in (0, 1] (1.0: all
            observations count alike).
        bounds: the slope, and every effective factor, is kept in this (low, high) range,
            so an absurd usage report cannot make the compactor stop compacting or
            compact everything; outside it the fit falls back to a clamped ratio.

    Raises:
        ConfigError: ``decay`` or ``bounds`` out of range (``field`` names it).
    """

    def __init__(self, *, decay: float = 0.9, bounds: tuple[float, float] = (0.25, 4.0)) -> None:
        if not (0 < decay <= 1):
            raise ConfigError(f"decay must be in (0, 1], got {decay}", field="decay")
        lo, hi = bounds
        if not (0 < lo <= 1 <= hi and math.isfinite(hi)):
            raise ConfigError(f"bounds must satisfy 0 < low <= 1 <= high, got {bounds}",
                              field="bounds")
        self.decay = decay
        self.bounds = (lo, hi)
        self._states: dict[str, CalibrationState] = {}
        self._lock = threading.Lock()

    def state(self, model: str) -> CalibrationState:
        """The calibration of ``model`` (identity, no observations, when unseen)."""
        with self._lock:
            return self._states.get(model) or CalibrationState(model)

    def factor(self, model: str) -> float:
        """Provider tokens per estimated token for ``model`` at its last estimate."""
        return self.state(model).factor

    def observe(self, model: str, estimate: int, provider: int) -> float | None:
        """Record that a request we estimated at ``estimate`` tokens was counted as
        ``provider`` tokens. Returns the relative error of the prediction made before this
        observation (None when either count is not positive: ignored)."""
        if estimate <= 0 or provider <= 0:
            return None
        with self._lock:
            s = self._states.get(model) or CalibrationState(model)
            err = abs(s.predict(estimate) - provider) / provider
            d = self.decay
            w, wx, wy, wxx, wxy = (v * d for v in s.sums)
            w, wx, wy = w + 1, wx + estimate, wy + provider
            wxx, wxy = wxx + estimate * estimate, wxy + estimate * provider
            slope, offset = self._fit(w, wx, wy, wxx, wxy)
            factor = self._clamp((slope * estimate + offset) / estimate)
            self._states[model] = CalibrationState(
                model, slope, offset, factor, err, s.observations + 1,
                (s.errors + (err,))[-100:], (w, wx, wy, wxx, wxy))
            return err

    def _clamp(self, v: float) -> float:
        return min(max(v, self.bounds[0]), self.bounds[1])

    def _fit(self, w: float, wx: float, wy: float, wxx: float, wxy: float) -> tuple[float, float]:
        den = w * wxx - wx * wx
        if den > 1e-9 * w * wxx:
            slope = (w * wxy - wx * wy) / den
            offset = (wy - slope * wx) / w
            if self.bounds[0] <= slope <= self.bounds[1]:
                return slope, offset
        return self._clamp(wy / wx), 0.0

    def window(self, model: str, provider_window: int, reserved: int) -> int:
        """The window, in *our* tokens, to hand the compactor so that its usable window
        (window minus ``reserved`` output tokens) maps to ``provider_window - reserved``
        provider tokens: ``(provider_window - reserved - offset) / slope + reserved``,
        with the effective factor kept within ``bounds``."""
        s = self.state(model)
        usable = provider_window - reserved
        ours = (usable - s.offset) / s.slope if s.slope > 0 else usable
        ours = min(max(ours, usable / self.bounds[1]), usable / self.bounds[0])
        return max(reserved + 1, int(ours) + reserved)


def call_window(compactor: Any, calibrator: Calibrator, *, window: int | None,
                model: str | None, max_tokens: int | None, calibrate: bool) -> int | None:
    """The window, in our tokens, a wrapper hands the compactor for one call: the
    wrapper's ``window``, else the compactor's, else the model's tier window (None when
    neither a window nor a model is known), calibrated to the provider's counts for
    ``model`` with ``max_tokens`` (else the compactor's reserve) kept for the answer."""
    w = window or compactor.window
    if w is None and model is None:
        return None
    w = w or compactor.windows.window_for(model)
    reserve = compactor.reserve_output_tokens if max_tokens is None else max_tokens
    if not calibrate or model is None or reserve >= w:
        return w
    return calibrator.window(model, w, reserve)

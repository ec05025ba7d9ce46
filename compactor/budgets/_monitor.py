"""``BudgetMonitor``: effective budgets, alerts, enforcement and the usage log.

One *invocation* is one task run by one agent (any number of model calls). Its effective
budget is ``profile.budget_tokens x complexity multiplier``, capped by the model's usable
context window; it bounds the input tokens of every request the invocation sends.

* **Tokens.** Before a call, :meth:`Invocation.check` takes our estimate of the request
  (``MessageCompactor`` counts) and multiplies it by the monitor's **correction** for the
  model: the largest ``provider input_tokens / our estimate`` among the last
  :data:`CORRECTION_WINDOW` calls (1.0 before any report; conservative by design). An exact
  provider count (e.g. Anthropic's ``count_tokens``) replaces the estimate when given.
  After a call, :meth:`Invocation.record_usage` takes the provider's reported usage, which
  is authoritative for that call and recalibrates the correction.
* **Alerts.** When the tokens of a request reach 75% / 90% / 100% of the budget (the
  config's ``[alerts]``), a ``budget_alert`` event goes to the ledger sink, a log record to
  the ``compactor.budgets`` logger (INFO / WARNING / CRITICAL) and a :class:`BudgetAlert`
  to the optional callback — each level at most once per invocation.
* **Enforcement** when a request is *over* the budget (tokens > budget):
  ``hard`` raises :class:`HardBudgetExceededError` before the call; ``soft`` moves the
  invocation one profile up (a ``budget_bump`` event) and, in :meth:`Invocation.compact`,
  forces a compaction toward the new budget. Soft mode never fails a call for its budget.
* **Usage.** :meth:`Invocation.finish` (or leaving ``with``) writes one ``usage`` event:
  the peak request tokens against the budget, calls, provider-reported input and output
  tokens, alerts, bumps and blocked calls. ``compactor budgets report`` reads these.
"""

from __future__ import annotations

import inspect
import logging
import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence

from .._errors import BudgetExceededError, ConfigError, ContextOverflowError
from .._sink import LedgerSink, NullSink
from .._tokens import WindowConfig
from ._complexity import Complexity, ComplexityAssessment, detect_complexity
from ._config import BudgetConfig, BudgetConfigError, ENFORCEMENTS, Enforcement, Profile, \
    default_config

log = logging.getLogger("compactor.budgets")

#: How many recent calls per model the correction looks at (the max ratio among them).
CORRECTION_WINDOW = 20
#: The correction is clamped to this range, so one odd report cannot make budgets absurd.
CORRECTION_RANGE = (0.5, 3.0)
#: Python logging level per alert level.
LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}

CountTokens = Callable[[Sequence[Mapping[str, Any]]], "Awaitable[int] | int"]


class HardBudgetExceededError(BudgetExceededError):
    """Hard enforcement refused a request that would exceed the invocation's budget.
    Nothing was sent.

    Attributes:
        agent_id / profile / invocation_id: whose budget.
        budget_tokens: the effective budget, tokens.
        used_tokens: the tokens of the refused request (corrected estimate or exact count).
    """

    def __init__(self, *, agent_id: str | None, profile: str, invocation_id: str,
                 budget_tokens: int, used_tokens: int) -> None:
        super().__init__(
            f"agent {agent_id!r} (profile {profile}) would send {used_tokens} tokens, over its "
            f"hard budget of {budget_tokens} tokens; fix: compact harder, lower the task's "
            "complexity, move the agent to a larger profile, or use enforcement='soft'")
        self.agent_id = agent_id
        self.profile = profile
        self.invocation_id = invocation_id
        self.budget_tokens = budget_tokens
        self.used_tokens = used_tokens


@dataclass(frozen=True)
class Budget:
    """An invocation's effective budget.

    Attributes:
        profile: the profile's name.
        profile_tokens: the profile's ``budget_tokens``.
        complexity / multiplier: the task's level and its multiplier.
        tokens: ``min(round(profile_tokens x multiplier), cap_tokens)``, tokens.
        cap_tokens: the model's usable window (window - max_tokens), or None when no model
            or window was given.
        scopes: ``{scope: tokens}`` split of ``tokens`` by the profile's weights.
    """

    profile: str
    profile_tokens: int
    complexity: Complexity
    multiplier: float
    tokens: int
    cap_tokens: int | None
    scopes: Mapping[str, int]

    @property
    def capped(self) -> bool:
        """Whether the model's usable window, not the profile, set ``tokens``."""
        return self.cap_tokens is not None and self.tokens == self.cap_tokens \
            and round(self.profile_tokens * self.multiplier) > self.cap_tokens


def threshold_tokens(share: float, budget_tokens: int) -> int:
    """The smallest token count that reaches ``share`` of a budget: ``ceil(share x
    budget)``, computed so that float noise (0.9 x 20,000 = 18,000.000000000004) does not
    move it by a token."""
    return math.ceil(round(share * budget_tokens, 6))


def usable_cap(*, model: str | None = None, window: int | None = None, max_tokens: int = 0,
               windows: WindowConfig | None = None) -> int | None:
    """The usable window a budget is capped by, tokens: ``window`` (else the model's
    window from ``windows``) minus ``max_tokens``; None when neither is given.

    Raises:
        ConfigError: ``max_tokens`` is negative or leaves no room (``field="max_tokens"``).
    """
    if max_tokens < 0:
        raise ConfigError(f"max_tokens must be >= 0 output tokens, got {max_tokens}; fix: "
                          "pass the output reserve of the calls, or 0", field="max_tokens")
    if window is None and model is None:
        return None
    w = window if window is not None else (windows or WindowConfig()).window_for(model)
    usable = w - max_tokens
    if usable <= 0:
        raise ConfigError(f"max_tokens ({max_tokens}) leaves no room in a {w}-token window; "
                          "fix: lower max_tokens or use a larger model", field="max_tokens")
    return usable


def effective_budget(profile: Profile, complexity: Complexity | str, *,
                     cap_tokens: int | None = None) -> Budget:
    """``profile.budget_tokens x multiplier``, rounded (at least 1), capped by
    ``cap_tokens`` (pure); tokens.

    Raises:
        ConfigError: ``complexity`` is not a level.
    """
    level = Complexity.parse(complexity)
    raw = max(1, round(profile.budget_tokens * level.multiplier))   # 1 x 0.5 is not 0
    tokens = raw if cap_tokens is None else min(raw, cap_tokens)
    return Budget(profile.name, profile.budget_tokens, level, level.multiplier, tokens,
                  cap_tokens, profile.scope_tokens(tokens))


@dataclass(frozen=True)
class BudgetAlert:
    """One alert: ``level`` (info / warning / critical) fired because ``used_tokens``
    reached ``threshold`` (a share) of ``budget_tokens``; ``percent`` = 100 x used/budget."""

    level: str
    threshold: float
    used_tokens: int
    budget_tokens: int
    percent: float
    agent_id: str | None
    profile: str
    invocation_id: str
    complexity: str


class BudgetMonitor:
    """Budgets, alerts and enforcement for every invocation of every agent.

    Args:
        config: the profiles (default: :func:`default_config`, the shipped file).
        sink: where ``budget_alert``, ``budget_bump`` and ``usage`` events go (e.g. a
            ``compactor.ledger.Ledger``; default: dropped).
        on_alert: called with each :class:`BudgetAlert` (exceptions are logged, not raised).
        enforcement: ``"soft"`` or ``"hard"`` (default: the config's).
        windows: model windows for the cap (default: ``WindowConfig()``).

    Raises:
        BudgetConfigError: ``enforcement`` is not soft or hard.
    """

    def __init__(self, config: BudgetConfig | None = None, *, sink: LedgerSink | None = None,
                 on_alert: Callable[[BudgetAlert], Any] | None = None,
                 enforcement: Enforcement | None = None,
                 windows: WindowConfig | None = None) -> None:
        self.config = config or default_config()
        self.sink: LedgerSink = sink or NullSink()
        self.on_alert = on_alert
        self.enforcement: Enforcement = enforcement or self.config.enforcement
        if self.enforcement not in ENFORCEMENTS:
            raise BudgetConfigError(f"must be 'soft' or 'hard', got {self.enforcement!r}",
                                    key="enforcement", source="<code>",
                                    fix="pass enforcement='soft' or enforcement='hard'")
        self.windows = windows or WindowConfig()
        self._ratios: dict[str, deque[float]] = {}

    # -- correction ----------------------------------------------------------------
    def correction(self, model: str | None) -> float:
        """provider tokens / our estimate for ``model``: the max of the last
        :data:`CORRECTION_WINDOW` observed ratios, clamped to :data:`CORRECTION_RANGE`;
        1.0 before any observation."""
        ratios = self._ratios.get(model or "")
        if not ratios:
            return 1.0
        lo, hi = CORRECTION_RANGE
        return min(max(max(ratios), lo), hi)

    def calibrate(self, model: str | None, estimate: int, actual: int) -> None:
        """Record one (our estimate, provider count) pair of a request, tokens."""
        if estimate > 0 and actual > 0:
            self._ratios.setdefault(model or "", deque(maxlen=CORRECTION_WINDOW)).append(
                actual / estimate)

    # -- invocations ---------------------------------------------------------------
    def budget_for(self, agent_id: str | None, *, task: str | None = None,
                   complexity: Complexity | str | None = None, profile: str | None = None,
                   model: str | None = None, window: int | None = None,
                   max_tokens: int = 0) -> tuple[Budget, ComplexityAssessment]:
        """The effective budget of a task (pure): the agent's profile (or ``profile``),
        the complexity detected from ``task`` (or ``complexity``, which wins), capped by
        the usable window of ``model``/``window`` minus ``max_tokens``.

        Raises:
            BudgetConfigError: unknown profile, or an unassigned agent with no default.
            ConfigError: unknown complexity, or ``max_tokens`` leaves no room.
        """
        if profile is not None:
            if profile not in self.config.profiles:
                raise BudgetConfigError(f"profile {profile!r} is not defined",
                                        key="profile", source=self.config.source,
                                        fix="use one of " + ", ".join(self.config.profiles))
            prof = self.config.profiles[profile]
        else:
            prof = self.config.profile_for(agent_id)
        assessment = detect_complexity(task, override=complexity)
        cap = usable_cap(model=model, window=window, max_tokens=max_tokens, windows=self.windows)
        return effective_budget(prof, assessment.level, cap_tokens=cap), assessment

    def start(self, agent_id: str | None, *, task: str | None = None,
              complexity: Complexity | str | None = None, profile: str | None = None,
              model: str | None = None, window: int | None = None, max_tokens: int = 0,
              session_id: str | None = None, invocation_id: str | None = None) -> "Invocation":
        """Begin an invocation (use as ``with monitor.start(...) as inv:``). Arguments as in
        :meth:`budget_for`; ``max_tokens`` is the output reserve of its calls."""
        budget, assessment = self.budget_for(agent_id, task=task, complexity=complexity,
                                             profile=profile, model=model, window=window,
                                             max_tokens=max_tokens)
        return Invocation(self, agent_id, budget, assessment, model=model,
                          max_tokens=max_tokens, session_id=session_id,
                          invocation_id=invocation_id or uuid.uuid4().hex[:12])


@dataclass
class _Counters:
    peak_tokens: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    blocked: int = 0
    over_budget_sent: int = 0
    fired: list[str] = field(default_factory=list)
    bumps: list[dict[str, Any]] = field(default_factory=list)


class Invocation:
    """One task run by one agent, against one effective budget. Made by
    :meth:`BudgetMonitor.start`.

    Attributes:
        agent_id / session_id / invocation_id / model / max_tokens: as given.
        base: the :class:`Budget` the invocation started with (usage is measured on it).
        budget: the current budget (larger after a soft bump).
        assessment: the :class:`ComplexityAssessment`.
        alerts: the :class:`BudgetAlert` fired so far.
    """

    def __init__(self, monitor: BudgetMonitor, agent_id: str | None, budget: Budget,
                 assessment: ComplexityAssessment, *, model: str | None, max_tokens: int,
                 session_id: str | None, invocation_id: str) -> None:
        self.monitor = monitor
        self.agent_id = agent_id
        self.base = budget
        self.budget = budget
        self.assessment = assessment
        self.model = model
        self.max_tokens = max_tokens
        self.session_id = session_id
        self.invocation_id = invocation_id
        self.alerts: list[BudgetAlert] = []
        self._c = _Counters()
        self._last_estimate: int | None = None
        self._usage: dict[str, Any] | None = None

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> "Invocation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    @property
    def peak_tokens(self) -> int:
        """The largest request (tokens) this invocation sent or tried to send."""
        return self._c.peak_tokens

    @property
    def bumps(self) -> list[dict[str, Any]]:
        """The ``budget_bump`` events' fields, in order."""
        return list(self._c.bumps)

    def _common(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "agent_id": self.agent_id,
                "invocation_id": self.invocation_id, "profile": self.base.profile,
                "complexity": self.base.complexity.value, "model": self.model,
                "enforcement": self.monitor.enforcement}

    # -- the primitives --------------------------------------------------------------
    def corrected(self, estimate: int) -> int:
        """Our estimate (tokens) times the model's correction, rounded up."""
        return math.ceil(estimate * self.monitor.correction(self.model))

    def check(self, estimate: int, *, exact: int | None = None) -> int:
        """Account for a request about to be sent and enforce the budget.

        Args:
            estimate: our estimate of the request's input tokens.
            exact: the provider's own count of it, when known (wins; calibrates).

        Returns:
            the tokens the request is accounted at (exact, else the corrected estimate).

        Raises:
            HardBudgetExceededError: hard mode, and the tokens are over the budget.
        """
        if exact is not None:
            self.monitor.calibrate(self.model, estimate, exact)
        tokens = exact if exact is not None else self.corrected(estimate)
        self._last_estimate = estimate
        self._observe(tokens)
        if tokens > self.budget.tokens:
            if self.monitor.enforcement == "hard":
                self._c.blocked += 1
                raise HardBudgetExceededError(
                    agent_id=self.agent_id, profile=self.budget.profile,
                    invocation_id=self.invocation_id, budget_tokens=self.budget.tokens,
                    used_tokens=tokens)
            self._bump(tokens)
        return tokens

    def record_usage(self, input_tokens: int, output_tokens: int = 0, *,
                     estimate: int | None = None) -> None:
        """Account for a call's provider-reported usage (tokens). ``estimate`` is our
        estimate of that request (default: the last :meth:`check`'s); the pair calibrates
        the correction. Soft mode bumps when the reported input is over the budget; hard
        mode counts it in ``over_budget_sent`` (the estimate was too low) and logs it."""
        c = self._c
        c.calls += 1
        c.input_tokens += input_tokens
        c.output_tokens += output_tokens
        est = estimate if estimate is not None else self._last_estimate
        if est:
            self.monitor.calibrate(self.model, est, input_tokens)
        self._last_estimate = None
        self._observe(input_tokens)
        if input_tokens > self.budget.tokens:
            if self.monitor.enforcement == "hard":
                c.over_budget_sent += 1
                log.error("agent %s sent %d tokens over its hard budget of %d (our estimate "
                          "was %s)", self.agent_id, input_tokens, self.budget.tokens, est)
            else:
                self._bump(input_tokens)

    def finish(self) -> dict[str, Any]:
        """Write the ``usage`` event (once; later calls return the same fields)."""
        if self._usage is not None:
            return self._usage
        c = self._c
        self._usage = {
            **self._common(), "complexity_source": self.assessment.source,
            "multiplier": self.base.multiplier, "profile_tokens": self.base.profile_tokens,
            "budget_tokens": self.base.tokens, "capped": self.base.capped,
            "tokens": c.peak_tokens, "exceeded": c.peak_tokens > self.base.tokens,
            "usage_pct": round(100 * c.peak_tokens / self.base.tokens, 2),
            "calls": c.calls, "input_tokens": c.input_tokens, "output_tokens": c.output_tokens,
            "alerts": list(c.fired), "bumps": len(c.bumps), "blocked": c.blocked,
            "over_budget_sent": c.over_budget_sent, "final_profile": self.budget.profile,
            "final_budget_tokens": self.budget.tokens,
        }
        self.monitor.sink.emit("usage", self._usage)
        return self._usage

    # -- internals -------------------------------------------------------------------
    def _observe(self, tokens: int) -> None:
        """Update the peak and fire the alerts ``tokens`` reaches (each once)."""
        c = self._c
        c.peak_tokens = max(c.peak_tokens, tokens)
        budget = self.budget.tokens
        for level, share in self.monitor.config.alerts.levels():
            if level in c.fired or tokens < threshold_tokens(share, budget):
                continue
            c.fired.append(level)
            alert = BudgetAlert(level, share, tokens, budget, round(100 * tokens / budget, 1),
                                self.agent_id, self.budget.profile, self.invocation_id,
                                self.base.complexity.value)
            self.alerts.append(alert)
            self.monitor.sink.emit("budget_alert", {
                **self._common(), "level": level, "threshold": share, "used_tokens": tokens,
                "budget_tokens": budget, "percent": alert.percent, "window": "invocation"})
            log.log(LOG_LEVELS[level], "budget %s: agent %s at %.1f%% of %d tokens (profile %s)",
                    level, self.agent_id, alert.percent, budget, self.budget.profile)
            if self.monitor.on_alert is not None:
                try:
                    self.monitor.on_alert(alert)
                except Exception:  # an alert hook must not break the agent's call
                    log.exception("budget alert callback failed")

    def _bump(self, tokens: int) -> None:
        """Soft enforcement: one profile up for the rest of this invocation (same
        complexity and cap), recorded as a ``budget_bump`` event. At the largest profile
        the event is recorded once with ``to_profile`` null and the budget stays."""
        cfg = self.monitor.config
        up = cfg.next_up(self.budget.profile)
        if up is None and any(b["to_profile"] is None for b in self._c.bumps):
            return
        new = self.budget if up is None else effective_budget(
            up, self.budget.complexity, cap_tokens=self.budget.cap_tokens)
        fields = {**self._common(), "from_profile": self.budget.profile,
                  "to_profile": up.name if up else None, "used_tokens": tokens,
                  "budget_tokens_before": self.budget.tokens, "budget_tokens_after": new.tokens}
        self._c.bumps.append(fields)
        self.monitor.sink.emit("budget_bump", fields)
        log.warning("budget bump: agent %s %s -> %s (%d tokens over %d)", self.agent_id,
                    self.budget.profile, fields["to_profile"], tokens, self.budget.tokens)
        self.budget = new

    # -- with a MessageCompactor ----------------------------------------------------
    def window_for_compactor(self, reserve: int) -> int:
        """The ``window=`` to give ``MessageCompactor.compact_if_needed`` (tokens, its
        counter's units): the budget divided by the correction, plus the output reserve
        the compactor subtracts again, so the compacted request fits the budget."""
        return max(1, math.floor(self.budget.tokens / self.monitor.correction(self.model))) \
            + reserve

    async def compact(self, compactor: Any, messages: Sequence[Mapping[str, Any]], *,
                      system: Any = None, tools: Sequence[Mapping[str, Any]] | None = None,
                      max_tokens: int | None = None, session_id: str | None = None,
                      fmt: Any = None, count_tokens: CountTokens | None = None) -> Any:
        """Compact ``messages`` with the effective budget as the window, check the result
        and enforce; returns the ``CompactionResult`` whose ``messages`` to send.

        ``compactor`` is a ``MessageCompactor``. ``count_tokens(messages)`` (sync or
        async), when given, is the provider's exact count of the request (it makes hard
        mode exact from the first call); without it the corrected estimate is used. Soft
        mode: over the budget (or when the part of the history that can never be removed
        does not fit it; that part plus the smallest summary is then the request's tokens)
        the invocation moves one profile up and the history is compacted again, with
        ``force=True``, toward the new budget.

        Raises:
            HardBudgetExceededError: hard mode, and the request cannot fit the budget.
            ContextOverflowError: soft mode, and the history does not fit even the model's
                window (a context problem the provider would reject anyway); hard mode, when
                compaction cannot fit the budget yet our corrected count of the floor does.
            InvalidHistoryError / ConfigError: as ``compact_if_needed``.
        """
        reserve = self.max_tokens if max_tokens is None else max_tokens
        sid = session_id if session_id is not None else self.session_id
        kw = dict(model=self.model, system=system, tools=tools, max_tokens=reserve,
                  session_id=sid, fmt=fmt)

        async def run(force: bool) -> Any:
            return await compactor.compact_if_needed(
                messages, window=self.window_for_compactor(reserve), force=force, **kw)

        async def exact(result: Any) -> int | None:
            if count_tokens is None:
                return None
            n = count_tokens(result.messages)
            return int(await n if inspect.isawaitable(n) else n)

        force = False
        for _ in range(len(self.monitor.config.profiles) + 2):
            try:
                result = await run(force)
            except ContextOverflowError as e:
                # the smallest request compaction can make: what can never go + a summary
                before = self.budget
                self.check(e.floor_tokens + e.summary_tokens)   # hard: raises; soft: bumps
                if self.budget == before:
                    if self.monitor.enforcement == "hard":
                        raise    # never send what we could not fit in the budget
                    # soft, nothing larger: the model's own window
                    return await compactor.compact_if_needed(messages, **kw)
                force = True
                continue
            n = await exact(result)
            if n is not None and n > self.budget.tokens and not force:
                # our count was low: the correction just learned it; compact again
                self.monitor.calibrate(self.model, result.tokens_after, n)
                force = True
                continue
            before = self.budget
            self.check(result.tokens_after, exact=n)
            if self.budget == before:
                return result
            force = True                    # soft bump: compact toward the new budget
        return result

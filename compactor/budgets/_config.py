"""Budget profiles: the TOML file, its validation, and the shipped defaults.

A config file has five tables (every one optional except ``profiles``)::

    [settings]         default_profile = "specialist-broad", enforcement = "soft"
    [alerts]           info = 0.75, warning = 0.90, critical = 1.00  (shares of the budget)
    [recommendations]  upgrade_exceedance_rate = 0.20, downgrade_p95_usage = 0.50,
                       min_invocations = 20
    [profiles.NAME]    budget_tokens = 20_000, weights = {global=.., recent=.., patterns=..},
                       description = "..."
    [agents]           AGENT_ID = "PROFILE NAME"

These tables are the ``[budgets]`` table of ``compactor.toml`` (``[budgets.settings]``,
``[budgets.profiles.NAME]``, ...; read by ``compactor._config``, the one loader). A file in
the old layout, holding only these tables at top level, is still read as the budgets.

Loading is pure validation: every problem raises :class:`BudgetConfigError`, a
``ConfigError`` whose message is one line ``FILE: KEY: problem; fix: ...`` and whose
``field`` is the dotted key as written in the file (``budgets.profiles.role-architect.
budget_tokens``; ``profiles.role-architect.budget_tokens`` in the old layout) and
``source`` the file. The shipped defaults (``compactor/data/budgets.toml``, the same
tables as ``[budgets]`` of ``compactor/data/compactor.toml``) follow our spec (issue 5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

from .._config import did_you_mean, read_toml
from .._errors import ConfigError

#: Legacy: the environment variable naming a budgets file (used when no ``--config`` is
#: given; wins over ``$COMPACTOR_CONFIG`` for the budgets).
CONFIG_ENV = "COMPACTOR_BUDGETS"
#: The context sources a profile's ``weights`` may share the budget between.
SCOPES = ("global", "recent", "patterns")
#: How far from 1 the weights' sum may be (rounding in hand-written decimals).
WEIGHT_TOLERANCE = 1e-6

Enforcement = Literal["soft", "hard"]
ENFORCEMENTS: tuple[str, ...] = ("soft", "hard")


class BudgetConfigError(ConfigError):
    """A budgets file (or a value passed in code) is wrong.

    The message is one line: ``FILE: KEY: problem; fix: what to write instead``.

    Attributes:
        field: the dotted key at fault, e.g. ``"profiles.specialist-narrow.budget_tokens"``
            (``"line 3"`` for a TOML syntax error, ``"(file)"`` when the file is unreadable).
        source: the file, or ``"<code>"`` for values passed in code.
        problem: what is wrong.
        fix: what to do instead.
    """

    def __init__(self, problem: str, *, key: str, fix: str, source: str) -> None:
        super().__init__(f"{source}: {key}: {problem}; fix: {fix}", field=key, source=source)
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class Profile:
    """One budget profile.

    Attributes:
        name: e.g. ``"specialist-narrow"``.
        budget_tokens: input tokens one request may hold at ``medium`` complexity (> 0).
        weights: scope -> share of the budget (scopes from :data:`SCOPES`; sum 1).
        description: free text.
    """

    name: str
    budget_tokens: int
    weights: Mapping[str, float]
    description: str = ""

    def scope_tokens(self, budget_tokens: int) -> dict[str, int]:
        """Split a budget (tokens) between the scopes by weight: ``{scope: tokens}``
        (floored, so the parts never add up to more than the budget)."""
        return {s: int(budget_tokens * w) for s, w in self.weights.items()}


@dataclass(frozen=True)
class AlertThresholds:
    """Shares of the effective budget at which each alert fires (once per invocation).
    Defaults: 0.75 info, 0.90 warning, 1.00 critical (our spec)."""

    info: float = 0.75
    warning: float = 0.90
    critical: float = 1.00

    def levels(self) -> tuple[tuple[str, float], ...]:
        """``(level, share)`` in ascending order."""
        return (("info", self.info), ("warning", self.warning), ("critical", self.critical))


@dataclass(frozen=True)
class RecommendationThresholds:
    """When the report recommends a change (our spec's defaults).

    Attributes:
        upgrade_exceedance_rate: recommend ``upgrade`` when the share of invocations that
            exceeded their budget is above this (default 0.20).
        downgrade_p95_usage: recommend ``downgrade`` when the p95 of usage (share of the
            budget) is below this (default 0.50).
        min_invocations: no recommendation below this many invocations (default 20).
    """

    upgrade_exceedance_rate: float = 0.20
    downgrade_p95_usage: float = 0.50
    min_invocations: int = 20


@dataclass(frozen=True)
class BudgetConfig:
    """Validated budget profiles and their settings. Build it with :func:`load_config`
    (a file), :func:`parse_config` (a dict) or :func:`default_config` (the shipped file).

    Attributes:
        profiles: name -> :class:`Profile`, ordered by ``budget_tokens`` ascending (ties
            in file order): "one profile up" is the next one in this order.
        agents: agent id -> profile name.
        default_profile: the profile of agents not in ``agents`` (None: such agents are an
            error).
        enforcement: ``"soft"`` or ``"hard"``.
        alerts / recommendations: thresholds.
        source: the file it came from.
    """

    profiles: Mapping[str, Profile]
    agents: Mapping[str, str] = field(default_factory=dict)
    default_profile: str | None = None
    enforcement: Enforcement = "soft"
    alerts: AlertThresholds = AlertThresholds()
    recommendations: RecommendationThresholds = RecommendationThresholds()
    source: str = "<code>"

    def profile_for(self, agent_id: str | None) -> Profile:
        """The profile assigned to ``agent_id`` (else the default profile).

        Raises:
            BudgetConfigError: the agent is not assigned and there is no default profile.
        """
        name = self.agents.get(agent_id or "") or self.default_profile
        if name is None:
            raise BudgetConfigError(
                f"agent {agent_id!r} has no profile and there is no default_profile",
                key=f"agents.{agent_id}", source=self.source,
                fix=f'add {agent_id} = "<profile>" under [agents], or set '
                    '[settings] default_profile')
        return self.profiles[name]

    def _neighbour(self, name: str, step: int) -> Profile | None:
        names = list(self.profiles)
        if name not in self.profiles:
            return None
        i = names.index(name) + step
        return self.profiles[names[i]] if 0 <= i < len(names) else None

    def next_up(self, name: str) -> Profile | None:
        """The profile one step larger than ``name`` (None at the top or if unknown)."""
        return self._neighbour(name, +1)

    def next_down(self, name: str) -> Profile | None:
        """The profile one step smaller than ``name`` (None at the bottom or if unknown)."""
        return self._neighbour(name, -1)


# ---------------------------------------------------------------------------- loading
_TABLES = ("settings", "alerts", "recommendations", "profiles", "agents")
_SETTINGS = ("default_profile", "enforcement")
_PROFILE_KEYS = ("budget_tokens", "weights", "description")
_RECOMMENDATION_KEYS = ("upgrade_exceedance_rate", "downgrade_p95_usage", "min_invocations")


class _Checker:
    """Raises :class:`BudgetConfigError` with this file's name; keys are written under
    ``prefix`` (``"budgets"`` inside ``compactor.toml``, ``""`` in the old layout)."""

    def __init__(self, source: str, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix

    def fail(self, key: str, problem: str, fix: str) -> BudgetConfigError:
        key = f"{self.prefix}.{key}" if self.prefix and key else (key or self.prefix)
        return BudgetConfigError(problem, key=key, fix=fix, source=self.source)

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            full = f"{self.prefix}.{key}" if self.prefix else key
            raise self.fail(key, f"must be a table, got {_show(value)}",
                            f"write it as [{full}] with key = value lines")
        return value

    def known_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for k in table:
            if k not in allowed:
                where = f"{prefix}.{k}" if prefix else k
                raise self.fail(where, "unknown key",
                                f"{did_you_mean(k, allowed)}allowed here: {', '.join(allowed)}")

    def share(self, value: Any, key: str, *, low: float, high: float, example: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, got {_show(value)}", f"write e.g. {example}")
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low} and {high}, got {value}",
                            f"write e.g. {example}")
        return float(value)


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _profile(c: _Checker, name: str, raw: Any) -> Profile:
    key = f"profiles.{name}"
    t = c.table(raw, key)
    c.known_keys(t, _PROFILE_KEYS, key)
    if "budget_tokens" not in t:
        raise c.fail(f"{key}.budget_tokens", "missing",
                     "add budget_tokens = 50_000 (input tokens at medium complexity)")
    budget = t["budget_tokens"]
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise c.fail(f"{key}.budget_tokens", f"must be a whole number of tokens, got "
                     f"{_show(budget)}", "write an integer such as 50_000 (no quotes, no 'k')")
    if budget <= 0:
        raise c.fail(f"{key}.budget_tokens", f"must be > 0 tokens, got {budget}",
                     "write a positive number of tokens such as 50_000")
    weights = c.table(t.get("weights", {}), f"{key}.weights")
    if not weights:
        raise c.fail(f"{key}.weights", "missing or empty",
                     "add weights = { global = 0.25, recent = 0.55, patterns = 0.20 }")
    c.known_keys(weights, SCOPES, f"{key}.weights")
    w = {s: c.share(v, f"{key}.weights.{s}", low=0.0, high=1.0, example="0.25")
         for s, v in weights.items()}
    total = sum(w.values())
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise c.fail(f"{key}.weights", f"must sum to 1, they sum to {total:g}",
                     "adjust the shares of " + ", ".join(w) + " so they add up to 1.0")
    desc = t.get("description", "")
    if not isinstance(desc, str):
        raise c.fail(f"{key}.description", f"must be a string, got {_show(desc)}",
                     'write description = "..."')
    return Profile(name, budget, w, desc)


def parse_config(data: Mapping[str, Any], *, source: str = "<code>",
                 prefix: str = "") -> BudgetConfig:
    """Validate a parsed budgets document (the dict ``tomllib`` returns; inside
    ``compactor.toml`` that is its ``[budgets]`` table, with ``prefix="budgets"`` so errors
    name the keys as written there).

    Raises:
        BudgetConfigError: the first problem found (unknown key, missing or empty
            ``profiles``, a budget that is not a positive integer, weights that are
            negative, unknown or do not sum to 1, an agent or default assigned to an
            undefined profile, an unknown enforcement, alert thresholds out of order or
            out of (0, 2], recommendation thresholds out of range).
    """
    c = _Checker(source, prefix)
    c.known_keys(data, _TABLES, "")
    if "profiles" not in data or not c.table(data["profiles"], "profiles"):
        where = f"{prefix}.profiles" if prefix else "profiles"
        raise c.fail("profiles", "no profiles defined",
                     f"add at least one [{where}.NAME] table with budget_tokens and weights")
    parsed = [_profile(c, name, raw) for name, raw in data["profiles"].items()]
    profiles = {p.name: p for p in sorted(parsed, key=lambda p: p.budget_tokens)}
    names = tuple(profiles)

    def profile_name(value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise c.fail(key, f"must be a profile name (a string), got {_show(value)}",
                         f'write one of: {", ".join(names)} (in quotes)')
        if value not in profiles:
            raise c.fail(key, f"profile {value!r} is not defined",
                         f"{did_you_mean(value, names)}defined profiles: {', '.join(names)}")
        return value

    settings = c.table(data.get("settings", {}), "settings")
    c.known_keys(settings, _SETTINGS, "settings")
    default = settings.get("default_profile")
    if default is not None:
        default = profile_name(default, "settings.default_profile")
    enforcement = settings.get("enforcement", "soft")
    if enforcement not in ENFORCEMENTS:
        raise c.fail("settings.enforcement", f"must be 'soft' or 'hard', got {enforcement!r}",
                     'write enforcement = "soft" (bump and compact) or "hard" (refuse the call)')

    agents_t = c.table(data.get("agents", {}), "agents")
    agents = {a: profile_name(p, f"agents.{a}") for a, p in agents_t.items()}

    alerts_t = c.table(data.get("alerts", {}), "alerts")
    base = AlertThresholds()
    c.known_keys(alerts_t, tuple(lv for lv, _ in base.levels()), "alerts")
    shares = {lv: c.share(alerts_t.get(lv, dflt), f"alerts.{lv}", low=0.01, high=2.0,
                          example=str(dflt)) for lv, dflt in base.levels()}
    alerts = AlertThresholds(**shares)
    if not alerts.info < alerts.warning < alerts.critical:
        raise c.fail("alerts", f"thresholds must increase: info {alerts.info} < warning "
                     f"{alerts.warning} < critical {alerts.critical}",
                     "write e.g. info = 0.75, warning = 0.90, critical = 1.00")

    rec_t = c.table(data.get("recommendations", {}), "recommendations")
    c.known_keys(rec_t, _RECOMMENDATION_KEYS, "recommendations")
    rb = RecommendationThresholds()
    mi = rec_t.get("min_invocations", rb.min_invocations)
    if isinstance(mi, bool) or not isinstance(mi, int) or mi < 1:
        raise c.fail("recommendations.min_invocations", f"must be an integer >= 1, got "
                     f"{_show(mi)}", "write e.g. min_invocations = 20")
    rec = RecommendationThresholds(
        c.share(rec_t.get("upgrade_exceedance_rate", rb.upgrade_exceedance_rate),
                "recommendations.upgrade_exceedance_rate", low=0.0, high=1.0, example="0.20"),
        c.share(rec_t.get("downgrade_p95_usage", rb.downgrade_p95_usage),
                "recommendations.downgrade_p95_usage", low=0.0, high=2.0, example="0.50"),
        mi)
    return BudgetConfig(profiles, agents, default, enforcement, alerts, rec, source)


def load_config(path: str | os.PathLike[str]) -> BudgetConfig:
    """The budget profiles of a config file, read through the one loader
    (:func:`compactor._config.load_config`): its ``[budgets]`` table, or the whole file
    in the old layout (budgets tables at top level), or the shipped profiles when the
    file has neither. The rest of the file is validated too.

    Raises:
        BudgetConfigError: the path is empty, the file is missing or unreadable (a
            directory included) (``field="(file)"``), not valid TOML (``field="line N"``),
            a budgets value is wrong, or another table of the file is.
    """
    from .._config import load_config as load_all

    try:
        return load_all(path).budgets
    except ConfigError as e:
        raise _budget_error(e) from None


def _budget_error(e: ConfigError) -> BudgetConfigError:
    """The one loader's error as a :class:`BudgetConfigError` (same message and key)."""
    if isinstance(e, BudgetConfigError):
        return e
    head = f"{e.source}: {e.field}: "
    text = str(e)
    problem, _, fix = text[len(head):].partition("; fix: ") if text.startswith(head) \
        else (text, "", "")
    return BudgetConfigError(problem, key=e.field or "(file)", fix=fix or "see the message",
                             source=e.source or "<code>")


def default_config_path() -> Path:
    """The shipped ``compactor/data/budgets.toml``."""
    return Path(str(resources.files("compactor") / "data" / "budgets.toml"))


def default_config() -> BudgetConfig:
    """The shipped profiles (our spec's four profiles and thresholds)."""
    path = default_config_path()
    return parse_config(read_toml(path), source=str(path))


def resolve_config(path: str | os.PathLike[str] | None = None) -> BudgetConfig:
    """The budgets of ``path`` (when not None), else of ``$COMPACTOR_BUDGETS`` (when set
    and not empty), else of ``$COMPACTOR_CONFIG``, else of ``./compactor.toml`` when it
    exists, else the shipped defaults (see :func:`load_config`).

    Raises:
        BudgetConfigError: as :func:`load_config` (an empty ``path`` included).
    """
    from .._config import load_config as load_all

    try:
        return load_all(path).budgets
    except ConfigError as e:
        raise _budget_error(e) from None

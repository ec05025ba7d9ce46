"""``schedule --print cron|systemd``: ready-to-install entries for daily maintenance (03:17
UTC-local, off the hour so fleets do not all start at once) and a health check every 6 hours.
Paths are made absolute, since cron and systemd do not run in your working directory."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from compactor.maintenance._config import MaintenanceConfig


def command_prefix() -> str:
    """The ``compactor`` executable next to this Python (else ``python -m compactor.cli``)."""
    exe = Path(sys.executable)
    script = exe.with_name("compactor")
    if script.exists():
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(str(exe.absolute()))} -m compactor.cli"


def _paths(cfg: MaintenanceConfig, config_file: str | None) -> str:
    # the file the config came from, even when it was named by $COMPACTOR_CONFIG: cron and
    # systemd do not see the caller's environment, so it must be on the command line
    config_file = config_file or cfg.source
    parts = []
    if config_file:
        parts += ["--config", str(Path(config_file).absolute())]
    store = cfg.store_url if cfg.store_url is not None else str(Path(cfg.store).absolute())
    parts += ["--store", store, "--ledger", str(cfg.ledger.absolute())]
    if cfg.archive is not None:
        parts += ["--archive", str(cfg.archive.absolute())]
    return " ".join(shlex.quote(p) for p in parts)


def cron(cfg: MaintenanceConfig, config_file: str | None = None) -> str:
    """crontab lines (install with ``crontab -e``; logs go to maintenance's state folder,
    ``<store>/.maintenance``, or ``<archive>/.maintenance`` for a ``postgresql://`` store).

    Raises:
        ConfigError: a URL store without an archive folder.
    """
    exe, paths = command_prefix(), _paths(cfg, config_file)
    logs = shlex.quote(str(cfg.state_dir.absolute()))
    stamp = "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    maintain = (f"mkdir -p {logs} && {exe} maintain --run {paths} >> {logs}/maintain.log "
                f"2>&1; rc=$?; echo \"{stamp} maintain exit=$rc\" >> {logs}/maintain.log")
    health = (f"mkdir -p {logs} && {exe} health {paths} >> {logs}/health.log 2>&1; "
              f"rc=$?; echo \"{stamp} health exit=$rc\" >> {logs}/health.log")
    return (
        "# compactor: daily maintenance at 03:17, health check every 6 hours.\n"
        "# Install: crontab -e and paste. Results: each run appends to the logs below and ends\n"
        "# with 'exit=N' (maintain: 0 ok, 1 failed and rolled back or sessions skipped;\n"
        "# health: 0 ok, 1 warning, 2 critical); `compactor ledger tail --event maintenance`\n"
        "# shows the records.\n"
        f"17 3 * * * {_cron_escape(maintain)}\n"
        f"0 */6 * * * {_cron_escape(health)}\n")


def _cron_escape(command: str) -> str:
    """cron turns an unescaped ``%`` into a newline (and cuts the command there): escape
    every one, in the date format and in any path alike."""
    return command.replace("%", r"\%")


def _systemd_escape(value: str) -> str:
    """systemd expands ``%`` specifiers and ``$VAR`` in ``ExecStart=`` (and specifiers in
    ``WorkingDirectory=``), quotes or not: double them so paths pass through literally."""
    return value.replace("%", "%%").replace("$", "$$")


def systemd(cfg: MaintenanceConfig, config_file: str | None = None) -> str:
    """Four units (two oneshot services and their timers), each after a ``# file:`` line.
    Install under ``/etc/systemd/system/`` (or ``~/.config/systemd/user/`` with ``--user``)
    and ``systemctl enable --now compactor-maintain.timer compactor-health.timer``."""
    exe = _systemd_escape(command_prefix())
    paths = _systemd_escape(_paths(cfg, config_file))
    wd = str(Path.cwd()).replace("%", "%%")   # a plain path: systemd does not unquote it
    return f"""\
# file: compactor-maintain.service
[Unit]
Description=compactor maintenance (ledger rotation, age tiers, retention, repair, vacuum)

[Service]
Type=oneshot
WorkingDirectory={wd}
ExecStart={exe} maintain --run {paths}
Nice=10
IOSchedulingClass=idle

# file: compactor-maintain.timer
[Unit]
Description=Daily compactor maintenance

[Timer]
OnCalendar=*-*-* 03:17:00
RandomizedDelaySec=15min
Persistent=true

[Install]
WantedBy=timers.target

# file: compactor-health.service
[Unit]
Description=compactor health check (exit 1 warning, 2 critical: the unit shows as failed)

[Service]
Type=oneshot
WorkingDirectory={wd}
ExecStart={exe} health {paths}

# file: compactor-health.timer
[Unit]
Description=compactor health check every 6 hours

[Timer]
OnCalendar=*-*-* 00/6:00:00
Persistent=true

[Install]
WantedBy=timers.target
"""

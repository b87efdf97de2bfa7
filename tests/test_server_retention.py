"""The server applies face retention from one process of a home, on a schedule."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from faceprint.cli import build_parser
from faceprint.errors import InvalidParameterException
from faceprint.server.retention import RetentionRunner
from faceprint.server.run import ServeSettings, audit_settings, check_audit_settings
from faceprint.service import Faceprint


def test_one_process_of_a_home_applies_retention(tmp_path: Path) -> None:
    first, second = RetentionRunner(Faceprint(tmp_path), 3600), RetentionRunner(Faceprint(tmp_path), 3600)
    try:
        assert first._apply() == {"Collections": [], "FacesDeleted": 0}
        assert second._apply() is None  # the lock is the first's while it runs
        first.stop()
        assert second._apply() == {"Collections": [], "FacesDeleted": 0}  # and passes on when it stops
    finally:
        first.stop()
        second.stop()


def test_the_schedule_runs_and_stops(tmp_path: Path) -> None:
    runner = RetentionRunner(Faceprint(tmp_path), 0.05)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not runner.lock.held and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runner.lock.held  # it ran (the lock is taken on the first run)
    finally:
        runner.stop()
    assert not runner.lock.held and runner._schedule is None


def test_zero_means_never(tmp_path: Path) -> None:
    runner = RetentionRunner(Faceprint(tmp_path), 0)
    runner.start()
    assert runner._schedule is None


def test_serve_flags_reach_the_audit_settings() -> None:
    args = build_parser().parse_args(["serve", "--store-probes", "--audit-retention-days", "400",
                                      "--probe-retention-days", "30", "--quality-floor", "80", "--durable-audit",
                                      "--retention-every", "60"])
    settings = ServeSettings(store_probes=args.store_probes, audit_retention_days=args.audit_retention_days,
                             probe_retention_days=args.probe_retention_days, quality_floor=args.quality_floor,
                             durable_audit=args.durable_audit, retention_every=args.retention_every)
    audit = audit_settings(settings)
    assert (audit.store_probes, audit.retention_days, audit.probe_retention_days, audit.quality_floor,
            audit.durable, audit.two_person_default) == (True, 400, 30, 80.0, True, True)
    defaults = audit_settings(ServeSettings())
    assert (defaults.store_probes, defaults.retention_days, defaults.durable) == (False, 183, False)


@pytest.mark.parametrize("change", [{"audit_retention_days": 0}, {"probe_retention_days": 0},
                                    {"quality_floor": 101.0}, {"retention_every": -1.0}])
def test_bad_audit_flags_are_refused(change: dict) -> None:
    with pytest.raises(InvalidParameterException):
        check_audit_settings(ServeSettings(**change))

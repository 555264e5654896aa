"""Running a compliance simulation on a real store, and its JSON.

:func:`run` builds the engine through the composition root (:func:`movecar_adapters.connect`)
on the store asked for (``memory``, ``sqlite``: a fresh file, or any database URL, which
must hold no cases yet), runs :class:`~movecar_core.simulation.Simulation`, and on a SQL
store audits what it wrote (七(三), 五(三)): a database that does not verify is a finding
that costs the month's fee.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from movecar_adapters.config import MEMORY_URL
from movecar_adapters.connect import connect
from movecar_adapters.sql.errors import StorageInputError
from movecar_core.app import MoveCar
from movecar_core.calendar import WorkingDayCalendar
from movecar_core.contract import Contract
from movecar_core.errors import OutsideContractTerm
from movecar_core.penalties import month_payable
from movecar_core.settlement import ServiceMonth
from movecar_core.simulation import Finding, Scenario, SimulationResult, simulate
from movecar_core.term import service_year

#: The simulation database file of ``--store sqlite`` (replaced at each run).
SQLITE_FILE = "simulation.db"
#: The form of the JSON report (changes when a field changes meaning).
JSON_FORMAT = "movecar-simulation/1"


def store_url(store: str, out: Path) -> str:
    """``memory`` and ``sqlite`` (a fresh ``simulation.db`` in ``out``), or a URL as given."""
    if store == "memory":
        return MEMORY_URL
    if store == "sqlite":
        path = out / SQLITE_FILE
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    return store


def run(
    scenario: Scenario,
    seed: int,
    url: str,
    *,
    contract: Contract | None = None,
    calendar: WorkingDayCalendar | None = None,
    progress: Callable[[int, int], None] | None = None,
    check_every: int = 1,
) -> SimulationResult:
    """Simulate ``scenario`` with ``seed`` on the store at ``url`` (see the module);
    ``calendar`` is the working-day calendar of its deadlines (default: the library's)."""
    engines: list[MoveCar] = []
    keys = None
    if url != MEMORY_URL:
        from movecar_adapters.crypto import KeyRing

        # Synthetic data: a key of the run's own, never written anywhere.
        keys = KeyRing([("sim", KeyRing.generate())])

    def factory(**ports: Any) -> MoveCar:
        mc = connect(url, keys=keys, upgrade=True, environ={}, **ports)
        engines.append(mc)
        _require_empty(mc)
        return mc

    try:
        result = simulate(
            scenario,
            seed,
            factory,
            contract=contract,
            calendar=calendar,
            progress=progress,
            check_every=check_every,
        )
        if engines and url != MEMORY_URL:
            result = _audited(engines[0], result)
    finally:
        for mc in engines:
            mc.close()
    return result


def _require_empty(mc: MoveCar) -> None:
    if next(iter(mc.store.case_ids()), None) is not None:
        raise StorageInputError(
            "store", "(not empty)", "holds cases already: simulate into an empty database"
        )


def _audited(mc: MoveCar, result: SimulationResult) -> SimulationResult:
    """七(三)/五(三): audit the store; a month whose data does not verify is withheld."""
    from movecar_adapters.sql import SqlStore, verify

    store = mc.store
    if not isinstance(store, SqlStore):
        return result
    audit = verify(store)
    if audit.ok:
        return result
    withheld = [
        Finding(
            "五(三)",
            str(m.month),
            f"the store's data does not verify ({len(audit.findings)} audit findings): "
            "the month's fee is withheld",
            month_payable(m.provisional_fee or Decimal("0.00"), falsified=True).withheld,
        )
        for m in result.months
    ]
    return attrs.evolve(result, findings=(*result.findings, *withheld))


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _service_year_index(contract: Contract, month: ServiceMonth) -> int:
    """The service year (0 the initial one) a month belongs to; the simulation refuses
    periods outside the contract's possible term, so one always does."""
    day = month.first_day()
    for index in range(contract.max_renewals + 1):
        if service_year(contract, index).contains(day):
            return index
    raise OutsideContractTerm(f"month={month}: outside {contract.name}'s possible term")


def result_json(
    result: SimulationResult, options: dict[str, Any], *, contract: Contract | None = None
) -> dict[str, Any]:
    """The result as JSON-ready data: one entry per month, the findings (clause, when,
    cost), the seat plan, the contract's tiers, the seed and the options that reproduce
    the run. Money is text (exact yuan), and nothing depends on the wall clock, so the
    same seed and options give the same bytes. ``contract``: the one the run used, when
    not the scenario's own."""
    contract = contract or result.scenario.contract
    s = result.scenario
    return {
        "format": JSON_FORMAT,
        "seed": result.seed,
        "scenario": s.name,
        "options": options,
        "calls_per_year": s.calls_per_year,
        "period": {"start": str(s.start), "months": s.months},
        "cases": result.cases,
        "invariant_checks": result.invariant_checks,
        "injected": result.injected,
        # 三's tier boundaries, so every output (the cumulative chart) reads them from here.
        "tiers": [
            {"lower": t.lower, "upper": t.upper, "price": _money(t.price)} for t in contract.tiers
        ],
        "months": [
            {
                "month": str(m.month),
                "service_year": _service_year_index(contract, m.month),
                "inbound": m.inbound,
                "connected": m.connected,
                "abandoned": m.abandoned,
                "lost_to_outage": m.lost_to_outage,
                "service_level": round(m.service_level, 4),
                "outbound_calls": m.outbound_calls,
                "cases": dict(sorted(m.cases.items())),
                "escalations": dict(sorted(m.escalations.items())),
                "billable_calls": m.billable_calls,
                "unit_price": _money(m.unit_price),
                "provisional_fee": _money(m.provisional_fee),
                "provisional_fee_graduated": _money(m.provisional_fee_graduated),
                "ytd_after": m.ytd_after,
                "true_up": _money(m.true_up),
                "true_up_graduated": _money(m.true_up_graduated),
                "outage_minutes": m.outage_minutes,
                "days_without_24h": m.days_without_24h,
                "service_gap_penalty": _money(m.service_gap_penalty),
                "report_due": m.report_due,
                "payment_due": m.payment_due,
            }
            for m in result.months
        ],
        "findings": [
            {"clause": f.clause, "when": f.when, "what": f.what, "cost": _money(f.cost)}
            for f in result.findings
        ],
        "outages": [[a.isoformat(), b.isoformat()] for a, b in result.outages],
        "seat_plan": [
            {
                "hour_of_week": p.hour_of_week,
                "calls_per_hour": p.calls_per_hour,
                "seats_needed": p.seats_needed,
                "seats_simulated": p.seats_simulated,
            }
            for p in result.seat_plan
        ],
    }


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n"

"""Contract compliance simulation (issue 11): whole contract periods through the real
engine on a simulated clock. See :mod:`movecar_core.simulation.run` and
:mod:`movecar_core.simulation.scenario`; ``movecar simulate`` is the command."""

from movecar_core.simulation.run import (
    LIVENESS_BOUND,
    Finding,
    HourPlan,
    MonthFigures,
    Simulation,
    SimulationFailed,
    SimulationResult,
    simulate,
)
from movecar_core.simulation.scenario import DEFAULT, InvalidScenario, Scenario
from movecar_core.simulation.switch import SimulatedFarEnd, SimulatedTelephony, SwitchBehaviour

__all__ = [
    "DEFAULT",
    "LIVENESS_BOUND",
    "Finding",
    "HourPlan",
    "InvalidScenario",
    "MonthFigures",
    "Scenario",
    "SimulatedFarEnd",
    "SimulatedTelephony",
    "Simulation",
    "SimulationFailed",
    "SimulationResult",
    "SwitchBehaviour",
    "simulate",
]

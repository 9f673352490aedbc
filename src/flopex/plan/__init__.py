"""The fleet planner: the cheapest mix of offers that serves the workloads within their SLOs and limits."""

from __future__ import annotations

from flopex.plan._build import Inputs, Margins, build_inputs
from flopex.plan._document import (
    PLAN_DOCUMENT_VERSION,
    Deployment,
    DeploymentKind,
    Layout,
    PlanDocument,
    WorkloadPlan,
    load_plan_document,
    plan_document,
    plan_document_schema,
    replica_of,
)
from flopex.plan._melange import MelangeInput, melange_result, read_melange, solve_melange
from flopex.plan._milp import solve
from flopex.plan._model import (
    CONSTRAINT_GROUPS,
    Candidate,
    Demand,
    Hosted,
    Options,
    Solution,
    default_time_limit,
    effective_utilisation,
)
from flopex.plan._plan import (
    Binding,
    ParetoPoint,
    Plan,
    make_plan,
    options_for,
    pareto,
    pareto_svg,
)
from flopex.plan._prune import prune
from flopex.plan._spec import PlanSpec, Profile, SpotPolicy, load_plan

__all__ = [
    "PLAN_DOCUMENT_VERSION",
    "Deployment",
    "DeploymentKind",
    "Layout",
    "PlanDocument",
    "WorkloadPlan",
    "load_plan_document",
    "plan_document",
    "plan_document_schema",
    "replica_of",
    "CONSTRAINT_GROUPS",
    "Binding",
    "Candidate",
    "Demand",
    "Hosted",
    "Inputs",
    "MelangeInput",
    "Options",
    "ParetoPoint",
    "Plan",
    "PlanSpec",
    "Profile",
    "Solution",
    "SpotPolicy",
    "Margins",
    "build_inputs",
    "default_time_limit",
    "effective_utilisation",
    "load_plan",
    "make_plan",
    "melange_result",
    "options_for",
    "pareto",
    "pareto_svg",
    "prune",
    "read_melange",
    "solve",
    "solve_melange",
]

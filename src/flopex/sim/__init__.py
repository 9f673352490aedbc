"""Discrete-event simulation of a fleet under a trace: continuous batching, paged KV, preemptions, faults."""

from __future__ import annotations

from flopex.sim._build import (
    deployment_replica,
    group_replica,
    hosted_shares,
    replicas_from_document,
    replicas_from_plan,
    split_hosted,
)
from flopex.sim._capacity import Attainment, Length, attainment, measured_capacity, unit_arrivals
from flopex.sim._engine import Completed, Fault, Request, SimOptions, SimReplica, SimResult, simulate
from flopex.sim._report import Report, meter_requests, report
from flopex.sim._traffic import bucket_of, generate, requests_from_trace
from flopex.sim._verify import Check, Round, Verified, VerifyOptions, traffic_for, verify_plan

__all__ = [
    "deployment_replica",
    "replicas_from_document",
    "Attainment",
    "Check",
    "Length",
    "Round",
    "Verified",
    "VerifyOptions",
    "attainment",
    "group_replica",
    "measured_capacity",
    "traffic_for",
    "unit_arrivals",
    "verify_plan",
    "Completed",
    "Fault",
    "Report",
    "Request",
    "SimOptions",
    "SimReplica",
    "SimResult",
    "bucket_of",
    "generate",
    "hosted_shares",
    "meter_requests",
    "split_hosted",
    "replicas_from_plan",
    "report",
    "requests_from_trace",
    "simulate",
]

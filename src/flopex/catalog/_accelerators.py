"""Accelerator specifications and the table that resolves ids and aliases."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from flopex.errors import UnknownAcceleratorError, did_you_mean

__all__ = ["PRECISIONS", "Accelerator", "AcceleratorTable", "Precision"]

Precision = Literal["bf16", "fp16", "fp8", "int8", "int4", "fp4"]
PRECISIONS: tuple[Precision, ...] = ("bf16", "fp16", "fp8", "int8", "int4", "fp4")


class Accelerator(BaseModel):
    """One chip: a GPU, a TPU chip or an ASIC device, with dense peak figures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    aliases: tuple[str, ...] = ()
    vendor: str
    kind: Literal["gpu", "tpu", "asic"]
    memory_gb: PositiveFloat
    memory_type: Literal["HBM", "GDDR", "SRAM"]
    memory_tech: str
    memory_bandwidth_tb_s: PositiveFloat
    tflops: dict[Precision, PositiveFloat] = Field(min_length=1)
    tdp_w: PositiveFloat | None
    idle_w: float | None = Field(default=None, ge=0)
    idle_basis: str
    scale_up_link: str | None
    scale_up_gb_s: PositiveFloat | None
    scale_up_domain: PositiveInt | None
    source: str = Field(min_length=1)
    as_of: date

    @property
    def peak_tflops(self) -> float:
        """The highest-precision 16-bit dense peak (bf16, else fp16): the figure prices are compared on."""
        return self.tflops.get("bf16") or self.tflops.get("fp16") or max(self.tflops.values())

    def runs(self, precision: Precision) -> bool:
        return precision in self.tflops


def _key(name: str) -> str:
    return name.strip().upper().replace("_", "-").replace(" ", "-")


class AcceleratorTable(Mapping[str, Accelerator]):
    """Accelerators by canonical id; `resolve` also accepts aliases, in any case."""

    def __init__(self, accelerators: list[Accelerator]) -> None:
        self._by_id = {a.id: a for a in accelerators}
        self._names: dict[str, str] = {}
        for acc in accelerators:
            for name in (acc.id, *acc.aliases):
                self._names[_key(name)] = acc.id

    def __getitem__(self, key: str) -> Accelerator:
        return self._by_id[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def find(self, name: str) -> Accelerator | None:
        canonical = self._names.get(_key(name))
        return None if canonical is None else self._by_id[canonical]

    def resolve(self, name: str) -> Accelerator:
        found = self.find(name)
        if found is None:
            raise UnknownAcceleratorError(self.unknown_message(name))
        return found

    def unknown_message(self, name: str) -> str:
        hint = did_you_mean(name, [*self._by_id, *self._names])
        return (
            f"unknown accelerator {name!r}.{hint} Known ids: {', '.join(self._by_id)}. "
            "To fix: use one of these ids or an alias (see `flopex hardware list`)."
        )

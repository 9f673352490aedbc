"""The engine scheduler the simulator and the emulator share: admission, chunked prefill, KV, preemption."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from flopex.catalog import load_accelerators
from flopex.models import resolve_model
from flopex.perf import EngineState, LLMQuery, Replica, Scenario, Seq, load_efficiency, predict_llm, replica_for

EFF = load_efficiency()


def _replica(kv_tokens: int | None = None, budget: int | None = None, full: bool = False) -> Replica:
    q = LLMQuery(resolve_model("llama-3.1-8b"), load_accelerators().resolve("H100-SXM"), 1, "fp8", 1000, 200,
                 Scenario("server", 0, 2.0, 0.2))  # fmt: skip
    rep = replica_for(predict_llm(q, EFF), EFF)
    if kv_tokens is not None:
        rep = replace(rep, memory=replace(rep.memory, kv_capacity_tokens=kv_tokens))
    engine = rep.engine
    if budget is not None:
        engine = engine.model_copy(update={"max_batch_tokens": budget})
    if full:
        engine = engine.model_copy(update={"kv_reservation": "full"})
    return replace(rep, engine=engine)


def _run(state: EngineState, seqs: list[Seq], limit: int = 100_000) -> dict[int, int]:
    """Drive the engine to completion one step at a time; tokens produced per sequence."""
    for s in seqs:
        state.add(s)
    produced = {s.key: 0 for s in seqs}
    for _ in range(limit):
        step = state.next_step()
        if step is None:
            return produced
        for done, _ in state.advance(1):
            produced[done.key] += 1
        for running in state.running.values():
            produced[running.key] += 1
        state.start_decoding(step.finishing)
        for first in step.finishing:
            produced[first.key] += 1
    raise AssertionError("the engine did not drain")


def test_a_prompt_longer_than_the_budget_is_prefilled_in_chunks_and_decoders_share_every_step() -> None:
    state = EngineState(_replica(budget=512))
    state.add(Seq(1, 1300, 5))
    sizes = []
    while (step := state.next_step()) is not None and not step.finishing:
        sizes.append(step.batch.prefill_tokens)
        state.advance(1)
    assert step is not None
    sizes.append(step.batch.prefill_tokens)
    assert sizes == [512, 512, 276]
    # the later chunks attend to everything before them: more (query, key) pairs than the first
    assert step.batch.prefill_pairs > 276 * 276 / 2


def test_prompts_are_admitted_first_in_first_out_within_the_token_budget() -> None:
    state = EngineState(_replica(budget=1000))
    for key, tokens in ((1, 600), (2, 300), (3, 300)):
        state.add(Seq(key, tokens, 4))
    step = state.next_step()
    assert step is not None
    assert [s.key for s in step.finishing] == [1, 2]  # 600 + 300 fit; the third gets the 100 tokens left
    assert step.batch.prefill_tokens == 1000
    assert state.waiting[-1].prefilled == 100


def test_every_request_gets_exactly_its_answer_and_the_cache_is_empty_after() -> None:
    state = EngineState(_replica())
    seqs = [Seq(k, 50 + 37 * k, 1 + (k * 13) % 40) for k in range(30)]
    produced = _run(state, seqs)
    assert produced == {s.key: s.output_tokens for s in seqs}
    assert state.kv_tokens() == 0 and state.idle


def test_a_full_cache_preempts_the_newest_decoder_which_still_finishes_its_answer() -> None:
    state = EngineState(_replica(kv_tokens=1200))
    seqs = [Seq(k, 300, 200) for k in range(3)]
    produced = _run(state, seqs)
    assert state.preemptions > 0
    assert produced == {s.key: 200 for s in seqs}


def test_full_reservation_waits_for_room_instead_of_preempting() -> None:
    state = EngineState(_replica(kv_tokens=1200, full=True))
    seqs = [Seq(k, 300, 200) for k in range(3)]
    produced = _run(state, seqs)
    assert state.preemptions == 0
    assert produced == {s.key: 200 for s in seqs}


def test_an_aborted_sequence_frees_its_blocks_wherever_it_is() -> None:
    state = EngineState(_replica())
    running, waiting = Seq(1, 500, 100), Seq(2, 20_000, 10)
    state.add(running)
    step = state.next_step()
    assert step is not None
    state.advance(1)
    state.start_decoding(step.finishing)
    state.add(waiting)
    step = state.next_step()  # the long prompt's first chunk is admitted: its blocks are reserved
    assert step is not None and waiting.prefilled > 0
    state.advance(1)
    before = state.kv_tokens()
    state.abort(waiting)
    assert state.kv_tokens() == before - 20_000
    state.abort(running)
    assert state.kv_tokens() == 0 and state.idle


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3000), st.integers(1, 300)), min_size=1, max_size=25),
       st.integers(2000, 40_000))  # fmt: skip
def test_any_mix_drains_with_every_answer_complete(lengths: list[tuple[int, int]], kv: int) -> None:
    state = EngineState(_replica(kv_tokens=kv, budget=1024))
    seqs = [Seq(k, i, o) for k, (i, o) in enumerate(lengths) if state.fits(Seq(k, i, o))]
    produced = _run(state, seqs)
    assert produced == {s.key: s.output_tokens for s in seqs}
    assert state.kv_tokens() == 0 and state.context_sum() == 0

"""`ModelSpec`: a transformer language model's architecture, and the counts the performance model needs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, model_validator

__all__ = ["MLASpec", "MoESpec", "ModelSpec"]


class MoESpec(BaseModel):
    """Mixture of experts: routed experts (and any shared experts) replace the dense MLP in MoE layers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_experts: PositiveInt
    experts_per_token: PositiveInt
    expert_intermediate_size: PositiveInt
    shared_experts: NonNegativeInt = 0
    shared_intermediate_size: NonNegativeInt = 0
    dense_layers: NonNegativeInt = Field(0, description="leading layers that keep a dense MLP (DeepSeek-V3: 3)")

    @model_validator(mode="after")
    def _k_within_e(self) -> MoESpec:
        if self.experts_per_token > self.num_experts:
            raise ValueError(f"experts_per_token ({self.experts_per_token}) exceeds num_experts ({self.num_experts})")
        return self


class MLASpec(BaseModel):
    """Multi-head latent attention (DeepSeek-V2/V3): the KV cache holds one compressed latent per token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    q_lora_rank: PositiveInt | None
    kv_lora_rank: PositiveInt
    qk_nope_head_dim: PositiveInt
    qk_rope_head_dim: PositiveInt
    v_head_dim: PositiveInt


class ModelSpec(BaseModel):
    """A decoder-only transformer. Parameter counts follow from the shapes; nothing is looked up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    architecture: str
    hidden_size: PositiveInt
    num_layers: PositiveInt
    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    head_dim: PositiveInt
    intermediate_size: PositiveInt = Field(description="dense MLP width (gated: gate, up and down projections)")
    vocab_size: PositiveInt
    tie_embeddings: bool = False
    qkv_bias: bool = False
    max_context: PositiveInt
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    source: str = ""

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSpec:
        if self.mla is None and self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_heads}) must be a multiple of num_key_value_heads "
                f"({self.num_kv_heads}) for grouped-query attention"
            )
        return self

    # --- parameters ---------------------------------------------------------------------------------------
    @property
    def attention_params(self) -> int:
        """Weights of one layer's attention block (projections and biases; norms are counted separately)."""
        d, nh = self.hidden_size, self.num_heads
        if self.mla is not None:
            m = self.mla
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            q = d * nh * qk if m.q_lora_rank is None else d * m.q_lora_rank + m.q_lora_rank * nh * qk + m.q_lora_rank
            kv = d * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank * nh * (m.qk_nope_head_dim + m.v_head_dim)
            return q + kv + m.kv_lora_rank + nh * m.v_head_dim * d
        q, kv = nh * self.head_dim, self.num_kv_heads * self.head_dim
        bias = q + 2 * kv if self.qkv_bias else 0
        return d * q + 2 * d * kv + q * d + bias

    def _mlp(self, width: int) -> int:
        return 3 * self.hidden_size * width

    @property
    def dense_mlp_params(self) -> int:
        return self._mlp(self.intermediate_size)

    @property
    def expert_params(self) -> int:
        """One routed expert (0 for a dense model)."""
        return 0 if self.moe is None else self._mlp(self.moe.expert_intermediate_size)

    @property
    def shared_expert_params(self) -> int:
        if self.moe is None or not self.moe.shared_experts:
            return 0
        width = self.moe.shared_intermediate_size or self.moe.expert_intermediate_size
        return self.moe.shared_experts * self._mlp(width)

    @property
    def moe_layers(self) -> int:
        return 0 if self.moe is None else self.num_layers - self.moe.dense_layers

    @property
    def dense_layers(self) -> int:
        return self.num_layers - self.moe_layers

    @property
    def embedding_params(self) -> int:
        """Input embedding plus the output head (counted once when tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    @property
    def norm_params(self) -> int:
        return (2 * self.num_layers + 1) * self.hidden_size

    def _layer_params(self, experts: int) -> int:
        router = 0 if self.moe is None else self.hidden_size * self.moe.num_experts
        moe_mlp = router + self.shared_expert_params + experts * self.expert_params
        return (
            self.num_layers * self.attention_params
            + self.dense_layers * self.dense_mlp_params
            + (self.moe_layers * moe_mlp)
        )

    @property
    def total_params(self) -> int:
        experts = 0 if self.moe is None else self.moe.num_experts
        return self._layer_params(experts) + self.embedding_params + self.norm_params

    @property
    def active_params(self) -> int:
        """Parameters one token passes through (all of them for a dense model), embeddings included."""
        experts = 0 if self.moe is None else self.moe.experts_per_token
        return self._layer_params(experts) + self.embedding_params + self.norm_params

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    # --- KV cache and attention ---------------------------------------------------------------------------
    @property
    def kv_elements_per_token(self) -> int:
        """Cached values per token over all layers: 2·L·n_kv·h for GQA, L·(d_c + d_rope) for MLA."""
        if self.mla is not None:
            return self.num_layers * (self.mla.kv_lora_rank + self.mla.qk_rope_head_dim)
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim

    @property
    def attention_flops_per_pair(self) -> int:
        """FLOPs of attention for one query token against one cached token, summed over layers.

        GQA: 2·n_h·h for QK^T plus 2·n_h·h for PV. MLA in its absorbed decode form scores against the latent
        and rope parts and mixes values in the latent space: n_h·(4·d_c + 2·d_rope).
        """
        if self.mla is not None:
            m = self.mla
            return self.num_layers * self.num_heads * (4 * m.kv_lora_rank + 2 * m.qk_rope_head_dim)
        return self.num_layers * 4 * self.num_heads * self.head_dim

    @property
    def kv_shards(self) -> int:
        """How many ways tensor parallelism can split the KV cache before it must replicate it."""
        return 1 if self.mla is not None else self.num_kv_heads

"""W2V2-AASIST backend: the AASIST graph-attention classifier over frozen wav2vec 2.0 features.

Input is the W2V2 front-end's ``hidden_states[5]`` laid out as (batch, 1, 1024, 201), features on the
height axis; output is ``(logits, hidden)``: logits (batch, 2) with index 0 = bona fide and 1 = spoof,
and the 160-d readout vector that feeds the last linear layer.

Data flow (shapes for the fixed 201-frame input):

    (B,1,1024,201) -> LL: Linear 1024->128 per frame -> (B,1,128,201) -> max-pool 3x3 -> (B,1,42,67)
    -> BN, SELU -> six residual blocks -> (B,64,42,67) -> BN, SELU
    -> attention-weighted sums: over time -> 42 spectral nodes (+ pos_S), over features -> 67 temporal nodes
    -> GAT per node type, graph pool 0.5 (42->21, 67->33)
    -> two branches, each: HS-GAL (temporal first) with a learnable master node, pool 0.5 (33->16, 21->10),
       a second HS-GAL added residually
    -> element-wise max of the branches -> readout [max|T|, mean T, max|S|, mean S, master] (160)
    -> out_layer -> logits

Attribute names, the nesting of ``encoder`` (a Sequential of one-block Sequentials), the indices inside
``attention`` and the presence or absence of ``bn1``/``conv_downsample`` all follow the authors'
``model.W2VAASIST`` exactly: the released checkpoints are loaded with ``load_state_dict(strict=True)``,
so every parameter and buffer must live at the same dotted path with the same shape.

Graph layers follow clovaai/aasist; the SSL layout (input projection, attention-weighted aggregation, no
max-pool in residual blocks, 42 spectral nodes) follows TakHemlata/SSL_Anti-spoofing. Written anew.
Dropout modules are kept where the original has them; they do nothing in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "GraphAttentionLayer",
    "HeteroGraphAttentionLayer",
    "GraphPool",
    "ResidualBlock",
    "W2V2AASIST",
]

FEATURE_DIM = 1024  # XLS-R 300M hidden size
PROJ_DIM = 128  # LL output: the "frequency" height the encoder sees
ENCODER_FILTERS: list[tuple[int, int]] = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 64)]
GAT_DIMS = (64, 32)
NUM_SPECTRAL_NODES = 42  # PROJ_DIM // 3 after the 3x3 max-pool; pos_S is sized for exactly this
POOL_RATIO = 0.5
HOMO_TEMPERATURE = 2.0  # GAT_layer_S / GAT_layer_T
HETERO_TEMPERATURE = 100.0  # all four HtrgGAT layers


def _xavier_param(*size: int) -> nn.Parameter:
    param = nn.Parameter(torch.empty(*size))
    nn.init.xavier_normal_(param)
    return param


def _pairwise_products(x: Tensor) -> Tensor:
    """(B, N, D) -> (B, N, N, D) with entry [b, i, j] = x[b, i] * x[b, j]."""
    return x.unsqueeze(2) * x.unsqueeze(1)


def _node_batchnorm(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """BatchNorm1d over the feature axis of (B, N, D), every node of every item as one sample."""
    b, n, d = x.shape
    return bn(x.reshape(b * n, d)).reshape(b, n, d)


class GraphAttentionLayer(nn.Module):
    """Graph attention over one node type, fully connected graph (the GAT of AASIST)."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _xavier_param(out_dim, 1)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.act = nn.SELU()
        self.temp = temperature

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, N, in_dim) -> (B, N, out_dim)."""
        x = self.input_drop(x)
        scores = torch.tanh(self.att_proj(_pairwise_products(x))) @ self.att_weight  # (B, N, N, 1)
        # Softmax over the neighbour axis j: row i says how node i mixes the others.
        att = F.softmax(scores.squeeze(-1) / self.temp, dim=-1)  # (B, N, N)
        x = self.proj_with_att(att @ x) + self.proj_without_att(x)
        return self.act(_node_batchnorm(self.bn, x))


class HeteroGraphAttentionLayer(nn.Module):
    """HS-GAL: attention over two node types at once plus a master node that attends to all of them.

    Edge scores use ``att_weight11`` within type 1, ``att_weight22`` within type 2 and the shared
    ``att_weight12`` across types (both directions). Type 1 is the first argument of ``forward``;
    W2V2-AASIST passes the *temporal* nodes first, so 11 = temporal-temporal, 22 = spectral-spectral.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        # Parameters first, in the original's order, so state_dict order matches the checkpoint too.
        self.att_weight11 = _xavier_param(out_dim, 1)
        self.att_weight22 = _xavier_param(out_dim, 1)
        self.att_weight12 = _xavier_param(out_dim, 1)
        self.att_weightM = _xavier_param(out_dim, 1)
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.act = nn.SELU()
        self.temp = temperature

    def forward(self, x1: Tensor, x2: Tensor, master: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x1: (B, N1, in_dim), x2: (B, N2, in_dim), master: (B or 1, 1, in_dim).

        Returns the updated type-1 nodes (B, N1, out_dim), type-2 nodes (B, N2, out_dim) and master
        (B, 1, out_dim).
        """
        n1, n2 = x1.shape[1], x2.shape[1]
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)
        x = self.input_drop(x)

        att = self._node_attention(x, n1)
        # The master is updated from the (projected) nodes before they are themselves updated.
        new_master = self._master_update(x, master)

        x = self.proj_with_att(att @ x) + self.proj_without_att(x)
        x = self.act(_node_batchnorm(self.bn, x))
        return x[:, :n1], x[:, n1 : n1 + n2], new_master

    def _node_attention(self, x: Tensor, n1: int) -> Tensor:
        """(B, N, D) -> (B, N, N) attention, block-wise edge weights by node type."""
        hidden = torch.tanh(self.att_proj(_pairwise_products(x)))  # (B, N, N, out_dim)
        s11 = hidden[:, :n1, :n1] @ self.att_weight11
        s12 = hidden[:, :n1, n1:] @ self.att_weight12
        s21 = hidden[:, n1:, :n1] @ self.att_weight12  # the cross-type weight serves both directions
        s22 = hidden[:, n1:, n1:] @ self.att_weight22
        # Assemble the score matrix from its four blocks with cat rather than slice assignment into a
        # zero board: no in-place writes in the graph (cleaner ONNX export); n1 comes from shapes only.
        scores = torch.cat([torch.cat([s11, s12], dim=2), torch.cat([s21, s22], dim=2)], dim=1)
        return F.softmax(scores.squeeze(-1) / self.temp, dim=-1)

    def _master_update(self, x: Tensor, master: Tensor) -> Tensor:
        scores = torch.tanh(self.att_projM(x * master)) @ self.att_weightM  # (B, N, 1)
        att = F.softmax(scores / self.temp, dim=1)  # over nodes
        pooled = att.transpose(1, 2) @ x  # (B, 1, D)
        return self.proj_with_attM(pooled) + self.proj_without_attM(master)


class GraphPool(nn.Module):
    """Keep the top ``ratio`` share of nodes by a learned sigmoid score, scaled by that score.

    Kept nodes come out in descending score order (``topk`` sorted). That order matters: the two
    branches are later combined by an element-wise max over node positions.
    """

    def __init__(self, ratio: float, in_dim: int, p: float) -> None:
        super().__init__()
        self.k = ratio
        self.sigmoid = nn.Sigmoid()
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(p=p) if p > 0 else nn.Identity()
        self.in_dim = in_dim

    def forward(self, h: Tensor) -> Tensor:
        """h: (B, N, D) -> (B, max(int(N * ratio), 1), D)."""
        scores = self.sigmoid(self.proj(self.drop(h)))  # (B, N, 1)
        keep = max(int(h.shape[1] * self.k), 1)  # static: depends on the node count only
        _, idx = torch.topk(scores, keep, dim=1)
        return torch.gather(h * scores, 1, idx.expand(-1, -1, h.shape[2]))


class ResidualBlock(nn.Module):
    """RawNet2-style residual block without the internal max-pool (shape-preserving).

    conv1 (2x3, pad 1x1) grows the height by one and conv2 (2x3, pad 0x1) shrinks it back.
    """

    def __init__(self, in_channels: int, out_channels: int, first: bool = False) -> None:
        super().__init__()
        self.first = first
        if not first:
            # The checkpoint holds bn1 weights for blocks 1-5 (not block 0), so the module must exist.
            self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(2, 3), padding=(1, 1))
        self.selu = nn.SELU()
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(2, 3), padding=(0, 1))
        self.downsample = in_channels != out_channels
        if self.downsample:
            self.conv_downsample = nn.Conv2d(in_channels, out_channels, kernel_size=(1, 3), padding=(0, 1))

    def forward(self, x: Tensor) -> Tensor:
        # QUIRK reproduced on purpose: the original computes selu(bn1(x)) and then discards it, feeding
        # conv1 the raw block input. The released weights were trained that way, so "fixing" it changes
        # the outputs. bn1 therefore has no effect; it is neither computed here nor removable (its
        # parameters are in the checkpoint and strict loading needs somewhere to put them).
        out = self.conv1(x)
        out = self.conv2(self.selu(self.bn2(out)))
        identity = self.conv_downsample(x) if self.downsample else x
        return out + identity


class W2V2AASIST(nn.Module):
    """AASIST backend over W2V2 ``hidden_states[5]``; the authors' ``model.W2VAASIST`` for inference."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        gat_in, gat_out = GAT_DIMS
        enc_out = ENCODER_FILTERS[-1][1]
        # Registration order mirrors the original so that state_dict() lists keys in checkpoint order.
        self.pos_S = nn.Parameter(torch.randn(1, NUM_SPECTRAL_NODES, enc_out))
        self.master1 = nn.Parameter(torch.randn(1, 1, gat_in))
        self.master2 = nn.Parameter(torch.randn(1, 1, gat_in))

        self.first_bn = nn.BatchNorm2d(1)
        self.first_bn1 = nn.BatchNorm2d(enc_out)
        self.drop = nn.Dropout(0.5)
        self.drop_way = nn.Dropout(0.2)
        self.selu = nn.SELU()

        # Each block sits alone in its own Sequential: the checkpoint keys are "encoder.<i>.0.<name>".
        self.encoder = nn.Sequential(
            *(
                nn.Sequential(ResidualBlock(cin, cout, first=(i == 0)))
                for i, (cin, cout) in enumerate(ENCODER_FILTERS)
            )
        )
        self.LL = nn.Linear(FEATURE_DIM, PROJ_DIM)
        # Indices 0 and 2/3 carry weights in the checkpoint ("attention.0", "attention.2", "attention.3").
        self.attention = nn.Sequential(
            nn.Conv2d(enc_out, 128, kernel_size=(1, 1)),
            nn.SELU(),
            nn.BatchNorm2d(128),
            nn.Conv2d(128, enc_out, kernel_size=(1, 1)),
        )

        self.GAT_layer_S = GraphAttentionLayer(enc_out, gat_in, temperature=HOMO_TEMPERATURE)
        self.GAT_layer_T = GraphAttentionLayer(enc_out, gat_in, temperature=HOMO_TEMPERATURE)
        self.HtrgGAT_layer_ST11 = HeteroGraphAttentionLayer(gat_in, gat_out, temperature=HETERO_TEMPERATURE)
        self.HtrgGAT_layer_ST12 = HeteroGraphAttentionLayer(gat_out, gat_out, temperature=HETERO_TEMPERATURE)
        self.HtrgGAT_layer_ST21 = HeteroGraphAttentionLayer(gat_in, gat_out, temperature=HETERO_TEMPERATURE)
        self.HtrgGAT_layer_ST22 = HeteroGraphAttentionLayer(gat_out, gat_out, temperature=HETERO_TEMPERATURE)

        self.pool_S = GraphPool(POOL_RATIO, gat_in, 0.3)
        self.pool_T = GraphPool(POOL_RATIO, gat_in, 0.3)
        self.pool_hS1 = GraphPool(POOL_RATIO, gat_out, 0.3)
        self.pool_hT1 = GraphPool(POOL_RATIO, gat_out, 0.3)
        self.pool_hS2 = GraphPool(POOL_RATIO, gat_out, 0.3)
        self.pool_hT2 = GraphPool(POOL_RATIO, gat_out, 0.3)

        self.out_layer = nn.Linear(5 * gat_out, num_classes)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """features: (B, 1, 1024, T) -> (logits (B, 2), hidden (B, 160))."""
        x = self.LL(features.squeeze(1).transpose(1, 2))  # (B, T, 128): project each frame
        x = x.transpose(1, 2).unsqueeze(1)  # (B, 1, 128, T)
        x = F.max_pool2d(x, (3, 3))  # (B, 1, 42, T // 3)
        x = self.selu(self.first_bn(x))
        x = self.encoder(x)
        x = self.selu(self.first_bn1(x))  # (B, 64, 42, T')

        w = self.attention(x)
        # Spectral nodes: weighted sum over time, one node per projected-feature row.
        e_S = torch.sum(x * F.softmax(w, dim=-1), dim=-1).transpose(1, 2) + self.pos_S  # (B, 42, 64)
        out_S = self.pool_S(self.GAT_layer_S(e_S))
        # Temporal nodes: weighted sum over the feature rows, one node per pooled frame.
        e_T = torch.sum(x * F.softmax(w, dim=-2), dim=-2).transpose(1, 2)  # (B, T', 64)
        out_T = self.pool_T(self.GAT_layer_T(e_T))

        out_T1, out_S1, master1 = self._branch(
            out_T,
            out_S,
            self.master1,
            self.HtrgGAT_layer_ST11,
            self.HtrgGAT_layer_ST12,
            self.pool_hS1,
            self.pool_hT1,
        )
        out_T2, out_S2, master2 = self._branch(
            out_T,
            out_S,
            self.master2,
            self.HtrgGAT_layer_ST21,
            self.HtrgGAT_layer_ST22,
            self.pool_hS2,
            self.pool_hT2,
        )

        out_T = torch.maximum(self.drop_way(out_T1), self.drop_way(out_T2))
        out_S = torch.maximum(self.drop_way(out_S1), self.drop_way(out_S2))
        master = torch.maximum(self.drop_way(master1), self.drop_way(master2))

        hidden = torch.cat(
            [
                out_T.abs().amax(dim=1),
                out_T.mean(dim=1),
                out_S.abs().amax(dim=1),
                out_S.mean(dim=1),
                master.squeeze(1),
            ],
            dim=1,
        )
        logits = self.out_layer(self.drop(hidden))
        return logits, hidden

    @staticmethod
    def _branch(
        nodes_T: Tensor,
        nodes_S: Tensor,
        master: Tensor,
        layer1: HeteroGraphAttentionLayer,
        layer2: HeteroGraphAttentionLayer,
        pool_S: GraphPool,
        pool_T: GraphPool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One inference branch: HS-GAL, pool both node types, second HS-GAL added residually."""
        # Temporal nodes go first (type 1): att_weight11 scores T-T edges in the released weights.
        out_T, out_S, master = layer1(nodes_T, nodes_S, master)
        out_S = pool_S(out_S)
        out_T = pool_T(out_T)
        aug_T, aug_S, aug_master = layer2(out_T, out_S, master)
        return out_T + aug_T, out_S + aug_S, master + aug_master

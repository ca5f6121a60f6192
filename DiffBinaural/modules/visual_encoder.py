"""Visual encoder: video frames -> a set of visual tokens for cross-attention.

Two kinds of token, chosen by ``tokens`` (config key ``visual_tokens``):

* **box tokens** (``boxes``): one per (frame l, source slot n), from the source's crop and box centre;
* **grid tokens** (``grid``): one per (frame l, cell), from the backbone's feature map of the whole
  frame *before* its global pool, average-pooled to ``grid = (GY, GX)`` cells, placed at the cell
  centre ``((j + 0.5) / GX, (i + 0.5) / GY)``. Where no detector gives boxes (FAIR-Play, a user's
  video) this keeps where things are in the frame, as the field's systems do (Mono2Binaural tiles a
  ResNet feature map into its bottleneck; Gao & Grauman 2019);
* ``both``: the two sets, told apart by a learned type embedding.

With ``grid_layout`` each frame's grid gets one more token, the **layout token**: a linear read of all
its cells in order (each cell's features reduced to 16 channels, the GY·GX·16 values concatenated and
projected; Mono2Binaural flattens its visual map the same way, Gao & Grauman 2019), placed at the frame
centre. A cell token says where it is only by its position encoding, which the attention must find among
GY·GX tokens; the layout token says where things are by *which* of its inputs they fill, in one token
that every query can read. It is the one token that a mirrored frame does not map onto another of the
set (``--flip_tta`` still makes the output exactly mirror-equivariant).

With ``grid_select = K`` (> 0) only each frame's K **salient cells** stay in the token set, the others
masked: the cells whose features lie farthest from the frame's median cell (:func:`salient_cells`), a
detector-free guess at where the objects are. A box token is the only valid token where a source is,
so the attention cannot miss it; among GY·GX cells it must first find it. The layout token still reads
every cell.

With ``grid_pool = "crops"`` (small CNN only) each kept cell is read as a box would be: a crop one cell
square of the full-size frame, centred on the salience centroid inside the cell (:func:`salience_centroids`:
a detector-free guess at the object's centre), encoded by the CNN with one set of normalisation statistics
for the frame's crops (:func:`shared_norm_forward`) and placed at that centroid. The cells themselves (for
the choice and the layout token) come from the frame resized to the plain grid's size (short side
``max(image_size, 64)``). A box token is a crop centred on its object, at one scale; a cell of the feature
map mixes the object with its neighbours and sees it at the frame's resolution.

Each token is::

    token = Linear(features)                            what is there (a crop's, or a cell's)
          + Linear(Fourier(cx, cy))                     where it is in the image
          + frame_embedding[l]                          when (learned, l = 0..L-1)
          [+ type_embedding[grid | box]]                which kind (``both`` only)
    token = token + MLP(LayerNorm(token))               lets appearance and position interact

The original encoders pooled everything into ONE vector per clip (and masked the wrong slots, see
docs/original.md); keeping a token set lets the UNet's cross-attention pick sources per
time-frequency position. Padded slots (mask True) are not run through the backbone and their tokens
are zeroed; the UNet excludes them from attention.

Backbones:

* ``cnn``: a small conv net trained from scratch (stride-2 conv + GroupNorm + SiLU, global average
  pool; its grid is the last stage's map, stride 16). The offline default; ImageNet normalisation.
* ``resnet18``: transformers ``ResNetModel`` (trainable by default); pretrained e.g.
  ``"microsoft/resnet-18"`` or a local folder; ImageNet normalisation. Grid: ``last_hidden_state``
  (stride 32), whose mean is the pooled output.
* ``clip``: transformers ``CLIPVisionModel`` pooled output (frozen by default); pretrained e.g.
  ``"openai/clip-vit-base-patch32"`` or a local folder; CLIP's own normalisation constants (the
  original fed CLIP ImageNet-normalised pixels; fixed deliberately). Grid: the patch tokens
  (``last_hidden_state`` without the class token, through the same ``post_layernorm`` as the pooled
  output), on a non-square frame by interpolating the position embeddings.

``pretrained=None`` builds a randomly initialised backbone (from ``backbone_config`` or the default
architecture) so that nothing downloads in tests. :meth:`VisualEncoder.checkpoint_config` returns
constructor arguments that rebuild the same architecture offline; the weights then come from the
state dict.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import (
    BACKBONES,
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_PRETRAINED,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SmallCNN,
    build_backbone,
)
from .grid_parts import (
    pool_bins,
    salience_centroids,
    salient_cells,
    salient_indices,
    sample_crops,
    shared_norm_forward,
)

GRID_POOLS = ("mean", "attention", "crops")
LAYOUT_CHANNELS = 16  # per cell in the layout token's input (GY·GX·16 values; 448 for 4 x 7)


def fourier_features(xy: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """Fixed multi-frequency sin/cos encoding of coordinates in [0, 1] (NeRF-style; Tancik et al. 2020).

    Frequencies π·2^k, k = 0..num_freqs−1, so the coarsest one spans the image once and the finest
    resolves about 2^−num_freqs of its width.

    Args:
        xy: (..., 2) box centres (cx, cy) in [0, 1].
    Returns:
        (..., 4·num_freqs): [sin(cx·ω), cos(cx·ω), sin(cy·ω), cos(cy·ω)].
    """
    freqs = math.pi * 2.0 ** torch.arange(num_freqs, device=xy.device, dtype=torch.float32)
    args = xy.float()[..., None] * freqs  # (..., 2, num_freqs)
    return torch.cat([args.sin(), args.cos()], dim=-1).flatten(-2)


class VisualEncoder(nn.Module):
    """Frames, box centres and a slot mask -> visual tokens (B, L·N, dim) and their mask.

    Args (keyword-only):
        backbone: "cnn" | "resnet18" | "clip".
        dim: token size (= the UNet's ``context_dim``).
        pretrained: hub id or local folder for transformers' ``from_pretrained`` (resnet18 / clip only);
            None = random init from ``backbone_config`` or the default architecture.
        freeze_backbone: None = True for clip, False otherwise. A frozen backbone has
            ``requires_grad=False``, runs under no_grad and stays in eval mode when the parent is train().
        num_frames: maximum L (size of the learned frame embedding).
        image_size: crops are resized (bilinear, antialiased) to this size; None = no resize for
            cnn/resnet18 and the backbone's ``config.image_size`` for clip.
        backbone_config: kwargs for ``ResNetConfig`` / ``CLIPVisionConfig`` (or ``{"channels": [...],
            "groups": g}`` for cnn), to build tiny random backbones in tests.
        num_pos_freqs: frequencies per axis of the box-centre encoding.
        dropout: dropout in the token MLP.
        tokens: ``boxes`` | ``grid`` | ``both`` (module docstring).
        grid: ``(GY, GX)`` cells of the grid tokens (required with ``grid`` / ``both``).
        grid_pool: ``mean`` | ``attention``: how a cell pools its part of the map (:meth:`grid_cells`);
            ``crops``: each kept cell read as a crop of the full-size frame (:meth:`crop_tokens`).
        grid_layout: add each frame's layout token to its grid (module docstring).
        grid_select: keep each frame's ``grid_select`` most salient cells (module docstring); 0 = all.
    """

    def __init__(
        self,
        *,
        backbone: str = "cnn",
        dim: int = 256,
        pretrained: str | None = None,
        freeze_backbone: bool | None = None,
        num_frames: int = 5,
        image_size: int | None = None,
        backbone_config: dict | None = None,
        num_pos_freqs: int = 8,
        dropout: float = 0.0,
        tokens: str = "boxes",
        grid: tuple[int, int] | None = None,
        grid_pool: str = "mean",
        grid_layout: bool = False,
        grid_select: int = 0,
    ) -> None:
        super().__init__()
        from DiffBinaural.dataset.frames import token_parts

        self.use_boxes, self.use_grid = token_parts(tokens)
        if self.use_grid and (grid is None or len(grid) != 2 or min(grid) < 1):
            raise ValueError(f"visual tokens {tokens!r} need grid = (GY, GX) cells >= 1, got {grid}")
        self.tokens, self.grid = tokens, (tuple(int(g) for g in grid) if self.use_grid else None)
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose from {BACKBONES}")
        if pretrained is not None and backbone_config is not None:
            raise ValueError(
                "give either pretrained (weights + config) or backbone_config (random init), not both"
            )
        self.backbone_name = backbone
        self.freeze_backbone = (backbone == "clip") if freeze_backbone is None else freeze_backbone
        self.num_frames, self.num_pos_freqs, self.dim = num_frames, num_pos_freqs, dim
        self._init_args = dict(
            backbone=backbone,
            dim=dim,
            num_frames=num_frames,
            image_size=image_size,
            num_pos_freqs=num_pos_freqs,
            dropout=dropout,
            freeze_backbone=self.freeze_backbone,
            tokens=tokens,
            grid=None if self.grid is None else list(self.grid),
            grid_pool=grid_pool,
            grid_layout=grid_layout,
            grid_select=grid_select,
        )
        if grid_pool not in GRID_POOLS:
            raise ValueError(f"unknown grid_pool {grid_pool!r}; choose from {GRID_POOLS}")
        if grid_pool == "crops" and backbone != "cnn":
            raise ValueError(f"grid_pool 'crops' reads the small CNN's stages; it needs backbone 'cnn', got {backbone!r}")
        self.grid_pool = grid_pool

        self.backbone, feat_dim, default_size = build_backbone(backbone, pretrained, backbone_config)
        self.image_size = image_size if image_size is not None else default_size
        mean, std = (CLIP_MEAN, CLIP_STD) if backbone == "clip" else (IMAGENET_MEAN, IMAGENET_STD)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

        self.feat_proj = nn.Linear(feat_dim, dim)
        self.pos_proj = nn.Linear(4 * num_pos_freqs, dim)
        self.frame_embed = nn.Embedding(num_frames, dim)
        nn.init.normal_(self.frame_embed.weight, std=0.02)
        if self.use_grid:
            gy, gx = self.grid
            iy, ix = torch.meshgrid(torch.arange(gy), torch.arange(gx), indexing="ij")
            centres = torch.stack([(ix + 0.5) / gx, (iy + 0.5) / gy], dim=-1).reshape(-1, 2)
            self.register_buffer("cell_centres", centres.float(), persistent=False)  # (GY·GX, 2), row-major
        if self.use_grid and grid_pool == "attention":
            self.cell_score = nn.Conv2d(feat_dim, 1, 1)
            nn.init.zeros_(self.cell_score.weight)
            nn.init.zeros_(self.cell_score.bias)
        self.grid_layout = self.use_grid and grid_layout
        self.grid_select = int(grid_select) if self.use_grid else 0
        if self.use_grid and not 0 <= self.grid_select <= self.grid[0] * self.grid[1]:
            raise ValueError(f"grid_select must be 0 (all cells) .. {self.grid[0] * self.grid[1]}, got {grid_select}")
        if self.grid_layout:
            self.layout_reduce = nn.Linear(feat_dim, LAYOUT_CHANNELS)
            self.layout_proj = nn.Linear(LAYOUT_CHANNELS * self.grid[0] * self.grid[1], dim)
        if tokens == "both":
            self.type_embed = nn.Embedding(2, dim)  # 0 = grid cell, 1 = box
            nn.init.normal_(self.type_embed.weight, std=0.02)
        self.mlp = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * dim, dim),
        )
        self.out_norm = nn.LayerNorm(dim)

    def checkpoint_config(self) -> dict:
        """Constructor kwargs that rebuild this architecture offline (``pretrained=None``, the backbone's
        config spelled out); ``load_state_dict`` then restores the weights."""
        cfg = dict(self._init_args)
        if self.backbone_name == "cnn":
            convs = [m for m in self.backbone.modules() if isinstance(m, nn.Conv2d)]
            norm = next(m for m in self.backbone.modules() if isinstance(m, nn.GroupNorm))
            cfg["backbone_config"] = {"channels": [c.out_channels for c in convs], "groups": norm.num_groups}
        else:
            cfg["backbone_config"] = self.backbone.config.to_diff_dict()
        return cfg

    def train(self, mode: bool = True) -> VisualEncoder:
        """Like nn.Module.train, but a frozen backbone stays in eval mode (BatchNorm stats, dropout)."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def encode_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, feat_dim) backbone features (normalisation and resize inside)."""
        if self.image_size is not None and crops.shape[-2:] != (self.image_size, self.image_size):
            crops = F.interpolate(
                crops,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        x = (crops - self.pixel_mean) / self.pixel_std
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            if self.backbone_name == "cnn":
                return self.backbone(x)
            if self.backbone_name == "resnet18":
                return self.backbone(pixel_values=x).pooler_output.flatten(1)
            native = self.backbone.config.image_size
            return self.backbone(pixel_values=x, interpolate_pos_encoding=x.shape[-1] != native).pooler_output

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) whole frames in [0, 1] -> (N, feat_dim, h, w): the backbone's last spatial map
        (before its global pool), at the frames' own size and aspect (no resize)."""
        x = (images - self.pixel_mean) / self.pixel_std
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            if self.backbone_name == "cnn":
                return self.backbone.net(x)
            if self.backbone_name == "resnet18":
                return self.backbone(pixel_values=x).last_hidden_state
            out = self.backbone(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state
            patch = self.backbone.config.patch_size
            h, w = x.shape[-2] // patch, x.shape[-1] // patch
            vision = getattr(self.backbone, "vision_model", self.backbone)  # transformers < 5 nests it
            patches = vision.post_layernorm(out[:, 1:])  # the norm the pooled output gets
            return patches.transpose(1, 2).reshape(x.shape[0], -1, h, w)

    def _finish(self, feats: torch.Tensor, pos: torch.Tensor, kind: int) -> torch.Tensor:
        """Sum the parts of (B, L, K, dim) tokens (features, encoded positions, frame and type embeddings)
        and apply the token MLP and norm."""
        frame_ids = torch.arange(feats.shape[1], device=feats.device)
        tokens = feats + pos + self.frame_embed(frame_ids)[None, :, None, :]
        if self.tokens == "both":
            tokens = tokens + self.type_embed.weight[kind]
        return self.out_norm(tokens + self.mlp(tokens))

    def grid_cells(self, scene: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, 3, H, W) whole frames -> cell features (B, L, GY·GX, feat_dim) and cell positions
        (B, L, GY·GX, 2) in [0, 1], cells row-major.

        The cells are the bins of :func:`torch.nn.functional.adaptive_avg_pool2d` over the feature map
        (bin j spans ``[floor(j w / GX), ceil((j + 1) w / GX))``: left-right symmetric, so a mirrored
        map gives the mirrored cells at any map width). ``grid_pool="mean"`` averages each bin and
        places the token at the cell centre; ``"attention"`` weights each bin's positions by a
        softmax of a learned score (a 1x1 conv) and places the token at that weighted centroid, so a
        cell says *where* inside it its content is (initialised to the plain mean: the score starts at 0).
        """
        b, n_frames = scene.shape[:2]
        fmap = self.feature_map(scene.flatten(0, 1))  # (B·L, C, h, w)
        fmap = fmap.to(self.feat_proj.weight.dtype)
        if self.grid_pool == "mean":
            cells = F.adaptive_avg_pool2d(fmap, self.grid).flatten(2).transpose(1, 2)  # (B·L, G, C)
            pos = self.cell_centres.expand(fmap.shape[0], -1, -1)
        else:
            h, w = fmap.shape[-2:]
            rows, cols = pool_bins(h, self.grid[0], fmap), pool_bins(w, self.grid[1], fmap)  # (GY, h), (GX, w)
            score = self.cell_score(fmap)[:, 0]  # (B·L, h, w)
            weight = torch.exp(score - score.amax(dim=(1, 2), keepdim=True))
            den = torch.einsum("iy,jx,nyx->nij", rows, cols, weight)
            cells = torch.einsum("iy,jx,nyx,ncyx->nijc", rows, cols, weight, fmap) / den[..., None]
            ys, xs = ((torch.arange(n, device=fmap.device, dtype=fmap.dtype) + 0.5) / n for n in (h, w))
            cx = torch.einsum("iy,jx,nyx,x->nij", rows, cols, weight, xs) / den
            cy = torch.einsum("iy,jx,nyx,y->nij", rows, cols, weight, ys) / den
            cells, pos = cells.flatten(1, 2), torch.stack([cx, cy], dim=-1).flatten(1, 2)
        return cells.view(b, n_frames, *cells.shape[1:]), pos.reshape(b, n_frames, -1, 2)

    def grid_tokens(self, scene: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, 3, H, W) whole frames -> (B, L, G, dim) cell tokens (:meth:`grid_cells`), G = GY·GX, then
        with ``grid_layout`` each frame's layout token (G = GY·GX + 1); and their mask (B, L, G), True =
        a cell left out by ``grid_select`` (:func:`salient_cells`; its token is zeroed)."""
        if self.grid_pool == "crops":
            return self.crop_tokens(scene)
        cells, positions = self.grid_cells(scene)
        pos = self.pos_proj(fourier_features(positions, self.num_pos_freqs))
        tokens = self._finish(self.feat_proj(cells), pos, kind=0)
        mask = torch.zeros(tokens.shape[:3], dtype=torch.bool, device=tokens.device)
        if self.grid_select:
            mask = ~salient_cells(cells, self.grid_select)
            tokens = tokens.masked_fill(mask[..., None], 0.0)
        return self._add_layout(tokens, mask, cells)

    def _add_layout(self, tokens: torch.Tensor, mask: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """With ``grid_layout``, append each frame's layout token (never masked) to (B, L, T, dim) tokens and
        their (B, L, T) mask, from the (B, L, GY·GX, C) cell features."""
        if not self.grid_layout:
            return tokens, mask
        # (B, L, GY·GX, C) -> (B, L, GY·GX·16), row-major: the index of a value says which cell it came from
        layout = self.layout_proj(F.silu(self.layout_reduce(cells)).flatten(2))[:, :, None]
        centre = self.pos_proj(fourier_features(cells.new_full((1, 1, 1, 2), 0.5), self.num_pos_freqs))
        tokens = torch.cat([tokens, self._finish(layout, centre, kind=0)], dim=2)
        return tokens, torch.cat([mask, mask.new_zeros(*mask.shape[:2], 1)], dim=2)

    def salient_crops(self, scene: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``grid_pool="crops"``: (B, L, 3, H, W) full-size frames -> the cell features (B·L, GY·GX, C) of the
        frame resized to the plain grid's size, and for each frame's K kept cells (K = ``grid_select``, or
        every cell; the most salient first) their salience centroids (B·L, K, 2) and crops (B·L, K, 3, P, P)
        one cell square there (module docstring)."""
        from DiffBinaural.dataset.frames import scene_size

        h, w = scene.shape[-2:]
        frames = scene.flatten(0, 1)
        small = F.interpolate(frames, size=scene_size(w, h, image_size=self.image_size),  # the plain grid's frame
                              mode="bilinear", align_corners=False, antialias=True)
        net = self.backbone.net  # conv, norm, act per stage: the first three make the stride-2 map
        fine = net[:3]((small - self.pixel_mean) / self.pixel_std)
        fmap = net[3:](fine).to(self.feat_proj.weight.dtype)
        cells = F.adaptive_avg_pool2d(fmap, self.grid).flatten(2).transpose(1, 2)  # (B·L, G, C)
        keep = salient_indices(cells, self.grid_select or cells.shape[1])  # (B·L, K)
        centres = salience_centroids(fine, self.grid).gather(1, keep[..., None].expand(-1, -1, 2))
        crops = sample_crops(frames, centres, (1.0 / self.grid[1], 1.0 / self.grid[0]), self.image_size)
        return cells, centres, crops

    def crop_tokens(self, scene: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``grid_pool="crops"``: (B, L, 3, H, W) full-size frames -> (B, L, K, dim) tokens, one per kept cell,
        from its crop (:meth:`salient_crops`, one set of normalisation statistics per frame), placed at its
        centroid; then the layout token. The mask (B, L, K [+ 1]) is all False: only kept cells are tokens."""
        b, n_frames = scene.shape[:2]
        cells, centres, crops = self.salient_crops(scene)
        feats = shared_norm_forward(self.backbone.net, (crops - self.pixel_mean[:, None]) / self.pixel_std[:, None])
        shape = (b, n_frames, centres.shape[1], -1)
        tokens = self._finish(self.feat_proj(feats.to(self.feat_proj.weight.dtype)).view(shape),
                              self.pos_proj(fourier_features(centres, self.num_pos_freqs)).view(shape), kind=0)
        mask = torch.zeros(tokens.shape[:3], dtype=torch.bool, device=tokens.device)
        return self._add_layout(tokens, mask, cells.view(b, n_frames, *cells.shape[1:]))

    def box_tokens(
        self, frames: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, L, N, 3, P, P) crops, (B, L, N, 2) centres, (B, L, N) mask -> (B, L, N, dim) box tokens
        (zero at padded slots)."""
        b, n_frames, n_src = mask.shape
        flat_mask = mask.reshape(-1)  # (B·L·N,)
        valid = (~flat_mask).nonzero(as_tuple=True)[0]
        feats = self.feat_proj.weight.new_zeros(flat_mask.numel(), self.dim)
        if valid.numel() > 0:  # (nonzero() is a host-device sync point; cheap next to the backbone)
            # Only valid crops go through the backbone: saves compute and keeps padding out of BatchNorm.
            crops = frames.reshape(-1, *frames.shape[3:])[valid]  # (n_valid, 3, H, W)
            feats = feats.index_copy(0, valid, self.feat_proj(self.encode_crops(crops).to(feats.dtype)))
        elif self.training and torch.is_grad_enabled():
            # No valid crop in this batch: still touch every trainable parameter (with weight 0) so that
            # DDP, which expects a gradient for each parameter on every rank, does not stall or raise.
            dummy = frames.new_zeros(1, *frames.shape[3:])
            feats = feats + 0.0 * self.feat_proj(self.encode_crops(dummy).to(feats.dtype)).sum()
        feats = feats.view(b, n_frames, n_src, self.dim)
        pos = self.pos_proj(fourier_features(torch.nan_to_num(positions, nan=0.0), self.num_pos_freqs))
        return self._finish(feats, pos, kind=1).masked_fill(mask[..., None], 0.0)

    def forward(
        self, frames: torch.Tensor | None = None, positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None, *, scene: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the visual inputs of L frames (the dataset item's keys, batched).

        Args:
            frames: (B, L, N, 3, H, W) float crops in [0, 1] (normalisation happens here); box tokens.
            positions: (B, L, N, 2) box centres (cx, cy) in [0, 1]; NaN is treated as 0.
            mask: (B, L, N) bool, **True = invalid / padded** slot.
            scene: (B, L, 3, H, W) whole frames in [0, 1]; grid tokens.
        Returns:
            tokens (B, T, dim) (zero at padded slots) and token_mask (B, T) bool, True = invalid, with
            T = L·N (boxes), L·G (grid; G = GY·GX, + 1 with ``grid_layout``; cells are masked only by
            ``grid_select``) or
            L·G + L·N (both: grid first).
        """
        parts, masks = [], []
        if self.use_grid:
            if scene is None or scene.dim() != 5 or scene.shape[2] != 3:
                raise ValueError(f"visual tokens {self.tokens!r} need scene (B, L, 3, H, W), got "
                                 f"{None if scene is None else tuple(scene.shape)}")
            self._check_frames(scene.shape[1])
            grid, grid_mask = self.grid_tokens(scene)
            parts.append(grid.flatten(1, 2))
            masks.append(grid_mask.flatten(1))
        if self.use_boxes:
            if frames is None or positions is None or mask is None:
                raise ValueError(f"visual tokens {self.tokens!r} need frames, positions and mask")
            self._check_boxes(frames, positions, mask)
            parts.append(self.box_tokens(frames, positions, mask).flatten(1, 2))
            masks.append(mask.flatten(1))
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1)

    def _check_frames(self, n_frames: int) -> None:
        if n_frames > self.num_frames:
            raise ValueError(
                f"got L={n_frames} frames but the encoder was built for num_frames={self.num_frames}"
            )

    def _check_boxes(self, frames: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> None:
        b, n_frames, n_src = mask.shape
        if frames.shape[:3] != mask.shape or frames.shape[3] != 3:
            raise ValueError(
                f"frames must be (B, L, N, 3, H, W) matching mask {tuple(mask.shape)}, "
                f"got {tuple(frames.shape)}"
            )
        if positions.shape != (b, n_frames, n_src, 2):
            raise ValueError(f"positions must be {(b, n_frames, n_src, 2)}, got {tuple(positions.shape)}")
        self._check_frames(n_frames)
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be bool (True = invalid), got {mask.dtype}")


__all__ = ["BACKBONES", "GRID_POOLS", "DEFAULT_PRETRAINED", "SmallCNN", "VisualEncoder", "fourier_features",
           "salient_cells"]

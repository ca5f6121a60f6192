"""Pieces of the grid tokens that need no learned weights: which cells to keep, where inside a cell its
object lies, and the crops read there (:class:`~DiffBinaural.modules.visual_encoder.VisualEncoder`).

The geometry convention is the encoder's: positions ``(cx, cy)`` in [0, 1] of the frame's width and
height; cells row-major, cell ``(i, j)`` centred at ``((j + 0.5) / GX, (i + 0.5) / GY)``. Every function
here is left-right symmetric: on a mirrored input it returns the mirrored answer (``cx -> 1 - cx``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def salience(cells: torch.Tensor) -> torch.Tensor:
    """(..., G, C) features -> (..., G): each one's L2 distance from the set's median (per channel).

    Most of a frame is background, so its median cell (or position) is background and what differs from
    it holds objects. Detached: the choice it drives takes no gradient."""
    return (cells - cells.median(dim=-2, keepdim=True).values).norm(dim=-1).detach()


def salient_indices(cells: torch.Tensor, k: int) -> torch.Tensor:
    """(..., G, C) cell features -> (..., k) indices of each frame's ``k`` cells with the highest
    :func:`salience`, the most salient first: a detector-free choice of where things are. Measured on the
    synthetic scenes' val/test frames (4 x 7 grid of the small CNN): the 6 most salient cells touch 96-98 %
    of the sources, trained or at initialisation."""
    return salience(cells).topk(k, dim=-1).indices


def salient_cells(cells: torch.Tensor, k: int) -> torch.Tensor:
    """(..., G, C) cell features -> (..., G) bool, True for the cells :func:`salient_indices` keeps."""
    keep = torch.zeros(cells.shape[:-1], dtype=torch.bool, device=cells.device)
    return keep.scatter_(-1, salient_indices(cells, k), True)


def salience_centroids(fine: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) a fine feature map of N frames -> (N, GY·GX, 2): for each cell, the centroid of the
    map's salience inside the cell widened by half a cell on each side (a window two cells wide, so an
    object on a cell's edge is found whole), the cell centre where the window holds nothing salient.

    A position's weight is its :func:`salience` among the frame's positions minus the frame's median
    salience, clipped at 0, so the background's own texture weighs nothing. Measured on the synthetic
    scenes (the small CNN's stride-2 map, 4 x 7 cells): the median error in x of a kept cell's centroid
    against the nearest source centre is 0.011 of the frame width, against 0.061 for the cell centre."""
    n, _, h, w = fine.shape
    gy, gx = grid
    with torch.no_grad():
        f = fine.detach().float()
        sal = salience(f.flatten(2).transpose(1, 2)).view(n, h, w)
        weight = (sal - sal.flatten(1).median(dim=1).values[:, None, None]).clamp(min=0)
        ys = (torch.arange(h, device=f.device, dtype=f.dtype) + 0.5) / h
        xs = (torch.arange(w, device=f.device, dtype=f.dtype) + 0.5) / w
        cy = (torch.arange(gy, device=f.device, dtype=f.dtype) + 0.5) / gy
        cx = (torch.arange(gx, device=f.device, dtype=f.dtype) + 0.5) / gx
        rows = ((ys[None] - cy[:, None]).abs() <= 1.0 / gy).to(f.dtype)  # (GY, h): the widened windows
        cols = ((xs[None] - cx[:, None]).abs() <= 1.0 / gx).to(f.dtype)  # (GX, w)
        den = torch.einsum("iy,jx,nyx->nij", rows, cols, weight)
        mx = torch.einsum("iy,jx,nyx,x->nij", rows, cols, weight, xs) / den.clamp(min=1e-12)
        my = torch.einsum("iy,jx,nyx,y->nij", rows, cols, weight, ys) / den.clamp(min=1e-12)
        found = den > 1e-12
        mx = torch.where(found, mx, cx[None, None, :].expand_as(mx))
        my = torch.where(found, my, cy[None, :, None].expand_as(my))
    return torch.stack([mx, my], dim=-1).flatten(1, 2).to(fine.dtype)


def sample_crops(frames: torch.Tensor, centres: torch.Tensor, extent: tuple[float, float], size: int) -> torch.Tensor:
    """(N, 3, H, W) frames, (N, K, 2) crop centres -> (N, K, 3, size, size): the window of ``extent =
    (width, height)`` (fractions of the frame) around each centre, read by bilinear sampling at the
    crop's pixel centres (zeros outside the frame). A crop of the mirrored frame at ``1 - cx`` is the
    mirrored crop exactly; a window of ``size`` frame pixels centred on a pixel grid reads them as they are."""
    n, k = centres.shape[:2]
    u = (torch.arange(size, device=frames.device, dtype=frames.dtype) + 0.5) / size * 2 - 1  # [-1, 1]
    gx = (2 * centres[..., 0, None] - 1) + u * extent[0]  # (N, K, P), grid_sample's [-1, 1] coordinates
    gy = (2 * centres[..., 1, None] - 1) + u * extent[1]
    grid = torch.stack([gx[:, :, None, :].expand(-1, -1, size, -1), gy[:, :, :, None].expand(-1, -1, -1, size)], -1)
    # the K crops of a frame stacked along the height: one grid_sample call per frame, no copies of it
    crops = F.grid_sample(frames, grid.reshape(n, k * size, size, 2).to(frames.dtype), mode="bilinear",
                          padding_mode="zeros", align_corners=False)  # (N, 3, K·P, P)
    return crops.view(n, frames.shape[1], k, size, size).transpose(1, 2)


def shared_norm_forward(net: nn.Sequential, crops: torch.Tensor) -> torch.Tensor:
    """(N, K, 3, P, P) normalised crops -> (N, K, C): the small CNN (convs, GroupNorms, activations) with
    each GroupNorm's statistics taken over a frame's K crops together, then the global mean pool.

    A GroupNorm of each crop alone stretches a plain window to the contrast of one that holds an object,
    so no window stands out (measured with crops at every cell: 0.999x the mono copy's L−R, the video
    unused; shared statistics: 0.668x). With K = 1 this is the CNN's own forward."""
    n, k = crops.shape[:2]
    x = crops.flatten(0, 1)
    for layer in net:
        if isinstance(layer, nn.GroupNorm):
            c, h, w = x.shape[1:]
            g = x.view(n, k, layer.num_groups, c // layer.num_groups, h, w)
            mean = g.mean(dim=(1, 3, 4, 5), keepdim=True)
            var = g.var(dim=(1, 3, 4, 5), keepdim=True, unbiased=False)
            x = ((g - mean) * torch.rsqrt(var + layer.eps)).view(n * k, c, h, w)
            x = x * layer.weight[None, :, None, None] + layer.bias[None, :, None, None]
        else:
            x = layer(x)
    return x.mean(dim=(2, 3)).view(n, k, -1)


def pool_bins(size: int, cells: int, like: torch.Tensor) -> torch.Tensor:
    """(cells, size) 0/1 membership of adaptive pooling's bins: bin j holds ``[floor(j size / cells),
    ceil((j + 1) size / cells))`` (the bins :func:`torch.nn.functional.adaptive_avg_pool2d` averages)."""
    j = torch.arange(cells, device=like.device)
    start, stop = (j * size) // cells, ((j + 1) * size + cells - 1) // cells
    x = torch.arange(size, device=like.device)
    return ((x >= start[:, None]) & (x < stop[:, None])).to(like.dtype)


__all__ = ["salience", "salient_indices", "salient_cells", "salience_centroids", "sample_crops", "shared_norm_forward", "pool_bins"]

"""What a job shows while it trains: a tqdm bar on a terminal, one line per epoch, and
optional TensorBoard scalars."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..runfolder import LogRow


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on a terminal; nothing per iteration otherwise (a line per epoch is printed)."""
    if not enabled or not sys.stdout.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, unit="it")


def epoch_line(label: str, epoch: int, epochs: int, r: LogRow, secs: float, top1: float, top5: float) -> str:
    """The line printed after an epoch (``epoch`` 0-based; top-1/top-5 unrounded)."""
    eta = (epochs - epoch - 1) * secs
    return (f"  {label} epoch {epoch + 1}/{epochs}: loss {r['train_loss']:.4f} "
            f"val {r['val_loss']:.4f} top1 {top1:.2f} top5 {top5:.2f} lr {r['lr']:.2e} "
            f"{r['img_per_s']:.0f} img/s {secs:.1f}s eta {eta:.0f}s")


def tensorboard(folder: Path, row: LogRow, *, step: int) -> None:
    """One epoch's log row as TensorBoard scalars (x axis: iterations), beside log.csv."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder)) as w:
        for key in ("train_loss", "val_loss", "top1", "top5", "lr", "img_per_s"):
            w.add_scalar(f"{'val' if key in ('val_loss', 'top1', 'top5') else 'train'}/{key}",
                         row[key], step)  # type: ignore[literal-required]

"""Data sets for training: small ones held whole in memory (on the GPU when training there)
and augmented on the batch; ImageNet-style folders streamed through a DataLoader.

``--data`` specs:

* ``fashion-mnist`` or ``fashion-mnist:DIR`` -- the idx ``.gz`` files of the Debian package
  (``/usr/share/datasets/fashion-mnist/``), or of DIR; ``--download`` fetches them with
  torchvision into ``data/`` when they are missing.
* ``cifar10[:ROOT]`` / ``cifar100[:ROOT]`` -- torchvision's CIFAR under ROOT (default ``data``).
* ``imagefolder:PATH`` -- ``PATH/train/<class>/*`` and ``PATH/val/<class>/*`` (ImageNet layout).
* ``synthetic[:N]`` -- N generated, learnable images of 10 classes (tests, smoke runs).

One module per concern::

    spec.py      DataSpec (``--data`` parsing), Split (what the loop asks of a split), InMemory
    load.py      DataKey (what a loaded set depends on), check_data, load_data -> Data
    memory.py    in-memory sources (Fashion-MNIST idx, CIFAR, synthetic), resizing, subset
    folder.py    image folders: the walk and its link checks, ImageFolderSplit
    loaders.py   Loaders: the DataLoader life cycle (owner, epoch-aware sampler, worker count)
    presets.py   transform presets of the data and augmentation parts (sizing, per-image augmentation)
    augment.py   BatchRandAugment, BatchAugment (batched augmentation of in-memory data)
    seeds.py     the subset and per-sample seeds (re-exported by ``modernize.train.seeds``)
"""

from __future__ import annotations

from .augment import BatchAugment, BatchRandAugment
from .folder import BadImageError, ImageFolderSplit, folder_split, one_line
from .load import Data, DataKey, check_data, close_loaders, data_key, load_data
from .loaders import EpochSampler, Loaders, loader_workers
from .memory import DATA_ROOT, FASHION_MNIST_DIR, subset
from .presets import base_transforms, eval_transforms, sample_transforms
from .spec import KINDS, DataSpec, InMemory, Split

__all__ = ["DATA_ROOT", "FASHION_MNIST_DIR", "KINDS", "BadImageError", "BatchAugment", "BatchRandAugment", "Data",
           "DataKey", "DataSpec", "EpochSampler", "ImageFolderSplit", "InMemory", "Loaders", "Split", "base_transforms",
           "check_data", "close_loaders", "data_key", "eval_transforms", "folder_split", "load_data",
           "loader_workers", "one_line", "sample_transforms", "subset"]

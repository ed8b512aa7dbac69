"""LSNet backbone ("See Large, Focus Small", CVPR 2025) for mmdet and mmseg.

Module names follow the authors' release exactly, so their checkpoints load
unchanged: ``patch_embed`` (stride-8 stem), ``blocks1``..``blocks4`` (stages 2-4
open with a depthwise stride-2 downsampler). Outputs have strides 8, 16, 32, 64.

Released weights load as released through any loader (``load_state_dict``, mmengine's
``load_checkpoint``, ``load_from``, the inferencers): the attention layers upgrade
tables of another grid in memory, and the backbone logs one line per load saying so.
"""
import re
from collections import Counter
from typing import List, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...checkpoint import read_backbone_weights
from ...registry import MODELS
from ...utils.errors import CheckpointError
from ..layers import Attention, ConvBN, LSNetBlock, reparameterize

ARCH_SETTINGS = {
    't': dict(embed_dims=(64, 128, 256, 384), depths=(0, 2, 8, 10)),
    's': dict(embed_dims=(96, 192, 320, 448), depths=(1, 2, 8, 10)),
    'b': dict(embed_dims=(128, 256, 384, 512), depths=(4, 6, 8, 10)),
}
NUM_HEADS = (3, 3, 3, 4)
KEY_DIM = 16


def describe_state_dict(sd: dict) -> Optional[Tuple[tuple, tuple]]:
    """Read the widths and depths of the LSNet backbone a state dict holds.

    Args:
        sd (dict): A backbone state dict (keys without a ``backbone.`` prefix).

    Returns:
        tuple[tuple, tuple] | None: ``(embed_dims, depths)``, or None when ``sd`` is not
        an LSNet backbone's (it has no stem weights).
    """
    if 'patch_embed.4.c.weight' not in sd:
        return None
    dims, depths = [int(sd['patch_embed.4.c.weight'].shape[0])], []
    for s in range(1, 5):
        blocks = {int(m.group(1)) for k in sd for m in [re.match(rf'blocks{s}\.(\d+)\.', k)] if m}
        first = 0 if s == 1 else 2
        depths.append(len([b for b in blocks if b >= first]))
        if s > 1:
            w = sd.get(f'blocks{s}.1.c.weight')
            dims.append(int(w.shape[0]) if w is not None else -1)
    return tuple(dims), tuple(depths)


def is_deploy_state_dict(sd: dict) -> bool:
    """Whether an LSNet backbone state dict is of the deploy form (BatchNorms folded).

    Args:
        sd (dict): A backbone state dict (keys without a ``backbone.`` prefix).

    Returns:
        bool: True when the stem's first conv carries a bias and has no BatchNorm, as
        ``LSNet(deploy=True)`` and ``tools/model_converters/reparameterize_model.py``
        have it.
    """
    return 'patch_embed.0.c.bias' in sd and 'patch_embed.0.bn.weight' not in sd


def load_weights(model: nn.Module, sd: dict, path: str, strict: bool = False):
    """``model.load_state_dict(sd, strict)``, with mismatches as one :class:`CheckpointError`.

    Args:
        model (nn.Module): The model (LSNet layers upgrade released tables as they load).
        sd (dict): The state dict.
        path (str): Where ``sd`` was read from, for the message.
        strict (bool): Missing and unexpected keys are errors too. Defaults to False.

    Returns:
        tuple[list, list]: The missing and the unexpected keys.

    Raises:
        CheckpointError: Tensors of other shapes (or, if ``strict``, keys that differ),
            each named, the first ones of them.
    """
    try:
        return model.load_state_dict(sd, strict=strict)
    except CheckpointError:
        raise
    except RuntimeError as e:  # torch's message: a title, then one line per problem
        lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]
        raise CheckpointError(f'{path!r} does not fit the {type(model).__name__} model: '
                              + ' '.join(lines)[:2000]) from e


def _log_released_upgrades(backbone: 'LSNet', incompatible_keys) -> None:
    """Load post-hook of :class:`LSNet`: one line on what its layers upgraded."""
    grids = Counter(m.upgraded_from for m in backbone.modules()
                    if isinstance(m, Attention) and m.upgraded_from)
    if grids:
        what = ', '.join(f'{n} attention table{"s" * (n > 1)} resized from {a}x{a} to {b}x{b}'
                         for (a, b), n in sorted(grids.items()))
        print_log(f'LSNet-{backbone.arch}: released weights upgraded in memory: {what}',
                  logger='current')


def arch_of(sd: dict) -> Optional[str]:
    """Name the released arch of an LSNet backbone state dict.

    Args:
        sd (dict): A backbone state dict (keys without a ``backbone.`` prefix).

    Returns:
        str | None: ``'t'``, ``'s'`` or ``'b'``, or None for another size or no LSNet.
    """
    desc = describe_state_dict(sd)
    for name, cfg in ARCH_SETTINGS.items():
        if desc == (cfg['embed_dims'], cfg['depths']):
            return name
    return None


@MODELS.register_module()
class LSNet(BaseModule):
    """LSNet backbone.

    Args:
        arch (str | dict): 't', 's' or 'b', or a dict with ``embed_dims`` and ``depths``
            (and optionally ``num_heads`` and ``key_dim``). Defaults to 't'.
        in_channels (int): Channels of the input image. Defaults to 3.
        out_indices (Sequence[int]): stages whose outputs are returned (0-3).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and stages 1..k
            (no gradients, eval mode).
        norm_eval (bool): keep every BatchNorm in eval mode while training (frozen
            statistics, as the paper's detection and segmentation recipes do).
        deploy (bool): Build the deploy form directly (what :meth:`switch_to_deploy`
            converts to), e.g. to load a checkpoint written by
            ``tools/model_converters/reparameterize_model.py``. Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)`` loads a
            released ImageNet checkpoint (or a downstream one, with ``prefix='backbone.'``).
    """

    def __init__(self, arch='t', in_channels=3, out_indices=(0, 1, 2, 3), frozen_stages=-1,
                 norm_eval=True, deploy=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, str):
            if arch.lower() not in ARCH_SETTINGS:
                raise ValueError(f"LSNet arch must be one of {sorted(ARCH_SETTINGS)} or a dict "
                                 f"with embed_dims and depths, got {arch!r}")
            self.arch = arch.lower()
            settings = ARCH_SETTINGS[self.arch]
        else:
            self.arch = 'custom'
            settings = dict(arch)
        self.embed_dims = tuple(settings['embed_dims'])
        self.depths = tuple(settings['depths'])
        num_heads = tuple(settings.get('num_heads', NUM_HEADS))
        key_dim = settings.get('key_dim', KEY_DIM)
        if len(self.embed_dims) != 4 or len(self.depths) != 4:
            raise ValueError('LSNet needs four embed_dims and four depths')
        out_indices = tuple(out_indices)
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f'out_indices must be a non-empty subset of 0..3, got {out_indices}')
        if frozen_stages not in range(-1, 5):
            raise ValueError(f'frozen_stages must be in -1..4, got {frozen_stages}')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        self.deploy = deploy

        c1 = self.embed_dims[0]
        self.patch_embed = nn.Sequential(
            ConvBN(in_channels, c1 // 4, 3, 2, 1, deploy=deploy), nn.ReLU(inplace=deploy),
            ConvBN(c1 // 4, c1 // 2, 3, 2, 1, deploy=deploy), nn.ReLU(inplace=deploy),
            ConvBN(c1 // 2, c1, 3, 2, 1, deploy=deploy))
        for s, (dim, depth) in enumerate(zip(self.embed_dims, self.depths)):
            layers = []
            if s > 0:
                prev = self.embed_dims[s - 1]
                layers += [ConvBN(prev, prev, 3, 2, 1, groups=prev, deploy=deploy),
                           ConvBN(prev, dim, deploy=deploy)]
            layers += [LSNetBlock(dim, d, use_attention=(s == 3), key_dim=key_dim,
                                  num_heads=num_heads[s], deploy=deploy) for d in range(depth)]
            self.add_module(f'blocks{s + 1}', nn.Sequential(*layers))
        self.out_channels = [self.embed_dims[i] for i in out_indices]
        self.register_load_state_dict_post_hook(_log_released_upgrades)
        self._freeze_stages()

    @property
    def stages(self) -> List[nn.Sequential]:
        """list[nn.Sequential]: The four stages, ``blocks1`` to ``blocks4``."""
        return [self.blocks1, self.blocks2, self.blocks3, self.blocks4]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Extract multi-scale features.

        Args:
            x (torch.Tensor): (B, in_channels, H, W) images.

        Returns:
            tuple[torch.Tensor]: The feature maps of the stages in ``out_indices``
            (strides 8, 16, 32 and 64).
        """
        x = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self):
        modules = [self.patch_embed] + self.stages
        for m in modules[:self.frozen_stages + 1]:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'LSNet':
        """Set training mode, keeping frozen stages and (``norm_eval``) BatchNorms in eval.

        Args:
            mode (bool): Training (True) or evaluation (False) mode. Defaults to True.

        Returns:
            LSNet: The backbone itself.
        """
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def switch_to_deploy(self) -> 'LSNet':
        """Convert in place for fast inference (as mmpretrain's RepVGG does).

        Every layer converts itself (children before parents,
        :func:`~lsnet_mm.models.layers.reparameterize`) into the form ``deploy=True``
        builds: Conv-BNs fused into one conv, each RepVGG-style mixer into one 3x3
        depthwise conv, each LS convolution's BatchNorm into a per-channel affine, the
        attention scale into the query conv, ReLUs, gates and residual adds in place;
        attention biases are computed once per feature-map size. Outputs match eval
        mode up to float rounding. Irreversible: the result has no BatchNorm statistics
        left and is meant for inference only (it is put in eval mode).

        Returns:
            LSNet: The backbone itself, converted.
        """
        if self.deploy:
            return self
        self.eval()
        for child in self.children():
            reparameterize(child)
        for m in self.patch_embed:
            if isinstance(m, nn.ReLU):
                m.inplace = True  # on the fresh output of a conv
        self.deploy = True
        return self

    # ------------------------------------------------------------------ loading
    def init_weights(self):
        """Load the ``Pretrained`` ``init_cfg`` checkpoint, or initialise as mmengine does."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.load_pretrained(cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()

    def load_pretrained(self, path, prefix=None):
        """Load released LSNet weights (ImageNet or downstream) from ``path``.

        Checks that the checkpoint is of this model's arch and form (deploy or not),
        loads non-strictly (attention tables of another grid are resized by the layers)
        and logs what was missing or unexpected.

        Args:
            path (str): A local file or any location mmengine's ``CheckpointLoader``
                reads (http(s) URLs are downloaded to the torch hub cache).
            prefix (str, optional): Load only the keys under this prefix (e.g.
                ``'backbone.'`` for a detector's checkpoint). Defaults to None.

        Returns:
            tuple[list, list]: The missing and the unexpected keys, as mmengine reports.

        Raises:
            CheckpointError: The file is not an LSNet checkpoint of this arch and form,
                or its tensors do not fit the model.
        """
        sd = read_backbone_weights(path, prefix)
        self.check_arch(sd, path)
        if is_deploy_state_dict(sd) and not self.deploy:
            raise CheckpointError(
                f'{path!r} holds LSNet weights in deploy form (BatchNorms folded), but the '
                f'model is built with deploy=False: set deploy=True in the backbone config.')
        if self.deploy and not is_deploy_state_dict(sd):
            raise CheckpointError(
                f'{path!r} holds LSNet weights in training form (with BatchNorms), but the '
                f'model is built with deploy=True: convert the file with '
                f'tools/model_converters/reparameterize_model.py, or set deploy=False.')
        missing, unexpected = load_weights(self, sd, path)
        print_log(f'LSNet-{self.arch}: loaded {len(sd) - len(unexpected)} tensors from {path}; '
                  f'missing keys: {missing or "none"}; unexpected keys: {unexpected or "none"}',
                  logger='current')
        return missing, unexpected

    def check_arch(self, sd: dict, path: str = 'checkpoint') -> None:
        """Raise unless a backbone state dict is of this model's arch.

        Args:
            sd (dict): A backbone state dict.
            path (str): The checkpoint's name, for the message. Defaults to 'checkpoint'.

        Raises:
            CheckpointError: ``sd`` is no LSNet's, or an LSNet of another size (named).
        """
        desc = describe_state_dict(sd)
        if desc is None:
            raise CheckpointError(
                f'{path!r} is not an LSNet checkpoint: it has no "patch_embed" stem weights '
                f'(first keys: {list(sd)[:5]}). Use a released LSNet ImageNet checkpoint.')
        if desc != (self.embed_dims, self.depths):
            found = arch_of(sd)
            name = f'LSNet-{found}' if found else 'an LSNet of another size'
            raise CheckpointError(
                f'{path!r} is {name} (embed dims {desc[0]}, depths {desc[1]}), but the model '
                f'is LSNet-{self.arch} (embed dims {self.embed_dims}, depths {self.depths}). '
                f'Use the checkpoint released for arch {self.arch!r}'
                + (f" or set arch='{found}'." if found else '.'))

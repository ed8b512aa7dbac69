"""Running exported ONNX files (and OpenVINO IR files) on CPU with onnxruntime or OpenVINO.

:class:`OnnxModel` loads a file once and runs it many times with either runtime
(``pip install onnxruntime`` / ``pip install openvino``); both take and return NumPy
arrays keyed by the graph's input and output names. :class:`OnnxModule` puts one in
place of the PyTorch module it was exported from (benchmarks).
"""
import os.path as osp
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from ..utils.errors import ConfigError
from ..utils.optional import is_installed

RUNTIMES = ('onnxruntime', 'openvino')


def runtime_available(runtime: str) -> bool:
    """Tell whether a runtime's Python package is installed.

    Args:
        runtime (str): ``'onnxruntime'`` or ``'openvino'``.

    Returns:
        bool: The package imports.
    """
    return is_installed(runtime)


def check_model_file(path: str, runtime: str) -> None:
    """Raise :class:`ConfigError` unless ``runtime`` can load the model file ``path``.

    Args:
        path (str): An ``.onnx`` file or an OpenVINO ``.xml`` file.
        runtime (str): ``'onnxruntime'`` or ``'openvino'``.

    Raises:
        ConfigError: Unknown or uninstalled runtime, missing file, or an ``.xml`` file
            for onnxruntime.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f'runtime must be one of {", ".join(RUNTIMES)}, got {runtime!r}')
    if not runtime_available(runtime):
        raise ConfigError(f'the {runtime} runtime is not installed: pip install {runtime} '
                          f'(the tested version is pinned in requirements.txt)')
    if not osp.isfile(path):
        raise ConfigError(f'model file {path!r} not found: export one with '
                          f'tools/deployment/export_onnx.py or tools/deployment/quantize.py')
    if path.endswith('.xml') and runtime != 'openvino':
        raise ConfigError(f'{path} is an OpenVINO IR file: run it with the openvino runtime '
                          f'(e.g. --backend openvino), or quantize to a .onnx file for '
                          f'onnxruntime')


class OnnxModel:
    """An exported file loaded into onnxruntime (CPU provider) or OpenVINO (CPU device).

    onnxruntime reads ``.onnx`` files (float or INT8 QDQ); OpenVINO reads those and its
    own IR (``.xml`` with its ``.bin`` beside it, e.g. an INT8 model of
    :func:`lsnet_mm.deploy.quantize.quantize_onnx`). OpenVINO runs floating-point
    parts in float32 (no bf16 down-conversion on CPUs that have it).

    Args:
        path (str): The model file.
        runtime (str): ``'onnxruntime'`` or ``'openvino'``. Defaults to 'onnxruntime'.
        threads (int): Intra-op threads; 0 leaves the runtime's default. Defaults to 0.

    Raises:
        ConfigError: Unknown runtime, runtime not installed, missing file, or an
            OpenVINO IR file given to onnxruntime.
    """

    def __init__(self, path: str, runtime: str = 'onnxruntime', threads: int = 0):
        check_model_file(path, runtime)
        self.path, self.runtime = path, runtime
        if runtime == 'onnxruntime':
            import onnxruntime as ort
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = threads
            # idle threads sleep between runs instead of spinning, so that alternating
            # with another engine (benchmarks) or other processes does not starve them
            opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
            self._sess = ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
            self.input_names = [i.name for i in self._sess.get_inputs()]
            self.output_names = [o.name for o in self._sess.get_outputs()]
            self.version = ort.__version__
        else:
            import openvino as ov
            core = ov.Core()
            config = {'INFERENCE_PRECISION_HINT': 'f32', 'PERFORMANCE_HINT': 'LATENCY'}
            if threads:
                config['INFERENCE_NUM_THREADS'] = threads
            self._compiled = core.compile_model(core.read_model(path), 'CPU', config)
            self._request = self._compiled.create_infer_request()
            self.input_names = [i.get_any_name() for i in self._compiled.inputs]
            self.output_names = [o.get_any_name() for o in self._compiled.outputs]
            self.version = ov.get_version()

    def __call__(self, *inputs) -> Dict[str, np.ndarray]:
        """Run the graph.

        Args:
            *inputs (np.ndarray | torch.Tensor): One array per graph input, in order.

        Returns:
            dict[str, np.ndarray]: The outputs by name, in the graph's order.
        """
        arrays = [np.ascontiguousarray(_numpy(x)) for x in inputs]
        if self.runtime == 'onnxruntime':
            outs = self._sess.run(None, dict(zip(self.input_names, arrays)))
        else:
            res = self._request.infer(arrays)
            # copies: the request's output buffers are reused by the next inference
            outs = [np.array(res[o]) for o in self._compiled.outputs]
        return dict(zip(self.output_names, outs))


class OnnxModule(nn.Module):
    """An exported file run by a runtime, called like the module it was exported from.

    Args:
        source (nn.Module): The exported module (kept as a submodule, so that
            ``parameters()`` counts its parameters).
        path (str): The .onnx file.
        runtime (str): ``'onnxruntime'`` or ``'openvino'``. Defaults to 'onnxruntime'.
        threads (int): Intra-op threads; 0 leaves the runtime's default. Defaults to 0.
    """

    def __init__(self, source: nn.Module, path: str, runtime: str = 'onnxruntime',
                 threads: int = 0):
        super().__init__()
        self.source = source
        self.session = OnnxModel(path, runtime, threads)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Run the file on ``x`` (CPU).

        Args:
            x (torch.Tensor): The input.

        Returns:
            list[torch.Tensor]: The outputs, in the graph's order.
        """
        return [torch.from_numpy(v) for v in self.session(x).values()]


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)


def run_onnx(path: str, inputs, runtime: str = 'onnxruntime', threads: int = 0,
             names: Optional[List[str]] = None) -> list:
    """Load an ONNX file and run it once.

    Args:
        path (str): The .onnx file.
        inputs (np.ndarray | torch.Tensor): The (single) input.
        runtime (str): ``'onnxruntime'`` or ``'openvino'``. Defaults to 'onnxruntime'.
        threads (int): Intra-op threads; 0 leaves the runtime's default. Defaults to 0.
        names (list[str], optional): Return only these outputs, in this order.

    Returns:
        list[torch.Tensor]: The outputs, in the graph's order (or ``names``' order).
    """
    out = OnnxModel(path, runtime, threads)(inputs)
    return [torch.from_numpy(np.asarray(out[k])) for k in (names or list(out))]

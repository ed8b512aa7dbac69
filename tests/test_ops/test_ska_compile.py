"""The SKA op as a registered torch.library op: torch.compile(fullgraph=True) of an
LS convolution on CPU (the op and its backward op opaque in the graphs, eager values
and gradients), fake-tensor shapes and dtypes, opcheck, and torch.export."""
import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch._subclasses.fake_tensor import FakeTensorMode

from lsnet_mm.models.layers import LSConv
from lsnet_mm.ops import ska

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _lsconv(c=16):
    m = LSConv(c).train()
    for p in m.parameters():  # away from the zero-init BN: a non-trivial aggregation
        torch.nn.init.normal_(p, std=0.3) if p.dim() > 1 else torch.nn.init.uniform_(p, 0.5, 1.5)
    return m


def _step(m, x):
    out = m(x)
    loss = out.square().mean()
    grads = torch.autograd.grad(loss, [x, *m.parameters()])
    return out, grads


def test_compile_fullgraph_lsconv_opaque_op():
    graphs = {'forward': [], 'backward': []}

    def recorder(kind):
        def compiler(gm, example_inputs):
            graphs[kind].append(gm.code)
            return make_boxed_func(gm.forward)
        return compiler

    backend = aot_autograd(fw_compiler=recorder('forward'), bw_compiler=recorder('backward'))
    m = _lsconv()
    x = torch.randn(2, 16, 9, 11, requires_grad=True)
    want_out, want_grads = _step(m, x)
    compiled = torch.compile(m, backend=backend, fullgraph=True)
    got_out, got_grads = _step(compiled, x)
    torch.testing.assert_close(got_out, want_out, rtol=1e-5, atol=1e-5)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    fw, bw = '\n'.join(graphs['forward']), '\n'.join(graphs['backward'])
    assert len(graphs['forward']) == 1 and len(graphs['backward']) == 1
    assert fw.count('torch.ops.lsnet_mm.ska.default') == 1
    assert bw.count('torch.ops.lsnet_mm.ska_backward.default') == 1
    assert 'addcmul' not in fw + bw  # the tap loop stays inside the op


@pytest.mark.slow
def test_compile_inductor_lsconv_matches_eager():
    m = _lsconv()
    x = torch.randn(2, 16, 9, 11, requires_grad=True)
    want_out, want_grads = _step(m, x)
    got_out, got_grads = _step(torch.compile(m, fullgraph=True), x)
    torch.testing.assert_close(got_out, want_out, rtol=1e-4, atol=1e-4)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-4)


def test_fake_tensor_shapes_and_dtypes():
    with FakeTensorMode():
        x = torch.empty(3, 24, 7, 5, dtype=torch.bfloat16)
        w = torch.empty(3, 3, 9, 7, 5, dtype=torch.float32)
        out = ska(x, w)
        gx, gw = torch.ops.lsnet_mm.ska_backward(out, x, w, 'auto', True, True)
        gx_only, no_w = torch.ops.lsnet_mm.ska_backward(out, x, w, 'auto', True, False)
    assert out.shape == (3, 24, 7, 5) and out.dtype == torch.bfloat16
    assert gx.shape == x.shape and gx.dtype == torch.bfloat16
    assert gw.shape == w.shape and gw.dtype == torch.float32
    assert gx_only.shape == x.shape and no_w.numel() == 0


@pytest.mark.parametrize('backend', ['auto', 'torch'])
def test_opcheck(backend):
    x = torch.randn(2, 16, 5, 6, requires_grad=True)
    w = torch.randn(2, 2, 9, 5, 6, requires_grad=True)
    result = torch.library.opcheck(torch.ops.lsnet_mm.ska.default, (x, w, backend))
    assert set(result.values()) == {'SUCCESS'} and len(result) >= 4
    go = torch.randn(2, 16, 5, 6)
    for need in ((True, True), (True, False), (False, True)):
        result = torch.library.opcheck(torch.ops.lsnet_mm.ska_backward.default,
                                       (go, x.detach(), w.detach(), backend, *need))
        assert set(result.values()) == {'SUCCESS'}


def test_export_shows_one_ska_node():
    m = _lsconv().eval()
    x = torch.randn(1, 16, 8, 10)
    ep = torch.export.export(m, (x,))
    targets = [n.target for n in ep.graph.nodes if n.op == 'call_function']
    assert targets.count(torch.ops.lsnet_mm.ska.default) == 1
    assert not any('addcmul' in str(t) for t in targets)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), m(x))

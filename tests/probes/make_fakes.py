#!/usr/bin/env python3
"""Build small fake ``sageattention`` / ``sageattn3`` installs for the probe tests.

Each fake is a directory to put on PYTHONPATH, laid out as pip would install a
wheel with ``--target``: the package plus a ``NAME-VERSION.dist-info/METADATA``
so ``importlib.metadata.version()`` sees it. The compiled extensions of the
real wheels are stood in for by plain Python modules of the same dotted name.

Used by tests/probes/ (the CPU tests, and the `gpu`-marked ones on a GPU).

    python tests/probes/make_fakes.py OUTDIR            # every variant, OUTDIR/<variant>/
    python tests/probes/make_fakes.py OUTDIR empty q    # only these
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

# sage2 variant -> (description, options)
SAGE2_VARIANTS = {
    # correct fake (SDPA underneath): passes every check, also on a GPU
    "good": dict(),
    # sageattn returns torch.empty_like(q): never writes its output
    "empty": dict(behaviour="empty"),
    # sageattn returns q itself
    "returns_q": dict(behaviour="returns_q"),
    # built without the sm90 extension: import works (SM90_ENABLED = False),
    # the first call on an H100 raises AssertionError("SM90 kernel is not available")
    "no_sm90": dict(omit_ext=("_qattn_sm90",)),
    # wheel built against another torch: extension has an undefined symbol
    "undefined_symbol": dict(ext_error={"_qattn_sm90": "{file}: undefined symbol: _ZN3c1017RegisterOperatorsD1Ev"}),
    # container without GPU: extension links libcuda.so.1, which is absent
    "no_driver": dict(ext_error={"_qattn_sm90": "libcuda.so.1: cannot open shared object file: No such file or directory"}),
    # the same, but for the extension that `import sageattention` needs itself
    "no_driver_toplevel": dict(ext_error={"_fused": "libcuda.so.1: cannot open shared object file: No such file or directory"}),
    # wheel built for another CUDA: a runtime library is missing
    "missing_cudart": dict(ext_error={"_qattn_sm89": "libcudart.so.12: cannot open shared object file: No such file or directory"}),
    # an export is missing
    "missing_export": dict(omit_export=("sageattn_qk_int8_pv_fp8_cuda_sm90",)),
    # import kills the interpreter
    "segv": dict(segv=True),
    # import ends the interpreter with a status (an extension initialiser calling exit)
    "exits": dict(exit_status=0),
    # import prints to stdout (Python and C level)
    "noisy": dict(noisy=True),
    # wheel with a local version label, as our per-SM builds have
    "local_version": dict(version="2.2.0+cu130.torch2.13.0.sm90"),
    # wrong version installed
    "old_version": dict(version="2.1.1"),
}

SAGE3_VARIANTS = {
    "sage3_good": dict(),
    "sage3_no_fp4quant": dict(omit_ext=("fp4quant_cuda",)),
    "sage3_not_callable": dict(not_callable=True),
    "sage3_undefined_symbol": dict(ext_error={"fp4attn_cuda": "{file}: undefined symbol: _ZNK3c1010TensorImpl4sizeEv"}),
}

EXPORTS = (
    "sageattn_qk_int8_pv_fp16_triton",
    "sageattn_qk_int8_pv_fp16_cuda",
    "sageattn_qk_int8_pv_fp8_cuda",
    "sageattn_qk_int8_pv_fp8_cuda_sm90",
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def _dist_info(root: Path, name: str, version: str) -> None:
    _write(root / f"{name}-{version}.dist-info" / "METADATA",
           f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    _write(root / f"{name}-{version}.dist-info" / "top_level.txt", name + "\n")


def _ext_module(path: Path, error: str | None) -> None:
    if error is None:
        _write(path, '"""Stand-in for a compiled extension."""\nLOADED = True\n')
    else:
        msg = error.replace("{file}", str(path.with_suffix(".cpython-312-x86_64-linux-gnu.so")))
        _write(path, f"raise ImportError({msg!r})\n")


_ATTN = '''
def _attn(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, **kwargs):
    import torch
    if BEHAVIOUR == "empty":
        return torch.empty_like(q)
    if BEHAVIOUR == "returns_q":
        return q
    if tensor_layout == "NHD":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=sm_scale)
    if tensor_layout == "NHD":
        o = o.transpose(1, 2)
    return o.contiguous()
'''


def make_sage2(root: Path, *, version: str = "2.2.0", behaviour: str = "correct", omit_ext=(), ext_error=None,
               omit_export=(), segv: bool = False, noisy: bool = False, exit_status: int | None = None) -> Path:
    ext_error = ext_error or {}
    pkg = root / "sageattention"
    _dist_info(root, "sageattention", version)
    for ext in ("_qattn_sm80", "_qattn_sm89", "_qattn_sm90", "_fused"):
        if ext not in omit_ext:
            _ext_module(pkg / f"{ext}.py", ext_error.get(ext))
    exports = [n for n in ("sageattn", "sageattn_varlen", *EXPORTS) if n not in omit_export]
    head = ""
    if segv:
        head += "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    if exit_status is not None:
        head += f"import os\nos._exit({exit_status})\n"
    if noisy:
        head += ("import os\nprint('hello from sageattention on stdout')\n"
                 "os.write(1, b'C-level write to fd 1\\n')\n")
    _write(pkg / "__init__.py", head + f"from .core import {', '.join(exports)}\n")
    core = f'''
        try:
            from . import _qattn_sm80
            SM80_ENABLED = True
        except Exception:
            SM80_ENABLED = False
        try:
            from . import _qattn_sm89
            SM89_ENABLED = True
        except Exception:
            SM89_ENABLED = False
        try:
            from . import _qattn_sm90
            SM90_ENABLED = True
        except Exception:
            SM90_ENABLED = False
        from . import _fused  # needed unconditionally, as in the real package

        BEHAVIOUR = {behaviour!r}
        '''
    core = textwrap.dedent(core) + _ATTN + '''

def sageattn_qk_int8_pv_fp16_triton(q, k, v, **kw):
    return _attn(q, k, v, **kw)


def sageattn_qk_int8_pv_fp16_cuda(q, k, v, **kw):
    assert SM80_ENABLED, "SM80 kernel is not available"
    return _attn(q, k, v, **kw)


def sageattn_qk_int8_pv_fp8_cuda(q, k, v, **kw):
    assert SM89_ENABLED, "SM89 kernel is not available"
    return _attn(q, k, v, **kw)


def sageattn_qk_int8_pv_fp8_cuda_sm90(q, k, v, **kw):
    assert SM90_ENABLED, "SM90 kernel is not available"
    return _attn(q, k, v, **kw)


def sageattn_varlen(*args, **kw):
    raise NotImplementedError("fake")


def sageattn(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False, **kw):
    import torch
    major, minor = torch.cuda.get_device_capability(q.device)
    arch = f"sm{major}{minor}"
    kw = dict(tensor_layout=tensor_layout, is_causal=is_causal, sm_scale=sm_scale)
    if arch == "sm80":
        return sageattn_qk_int8_pv_fp16_cuda(q, k, v, **kw)
    if arch == "sm86":
        return sageattn_qk_int8_pv_fp16_triton(q, k, v, **kw)
    if arch in ("sm89", "sm120", "sm121"):
        return sageattn_qk_int8_pv_fp8_cuda(q, k, v, **kw)
    if arch == "sm90":
        return sageattn_qk_int8_pv_fp8_cuda_sm90(q, k, v, **kw)
    raise ValueError(f"Unsupported CUDA architecture: {arch}")
'''
    _write(pkg / "core.py", core)
    return root


def make_sage3(root: Path, *, version: str = "1.0.0", omit_ext=(), ext_error=None,
               not_callable: bool = False) -> Path:
    ext_error = ext_error or {}
    _dist_info(root, "sageattn3", version)
    for ext in ("fp4attn_cuda", "fp4quant_cuda"):
        if ext not in omit_ext:
            _ext_module(root / f"{ext}.py", ext_error.get(ext))
    pkg = root / "sageattn3"
    _write(pkg / "__init__.py", "from .api import sageattn3_blackwell\n")
    if not_callable:
        _write(pkg / "api.py", "import fp4attn_cuda, fp4quant_cuda\nsageattn3_blackwell = None\n")
    else:
        _write(pkg / "api.py", '''
            import fp4attn_cuda
            import fp4quant_cuda


            def sageattn3_blackwell(q, k, v, attn_mask=None, is_causal=False, per_block_mean=True, **kwargs):
                import torch
                k -= k.mean(dim=-2, keepdim=True)  # like the real kernel: modifies k in place
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
            ''')
    return root


def make(outdir: Path, variant: str) -> Path:
    root = outdir / variant
    if variant in SAGE2_VARIANTS:
        return make_sage2(root, **SAGE2_VARIANTS[variant])
    if variant in SAGE3_VARIANTS:
        return make_sage3(root, **SAGE3_VARIANTS[variant])
    raise SystemExit(f"unknown variant {variant!r}; known: {', '.join([*SAGE2_VARIANTS, *SAGE3_VARIANTS])}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    outdir = Path(argv[0])
    variants = argv[1:] or [*SAGE2_VARIANTS, *SAGE3_VARIANTS]
    for v in variants:
        print(make(outdir, v))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

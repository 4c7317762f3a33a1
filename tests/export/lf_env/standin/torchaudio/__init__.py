"""A stand-in for torchaudio in the LLaMA-Factory test environment (.venv-lf).

LLaMA-Factory's data code imports torchaudio at module import (mm_plugin.py) but calls it only
for audio inputs; no torchaudio build matches this machine's torch 2.13. Any use fails loudly,
so a test that reached audio code would say so instead of passing on a fake."""


def __getattr__(name: str) -> object:
    raise ImportError(f"torchaudio stand-in: torchaudio.{name} is not available (no audio here)")

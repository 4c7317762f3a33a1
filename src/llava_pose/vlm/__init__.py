"""Vision-language models for inference and training alike: which model is which family
(`families`), loading runs, checkpoints and LoRA runs (`load`), processors that work without
torchvision (`processors`), image preparation (`images`), generation and `llava-pose chat`
(`generate`, `chat`), and the offline tiny presets (`tiny`).

It sits below the LLM layer (`llm/hf.py`, the ``hf:`` answerer, imports it) and below
`train/` (which adds only what training needs). Needs the [train] extra when used; importing
a module here never imports torch.
"""

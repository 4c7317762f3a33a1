"""Fine-tuning LLaVA-Pose (paper Sections 4-5) for any family of the architecture registry:
records -> chat messages, validation and TRL's dataset (`data`), the paper's trainable split per
family (`model`), what every method shares (`trainer`: arguments, loading, the recipe on top of
a Trainer, logging, saving) and the methods (`--method`: `sft`, on TRL's SFTTrainer; `grpo`,
on TRL's GRPOTrainer with the verifiable pose rewards of `rewards`). Loading,
generation, `chat`, the registry and the tiny presets live in `llava_pose.vlm`, the hf:
answerer in `llava_pose.llm.hf`. Needs the [train] extra; nothing here is imported by the core
package.

``python -m llava_pose.train --config FILE`` is ``llava-pose train``, for launchers
(``accelerate launch -m llava_pose.train``, ``torchrun -m llava_pose.train``).
"""

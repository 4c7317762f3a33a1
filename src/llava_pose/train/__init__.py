"""Fine-tuning and serving LLaVA-Pose (paper Sections 4-5): data -> model inputs (`data`),
model setup (`model`), the Trainer (`trainer`) and generation for chat and the hf: answerer
(`infer`). Needs the [train] extra; nothing here is imported by the core package.

``python -m llava_pose.train --config FILE`` is ``llava-pose train``, for launchers
(``accelerate launch -m llava_pose.train``, ``torchrun -m llava_pose.train``).
"""

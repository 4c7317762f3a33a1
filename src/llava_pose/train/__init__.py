"""Fine-tuning LLaVA-Pose (paper Sections 4-5): data -> model inputs (`data`), model setup
(`model`) and the Trainer (`trainer`). Loading, generation, `chat` and the tiny presets live in
`llava_pose.vlm`, the hf: answerer in `llava_pose.llm.hf`. Needs the [train] extra; nothing
here is imported by the core package.

``python -m llava_pose.train --config FILE`` is ``llava-pose train``, for launchers
(``accelerate launch -m llava_pose.train``, ``torchrun -m llava_pose.train``).
"""

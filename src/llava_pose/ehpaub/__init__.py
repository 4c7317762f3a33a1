"""E-HPAUB, the benchmark of paper section 5.2, as four commands.

``build`` (build.py) picks human-centric COCO images with a seed and has the data pipeline's
teacher write one conversation, one detailed-description and one complex-reasoning question per
image with reference answers; ``answer`` (answer.py) runs any model on the questions; ``judge``
(judge.py) has a language-only judge score each answer against the reference, LLaVA-Bench's
protocol made robust; ``report`` (report.py) writes the paper's tables, judge agreement and
charts. Files have LLaVA-Bench's shapes (files.py), so LLaVA-Bench COCO runs through the same
tool. Stage modules import only what their command needs: nothing heavy at import time.
"""

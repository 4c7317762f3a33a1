"""PoseQA: a judge-free benchmark whose every answer is a fact of the COCO keypoints.

`build` asks questions only where the geometry is clear by a margin (`facts`) about people a
vision model can find by name (`names`); `bench answer` answers them unchanged; `score`
reads the answers with a tolerant parser (`answers`) and reports exact-match accuracy.
"""

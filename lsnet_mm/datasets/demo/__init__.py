"""Generated demo data sets (deterministic, real image files; numpy and OpenCV only).

* :mod:`~lsnet_mm.datasets.demo.coco_shapes` - COCO-format detection and instance
  segmentation (circles, squares, triangles): ``python -m
  lsnet_mm.datasets.demo.coco_shapes --root data/demo_coco``;
* :mod:`~lsnet_mm.datasets.demo.ade_scenes` - ADE20K-layout semantic segmentation
  (six ADE20K classes): ``python -m lsnet_mm.datasets.demo.ade_scenes``.
"""

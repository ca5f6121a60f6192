"""What both stages share and neither owns: audio I/O and the bad-input error (:mod:`.audio`) and
split lists (:mod:`.splits`).

Direction of imports: ``DiffBinaural`` and ``BigVGAN`` import this package; it imports neither.
"""

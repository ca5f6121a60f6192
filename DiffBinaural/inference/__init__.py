"""Stage 1 inference and what turns its output into sound: sampling whole clips into mel directories
(``stage1``), the mono renderer (``renderer``), the binauralize pipeline (``pipeline``) and the Python API
(``binauralizer``)."""

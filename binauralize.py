"""Binauralize your own video (``diffbinaural-binauralize`` once installed); see ``DiffBinaural/binauralize.py``.

    python binauralize.py --video IN.mp4 --stage1 RUN_DIR --out OUT.mp4
"""

from DiffBinaural.binauralize import cli

if __name__ == "__main__":
    cli()
